"""Data files as records: one reader per format, each problem one line naming the file, the line (or row)
and the fix.

* ``.jsonl`` (one object per line), ``.json`` (an array, or an object holding one), ``.csv`` and ``.tsv``
  (a header, then rows), read as UTF-8;
* ``.parquet`` and a Hugging Face ``datasets`` folder written by ``save_to_disk`` (its Arrow files, in
  order): both with pyarrow (``pip install 'firsttoken[data]'``). Their rows are numbered from 1.
Does not handle: files larger than memory, a ``DatasetDict`` folder as a whole (name one split's folder).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .._errors import ConfigError, DataError

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
    """(line or row number, record) pairs from a data file (see the module), and the count of skipped bad
    lines."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        records = _arrow_folder(path)
    elif suffix == ".parquet":
        records = _parquet(path)
    else:
        return _text_records(path, suffix, skip_bad)
    if not records:
        raise DataError(f"{path}: no rows", hint="the file has no usable rows")
    return records, 0


def _text_records(path: Path, suffix: str, skip_bad: bool) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    text = _decode(path)
    records: list[tuple[int, dict[str, Any]]] = []
    bad = 0
    if suffix in (".csv", ".tsv"):
        csv.field_size_limit(2**31 - 1)  # the default 128 KB is smaller than a long document
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ",")
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
                                    hint="fix the row (quote values that contain "
                                         f"{'tabs' if suffix == '.tsv' else 'commas'}), or pass --skip-bad-rows")
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


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ConfigError("reading Parquet and datasets folders needs pyarrow",
                          hint="pip install 'firsttoken[data]'") from None
    return pyarrow


def _numbered(table: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(i + 1, record) for i, record in enumerate(table.to_pylist())]


def _parquet(path: Path) -> list[tuple[int, dict[str, Any]]]:
    pa = _pyarrow()
    if not path.is_file():
        raise DataError(f"{path}: file not found", hint="check the path given to --data")
    try:
        return _numbered(pa.parquet.read_table(path))
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({' '.join(str(e).split())[:200]})",
                        hint="write it again (e.g. pandas' to_parquet), or export CSV or JSON Lines") from None


def _arrow_folder(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """A ``datasets`` ``save_to_disk`` folder: ``state.json`` lists its Arrow stream files in order."""
    pa = _pyarrow()
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        raise DataError(f"{path}: a dataset with splits ({', '.join(splits)}), not one table",
                        hint=f"name one split's folder, e.g. --data {path / (splits[0] if splits else 'train')}")
    state = path / "state.json"
    if not state.is_file():
        raise DataError(f"{path}: a folder, but not a dataset saved with save_to_disk (no state.json)",
                        hint="give a data file, or the folder that Dataset.save_to_disk wrote")
    try:
        files = [path / f["filename"] for f in json.loads(state.read_text())["_data_files"]]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{state}: not a datasets state file ({type(e).__name__}: {e})",
                        hint="save the dataset again with save_to_disk") from None
    tables = []
    for file in files:
        try:
            with pa.memory_map(str(file)) as source:
                tables.append(pa.ipc.open_stream(source).read_all())
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{file}: not a readable Arrow file ({' '.join(str(e).split())[:200]})",
                            hint="save the dataset again with save_to_disk") from None
    if not tables:
        raise DataError(f"{path}: the dataset lists no data files", hint="save the dataset again with save_to_disk")
    return _numbered(pa.concat_tables(tables))
