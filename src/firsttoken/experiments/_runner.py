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
import platform
from collections.abc import Sequence
from contextlib import closing
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from .. import _types
from .._backend import Backend
from .._errors import BackendError, ConfigError, ParseError, UnreachableError
from .._prediction import Prediction
from .._predictor import completed_many
from .._text import redact
from ._probe import observed, probe, refuse_continuation
from ..layouts import layout_names
from ._arm import Arm, Model, Source, build_grid
from ._cache import Cached
from ._config import EvalConfig, make_config
from ._sequential import run_until_decided
from ._store import Store
from ._summary import summarize
from ..tasks import Row, Task, is_correct


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


def evaluate(task: Task, models: Sequence[Model] | None = None, layouts: Sequence[str] | None = None, *,
             config: EvalConfig | None = None, progress: Progress | None = None, **settings: Any) -> dict[str, Any]:
    """Run the grid and return the summary (per arm, pairwise comparisons, recommendation).

    The run is ``config``, or an ``EvalConfig`` of ``models``, ``layouts`` and ``settings`` (its fields).
    The store must hold no other definition of the task (ConfigError otherwise, before any call); the
    task's rows become its current data; a row (by identity and content) with a final outcome for an arm
    is not run again, and a stored call is reused. ``until_decided``: rows in a seeded random order, in
    rounds, until the recommendation is decided on anytime-valid confidence sequences (``_sequential``);
    the summary's ``sequential`` block and recommendation then come from them."""
    if config is None:
        config = make_config(models=list(models or []), layouts=None if layouts is None else list(layouts),
                             **settings)
    elif models is not None or layouts is not None or settings:
        raise ConfigError("evaluate takes a config or its settings, not both", hint="put them in the EvalConfig")
    c = config
    if task.open_ended and c.until_decided and not (c.max_rows or c.max_tokens or c.limit):
        raise ConfigError(f"task {task.name!r} has no end of rows: --until-decided needs a budget",
                          hint="add --max-rows N or --max-tokens T (equal arms may never be told apart)")
    if task.open_ended and not c.until_decided and c.limit is None:
        raise ConfigError(f"task {task.name!r} has no end of rows: give it a count or a budget",
                          hint="e.g. --task arithmetic:1-6:20, or --until-decided --max-rows 500")
    backends = _backends(c)
    names = list(backends)
    budgets = c.thinking_budgets
    arms = build_grid(task.name, [backends[n] for n in names], c.layouts, c.syntaxes, c.constrained, budgets,
                      c.demos, task.signature)
    rows = task.rows(limit=c.limit, sample=c.sample, seed=c.seed)
    db = Store(c.store or default_store(task.name))
    try:
        db.check_definition(task.name, task.definition())
        aliases = {k: s.alias for k, s in backends.items() if s.alias}
        run_id = db.add_run(task.name, {"models": names, "model_names": aliases,
                                        "layouts": list(c.layouts or layout_names()),
                                        "syntaxes": list(c.syntaxes), "constrained": list(c.constrained),
                                        "budgets": budgets, "limit": c.limit, "sample": c.sample, "seed": c.seed,
                                        "demos": len(c.demos or []), "labels": task.labels, "output": task.output,
                                        "metric": task.metric_name, "bad_rows": task.bad_rows,
                                        "signature": task.signature.to_spec(), "demo_rows": c.demos or [],
                                        "signature_ref": task.signature_ref,
                                        "signature_fingerprint": task.signature_fingerprint,
                                        "columns": task.columns,
                                        "label_descriptions": task.signature.output_fields[task.output].labels,
                                        "rows": len(task.all_rows), "keyed_by_id": task.keyed_by_id}, versions())
        runner = _Runner(task, db, backends, progress)
        findings = _probed(runner, arms) if c.probe else {}
        if findings:
            db.note_run(run_id, "probe", findings)  # the report shows them; arms are labelled as they found
        for arm in arms:
            record = arm.record()
            if arm.model in findings and arm.constrained:
                record["enforced"] = observed(findings[arm.model], arm.layout, arm.syntax, arm.enforced)
            db.add_arm(record)
        if c.until_decided:
            return _until_decided(task, arms, db, runner, c, progress, run_id)
        if task.open_ended:
            rows = task.draw(c.limit or 0)
        db.set_rows(task.name, task.all_rows)
        for model in names:  # a model's arms together: a batching backend keeps its slots full across arms
            runner([a for a in arms if a.model == model], rows)
        return summarize(db, task.name, [a.id for a in arms], {r.key for r in rows}, c.margin, c.seed)
    finally:
        db.close()


