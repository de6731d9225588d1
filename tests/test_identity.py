"""A store never answers for data it was not given: rows, tasks and arms identified by what they are.

Each case runs `firsttoken eval` (scripted model) twice around an edit and checks the calls made, the rows
and results in the store, and the summary."""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest

from .helpers import cli, count_calls, write_sums

SENT = "scripted:tests.fakes:sentiment"
REVIEWS = [("a good film", "pos"), ("a dull film", "neg"), ("good acting", "pos"), ("bad plot", "neg"),
           ("so good", "pos"), ("boring", "neg")]


def write_csv(path, rows, header=("text", "label")):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def run(tmp_path, data, *extra, model=SENT, env=None):
    calls = tmp_path / "calls.txt"
    before = count_calls(calls)
    res = cli("eval", "--data", str(data), "--inputs", "text", "--output", "label", "--metric", "label",
              "--labels", "neg,pos", "-m", model, "--layouts", "direct", "--quiet", "--json", *extra, cwd=tmp_path,
              env={"FAKE_CALLS": str(calls), **(env or {})})
    return res, count_calls(calls) - before


def store_rows(db):
    with sqlite3.connect(db) as con:
        return {
            "results": con.execute("SELECT COUNT(*) FROM results").fetchone()[0],
            "calls": con.execute("SELECT COUNT(*) FROM calls").fetchone()[0],
            "arms": con.execute("SELECT COUNT(*) FROM arms").fetchone()[0],
            "current": [r[0] for r in con.execute("SELECT display_id FROM rows WHERE position IS NOT NULL "
                                                  "ORDER BY position")],
        }


def arm(res):
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["arms"][0]


def test_flipping_every_label_rescores_the_stored_replies_without_a_call(tmp_path):
    data = write_csv(tmp_path / "reviews.csv", REVIEWS)
    first, calls = run(tmp_path, data)
    assert arm(first)["correct"] == 6 and calls == 6
    write_csv(data, [(t, "neg" if y == "pos" else "pos") for t, y in REVIEWS])
    second, calls = run(tmp_path, data)
    a = arm(second)
    assert calls == 0 and a["n"] == 6 and a["correct"] == 0  # the same replies, scored against the new labels
    db = store_rows(tmp_path / "runs" / "reviews.db")
    assert db["calls"] == 6 and db["results"] == 12  # the old scores are kept, for the old rows
    report = cli("report", "runs/reviews.db", "--json", cwd=tmp_path)
    assert json.loads(report.stdout)["arms"][0]["correct"] == 0 and json.loads(report.stdout)["arms"][0]["n"] == 6


def test_a_row_inserted_at_the_top_is_the_only_new_call(tmp_path):
    data = write_csv(tmp_path / "reviews.csv", REVIEWS)
    run(tmp_path, data)
    write_csv(data, [("good news", "pos"), *REVIEWS])
    res, calls = run(tmp_path, data)
    assert calls == 1 and arm(res)["n"] == 7
    db = store_rows(tmp_path / "runs" / "reviews.db")
    assert db["current"] == [str(i) for i in range(2, 9)]  # display ids are line numbers, shifted by one
    assert db["results"] == 7


def test_identical_rows_are_separate_rows(tmp_path):
    data = write_csv(tmp_path / "reviews.csv", [*REVIEWS, REVIEWS[0], REVIEWS[0]])
    res, calls = run(tmp_path, data)
    assert arm(res)["n"] == 8 and calls == 6  # 8 rows; the two repeats are answered from the stored call
    assert store_rows(tmp_path / "runs" / "reviews.db")["results"] == 8


