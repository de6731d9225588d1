"""Built-in tasks on small files the tests write, and on the shared data sets where present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import firsttoken as ft
from firsttoken.tasks import get_task, task_names

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} is not present on this machine")
    return path


def test_every_builtin_is_listed():
    assert task_names() == ["arithmetic", "gsm8k", "products", "banking77", "bbh", "sst2", "airline"]


def test_arithmetic_is_seeded_exact_and_graded_by_difficulty():
    a, b = get_task("arithmetic"), get_task("arithmetic")
    assert [r.inputs for r in a.all_rows] == [r.inputs for r in b.all_rows]
    assert {r.difficulty for r in a.all_rows} == {float(d) for d in range(1, 9)}
    assert all(isinstance(r.expected, int) and r.expected >= 0 for r in a.all_rows)
    assert a.has_difficulty() and a.signature.output_fields["answer"].annotation is int
    first = a.rows(limit=8)
    assert sorted(r.difficulty for r in first) == [float(d) for d in range(1, 9)]  # a spread, not all easy


def _solve(question: str) -> int:
    """An independent reading of the generator's sentences."""
    import re

    value = int(re.search(r"has (\d+)", question).group(1))
    for sentence in question.split(". ")[1:]:
        if m := re.search(r"(?:buys|gives \w+) (\d+) more", sentence):
            value += int(m.group(1))
        elif m := re.search(r"(?:gives away|loses) (\d+)", sentence):
            value -= int(m.group(1))
        elif m := re.search(r"(doubles|triples|quadruples)", sentence):
            value *= {"doubles": 2, "triples": 3, "quadruples": 4}[m.group(1)]
        elif m := re.search(r"among (\d+) boxes", sentence):
            value //= int(m.group(1))
    return value


def test_arithmetic_answers_follow_from_the_words():
    task = get_task("arithmetic")
    for row in task.all_rows:
        assert _solve(row.inputs["question"]) == row.expected, row.inputs["question"]
    # Hand-worked: "has 7; quadruples" is 28.
    assert _solve("Gia has 7 pencils. Gia quadruples the pencils. How many pencils does Gia have now?") == 28


def test_gsm8k_small_file(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps({"question": "2 and 3?", "answer": "2+3=5\n#### 5"}) + "\n" +
                    json.dumps({"question": "big?", "answer": "so\n#### 1,200"}) + "\n")
    task = get_task("gsm8k", str(tmp_path))
    assert [r.expected for r in task.all_rows] == [5, 1200]
    assert task.score(task.all_rows[1], {"answer": 1200}) == 1.0


def test_gsm8k_bad_row_is_named(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "no final line"}) + "\n")
    with pytest.raises(ft.DataError, match=r"g.jsonl:1: answer has no '#### <number>' line"):
        get_task("gsm8k", str(path))
    path.write_text(json.dumps({"question": "q", "answer": "x #### 3"}) + "\n" +
                    json.dumps({"question": "q", "answer": "no"}) + "\n")
    assert get_task("gsm8k", str(path), skip_bad_rows=True).bad_rows == 1


def test_products_small_file(tmp_path):
    path = tmp_path / "products.json"
    path.write_text(json.dumps([{"id": 1, "title": "Lipstick", "description": "red", "category": "beauty"},
                                {"id": 2, "title": "Sofa", "description": "grey", "category": "furniture"}]))
    task = get_task("products", str(path))
    assert task.labels == ["beauty", "furniture"]
    assert list(task.signature.input_fields) == ["item_name", "item_description"]
    assert task.all_rows[0].inputs == {"item_name": "Lipstick", "item_description": "red"}


def test_banking77_small_folder(tmp_path):
    (tmp_path / "categories.json").write_text(json.dumps(["card_arrival", "lost_card"]))
    (tmp_path / "test.csv").write_text("text,category\nWhere is my card?,card_arrival\nI lost it,lost_card\n")
    (tmp_path / "train.csv").write_text("text,category\nCard not here yet,card_arrival\n")
    task = get_task("banking77", str(tmp_path))
    assert len(task.all_rows) == 2 and task.labels == ["card_arrival", "lost_card"]
    assert task.demo_pool == [{"text": "Card not here yet", "category": "card_arrival"}]
    (tmp_path / "test.csv").write_text("text,category\nhm,unknown_intent\n")
    with pytest.raises(ft.DataError, match=r"test.csv:2: category 'unknown_intent' is not in categories.json"):
        get_task("banking77", str(tmp_path))


def test_bbh_small_files(tmp_path):
    mc = tmp_path / "mc.json"
    mc.write_text(json.dumps({"examples": [{"input": "Pick one\nOptions:\n(A) x\n(B) y\n(C) z", "target": "(B)"}]}))
    task = get_task("bbh", str(mc))
    assert task.labels == ["(A)", "(B)", "(C)"] and task.name == "bbh-mc"
    yn = tmp_path / "yn.json"
    yn.write_text(json.dumps({"examples": [{"input": "Plausible?", "target": "yes"},
                                           {"input": "Really?", "target": "no"}]}))
    assert get_task("bbh", str(yn)).labels == ["no", "yes"]


def test_unknown_task_and_missing_data():
    with pytest.raises(ft.ConfigError, match="unknown task 'nope'"):
        get_task("nope")
    with pytest.raises(ft.DataError, match="not found"):
        get_task("gsm8k", "/nonexistent/gsm8k")


def test_shared_gsm8k():
    task = get_task("gsm8k", str(shared("gsm8k/test.jsonl")))
    assert len(task.all_rows) == 1319 and task.all_rows[0].expected == 18


def test_shared_products():
    task = get_task("products", str(shared("products/products.json")))
    assert len(task.all_rows) == 194 and len(task.labels) == 24


def test_shared_banking77():
    task = get_task("banking77", str(shared("banking77")))
    assert len(task.all_rows) == 3080 and len(task.labels) == 77 and len(task.demo_pool) > 1000


@pytest.mark.parametrize(("name", "rows", "counts"), [("sst2", 1821, {"negative": 912, "positive": 909}),
                                                     ("airline", 2277, {"negative": 1817, "positive": 460})])
def test_shared_binary_sentiment(name, rows, counts):
    task = get_task(name, str(shared(name)))
    assert len(task.all_rows) == rows and task.labels == ["negative", "positive"]
    assert {lab: sum(r.expected == lab for r in task.all_rows) for lab in task.labels} == counts
    assert task.demo_pool and set(task.demo_pool[0]) == {"text", "category"}


@pytest.mark.parametrize("name", ["date_understanding", "sports_understanding",
                                  "tracking_shuffled_objects_five_objects"])
def test_shared_bbh(name):
    task = get_task("bbh", str(shared(f"bbh/{name}.json")))
    assert len(task.all_rows) == 250 and all(r.expected in task.labels for r in task.all_rows)


def test_arithmetic_parameters():
    task = get_task("arithmetic:2-4:5")
    assert len(task.all_rows) == 15 and {r.difficulty for r in task.all_rows} == {2.0, 3.0, 4.0}
    with pytest.raises(ft.ConfigError, match="arithmetic:FROM-TO"):
        get_task("arithmetic:9-2")
    with pytest.raises(ft.ConfigError, match="only arithmetic takes parameters"):
        get_task("gsm8k:1-2")
