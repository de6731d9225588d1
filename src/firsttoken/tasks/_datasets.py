"""Built-in tasks over public data files: gsm8k, products, banking77, bbh, sst2, airline.

Each reads the file layout of its public source (see ``../shared/data/README.md`` in this project's
workspace) through the same checked reader as ``--data`` files, so bad rows are named by file and line.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Literal

from .._errors import DataError
from .._signature import InputField, OutputField, Signature
from ._readers import read_records
from ._task import Row, Task


def data_path(data: str | None, task: str) -> Path:
    """Where a built-in task's data is: --data, else $FIRSTTOKEN_DATA/<task>, else ../shared/data/<task>."""
    if data:
        path = Path(data).expanduser()
        if not path.exists():
            raise DataError(f"{path}: not found", hint=f"point --data at the {task} file or folder")
        return path
    for root in (os.environ.get("FIRSTTOKEN_DATA"), "../shared/data"):
        if root and (Path(root) / task).exists():
            return Path(root) / task
    raise DataError(f"task {task!r} needs its data set", hint=f"pass --data PATH (a {task} file or folder)")


def _file(data: str | None, name: str, default_name: str) -> Path:
    path = data_path(data, name)
    if path.is_dir():
        path = path / default_name
    return path


def _require(path: Path, line: int, record: dict, *columns: str) -> None:
    for c in columns:
        if c not in record:
            raise DataError(f"{path}:{line}: missing column {c!r} (columns: {', '.join(record)})")


def _complete(path: Path, records: list[tuple[int, dict]], bad: int, skip_bad: bool,
              *columns: str) -> tuple[list[tuple[int, dict]], int]:
    """The records that have every column; the others raise, or are counted with ``skip_bad``."""
    good = []
    for line, rec in records:
        try:
            _require(path, line, rec, *columns)
            good.append((line, rec))
        except DataError:
            if not skip_bad:
                raise
            bad += 1
    return good, bad


class GSM8K(Signature):
    """Solve the maths word problem. The answer is a number."""

    question: str = InputField()
    answer: int = OutputField(desc="the final number")


def gsm8k_task(data: str | None = None, *, skip_bad_rows: bool = False) -> Task:
    path = _file(data, "gsm8k", "test.jsonl")
    records, bad = read_records(path, skip_bad_rows)
    rows = []
    for line, rec in records:
        try:
            _require(path, line, rec, "question", "answer")
            final = str(rec["answer"]).rsplit("####", 1)
            if len(final) != 2:
                raise DataError(f"{path}:{line}: answer has no '#### <number>' line")
            value = float(final[1].strip().replace(",", ""))
        except (DataError, ValueError) as e:
            if not skip_bad_rows:
                raise e if isinstance(e, DataError) else DataError(f"{path}:{line}: final answer is not a number")
            bad += 1
            continue
        rows.append(Row(str(line), {"question": rec["question"]}, int(value) if value.is_integer() else value))
    return Task("gsm8k", GSM8K, "answer", "numeric", rows, bad_rows=bad)


def _label_task(name: str, instructions: str, inputs: dict[str, str], labels: list[str], rows: list[Row],
                bad: int, demo_pool: list[dict] | None = None, descs: dict[str, str] | None = None) -> Task:
    sig = Signature.make(name.capitalize(), instructions, {k: str for k in inputs},
                         {"category": Literal[tuple(labels)]}, descs)  # type: ignore[misc]
    return Task(name, sig, "category", "label", rows, labels, bad, demo_pool or [])


def products_task(data: str | None = None, *, skip_bad_rows: bool = False) -> Task:
    path = _file(data, "products", "products.json")
    good, bad = _complete(path, *read_records(path, skip_bad_rows), skip_bad_rows, "title", "description", "category")
    labels = sorted({str(rec["category"]) for _, rec in good})
    rows = [Row(str(rec.get("id", line)), {"item_name": rec["title"], "item_description": rec["description"]},
                rec["category"]) for line, rec in good]
    return _label_task("products", "Assign the product to exactly one category.",
                       {"item_name": "", "item_description": ""}, labels, rows, bad,
                       descs={"category": "the product's category"})


