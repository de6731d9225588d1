"""Tasks: a signature, rows with expected answers, and a metric; built-in tasks and data files make them.

A row's identity (its key) and content hash are set by the Task (``_identity``). ``Task.from_file``
(``_files``) and ``Task.builtin`` (the registry in ``tasks``) are its constructors.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import _types
from .._errors import ConfigError
from .._imports import absolute_ref
from .._signature import Signature
from . import _identity, _metrics
from ._user_signature import fingerprint, load_signature


@dataclass
class Row:
    """One row. ``id`` is what reports quote (a line number, a generated name, an ``--id`` value); ``key``
    identifies the row in a store and ``hash`` is its content (both set by the Task, see ``_identity``)."""

    id: str
    inputs: dict[str, Any]
    expected: Any
    difficulty: float | None = None
    key: str = field(default="", compare=False)
    hash: str = field(default="", compare=False)


@dataclass
class Task:
    """A signature, its rows, which output is scored and how."""

    name: str
    signature: type[Signature]
    output: str
    metric_name: str
    all_rows: list[Row]
    labels: list[str] | None = None
    bad_rows: int = 0
    demo_pool: list[dict[str, Any]] = field(default_factory=list)
    keyed_by_id: bool = False  # rows identified by their ``id`` (``--id COLUMN``), not by their content
    source: Callable[[int], Row] | None = None  # open-ended: row i, drawn when first used (``draw``)
    columns: dict[str, str] = field(default_factory=dict)  # field -> the data column it is read from
    signature_ref: str | None = None  # ``--signature``: where the signature comes from (stored with the run)
    signature_fingerprint: str | None = None  # what it declared when loaded (``_user_signature.fingerprint``)

    def __post_init__(self) -> None:
        self.metric = _metrics.get_metric(self.metric_name)
        _identity.assign_keys(self.all_rows, self.keyed_by_id)

    @classmethod
    def from_file(cls, path: str | Path, signature: Any = None, inputs: list[str] | dict[str, str] | None = None,
                  output: str | dict[str, str] | None = None, metric: str = "exact", **options: Any) -> Task:
        """A task from a data file (``.jsonl``, ``.json``, ``.csv``, ``.tsv``, ``.parquet``, a ``datasets``
        folder). ``signature``: a firsttoken or DSPy Signature class, or ``"file.py:Class"``; without one it
        is built from the columns. ``inputs``/``output``: columns, or ``{field: column}``. ``options``: those
        of ``file_task`` (labels, label_descriptions, output_type, instructions, id_column, ...)."""
        from . import file_task  # the package's: file loading builds Tasks (the one import back into it)

        ref = fp = None
        if isinstance(signature, str):
            ref, signature = absolute_ref(signature), load_signature(signature)
            fp = fingerprint(signature)
        elif signature is not None and not (isinstance(signature, type) and issubclass(signature, Signature)):
            signature = Signature.from_dspy(signature)
        task = file_task(path, inputs, output, metric, signature=signature, **options)
        task.signature_ref, task.signature_fingerprint = ref, fp
        return task

    def with_signature(self, ref: str) -> Task:
        """This task asked through a user's ``--signature`` (``module:Class`` or ``file.py:Class``): the same
        inputs, and the scored output with the same type; other outputs (a ``thoughts`` field first, say) and
        the instructions and descriptions are the user's."""
        sig = load_signature(ref)
        ours, theirs = list(self.signature.input_fields), list(sig.input_fields)
        if sorted(ours) != sorted(theirs):
            raise ConfigError(f"--signature {ref}: inputs {', '.join(theirs)}; task {self.name!r} has "
                              f"{', '.join(ours)}", hint="declare exactly the task's input fields")
        out = sig.output_fields.get(self.output)
        want = self.signature.output_fields[self.output].annotation
        if out is None or out.annotation != want:
            raise ConfigError(f"--signature {ref}: task {self.name!r} scores output {self.output!r} of type "
                              f"{_types.type_name(want)}", hint=f"declare {self.output}: {_types.type_name(want)} "
                              "= OutputField(...) among its outputs")
        return replace(self, signature=sig, signature_ref=absolute_ref(ref), signature_fingerprint=fingerprint(sig))

    @classmethod
    def builtin(cls, name: str, data: str | Path | None = None) -> Task:
        """A built-in task by name (``firsttoken tasks`` lists them), its data from ``data`` where it needs some."""
        from . import get_task  # the package's registry of built-in tasks

        return get_task(name, str(data) if data is not None else None)

    @property
    def open_ended(self) -> bool:
        return self.source is not None

    def draw(self, n: int) -> list[Row]:
        """An open-ended task's first ``n`` rows (drawn now where not yet drawn; the same rows every time)."""
        if self.source is None:
            return self.all_rows[:n]
        had = len(self.all_rows)
        if had < n:
            self.all_rows += [self.source(i) for i in range(had, n)]
            _identity.assign_keys(self.all_rows, self.keyed_by_id, start=had)  # the new rows only
        return self.all_rows[:n]

    def definition(self) -> dict[str, Any]:
        """What decides the question and its scoring (see ``_identity``); stored with every run."""
        return _identity.task_definition(self.signature, self.output, self.metric_name, self.labels)

    def score(self, row: Row, outputs: dict[str, Any]) -> float:
        return float(self.metric(row.expected, outputs[self.output]))

    def rows(self, limit: int | None = None, sample: int | None = None, seed: int = 0) -> list[Row]:
        rows = sample_rows(self.all_rows, sample, seed) if sample is not None else self.all_rows
        return rows[:limit] if limit is not None else rows

    def has_difficulty(self) -> bool:
        return any(r.difficulty is not None for r in self.all_rows)


def sample_rows(rows: list[Any], n: int, seed: int) -> list[Any]:
    """``n`` rows drawn with ``seed``, kept in their order (the same draw from the same rows, anywhere)."""
    order = {id(r): i for i, r in enumerate(rows)}
    return sorted(random.Random(seed).sample(rows, min(n, len(rows))), key=lambda r: order[id(r)])
