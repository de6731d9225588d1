"""Run a grid of arms over a task's rows, storing every call and outcome; resumable and cached.

An arm is one (model, layout, syntax, constrained, thinking budget). Arms run one after another and rows in
order, so prompts that share a prefix run back to back. A row with a stored outcome is never called again
(backend errors are retried); a call whose hash (model, messages, constraint, options) is already stored is
answered from the store, so adding a layout or a model runs only what is new.
Does not handle: two processes writing the same store at once (SQLite serialises them, but rows may be
computed twice).
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from .. import _models, _types
from .._errors import BackendError, ConfigError, ParseError, UnreachableError
from .._options import GenerateOptions
from .._predictor import Predictor
from ..backends import Backend, Generation
from ..layouts import Constraint, get_layout, layout_names
from . import _metrics
from ._store import Store
from ._summary import summarize
from ._tasks import Row, Task


@dataclass(frozen=True)
class Arm:
    task: str
    model: str
    layout: str
    syntax: str
    constrained: bool
    budget: int | None  # None: the layout has no reasoning region
    demos: int = 0

    @property
    def id(self) -> str:
        budget = "-" if self.budget is None else str(self.budget)
        return "|".join([self.task, self.model, self.layout, self.syntax, "on" if self.constrained else "off",
                          budget, f"{self.demos}shot"])

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "id": self.id, "constrained": int(self.constrained)}


def build_grid(task: str, models: Sequence[str], layouts: Sequence[str] | None, syntaxes: Sequence[str],
               constrained: Sequence[bool], budgets: Sequence[int | None], demos: int = 0) -> list[Arm]:
    """Every combination; a layout without a requested syntax uses its own; no duplicate arms."""
    layouts = list(layouts or layout_names())
    for name in layouts:
        get_layout(name)  # unknown names fail here, before any model call
    arms: list[Arm] = []
    for model in models:
        for name in layouts:
            own = get_layout(name).syntaxes
            for syntax in syntaxes:
                s = syntax if syntax in own else own[0]
                has_region = get_layout(name, s).has_reasoning
                for c in constrained:
                    for budget in (budgets if has_region else [None]):
                        arm = Arm(task, model, name, s, c, budget, demos)
                        if arm not in arms:
                            arms.append(arm)
    return arms


def call_hash(model: str, messages: list[dict], lark: str | None, options: GenerateOptions) -> str:
    payload = json.dumps({"model": model, "messages": messages, "constraint": lark,
                          "options": options.model_dump()}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("firsttoken", "llama-cpp-python", "llguidance", "openai"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


class Progress(Protocol):
    def arm_started(self, arm: Arm, total: int, done: int) -> None: ...
    def row_done(self, arm: Arm, result: dict) -> None: ...
    def arm_finished(self, arm: Arm) -> None: ...


def default_store(task: str) -> Path:
    return Path("runs") / f"{task}.db"


def _check_model(spec: str) -> None:
    kind, sep, _ = spec.partition(":")
    if sep and kind in ("openai", "scripted"):
        _models.resolve(spec)  # cheap for these, and it names the problem
    else:
        _models.model_path(spec)


def evaluate(task: Task, models: Sequence[str | Backend], layouts: Sequence[str] | None = None,
             syntaxes: Sequence[str] = ("json",), constrained: Sequence[bool] = (True,),
             budgets: Sequence[int | None] = (None,), store: str | Path | None = None, limit: int | None = None,
             sample: int | None = None, seed: int = 0, demos: list[dict] | None = None, margin: float = 0.02,
             progress: Progress | None = None) -> dict[str, Any]:
    """Run the grid and return the summary (per arm, pairwise comparisons, recommendation)."""
    backends: dict[str, Backend] = {}
    names: list[str] = []
    for m in models:
        if isinstance(m, str):
            _check_model(m)
            names.append(m)
        else:
            name = getattr(m, "label", None) or m.name
            backends[name] = m
            names.append(name)
    if not names:
        raise ConfigError("no model given", hint="pass --model NAME (repeatable)")
    default_budget = GenerateOptions().max_thinking_tokens
    budgets = [default_budget if b is None else b for b in budgets]
    arms = build_grid(task.name, names, layouts, syntaxes, constrained, budgets, len(demos or []))
    rows = task.rows(limit=limit, sample=sample, seed=seed)
    db = Store(store or default_store(task.name))
    try:
        db.add_run(task.name, {"models": names, "layouts": list(layouts or layout_names()), "syntaxes": list(syntaxes),
                               "constrained": list(constrained), "budgets": budgets, "limit": limit,
                               "sample": sample, "seed": seed, "demos": len(demos or []), "labels": task.labels,
                               "output": task.output, "metric": task.metric_name, "bad_rows": task.bad_rows,
                               "signature": task.signature.to_spec(), "demo_rows": demos or []},
                   versions())
        db.add_rows(task.name, rows)
        for arm in arms:
            db.add_arm(arm.record())
            _run_arm(arm, task, rows, db, backends, demos or [], progress)
        return summarize(db, task.name, [a.id for a in arms], {r.id for r in rows}, margin, seed)
    finally:
        db.close()


def _run_arm(arm: Arm, task: Task, rows: list[Row], db: Store, backends: dict[str, Backend],
             demos: list[dict], progress: Progress | None) -> None:
    done = db.done_rows(arm.id)
    todo = [r for r in rows if r.id not in done]
    if progress:
        progress.arm_started(arm, len(rows), len(rows) - len(todo))
    if todo:
        if arm.model not in backends:
            backends[arm.model] = _models.resolve(arm.model)
        backend = backends[arm.model]
        options: dict[str, Any] = {"constrained": arm.constrained}
        if arm.budget is not None:
            options["max_thinking_tokens"] = arm.budget
        predictor = Predictor(task.signature, layout=arm.layout, syntax=arm.syntax, model=backend, demos=demos,
                              **options)
        jobs = [_prepare(arm, row, predictor, db) for row in todo]
        workers = getattr(backend, "concurrency", 1)
        if workers <= 1:
            for job in jobs:
                _report(progress, arm, _record(arm, task, predictor, db, job, _call(predictor, job)))
        else:  # calls in flight at once; every store write stays on this thread
            pool = ThreadPoolExecutor(max_workers=workers)
            try:
                futures = {pool.submit(_call, predictor, job): job for job in jobs}
                for future in as_completed(futures):
                    job = futures[future]
                    _report(progress, arm, _record(arm, task, predictor, db, job, future.result()))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    if progress:
        progress.arm_finished(arm)


def _report(progress: Progress | None, arm: Arm, result: dict) -> None:
    if progress:
        progress.row_done(arm, result)


@dataclass
class _Job:
    row: Row
    messages: list[dict]
    constraint: Constraint | None
    hash: str
    cached: Generation | None


def _prepare(arm: Arm, row: Row, predictor: Predictor, db: Store) -> _Job:
    messages = predictor.messages(**row.inputs)
    constraint = predictor.constraint if arm.constrained else None
    h = call_hash(arm.model, messages, constraint.lark if constraint else None, predictor.options)
    stored = db.call(h)
    cached = None
    if stored is not None:
        cached = Generation(text=stored["text"], prompt_tokens=stored["prompt_tokens"],
                            completion_tokens=stored["completion_tokens"], reasoning_tokens=stored["reasoning_tokens"],
                            reasoning=stored["reasoning"], seconds=stored["seconds"],
                            estimated=bool(stored["estimated"]), closed_by=stored["closed_by"],
                            finish_reason=stored["finish_reason"] or "stop", retries=stored["retries"] or 0)
    return _Job(row, messages, constraint, h, cached)


def _call(predictor: Predictor, job: _Job) -> Generation | BackendError:
    """The model call (on a worker thread when the backend is concurrent). A run stops on UnreachableError."""
    if job.cached is not None:
        return job.cached
    try:
        return predictor.model.generate(job.messages, job.constraint, predictor.options)
    except UnreachableError:
        raise
    except BackendError as e:
        return e


def _record(arm: Arm, task: Task, predictor: Predictor, db: Store, job: _Job, gen: Generation | BackendError) -> dict:
    base = {"arm_id": arm.id, "row_id": job.row.id, "call_hash": job.hash, "outputs": None, "thoughts": None,
            "raw": None, "score": None, "prompt_tokens": None, "reasoning_tokens": None, "answer_tokens": None,
            "seconds": None, "estimated": 0, "order_violated": 0, "error": None}
    if isinstance(gen, BackendError):
        result = {**base, "outcome": "backend_error", "error": f"{type(gen).__name__}: {gen}"}
        db.add_result(result)
        return result
    try:
        pred = predictor.finish(gen)
        score = task.score(job.row, pred.outputs)
        u = pred.usage
        result = {**base, "outcome": "correct" if _metrics.is_correct(score) else "wrong",
                  "outputs": json.dumps({k: _types.to_json(v) for k, v in pred.outputs.items()}, default=str),
                  "thoughts": pred.thoughts, "raw": pred.raw, "score": score, "order_violated": int(pred.order_violated)}
    except ParseError as e:
        u = e.usage
        result = {**base, "outcome": "parse_failure", "raw": e.raw, "thoughts": e.reasoning, "error": e.message,
                  "score": 0.0}
    result.update(prompt_tokens=u.prompt_tokens, reasoning_tokens=u.reasoning_tokens, answer_tokens=u.answer_tokens,
                  seconds=u.seconds, estimated=int(u.estimated))
    with db.db:  # the call and its outcome land together, or not at all
        db.db.execute("BEGIN")
        if job.cached is None:
            db.add_call(job.hash, {
                "model": arm.model, "messages": json.dumps(job.messages), "options": predictor.options.model_dump_json(),
                "constraint_lark": job.constraint.lark if job.constraint else None, "text": gen.text,
                "reasoning": gen.reasoning, "prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
                "reasoning_tokens": gen.reasoning_tokens, "seconds": gen.seconds, "estimated": int(gen.estimated),
                "closed_by": gen.closed_by, "retries": gen.retries, "finish_reason": gen.finish_reason})
        db.add_result(result)
    return result
