"""What makes two rows, two task definitions, two arms and two calls the same.

* A **row** is identified by its content: a hash of its inputs and expected answer, plus its occurrence
  (the second identical row of a file is a row of its own). Or, with ``--id COLUMN``, by that column's
  value; its content hash then tells an edited row from the stored one. The display id (a line number,
  a generated row's name, the ``--id`` value) is what reports quote; it never identifies.
* A **task definition** is what decides the question and its scoring: instructions, input and output
  fields (names, types, descriptions, in order), the scored output, the labels and the metric (a user
  metric's source code too). A store holds one definition per task name.
* An **arm** is what changes its replies or their parsing: the model (without options that cannot change a
  reply, such as concurrency or retries), the layout and its version, the syntax, the constraint, the
  thinking budget, the demos (their content) and the sampling options; on a server enforcing our GBNF
  (``gbnf``, ``ebnf``), that grammar's version too (``server_grammar``).
* A **call** is the model, the messages as sent, the constraint (with that GBNF version) and the options:
  its hash is the cache key.

Does not handle: a model file replaced under the same name or path (the name is the identity).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from .._options import GenerateOptions


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
    from .. import _types

    return {"instructions": sig.instructions,
            "inputs": [[n, f.desc] for n, f in sig.input_fields.items()],
            "outputs": [[n, _types.json_schema(f.annotation), f.desc, *([f.labels] if f.labels else [])]
                        for n, f in sig.output_fields.items()]}  # label descriptions only where given


def metric_code(metric_name: str) -> str | None:
    """A hash of a user metric's source (so an edited metric is a changed definition); None for built-ins."""
    from . import _metrics

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


def arm_options(constrained: bool, budget: int | None) -> GenerateOptions:
    """The generation options an arm runs with."""
    values: dict[str, Any] = {"constrained": constrained}
    if budget is not None:
        values["max_thinking_tokens"] = budget
    return GenerateOptions(**values)


def arm_fingerprint(task: str, model: str, layout: str, layout_version: int, syntax: str,
                    options: GenerateOptions, demos: list[dict[str, Any]], server_grammar: str | None = None) -> str:
    """``server_grammar``: the version of the GBNF a server enforces (``server_grammar``), where it does."""
    parts = {"task": task, "model": model, "layout": layout, "version": layout_version, "syntax": syntax,
             "options": options.model_dump(), "demos": demos}
    if server_grammar:  # absent elsewhere, so that every other arm's fingerprint stays as it was
        parts["server_grammar"] = server_grammar
    return digest(parts)[:10]


def server_grammar(model: str, layout: str, syntax: str, constrained: bool) -> str | None:
    """``gbnf-N`` where the model spec's server enforces this arm with our GBNF (``gbnf``, ``ebnf``): N is
    ``_gbnf.VERSION``, so that arms enforced by an earlier GBNF are not taken for this one's."""
    return grammar_version(enforced_by_spec(model, layout, syntax)[0] if constrained else None)


def grammar_version(enforced: str | None) -> str | None:
    """``gbnf-N`` for what a backend enforces with our GBNF, else None."""
    from ..layouts import _gbnf
    return f"gbnf-{_gbnf.VERSION}" if enforced in ("gbnf", "ebnf") else None


def arm_id(task: str, model: str, layout: str, syntax: str, constrained: bool, budget: int | None, n_demos: int,
           fingerprint: str) -> str:
    """Readable axes (for people and ``--arm`` matching), then the fingerprint (for identity)."""
    return "|".join([task, model, layout, syntax, "on" if constrained else "off",
                     "-" if budget is None else str(budget), f"{n_demos}shot"]) + f"#{fingerprint}"


def call_hash(model: str, messages: list[dict], lark: str | None, options: GenerateOptions,
              server_grammar: str | None = None) -> str:
    parts = {"model": model, "messages": messages, "constraint": lark, "options": options.model_dump()}
    if server_grammar:  # as in arm_fingerprint
        parts["server_grammar"] = server_grammar
    payload = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def enforced_by_spec(model: str, layout: str, syntax: str) -> tuple[str | None, bool]:
    """What the backend of the model spec ``model`` enforces of a constrained (layout, syntax) arm, and
    whether that can be told (False: ``model`` is not a spec, e.g. a backend object's label)."""
    from .. import _models, _signature
    from ..backends import spec_enforcement, spec_prefixes
    from ..layouts import get_layout

    class _Any(_signature.Signature):  # what is enforced depends on the layout, not on the fields
        """-"""
        question: str = _signature.InputField()
        answer: str = _signature.OutputField()

    local = model.partition("?")[0] in _models.CATALOGUE or model.partition("?")[0].endswith(".gguf")
    if not (local or model.startswith(tuple(spec_prefixes()))):
        return None, False
    try:
        return spec_enforcement(model, get_layout(layout, syntax).constraint(_Any)), True
    except Exception:  # noqa: BLE001 - a spec that no longer parses, a layout no longer registered: unknown
        return None, False
