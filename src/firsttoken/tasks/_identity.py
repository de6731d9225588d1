"""What makes two rows and two task definitions the same.

* A **row** is identified by its content: a hash of its inputs and expected answer, plus its occurrence
  (the second identical row of a file is a row of its own). Or, with ``--id COLUMN``, by that column's
  value; its content hash then tells an edited row from the stored one. The display id (a line number,
  a generated row's name, the ``--id`` value) is what reports quote; it never identifies.
* A **task definition** is what decides the question and its scoring: instructions, input and output
  fields (names, types, descriptions, in order), the scored output, the labels and the metric (a user
  metric's source code too). A store holds one definition per task name.

Arms and calls are identified in ``experiments._identity``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from .. import _types
from . import _metrics


def digest(value: Any) -> str:
    """SHA-256 of a JSON value as written (key order kept: field order is part of a prompt)."""
    return hashlib.sha256(json.dumps(value, default=str, ensure_ascii=False).encode()).hexdigest()


def content_hash(inputs: dict[str, Any], expected: Any) -> str:
    return digest({"inputs": dict(sorted(inputs.items())), "expected": expected})[:24]


def assign_keys(rows: Iterable[Any], by_id: bool = False, start: int = 0) -> None:
    """Set ``row.hash`` (content) and ``row.key`` (identity) on each row, in order; the rows before ``start``
    already have theirs (rows appended to an open-ended task), and their hashes count as occurrences."""
    rows = list(rows)
    seen: Counter[str] = Counter(r.hash for r in rows[:start])
    for row in rows[start:]:
        row.hash = content_hash(row.inputs, row.expected)
        if by_id:
            row.key = f"id:{row.id}"
        else:
            seen[row.hash] += 1
            n = seen[row.hash]
            row.key = row.hash if n == 1 else f"{row.hash}~{n}"


def signature_definition(sig: Any) -> dict[str, Any]:
    return {"instructions": sig.instructions,
            "inputs": [[n, f.desc] for n, f in sig.input_fields.items()],
            "outputs": [[n, _types.json_schema(f.annotation), f.desc, *([f.labels] if f.labels else [])]
                        for n, f in sig.output_fields.items()]}  # label descriptions only where given


def metric_code(metric_name: str) -> str | None:
    """A hash of a user metric's source (so an edited metric is a changed definition); None for built-ins."""
    if metric_name in _metrics.BUILTIN:
        return None
    try:
        source = inspect.getsource(_metrics.get_metric(metric_name))
    except (OSError, TypeError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def task_definition(sig: Any, output: str, metric_name: str, labels: list[str] | None) -> dict[str, Any]:
    return {**signature_definition(sig), "output": output, "metric": metric_name,
            "metric_code": metric_code(metric_name), "labels": labels}


# What a changed part of a definition is called in the refusal.
DEFINITION_PARTS = {"instructions": "instructions", "inputs": "input fields", "labels": "labels",
                    "outputs": "output fields (names, types or descriptions)", "output": "scored output",
                    "metric": "metric", "metric_code": "metric code"}


def changed_parts(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [DEFINITION_PARTS.get(k, k) for k in DEFINITION_PARTS if json.dumps(old.get(k), default=str)
            != json.dumps(new.get(k), default=str)]
