"""Few-shot demos for a run: rows of a demos file with the task's columns, chosen first, at random or by label."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from .. import _types
from .._errors import ConfigError, DataError
from ..tasks import Task, read_records


DEMO_SELECTIONS = ("first", "random", "stratified")


def load_demos(path: str | Path, task: Task, k: int, selection: str = "first", seed: int = 0) -> list[dict[str, Any]]:
    """``k`` rows of a demos file as few-shot examples (an optional ``reasoning`` column), columns named as in
    the task's data: the ``first`` k, ``random`` (seeded), or ``stratified`` (seeded; the labels in turn, so
    each label has a demo before any has two: label tasks only). Each must hold every input and the answer."""
    if selection not in DEMO_SELECTIONS:
        raise ConfigError(f"--demo-selection {selection!r}: unknown", hint=f"use one of: {', '.join(DEMO_SELECTIONS)}")
    if selection == "stratified" and task.labels is None:
        raise ConfigError("--demo-selection stratified is for label tasks", hint="use random (or first)")
    records, _ = read_records(Path(path))
    column = {f: task.columns.get(f, f) for f in [*task.signature.input_fields, task.output]}
    demos = []
    for line_no, record in records:
        missing = [c for c in column.values() if c not in record]
        if missing:
            raise DataError(f"{path}:{line_no}: demo lacks column {missing[0]!r}", hint="give the demos file the "
                            "data's columns")
        demo = {f: record[c] for f, c in column.items() if f != task.output}
        demo[task.output] = _coerce(task, record[column[task.output]])
        if record.get("reasoning"):
            demo["reasoning"] = record["reasoning"]
        demos.append(demo)
    if selection == "first":
        return demos[:k]
    rng = random.Random(seed)
    shuffled = rng.sample(demos, len(demos))
    if selection == "random":
        return shuffled[:k]
    by_label: dict[str, list[dict[str, Any]]] = {}
    for demo in shuffled:
        by_label.setdefault(str(getattr(demo[task.output], "value", demo[task.output])), []).append(demo)
    chosen: list[dict[str, Any]] = []
    while len(chosen) < min(k, len(demos)):
        for group in by_label.values():
            if group and len(chosen) < k:
                chosen.append(group.pop(0))
    return chosen


def _coerce(task: Task, value: Any) -> Any:
    tp = task.signature.output_fields[task.output].annotation
    try:
        return _types.from_plain(tp, str(value), task.output)
    except ValueError as e:
        raise DataError(f"demo value {value!r} does not fit the output type: {e}") from None
