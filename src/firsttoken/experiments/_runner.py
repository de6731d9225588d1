"""Run a grid of arms over a task's rows, storing every call and outcome; resumable and cached.

An arm is one (model, layout, syntax, constrained, thinking budget, demos). Arms run one after another and
rows in order, so prompts that share a prefix run back to back. A row (by identity and content, see
``_identity``) with a stored outcome is never run again (backend errors are retried); a call whose hash
(model, messages, constraint, options) is already stored is answered from the store, so adding a layout or
a model runs only what is new, and an edited expected answer is rescored without a call.
Does not handle: two processes writing the same store at once (SQLite serialises them, but rows may be
computed twice).
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from .. import _types
from .._backend import Backend, enforcement
from .._errors import BackendError, ConfigError, ParseError, UnreachableError
from .._options import GenerateOptions
from .._prediction import Prediction
from .._predictor import Predictor, completed_many, layout_signature
from .._text import redact
from ..backends import check_spec, model_key, resolve, spec_enforcement
from ..layouts import get_layout, layout_names
from . import _identity, _metrics
from ._cache import Cached
from ._sequential import run_until_decided
from ._store import Store
from ._summary import summarize
from ._tasks import Row, Task


@dataclass(frozen=True)
class Arm:
    """One (model, layout, syntax, constrained, thinking budget, demos). ``model`` is the model's identity
    (``backends.model_key``); ``demo_rows`` is the demos' content as JSON (part of the identity)."""

    task: str
    model: str
    layout: str
    syntax: str
    constrained: bool
    budget: int | None  # None: the layout has no reasoning region
    demos: int = 0
    demo_rows: str = "[]"

    @property
    def options(self) -> GenerateOptions:
        return _identity.arm_options(self.constrained, self.budget)

    @property
    def layout_version(self) -> int:
        return get_layout(self.layout, self.syntax).version

    @cached_property
    def server_grammar(self) -> str | None:
        return _identity.server_grammar(self.model, self.layout, self.syntax, self.constrained)

    @cached_property
    def id(self) -> str:
        fp = _identity.arm_fingerprint(self.task, self.model, self.layout, self.layout_version, self.syntax,
                                       self.options, json.loads(self.demo_rows), self.server_grammar)
        return _identity.arm_id(self.task, self.model, self.layout, self.syntax, self.constrained, self.budget,
                                self.demos, fp)

    def record(self) -> dict[str, Any]:
        config = {"layout_version": self.layout_version, "options": self.options.model_dump(),
                  "demo_rows": json.loads(self.demo_rows)}
        if self.server_grammar:
            config["server_grammar"] = self.server_grammar
        fields = {k: v for k, v in asdict(self).items() if k != "demo_rows"}
        return {**fields, "id": self.id, "constrained": int(self.constrained), "config": config}

    def predictor(self, signature: type, backend: Any) -> Predictor:
        """The Predictor that runs this arm (with the options its identity covers)."""
        return Predictor(signature, layout=self.layout, syntax=self.syntax, model=backend,
                         demos=json.loads(self.demo_rows), **self.options.model_dump())


def build_grid(task: str, models: Sequence[str], layouts: Sequence[str] | None, syntaxes: Sequence[str],
               constrained: Sequence[bool], budgets: Sequence[int | None], demos: list[dict] | None = None) -> list[Arm]:
    """Every combination; a layout without a requested syntax uses its own; no duplicate arms."""
    layouts = list(layouts or layout_names())
    for name in layouts:
        get_layout(name)  # unknown names fail here, before any model call
    demo_rows = json.dumps(demos or [], default=str)
    arms: list[Arm] = []
    for model in models:
        for name in layouts:
            own = get_layout(name).syntaxes
            for syntax in syntaxes:
                s = syntax if syntax in own else own[0]
                has_region = get_layout(name, s).has_reasoning
                for c in constrained:
                    for budget in (budgets if has_region else [None]):
                        arm = Arm(task, model, name, s, c, budget, len(demos or []), demo_rows)
                        if arm not in arms:
                            arms.append(arm)
    return arms


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


