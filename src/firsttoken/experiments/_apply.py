"""Find a run's arm and rebuild its Predictor (for ``predict``, in ``_predict``), or print exactly what it
sends (``show``).

An arm is named by its full id, its number (its place among the store's arms, as ``report`` numbers them across
tasks), or a unique part of its id; a part that several ids share is refused with their numbers.
A ``--signature`` run's signature is loaded again from its module and refused if it has changed since.
Does not handle: a Python-API run with a nested-model output and no signature reference (nothing to rebuild).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._backend import BackendBase, Generation, Request
from .._errors import ConfigError
from .._imports import stored_ref
from .._predictor import Predictor
from .._signature import Signature
from ..backends import resolve
from ..layouts import layout_source, load_layout
from ._arm import Arm
from ._store import Store
from ._summary import arm_label, summarize
from ..tasks import rebuild_signature


def find_arm(store: Store, ref: str | None) -> dict:
    arms = store.arms()
    if not arms:
        raise ConfigError(f"{store.path}: the store has no arms", hint="run `firsttoken eval` first")
    if ref is None:
        tasks = store.tasks()
        if len(tasks) > 1:
            raise ConfigError(f"{store.path} holds several tasks ({', '.join(tasks)})",
                              hint="pass --arm N: the arm's number in `firsttoken report` (numbers run across tasks)")
        rec = summarize(store, tasks[0])["recommendation"]
        if rec["status"] == "inconclusive" or rec["arm"] is None:
            raise ConfigError(f"the run's recommendation is inconclusive: {rec['reason']}",
                              hint="pick an arm yourself with --arm (its number in `firsttoken report`)")
        ref = rec["arm"]
    exact = [a for a in arms if a["id"] == ref]
    if exact:
        return exact[0]
    if ref.isdigit():  # the arm's number: its place among the store's arms, as `firsttoken report` numbers them
        if 1 <= int(ref) <= len(arms):
            return arms[int(ref) - 1]
        raise ConfigError(f"--arm {ref}: the store has arms 1 to {len(arms)}",
                          hint="use the arm's number from `firsttoken report`, or its id")
    partial = [(n, a) for n, a in enumerate(arms, 1) if ref in a["id"]]
    if len(partial) == 1:
        return partial[0][1]
    if not partial:
        raise ConfigError(f"no arm matches {ref!r}", hint="use the arm's number from `firsttoken report`, or its id")
    names = "; ".join(f"{n}: {arm_label(a)} (task {a['task']}, id {a['id']})" for n, a in partial[:8])
    more = f"; and {len(partial) - 8} more" if len(partial) > 8 else ""
    raise ConfigError(f"{len(partial)} arms match {ref!r}: {names}{more}",
                      hint="pass one of these numbers as --arm, or more of the id")


def predictor_for(store: Store, arm: dict, backend: Any = None) -> Predictor:
    run = store.last_run(arm["task"])
    config = json.loads(run["config"]) if run else {}
    spec = config.get("signature")
    if config.get("signature_ref"):  # --signature: the user's class, loaded again and checked
        sig = rebuild_signature(stored_ref(config["signature_ref"]), config["signature_fingerprint"])
        out = config.get("output")
        if out in sig.output_fields and sig.output_fields[out].annotation is str and config.get("labels"):
            sig = sig.with_labels(out, config["labels"], config.get("label_descriptions"))  # as eval made it
    elif spec:
        sig = Signature.from_spec(spec)
    else:
        raise ConfigError(f"the run of task {arm['task']!r} did not store its signature",
                          hint="re-run `firsttoken eval` with this version, or use the Python API")
    stored = json.loads(arm["config"] or "{}")
    if stored.get("layout_ref"):  # a user's layout: loaded again, and refused where its module has changed
        load_layout(stored_ref(stored["layout_ref"]))
        if layout_source(arm["layout"]) != stored.get("layout_source"):
            raise ConfigError(f"layout {stored['layout_ref']} has changed since the run (its module's text "
                              "differs)", hint="restore it, or run `firsttoken eval` again with it")
    the_arm = Arm(arm["task"], arm["model"], arm["layout"], arm["syntax"], bool(arm["constrained"]), arm["budget"],
                  arm["demos"] or 0, json.dumps(stored.get("demo_rows") or []), arm["enforced"])
    return the_arm.predictor(sig, backend or resolve(arm["model"]))


def arm_program(store_path: str | Path, arm_ref: str | None) -> tuple[dict[str, Any], Predictor, str]:
    """An arm (by ``find_arm``'s rules), its Predictor (no model loaded), and one line of what the run measured."""
    store = Store(store_path, readonly=True)
    try:
        arm = find_arm(store, arm_ref)
        predictor = predictor_for(store, arm, backend=_NoModel())
        stats = next((a for a in summarize(store, arm["task"])["arms"] if a["id"] == arm["id"]), None)
    finally:
        store.close()
    measured = "" if stats is None else (
        f"Measured: {stats['correct']}/{stats['n']} right ({stats['accuracy']:.1%}, 95% CI {stats['ci_low']:.1%}-"
        f"{stats['ci_high']:.1%}), {stats['parse_failures']} parse failures, task {arm['task']!r}.")
    return arm, predictor, measured


def show_arm(store_path: str | Path, arm_ref: str | None) -> dict[str, Any]:
    """The arm's exact messages for its first stored row, its Lark grammar and its JSON Schema."""
    store = Store(store_path)
    try:
        arm = find_arm(store, arm_ref)
        predictor = predictor_for(store, arm, backend=_NoModel())
        inputs = store.first_row(arm["task"]) or {n: f"<{n}>" for n in predictor.signature.input_fields}
    finally:
        store.close()
    constraint = predictor.constraint
    return {"arm": arm, "messages": predictor.messages(**inputs), "grammar": constraint.lark,
            "json_schema": constraint.json_schema, "options": predictor.options.model_dump()}


class _NoModel(BackendBase):
    """Stands in for the arm's model where nothing is generated (``show``)."""

    label = "none"

    def generate(self, request: Request) -> Generation:
        raise ConfigError("show does not call the model")
