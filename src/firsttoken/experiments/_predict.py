"""``predict``: apply a run's arm to new rows, one output line per row, resumable.

New rows are read like ``--data`` files (``--id COLUMN`` names each row; by default its line number).
Output goes to CSV when the file name ends in ``.csv``, JSON Lines otherwise; lines are appended as rows
finish, so a killed ``predict`` resumes where it stopped. A rerun redoes rows that ended in a backend error
(their old lines are dropped) and skips every other row already in the file. The output may not be the
input or the store.
Does not handle: two processes writing the same output file at once.
"""

from __future__ import annotations

import csv
import json
import os
from contextlib import closing
from pathlib import Path
from typing import Any

from .. import _types
from .._errors import BackendError, ConfigError, DataError, FirstTokenError, UnreachableError
from ..backends import parse_spec, resolve
from ._apply import find_arm, predictor_for
from ._arm import with_options
from ._store import Store
from ..tasks import as_text, check_unique_ids, read_records


def predict_file(store_path: str | Path, data: str | Path, out: str | Path, arm_ref: str | None = None,
                 backend: Any = None, on_row: Any = None, id_column: str | None = None,
                 parallel: int | None = None, columns: dict[str, str] | None = None,
                 model_options: dict[str, str] | None = None) -> dict[str, int]:
    """Apply an arm to every row of ``data``; write one line per row to ``out``. Returns counts. ``columns``:
    {input field: column} over the run's own mapping; ``parallel`` and ``model_options`` set options of the
    arm's model spec (``--parallel``, ``--model-option``)."""
    out, data = Path(out), Path(data)
    for other, what in ((data, "the input (--data)"), (Path(store_path), "the store (--run)")):
        if same_file(out, other):
            raise ConfigError(f"--out {out} is {what}: writing there would destroy it",
                              hint="give --out a new file name, e.g. predictions.jsonl")
    store = Store(store_path, readonly=True)
    try:
        arm = find_arm(store, arm_ref)
        if backend is None and (parallel or model_options):
            spec = parse_spec(arm["model"]).set("parallel", parallel) if parallel else parse_spec(arm["model"])
            changed = with_options(spec, model_options or {})
            if changed.key != spec.key:  # an identity option: no longer the arm that was measured
                raise ConfigError(f"--model-option would change the arm's model from {spec.key!r} to "
                                  f"{changed.key!r}", hint="pass only options that do not change replies "
                                  "(such as parallel or timeout), or run eval with that model and use its arm")
            backend = resolve(changed)
        predictor = predictor_for(store, arm, backend=backend)
        run = store.last_run(arm["task"])
        stored = json.loads(run["config"]).get("columns") or {} if run else {}
    finally:
        store.close()
    inputs = list(predictor.signature.input_fields)
    unknown = [f for f in columns or {} if f not in inputs]
    if unknown:
        raise ConfigError(f"--input {unknown[0]}: the arm has no input field {unknown[0]!r}",
                          hint=f"its inputs: {', '.join(inputs)}")
    columns = {**stored, **(columns or {})}
    rows = _rows(data, {f: columns.get(f, f) for f in inputs}, id_column)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = _CsvOut(out, inputs, list(predictor.signature.output_fields)) if out.suffix.lower() == ".csv" \
        else _JsonOut(out)
    done = writer.resume()
    counts = {"rows": len(rows), "skipped": 0, "predicted": 0, "errors": 0, "backend_errors": 0}
    todo = [(row_id, values) for row_id, values in rows if row_id not in done]
    counts["skipped"] = len(rows) - len(todo)
    with writer, closing(predictor.completed([values for _, values in todo])) as outcomes:
        for i, out in outcomes:  # as rows finish (a concurrent backend finishes out of order)
            if isinstance(out, UnreachableError):
                raise out  # the server is gone: stop, as `eval` does
            row_id, values = todo[i]
            entry: dict[str, Any] = {"row": row_id, "arm": arm["id"], "inputs": values}
            if isinstance(out, FirstTokenError):
                entry.update(outputs=None, thoughts=None, usage=None,
                             error={"type": type(out).__name__, "message": out.message,
                                    "raw": getattr(out, "raw", None)})
                counts["errors"] += 1
                counts["backend_errors"] += isinstance(out, BackendError)
            else:
                entry.update(outputs={k: _types.to_json(v) for k, v in out.outputs.items()},
                             thoughts=out.layout_reasoning, usage=out.to_dict()["usage"], error=None)
                counts["predicted"] += 1
            writer.write(entry)
            if on_row:
                on_row(entry)
    return counts


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (through links, or `.` and `..`)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _rows(data: Path, inputs: dict[str, str], id_column: str | None) -> list[tuple[str, dict[str, str]]]:
    """(id, {field: value}) per row; a field is read from its column in the run's data (``inputs``), or from
    a column of the field's own name."""
    records, _ = read_records(data)
    for line, rec in records:
        missing = [c for f, c in inputs.items() if c not in rec and f not in rec]
        if id_column and id_column not in rec:
            missing.append(id_column)
        if missing:
            raise DataError(f"{data}:{line}: missing column {missing[0]!r} (the arm needs "
                            f"{', '.join(inputs.values())})", hint="give the file the columns the run's data had")
    if id_column:
        check_unique_ids(data, id_column, records)
    return [(str(rec[id_column]) if id_column else str(line),
             {f: as_text(data, line, c, rec[c] if c in rec else rec[f]) for f, c in inputs.items()})
            for line, rec in records]