def evaluate(task: Task, models: Sequence[str | Backend], layouts: Sequence[str] | None = None,
             syntaxes: Sequence[str] = ("json",), constrained: Sequence[bool] = (True,),
             budgets: Sequence[int | None] = (None,), store: str | Path | None = None, limit: int | None = None,
             sample: int | None = None, seed: int = 0, demos: list[dict] | None = None, margin: float = 0.02,
             progress: Progress | None = None, until_decided: bool = False, max_rows: int | None = None,
             max_tokens: int | None = None, alpha: float = 0.05) -> dict[str, Any]:
    """Run the grid and return the summary (per arm, pairwise comparisons, recommendation).

    The store must hold no other definition of the task (ConfigError otherwise, before any call); the
    task's rows become its current data; a row (by identity and content) with a final outcome for an arm
    is not run again, and a stored call is reused. ``until_decided``: rows in a seeded random order, in
    rounds, until the recommendation is decided on anytime-valid confidence sequences (``_sequential``);
    the summary's ``sequential`` block and recommendation then come from them."""
    backends: dict[str, Backend | str] = {}  # model identity -> a backend, or the spec to build one from
    names: list[str] = []
    for m in models:
        if isinstance(m, str):
            check_spec(m)  # names a bad spec before anything runs
            key = model_key(m)
            backends.setdefault(key, m)
        else:
            key = getattr(m, "label", None) or m.name
            backends[key] = m
        if key not in names:
            names.append(key)
    if not names:
        raise ConfigError("no model given", hint="pass --model NAME (repeatable)")
    for value, flag in ((limit, "--limit"), (sample, "--sample"), (max_rows, "--max-rows"), (max_tokens, "--max-tokens")):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value}: must be 1 or more", hint=f"e.g. {flag} 50, or leave it out for every row")
    if not math.isfinite(margin) or not 0 <= margin < 1:
        raise ConfigError(f"margin {margin!r}: must be a fraction from 0 to 1", hint="e.g. 0.02 for 2 points")
    if not math.isfinite(alpha) or not 0 < alpha < 1:
        raise ConfigError(f"alpha {alpha!r}: must be between 0 and 1", hint="e.g. --alpha 0.05")
    if (max_rows or max_tokens) and not until_decided:
        raise ConfigError("--max-rows and --max-tokens are budgets of --until-decided",
                          hint="add --until-decided, or use --limit N for a fixed number of rows")
    if task.open_ended and until_decided and not (max_rows or max_tokens or limit):
        raise ConfigError(f"task {task.name!r} has no end of rows: --until-decided needs a budget",
                          hint="add --max-rows N or --max-tokens T (equal arms may never be told apart)")
    if task.open_ended and not until_decided and limit is None:
        raise ConfigError(f"task {task.name!r} has no end of rows: give it a count or a budget",
                          hint="e.g. --task arithmetic:1-6:20, or --until-decided --max-rows 500")
    default_budget = GenerateOptions().max_thinking_tokens
    budgets = [default_budget if b is None else b for b in budgets]
    arms = build_grid(task.name, names, layouts, syntaxes, constrained, budgets, demos)
    rows = task.rows(limit=limit, sample=sample, seed=seed)
    db = Store(store or default_store(task.name))
    try:
        definition = task.definition()
        db.check_definition(task.name, definition)
        run_id = db.add_run(task.name, {"models": names, "layouts": list(layouts or layout_names()), "syntaxes": list(syntaxes),
                               "constrained": list(constrained), "budgets": budgets, "limit": limit,
                               "sample": sample, "seed": seed, "demos": len(demos or []), "labels": task.labels,
                               "output": task.output, "metric": task.metric_name, "bad_rows": task.bad_rows,
                               "signature": task.signature.to_spec(), "demo_rows": demos or [],
                               "signature_ref": task.signature_ref, "signature_fingerprint": task.signature_fingerprint,
                               "columns": task.columns, "label_descriptions": task.signature.output_fields[
                                   task.output].labels,
                               "rows": len(task.all_rows), "keyed_by_id": task.keyed_by_id}, versions())
        for arm in arms:
            db.add_arm({**arm.record(), "enforced": _enforced(arm, task.signature, backends[arm.model])})
        if until_decided:
            return _until_decided(task, arms, db, backends, margin, alpha, max_rows, max_tokens, seed, limit, sample,
                                  progress, run_id)
        if task.open_ended:
            rows = task.draw(limit or 0)
        db.set_rows(task.name, task.all_rows)
        for model in names:  # a model's arms together: a batching backend keeps its slots full across arms
            _run_arms([a for a in arms if a.model == model], task, rows, db, backends, progress)
        return summarize(db, task.name, [a.id for a in arms], {r.key for r in rows}, margin, seed)
    finally:
        db.close()


def _enforced(arm: Arm, signature: type, backend: Backend | str) -> str | None:
    """What the arm's backend enforces of its constraint (None: nothing, prompt-only), before any call."""
    layout = get_layout(arm.layout, arm.syntax)
    constraint = layout.constraint(layout_signature(signature, layout)) if arm.constrained else None
    return spec_enforcement(backend, constraint) if isinstance(backend, str) else enforcement(backend, constraint)