def _backends(config: EvalConfig) -> dict[str, Source]:
    """Model identity -> its source (a spec checked, with the run's --parallel and model options set). A
    ``--model-option`` is set on every model whose backend has it; one that no model's backend has is refused."""
    out: dict[str, Source] = {}
    for model in config.models:
        source = Source.of(model).configured(config.parallel, config.model_options)
        out.setdefault(source.key, source)
    specs = [s.spec for s in out.values() if s.spec is not None]
    for name in config.model_options:
        if specs and not any(s.takes(name) for s in specs):
            known = sorted({f for s in specs for f in type(s.options).model_fields})
            raise ConfigError(f"--model-option {name}: no --model's backend has that option",
                              hint=f"options of these models: {', '.join(known) or 'none'}")
    return out


def _probed(runner: _Runner, arms: list[Arm]) -> dict[str, list[dict[str, str]]]:
    """The probe's findings for each model whose backend asks to be probed (servers), on its arms' layouts."""
    out: dict[str, list[dict[str, str]]] = {}
    for model, source in runner.sources.items():
        if not getattr(source.backend_class, "probes", False):
            continue
        mine = [a for a in arms if a.model == model and a.constrained]
        budgets: dict[tuple[str, str], int] = {}
        for a in mine:  # each layout's largest budget: where a grammar bounds the region, the largest grammar
            budgets[a.layout, a.syntax] = max(budgets.get((a.layout, a.syntax), 0), a.budget or 0)
        out[model] = [f.to_dict() for f in probe(runner.backend(model), list(budgets), signature=runner.task.signature,
                                                 budgets=budgets)]
        if any((a.enforced or "").endswith("+continuation") for a in mine):
            refuse_continuation(model, out[model])
    return out


def _until_decided(task: Task, arms: list[Arm], db: Store, runner: _Runner, config: EvalConfig,
                   progress: Progress | None, run_id: int) -> dict[str, Any]:
    if progress:
        for arm in arms:
            progress.arm_started(arm, config.max_rows or config.limit or len(task.all_rows) or 0, 0)
    runner.progress = _RowsOnly(progress) if progress else None
    try:
        block = run_until_decided(runner, arms, task, db, config)
    finally:
        if progress:
            for arm in arms:
                progress.arm_finished(arm)
    db.note_run(run_id, "sequential", block)  # `firsttoken report` shows the decision the run reached
    return summarize(db, task.name, [a.id for a in arms], set(block["row_keys"]), config.margin, config.seed)


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


class _Runner:
    """Runs arms over rows: every arm's rows without a final outcome, in one ``generate_batch`` of the arms'
    model (arm after arm, so rows sharing a prompt prefix stay together); each row recorded as it finishes.
    A model's backend is built from its spec when it is first needed."""

    def __init__(self, task: Task, db: Store, backends: dict[str, Source], progress: Progress | None):
        self.task, self.db, self.sources, self.progress = task, db, backends, progress
        self.built: dict[str, Backend] = {}

    def backend(self, model: str) -> Backend:
        if model not in self.built:
            self.built[model] = self.sources[model].build()
        return self.built[model]

    def parallel(self, model: str) -> int:
        """How many rows the model runs at once (a spec says so without building its backend)."""
        return self.sources[model].parallel

    def __call__(self, arms: list[Arm], rows: list[Row]) -> list[dict]:
        progress, db, task = self.progress, self.db, self.task
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
        for arm in arms:  # finished after every arm has started: the arms that run together share one clock
            if progress and not left[arm.id]:
                progress.arm_finished(arm)
        if not work:
            return recorded
        model = arms[0].model
        cached = Cached(self.backend(model), db, model)
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
        result.update(outcome="correct" if is_correct(score) else "wrong", score=score,
                      outputs=json.dumps({k: _types.to_json(v) for k, v in out.outputs.items()}, default=str),
                      thoughts=out.layout_reasoning, raw=out.raw, order_violated=int(out.order_violated))
    u, gen = out.usage, out.generation
    result.update(call_hash=gen.call_hash, prompt_tokens=u.prompt_tokens, reasoning_tokens=u.reasoning_tokens,
                  answer_tokens=u.answer_tokens, seconds=u.seconds, estimated=int(u.estimated))
    db.record(cached.call_record(gen), result)  # the call and its outcome land together, or not at all
    return result