class _JsonOut:
    """One JSON object per line."""

    def __init__(self, path: Path):
        self.path = path

    def resume(self) -> set[str]:
        """Rows already written, except those that ended in a backend error (their lines are dropped)."""
        if not self.path.exists():
            return set()
        kept, done = [], set()
        for text in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(text)
                row = str(entry["row"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a kill: that row runs again
            if (entry.get("error") or {}).get("type") in _RETRIED:
                continue
            kept.append(text)
            done.add(row)
        _rewrite(self.path, "".join(line + "\n" for line in kept))
        return done

    def __enter__(self) -> _JsonOut:
        self.file = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(self, *_: Any) -> None:
        self.file.close()

    def write(self, entry: dict[str, Any]) -> None:
        self.file.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        self.file.flush()


class _CsvOut(_JsonOut):
    """A header, then one row per prediction: row, arm, each input, each output, thoughts, error type and
    message (nested values as JSON)."""

    def __init__(self, path: Path, inputs: list[str], outputs: list[str]):
        super().__init__(path)
        self.columns = ["row", "arm", *inputs, *outputs, "thoughts", "error_type", "error"]
        self.inputs, self.outputs = inputs, outputs

    def resume(self) -> set[str]:
        if not self.path.exists() or not self.path.stat().st_size:
            _rewrite(self.path, _csv_line(self.columns))
            return set()
        with self.path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != self.columns:
                raise ConfigError(f"--out {self.path} has other columns than this arm writes",
                                  hint="give --out a new file name")
            rows = [r for r in reader if None not in r.values() and r["error_type"] not in _RETRIED]
        _rewrite(self.path, _csv_line(self.columns) + "".join(_csv_line([r[c] for c in self.columns]) for r in rows))
        return {r["row"] for r in rows}

    def write(self, entry: dict[str, Any]) -> None:
        outputs = entry["outputs"] or {}
        error = entry["error"] or {}
        cells = [entry["row"], entry["arm"], *(entry["inputs"][c] for c in self.inputs),
                 *(_cell(outputs.get(c)) for c in self.outputs), entry["thoughts"] or "",
                 error.get("type", ""), error.get("message", "")]
        self.file.write(_csv_line(cells))
        self.file.flush()


_RETRIED = {"BackendError", "ContextOverflowError", "ConstraintError"}  # as `eval` retries them


def _cell(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _csv_line(cells: list[Any]) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    return buf.getvalue()


def _rewrite(path: Path, text: str) -> None:
    """Replace a file's content atomically (a kill leaves the old file or the new one, never half)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
