"""Tasks from data files: any JSONL, CSV, TSV, JSON, Parquet file or ``datasets`` folder is one.

``file_task`` builds the signature from columns (categories become a ``Literal``) or takes a user's, and
checks the file before any model call: each problem names the file, line (and column for JSON) and the fix.
Does not handle: files larger than memory, nested columns (values are taken as they are).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from .. import _types
from .._errors import ConfigError, DataError
from .._signature import Signature
from . import _metrics
from ._readers import read_records
from ._task import Row, Task


def field_name(column: str) -> str:
    """A field name for a column: ``Ticket Body`` -> ``ticket_body`` (a name already plain stays as it is)."""
    if column.isidentifier():
        return column
    name = "_".join("".join(c.lower() if c.isalnum() else " " for c in column).split())
    return name if name and name[0].isalpha() else f"c_{name}"


def column_map(columns: list[str] | dict[str, str]) -> dict[str, str]:
    """field -> column, from columns (fields named after them) or a mapping already; refuses two columns
    that would be one field."""
    if isinstance(columns, dict):
        return dict(columns)
    out: dict[str, str] = {}
    for column in columns:
        name = field_name(column)
        if name in out and out[name] != column:
            raise ConfigError(f"columns {out[name]!r} and {column!r} would both be field {name!r}",
                              hint=f"name them: --input {name}={column!r} --input {name}_2=...")
        out[name] = column
    return out


OUTPUT_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "labels": None}


def file_task(path: str | Path, inputs: list[str] | dict[str, str] | None, output: str | dict[str, str] | None,
              metric: str = "exact", labels: list[str] | None = None, labels_from: str | None = None,
              instructions: str | None = None, skip_bad_rows: bool = False, name: str | None = None,
              id_column: str | None = None, signature: type[Signature] | None = None,
              output_type: str | None = None, label_descriptions: dict[str, str] | None = None) -> Task:
    """A task from a data file: input columns in, the expected answer's column out.

    ``inputs``: columns (each a field of the same name, made a plain name: ``Ticket Body`` -> ``ticket_body``)
    or ``{field: column}``. ``output``: the expected answer's column, or ``{field: column}``. With
    ``signature`` its fields are read from columns of their own names unless mapped, and ``output`` names the
    scored field (default: its one answer field). Without, the output's type is ``output_type`` (``str``,
    ``int``, ``float``, ``bool``, ``labels``), else labels where there are labels, a number for the
    ``numeric`` metric, else text. ``label_descriptions`` (label -> text) go into the prompt.
    Rows are identified by their content, or by ``id_column`` (whose values must be unique)."""
    path = Path(path)
    if output_type is not None and output_type not in OUTPUT_TYPES:
        raise ConfigError(f"--output-type {output_type!r}: unknown", hint=f"use one of: {', '.join(OUTPUT_TYPES)}")
    if signature is not None:
        ins = {f: f for f in signature.input_fields} | column_map(inputs or {})
        unknown = [f for f in ins if f not in signature.input_fields]
        if unknown:
            raise ConfigError(f"--input {unknown[0]}: {signature.__name__} has no input field {unknown[0]!r}",
                              hint=f"its inputs: {', '.join(signature.input_fields)}")
        out_field, out_column = _scored_output(signature, output)
    else:
        if not inputs:
            raise ConfigError("no input columns", hint="pass --inputs col1,col2 (or --input field=Column)")
        if not output:
            raise ConfigError("no output column", hint="pass --output COLUMN (the expected answer)")
        ins = column_map(inputs)
        (out_field, out_column), = column_map(output if isinstance(output, dict) else [output]).items()
    if labels is None and label_descriptions:
        labels = list(label_descriptions)
    records, bad = read_records(path, skip_bad_rows)
    columns = [*ins.values(), out_column] + ([labels_from] if labels_from else []) + ([id_column] if id_column else [])
    good: list[tuple[int, dict[str, Any]]] = []
    for line_no, record in records:
        try:
            missing = [c for c in columns if c not in record]
            if missing:
                raise DataError(f"{path}:{line_no}: missing column {missing[0]!r} (columns: {', '.join(record)})",
                                hint="fix --inputs/--input/--output, or the file")
            record = {**record, **{c: as_text(path, line_no, c, record[c]) for c in ins.values()}}
            if record[out_column] is None:
                raise DataError(f"{path}:{line_no}: column {out_column!r} is null",
                                hint="give every row an expected answer")
        except DataError:
            if not skip_bad_rows:
                raise
            bad += 1
            continue
        good.append((line_no, record))
    if labels is None and (labels_from or output_type == "labels" or (signature is None and metric == "label")):
        labels = sorted(dict.fromkeys(str(r[labels_from or out_column]) for _, r in good))
    if signature is not None and labels is not None:  # asked for: a str answer made one of the labels
        signature = signature.with_labels(out_field, labels, label_descriptions)
    if signature is not None:
        opts = _types.choices(signature.output_fields[out_field].annotation)
        labels = [str(getattr(o, "value", o)) for o in opts] if opts is not None else None
    if labels is not None:
        good, bad = _known_labels(path, good, bad, out_column, labels, skip_bad_rows)
    if not good:
        raise DataError(f"{path}: no usable rows ({bad} bad)", hint="check the columns and labels")
    task_name = name or path.stem
    sig = signature or _file_signature(task_name, instructions, list(ins), out_field, _output_type(
        output_type, labels, metric, [r[out_column] for _, r in good]), label_descriptions)
    if output_type in ("int", "float", "bool"):
        good, bad = _typed_answers(path, good, bad, out_column, sig.output_fields[out_field].annotation, skip_bad_rows)
    if id_column:
        check_unique_ids(path, id_column, good)
    rows = [Row(str(rec[id_column]) if id_column else str(line_no), {f: rec[c] for f, c in ins.items()},
                rec[out_column], _difficulty(rec.get("difficulty"))) for line_no, rec in good]
    task = Task(task_name, sig, out_field, metric, rows, labels, bad, keyed_by_id=bool(id_column))
    task.columns = {**ins, out_field: out_column}
    return task


def _scored_output(sig: type[Signature], output: str | dict[str, str] | None) -> tuple[str, str]:
    """(field, column) of the scored output of a user's signature."""
    if isinstance(output, dict):
        (field, column), = output.items()
    elif output:
        field = column = output
    else:
        answers = [n for n in sig.output_fields if n != sig.reasoning_field()]
        if len(answers) != 1:
            raise ConfigError(f"{sig.__name__} has {len(answers)} answer fields: which one is scored?",
                              hint=f"pass --output FIELD=COLUMN, FIELD one of {', '.join(answers)}")
        field = column = answers[0]
    if field not in sig.output_fields:
        raise ConfigError(f"--output {field}: {sig.__name__} has no output field {field!r}",
                          hint=f"its outputs: {', '.join(sig.output_fields)}")
    return field, column