def test_a_different_file_with_the_same_name_is_evaluated_for_itself(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    run(tmp_path, write_csv(tmp_path / "a" / "reviews.csv", REVIEWS))
    other = [("good day", "neg"), ("good grief", "neg"), ("awful", "neg"), ("fine", "pos")]
    res, calls = run(tmp_path, write_csv(tmp_path / "b" / "reviews.csv", other))
    a = arm(res)
    assert calls == 4 and a["n"] == 4 and a["correct"] == 1  # only "awful" is right
    report = json.loads(cli("report", "runs/reviews.db", "--json", cwd=tmp_path).stdout)
    assert report["arms"][0]["n"] == 4  # the report covers exactly the current rows, not the first file's


def test_changed_instructions_are_refused_with_one_line_and_a_new_store_runs_them(tmp_path):
    data = write_sums(tmp_path / "sums.jsonl", n=4)
    calls = tmp_path / "calls.txt"
    base = ["eval", "--data", str(data), "--inputs", "question", "--output", "answer", "--metric", "numeric",
            "-m", "scripted:tests.fakes:slow_sum", "--layouts", "direct", "--quiet"]
    env = {"FAKE_CALLS": str(calls), "FAKE_DELAY": "0"}
    assert cli(*base, cwd=tmp_path, env=env).returncode == 0
    res = cli(*base, "--instructions", "Add the two numbers.", cwd=tmp_path, env=env)
    assert res.returncode == 1 and count_calls(calls) == 4
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "holds task 'sums' with other instructions" in lines[0] and "--store NEW.db" in lines[0]
    ok = cli(*base, "--instructions", "Add the two numbers.", "--store", "new.db", "--json", cwd=tmp_path, env=env)
    assert ok.returncode == 0 and count_calls(calls) == 8
    shown = json.loads(cli("show", "--run", "new.db", "--json", "--arm", "1", cwd=tmp_path).stdout)
    assert shown["messages"][0]["content"].startswith("Add the two numbers.")
    with sqlite3.connect(tmp_path / "new.db") as con:
        assert all(json.loads(m)[0]["content"].startswith("Add the two numbers.")
                   for (m,) in con.execute("SELECT messages FROM calls"))


@pytest.mark.parametrize("change,what", [
    (["--labels", "neg,pos,mixed"], "labels"),
    (["--metric", "exact"], "metric"),
])
def test_other_definition_changes_are_refused_too(tmp_path, change, what):
    data = write_csv(tmp_path / "reviews.csv", REVIEWS)
    run(tmp_path, data)
    args = ["eval", "--data", str(data), "--inputs", "text", "--output", "label", "-m", SENT, "--layouts", "direct",
            "--quiet"]
    args += change if "--metric" in change else ["--metric", "label", *change]
    res = cli(*args, cwd=tmp_path, env={"FAKE_CALLS": str(tmp_path / "calls.txt")})
    changed = res.stderr.partition("with other ")[2].partition(": its results")[0]
    assert res.returncode == 1 and what in changed and count_calls(tmp_path / "calls.txt") == 6


def test_duplicate_ids_in_a_builtin_task_are_all_evaluated(tmp_path):
    records = [{"id": i % 12, "title": f"beauty item {i}", "category": "beauty", "description": f"thing {i}"}
               for i in range(24)]
    data = tmp_path / "products.json"
    data.write_text(json.dumps(records))
    res = cli("eval", "--task", "products", "--data", str(data), "-m", "scripted:tests.fakes:title_label",
              "--layouts", "direct", "--quiet", "--json", cwd=tmp_path)
    assert arm(res)["n"] == 24
    assert store_rows(tmp_path / "runs" / "products.db")["results"] == 24


def test_id_column_identifies_rows_and_an_edited_row_is_evaluated_again(tmp_path):
    rows = [(f"r{i}", t, y) for i, (t, y) in enumerate(REVIEWS)]
    data = write_csv(tmp_path / "reviews.csv", rows, header=("ticket", "text", "label"))
    res, calls = run(tmp_path, data, "--id", "ticket")
    assert calls == 6 and arm(res)["correct"] == 6
    edited = list(rows)
    edited[1] = ("r1", "a dull film", "pos")  # a corrected label: a new score for the stored reply
    edited[2] = ("r2", "bad acting", "pos")  # a changed input: a new call
    write_csv(data, edited, header=("ticket", "text", "label"))
    res, calls = run(tmp_path, data, "--id", "ticket")
    a = arm(res)
    assert calls == 1 and a["n"] == 6 and a["correct"] == 4
    db = store_rows(tmp_path / "runs" / "reviews.db")
    assert db["results"] == 6 and db["current"] == [f"r{i}" for i in range(6)]


def test_duplicate_ids_are_named_with_their_lines(tmp_path):
    data = write_csv(tmp_path / "reviews.csv", [("a", "good", "pos"), ("b", "bad", "neg"), ("a", "ok", "pos")],
                     header=("ticket", "text", "label"))
    res, calls = run(tmp_path, data, "--id", "ticket")
    assert res.returncode == 1 and calls == 0
    assert "reviews.csv:4: id 'a' in column 'ticket' is also on line 2" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_options_that_cannot_change_a_reply_make_no_new_arm_and_no_call(tmp_path):
    from .servers import start_stub

    proc, url = start_stub('{"label": "pos"}')
    try:
        data = write_csv(tmp_path / "reviews.csv", REVIEWS)
        base = f"openai:stub@{url}/v1"
        first, _ = run(tmp_path, data, model=base)
        assert arm(first)["n"] == 6
        db = tmp_path / "runs" / "reviews.db"
        before = store_rows(db)
        for spec in (f"{base}?parallel=16", f"{base}?max_retries=8&timeout=30",
                     f"{base}?api_key_env=OTHER_KEY&unreachable_after=5", f"{base}?schema_mode=json_schema"):
            res, _ = run(tmp_path, data, model=spec)
            assert arm(res)["id"] == arm(first)["id"]
            assert store_rows(db) == before  # the same arm, the same calls, nothing new
        # A schema mode is sent to the server, so it can change the reply: a new arm.
        res, _ = run(tmp_path, data, model=f"{base}?schema_mode=none")
        assert arm(res)["id"] != arm(first)["id"] and store_rows(db)["arms"] == 2
    finally:
        proc.kill()


@pytest.mark.model
def test_edits_on_a_real_model_run_exactly_what_is_new(tmp_path):
    rows = [("Lipstick", "A red lipstick for the lips", "beauty"), ("Apples", "A bag of red apples", "groceries"),
            ("Sofa", "A three-seat sofa", "furniture"), ("Mascara", "Black mascara for lashes", "beauty"),
            ("Rice", "Two kilos of white rice", "groceries"), ("Table", "An oak dining table", "furniture")]
    header = ("item", "description", "category")
    data = write_csv(tmp_path / "shop.csv", rows, header=header)
    db = tmp_path / "runs" / "shop.db"

    def run_real():
        res = cli("eval", "--data", str(data), "--inputs", "item,description", "--output", "category",
                  "--metric", "label", "--labels", "beauty,furniture,groceries", "-m", "smollm2-135m",
                  "--layouts", "direct", "--quiet", "--json", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)["arms"][0], store_rows(db)["calls"]

    first, calls0 = run_real()
    assert calls0 == 6 and first["n"] == 6
    with sqlite3.connect(db) as con:
        answered = json.loads(con.execute("SELECT outputs FROM results ORDER BY rowid LIMIT 1").fetchone()[0])
    # 1. One expected label edited so that row 0's outcome must flip: no call.
    right = answered["category"] == rows[0][2]
    new_label = next(c for c in ("beauty", "furniture", "groceries") if c != answered["category"]) if right \
        else answered["category"]
    edited = [(rows[0][0], rows[0][1], new_label), *rows[1:]]
    write_csv(data, edited, header=header)
    second, calls1 = run_real()
    assert calls1 == calls0 and second["n"] == 6 and second["correct"] == first["correct"] + (-1 if right else 1)
    # 2. One input edited: exactly one call.
    edited[1] = ("Pears", "A bag of green pears", "groceries")
    write_csv(data, edited, header=header)
    third, calls2 = run_real()
    assert calls2 == calls1 + 1 and third["n"] == 6
    # 3. A row inserted: exactly one call; the report covers exactly the current 7 rows.
    write_csv(data, [("Chair", "A wooden kitchen chair", "furniture"), *edited], header=header)
    fourth, calls3 = run_real()
    assert calls3 == calls2 + 1 and fourth["n"] == 7
    report = json.loads(cli("report", str(db), "--json", cwd=tmp_path).stdout)
    assert report["arms"][0]["n"] == 7 and store_rows(db)["current"] == [str(i) for i in range(2, 9)]