def _sentiment_task(name: str, instructions: str, data: str | None, skip_bad_rows: bool) -> Task:
    """A ``text,label`` CSV of binary sentiment (a folder: its test.csv; demos from its train.csv)."""
    path = _file(data, name, "test.csv")
    good, bad = _complete(path, *read_records(path, skip_bad_rows), skip_bad_rows, "text", "label")
    labels = sorted({str(rec["label"]) for _, rec in good})
    rows = [Row(str(line), {"text": rec["text"]}, str(rec["label"])) for line, rec in good]
    train = path.parent / "train.csv"
    pool = []
    if path.name == "test.csv" and train.is_file():
        records, _ = read_records(train, skip_bad=True)
        pool = [{"text": r["text"], "category": str(r["label"])} for _, r in records
                if str(r.get("label")) in labels and r.get("text")]
    return _label_task(name, instructions, {"text": ""}, labels, rows, bad, pool, {"category": "the sentiment"})


def sst2_task(data: str | None = None, *, skip_bad_rows: bool = False) -> Task:
    """SST-2 (binary movie-review sentiment): ``text,label`` CSV; the folder's test.csv by default."""
    return _sentiment_task("sst2", "Classify the sentiment of the movie review.", data, skip_bad_rows)


def airline_task(data: str | None = None, *, skip_bad_rows: bool = False) -> Task:
    """Twitter US Airline Sentiment, positive vs negative: ``text,label`` CSV; the folder's test.csv by default."""
    return _sentiment_task("airline", "Classify the sentiment of the tweet about an airline.", data, skip_bad_rows)


def banking77_task(data: str | None = None, *, skip_bad_rows: bool = False) -> Task:
    folder = data_path(data, "banking77")
    if not folder.is_dir():
        raise DataError(f"{folder}: banking77 needs a folder with test.csv, categories.json and train.csv")
    try:
        labels = json.loads((folder / "categories.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{folder / 'categories.json'}: cannot read the category list ({e})") from None
    records, bad = read_records(folder / "test.csv", skip_bad_rows)
    known = set(labels)
    rows = []
    for line, rec in records:
        try:
            _require(folder / "test.csv", line, rec, "text", "category")
            if rec["category"] not in known:
                raise DataError(f"{folder / 'test.csv'}:{line}: category {rec['category']!r} is not in categories.json")
        except DataError:
            if not skip_bad_rows:
                raise
            bad += 1
            continue
        rows.append(Row(str(line), {"text": rec["text"]}, rec["category"]))
    pool = []
    if (folder / "train.csv").is_file():
        train, _ = read_records(folder / "train.csv", skip_bad=True)
        pool = [{"text": r["text"], "category": r["category"]} for _, r in train if r.get("category") in known]
    return _label_task("banking77", "Classify the banking customer's message into exactly one intent.",
                       {"text": ""}, labels, rows, bad, pool, {"category": "the customer's intent"})


def bbh_task(data: str | None = None, *, skip_bad_rows: bool = False) -> Task:
    path = _file(data, "bbh", "")
    if path.is_dir():
        raise DataError(f"{path}: bbh needs one task file", hint="e.g. --data ../shared/data/bbh/date_understanding.json")
    good, bad = _complete(path, *read_records(path, skip_bad_rows), skip_bad_rows, "input", "target")
    targets = sorted({str(rec["target"]) for _, rec in good})
    multiple_choice = all(re.fullmatch(r"\([A-Z]\)", t) for t in targets)
    if multiple_choice:  # every option letter any question offers, not only those that are answers
        letters = {m for _, rec in good for m in re.findall(r"^\(([A-Z])\)", rec["input"], flags=re.M)}
        targets = sorted({*targets, *(f"({x})" for x in letters)})
    instructions = ("Answer the question with the letter of the correct option, in parentheses, e.g. (A)."
                    if multiple_choice else f"Answer the question with one of: {', '.join(targets)}.")
    rows = [Row(str(line), {"question": rec["input"]}, rec["target"]) for line, rec in good]
    return Task(f"bbh-{path.stem}", Signature.make("BBH", instructions, {"question": str},
                                                   {"answer": Literal[tuple(targets)]}),  # type: ignore[misc]
                "answer", "label", rows, targets, bad)