def _output_type(output_type: str | None, labels: list[str] | None, metric: str, answers: list[Any]) -> Any:
    if output_type == "labels" or (output_type is None and labels is not None):
        if not labels:
            raise ConfigError("--output-type labels needs labels", hint="pass --labels, --labels-file or --labels-from")
        return Literal[tuple(labels)]  # type: ignore[misc]
    if output_type is not None:
        return OUTPUT_TYPES[output_type]
    if metric == "numeric":
        nums = [_metrics.to_number(a) for a in answers]
        return int if all(n is not None and float(n).is_integer() for n in nums) else float
    return str


def default_instructions(inputs: list[str], output: str) -> str:
    """A file task's instructions where the user gives none: the fields' names alone."""
    return f"Given the {', '.join(inputs)}, give the {output}."


def _file_signature(task_name: str, instructions: str | None, inputs: list[str], output: str, out_type: Any,
                    label_descriptions: dict[str, str] | None) -> type[Signature]:
    return Signature.make(_class_name(task_name), instructions or default_instructions(inputs, output),
                          {c: str for c in inputs}, {output: out_type},
                          labels={output: label_descriptions} if label_descriptions else None)


def _known_labels(path: Path, good: list, bad: int, column: str, labels: list[str],
                  skip_bad_rows: bool) -> tuple[list, int]:
    folded = {lab.casefold() for lab in labels}

    def problem(record: dict[str, Any]) -> tuple[str, str] | None:
        if str(record[column]).casefold() in folded:
            return None
        return (f"label {record[column]!r} in column {column!r} is not one of the {len(labels)} categories",
                "add it to --labels, or fix the row")
    return _kept(path, good, bad, skip_bad_rows, problem)


def _typed_answers(path: Path, good: list, bad: int, column: str, tp: Any, skip_bad_rows: bool) -> tuple[list, int]:
    """Rows whose expected answer reads as ``tp`` (``--output-type int|float|bool``)."""
    def problem(record: dict[str, Any]) -> tuple[str, str] | None:
        try:
            _types.from_plain(tp, str(record[column]).strip(), column)
        except ValueError:
            return (f"expected answer {record[column]!r} in column {column!r} is not a {tp.__name__}",
                    "fix the row, or choose another --output-type")
        return None
    return _kept(path, good, bad, skip_bad_rows, problem)


def _kept(path: Path, good: list, bad: int, skip_bad_rows: bool,
          problem: Callable[[dict[str, Any]], tuple[str, str] | None]) -> tuple[list, int]:
    """The (line, record) pairs without a ``problem`` (message, hint), and the bad count: a problem is one
    DataError naming the line, or with ``skip_bad_rows`` one more bad row."""
    kept = []
    for line_no, record in good:
        found = problem(record)
        if found is None:
            kept.append((line_no, record))
        elif skip_bad_rows:
            bad += 1
        else:
            raise DataError(f"{path}:{line_no}: {found[0]}", hint=found[1])
    return kept, bad


def read_label_descriptions(path: str | Path) -> dict[str, str]:
    """``--labels-file``: a data file with columns ``label`` and ``description`` -> {label: description}."""
    records, _ = read_records(Path(path))
    out: dict[str, str] = {}
    for line_no, record in records:
        keys = {k.strip().casefold(): k for k in record}
        if "label" not in keys or "description" not in keys:
            raise DataError(f"{path}:{line_no}: a labels file needs columns label and description "
                            f"(columns: {', '.join(record)})", hint="e.g. a CSV with the header label,description")
        label = str(record[keys["label"]]).strip()
        if not label or label in out:
            raise DataError(f"{path}:{line_no}: {'an empty' if not label else 'a repeated'} label {label!r}",
                            hint="one row per label")
        out[label] = str(record[keys["description"]] or "").strip()
    return out


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