def _until_decided(task: Task, arms: list[Arm], db: Store, backends: dict[str, Backend | str], margin: float,
                   alpha: float, max_rows: int | None, max_tokens: int | None, seed: int, limit: int | None,
                   sample: int | None, progress: Progress | None, run_id: int) -> dict[str, Any]:
    rows_only = _RowsOnly(progress) if progress else None
    if progress:
        for arm in arms:
            progress.arm_started(arm, max_rows or limit or len(task.all_rows) or 0, 0)
    try:
        block = run_until_decided(_run_arms, arms, task, db, backends, margin, alpha, max_rows, max_tokens, seed,
                                  limit, sample, rows_only)
    finally:
        if progress:
            for arm in arms:
                progress.arm_finished(arm)
    db.note_run(run_id, "sequential", block)  # `firsttoken report` shows the decision the run reached
    return summarize(db, task.name, [a.id for a in arms], set(block["row_keys"]), margin, seed)


class _RowsOnly:
    """Forwards rows as they finish; --until-decided starts and finishes each arm's bar once, not per round."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def arm_started(self, arm: Arm, total: int, done: int) -> None:
        pass

    def row_done(self, arm: Arm, result: dict) -> None:
        self.progress.row_done(arm, result)

    def arm_finished(self, arm: Arm) -> None:
        pass


def _run_arms(arms: list[Arm], task: Task, rows: list[Row], db: Store, backends: dict[str, Backend | str],
              progress: Progress | None) -> list[dict]:
    """Every arm's rows without a final outcome, in one ``generate_batch`` of the arms' model (arm after arm,
    so rows sharing a prompt prefix stay together); each row recorded as it finishes."""
    work: list[tuple[Arm, Row]] = []
    left: dict[str, int] = {}  # arm id -> rows still to finish
    recorded: list[dict] = []
    for arm in arms:
        done = db.done_rows(arm.id)
        todo = [r for r in rows if done.get(r.key) != r.hash]
        work += [(arm, r) for r in todo]
        left[arm.id] = len(todo)
        if progress:
            progress.arm_started(arm, len(rows), len(rows) - len(todo))
            if not todo:
                progress.arm_finished(arm)
    if work:
        model = arms[0].model
        if isinstance(backends[model], str):
            backends[model] = resolve(backends[model])  # type: ignore[arg-type]
        cached = Cached(backends[model], db, model)  # type: ignore[arg-type]
        predictors = {arm.id: arm.predictor(task.signature, cached) for arm in arms}
        with closing(completed_many([(predictors[arm.id], row.inputs) for arm, row in work])) as outcomes:
            for i, out in outcomes:
                if isinstance(out, UnreachableError) or not isinstance(out, (Prediction, ParseError, BackendError)):
                    raise out  # the server is gone, or the run is misconfigured: stop the run here
                arm, row = work[i]
                result = _record(arm, task, db, cached, row, out)
                recorded.append(result)
                left[arm.id] -= 1
                if progress:
                    progress.row_done(arm, result)
                    if not left[arm.id]:
                        progress.arm_finished(arm)
    return recorded


def _record(arm: Arm, task: Task, db: Store, cached: Cached, row: Row,
            out: Prediction | ParseError | BackendError) -> dict:
    """Store one row's outcome (with the model call that produced it, when new), in one transaction."""
    result: dict[str, Any] = {"arm_id": arm.id, "row_key": row.key, "row_hash": row.hash, "call_hash": None,
                              "outputs": None, "thoughts": None, "raw": None, "score": None, "prompt_tokens": None,
                              "reasoning_tokens": None, "answer_tokens": None, "seconds": None, "estimated": 0,
                              "order_violated": 0, "error": None}
    if isinstance(out, BackendError):
        result.update(outcome="backend_error", error=redact(f"{type(out).__name__}: {out}"))
        db.add_result(result)
        return result
    if isinstance(out, ParseError):
        result.update(outcome="parse_failure", raw=out.raw, thoughts=out.reasoning, error=out.message, score=0.0)
    else:
        score = task.score(row, out.outputs)
        result.update(outcome="correct" if _metrics.is_correct(score) else "wrong", score=score,
                      outputs=json.dumps({k: _types.to_json(v) for k, v in out.outputs.items()}, default=str),
                      thoughts=out.layout_reasoning, raw=out.raw, order_violated=int(out.order_violated))
    u, gen = out.usage, out.generation
    result.update(call_hash=gen.call_hash, prompt_tokens=u.prompt_tokens, reasoning_tokens=u.reasoning_tokens,
                  answer_tokens=u.answer_tokens, seconds=u.seconds, estimated=int(u.estimated))
    db.record(cached.call_record(gen), result)  # the call and its outcome land together, or not at all
    return result
