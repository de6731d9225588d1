"""Tasks: a signature, rows with expected answers, and a metric. Any JSONL, CSV or JSON file is one.

``FileTask`` builds the signature from columns (categories become a ``Literal``) and checks the file
before any model call: each problem names the file, line (and column for JSON) and the fix.
Built-in tasks (``firsttoken.tasks``) implement the same ``Task`` interface.
Does not handle: files larger than memory, nested columns (values are taken as they are).
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._errors import ConfigError, DataError
from .._signature import Signature
from . import _identity, _metrics


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

    def __post_init__(self) -> None:
        self.metric = _metrics.get_metric(self.metric_name)
        _identity.assign_keys(self.all_rows, self.keyed_by_id)

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


def _decode(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: file not found", hint="check the path given to --data")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})",
                        hint="save the file as UTF-8") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty", hint="give a file with a header (CSV) or one JSON object per line")
    return text


def read_records(path: Path, skip_bad: bool = False) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """(line number, record) pairs from a .jsonl, .csv or .json file, and the count of skipped bad lines."""
    text = _decode(path)
    records: list[tuple[int, dict[str, Any]]] = []
    bad = 0
    suffix = path.suffix.lower()
    if suffix == ".csv":
        csv.field_size_limit(2**31 - 1)  # the default 128 KB is smaller than a long document
        reader = csv.DictReader(io.StringIO(text))
        width = len(reader.fieldnames or [])
        for record in reader:
            problem = None
            if None in record:  # more values than header columns
                problem = "more values than the header has columns"
            elif None in record.values():  # DictReader fills missing values with None
                given = sum(v is not None for v in record.values())
                problem = f"only {given} of the header's {width} columns have a value"
            if problem:
                if not skip_bad:
                    raise DataError(f"{path}:{reader.line_num}: {problem}",
                                    hint="fix the row (quote values that contain commas), or pass --skip-bad-rows")
                bad += 1
                continue
            records.append((reader.line_num, dict(record)))
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}:{e.colno}: invalid JSON ({e.msg})") from None
        if isinstance(data, dict):  # {"examples": [...]} and similar wrappers
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else data
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON array of objects", hint="or use JSON Lines (.jsonl)")
        for i, record in enumerate(data):
            if not isinstance(record, dict):
                if not skip_bad:
                    raise DataError(f"{path}: item {i} is not a JSON object")
                bad += 1
                continue
            records.append((i + 1, record))
    else:
        for line_no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{line_no}:1: expected a JSON object, got {type(record).__name__}")
            except json.JSONDecodeError as e:
                if not skip_bad:
                    raise DataError(f"{path}:{line_no}:{e.colno}: invalid JSON ({e.msg})") from None
                bad += 1
                continue
            except DataError:
                if not skip_bad:
                    raise
                bad += 1
                continue
            records.append((line_no, record))
    if not records:
        raise DataError(f"{path}: no rows", hint="the file has no usable rows")
    return records, bad


def file_task(path: str | Path, inputs: list[str], output: str, metric: str = "exact",
              labels: list[str] | None = None, labels_from: str | None = None, instructions: str | None = None,
              skip_bad_rows: bool = False, name: str | None = None, id_column: str | None = None) -> Task:
    """A task from a data file: ``inputs`` columns in, ``output`` column expected.

    Rows are identified by their content, or by ``id_column`` (whose values must be unique)."""
    path = Path(path)
    if not inputs:
        raise ConfigError("no input columns", hint="pass --inputs col1,col2")
    records, bad = read_records(path, skip_bad_rows)
    columns = [*inputs, output] + ([labels_from] if labels_from else []) + ([id_column] if id_column else [])
    good: list[tuple[int, dict[str, Any]]] = []
    for line_no, record in records:
        try:
            missing = [c for c in columns if c not in record]
            if missing:
                raise DataError(f"{path}:{line_no}: missing column {missing[0]!r} (columns: {', '.join(record)})",
                                hint="fix --inputs/--output, or the file")
            record = {**record, **{c: as_text(path, line_no, c, record[c]) for c in inputs}}
            if record[output] is None:
                raise DataError(f"{path}:{line_no}: column {output!r} is null", hint="give every row an expected answer")
        except DataError:
            if not skip_bad_rows:
                raise
            bad += 1
            continue
        good.append((line_no, record))
    if labels is None and (labels_from or metric == "label"):
        values = [str(r[labels_from or output]) for _, r in good]
        labels = sorted(dict.fromkeys(values))
    if labels is not None:
        folded = {lab.casefold() for lab in labels}
        kept = []
        for line_no, record in good:
            if str(record[output]).casefold() not in folded:
                if not skip_bad_rows:
                    raise DataError(f"{path}:{line_no}: label {record[output]!r} in column {output!r} is not one "
                                    f"of the {len(labels)} categories", hint="add it to --labels, or fix the row")
                bad += 1
                continue
            kept.append((line_no, record))
        good = kept
    if not good:
        raise DataError(f"{path}: no usable rows ({bad} bad)", hint="check the columns and labels")
    out_type: Any = str
    if labels is not None:
        out_type = Literal[tuple(labels)]  # type: ignore[misc]
    elif metric == "numeric":
        nums = [_metrics.to_number(r[output]) for _, r in good]
        out_type = int if all(n is not None and float(n).is_integer() for n in nums) else float
    task_name = name or path.stem
    sig = Signature.make(_class_name(task_name), instructions or
                         f"Given the {', '.join(inputs)}, give the {output}.", {c: str for c in inputs},
                         {output: out_type})
    if id_column:
        check_unique_ids(path, id_column, good)
    rows = [Row(str(rec[id_column]) if id_column else str(line_no), {c: rec[c] for c in inputs}, rec[output],
                _difficulty(rec.get("difficulty"))) for line_no, rec in good]
    return Task(task_name, sig, output, metric, rows, labels, bad, keyed_by_id=bool(id_column))


def check_unique_ids(path: Path, column: str, records: list[tuple[int, dict[str, Any]]]) -> None:
    """Every (line, record) has a non-empty, unique value in ``column``; else one line naming both lines."""
    first: dict[str, int] = {}
    for line_no, rec in records:
        value = str(rec[column])
        if value.strip() == "":
            raise DataError(f"{path}:{line_no}: empty id in column {column!r}", hint="give every row an id, or drop --id")
        if value in first:
            raise DataError(f"{path}:{line_no}: id {value!r} in column {column!r} is also on line {first[value]}",
                            hint=f"ids in --id {column} must be unique: fix the file, or drop --id")
        first[value] = line_no


def as_text(path: Path | str, line: int, column: str, value: Any) -> str:
    """An input value as the text a prompt shows: strings as they are, numbers, booleans, lists and objects
    as JSON (never a Python repr); a null is refused."""
    if isinstance(value, str):
        return value
    if value is None:
        raise DataError(f"{path}:{line}: column {column!r} is null", hint="give the row a value, or pass --skip-bad-rows")
    return json.dumps(value, ensure_ascii=False)


def _class_name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_") or "Task"
    return cleaned if cleaned[0].isalpha() else f"T_{cleaned}"


def _difficulty(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def load_demos(path: str | Path, task: Task, k: int) -> list[dict[str, Any]]:
    """The first ``k`` rows of a demos file as few-shot examples (an optional ``reasoning`` column)."""
    records, _ = read_records(Path(path))
    demos = []
    for line_no, record in records[:k]:
        missing = [c for c in [*task.signature.input_fields, task.output] if c not in record]
        if missing:
            raise DataError(f"{path}:{line_no}: demo lacks column {missing[0]!r}")
        demo = {c: record[c] for c in task.signature.input_fields}
        demo[task.output] = _coerce(task, record[task.output])
        if record.get("reasoning"):
            demo["reasoning"] = record["reasoning"]
        demos.append(demo)
    return demos


def _coerce(task: Task, value: Any) -> Any:
    from .. import _types

    tp = task.signature.output_fields[task.output].annotation
    try:
        return _types.from_plain(tp, str(value), task.output)
    except ValueError as e:
        raise DataError(f"demo value {value!r} does not fit the output type: {e}") from None
