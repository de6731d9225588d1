"""`firsttoken predict` and `show`: applying what a run found to new rows."""

from __future__ import annotations

import json

from .helpers import SUM, cli, eval_args, write_sums


def run_grid(tmp_path, n=24):
    data = write_sums(tmp_path / "sums.jsonl", n=n)
    res = cli(*eval_args(data, "-m", SUM, "--layouts", "direct,work_then_answer"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    new = tmp_path / "new.jsonl"
    new.write_text("".join(json.dumps({"question": f"{i}+{i + 1}"}) + "\n" for i in range(20)))
    return new


def test_predict_writes_one_line_per_row_with_the_recommended_arm(tmp_path):
    new = run_grid(tmp_path)
    res = cli("predict", "--run", "runs/sums.db", "--data", str(new), "--out", "out.jsonl", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(lines) == 20
    assert all(x["error"] is None and x["outputs"]["answer"] == 2 * i + 1 for i, x in enumerate(lines))
    assert "|direct|" in lines[0]["arm"]  # both arms are right as often; direct is cheaper
    again = cli("predict", "--run", "runs/sums.db", "--data", str(new), "--out", "out.jsonl", cwd=tmp_path)
    assert "20 rows already in" in again.stdout  # resumed, nothing redone
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 20


def test_predict_with_a_chosen_arm_reports_errors_per_row(tmp_path):
    new = run_grid(tmp_path)
    # Arm 2 is work_then_answer; a model that breaks the format gives a named error per row, not a crash.
    import sqlite3

    with sqlite3.connect(tmp_path / "runs" / "sums.db") as con:
        con.execute("UPDATE arms SET model = 'scripted:tests.fakes:garbage'")
    res = cli("predict", "--run", "runs/sums.db", "--arm", "2", "--data", str(new), "--out", "o.jsonl", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(lines) == 20 and all(x["error"]["type"] == "ParseError" for x in lines)
    assert lines[0]["error"]["raw"] == "I don't know."


def test_predict_refuses_an_inconclusive_recommendation(tmp_path):
    new = run_grid(tmp_path, n=6)
    res = cli("predict", "--run", "runs/sums.db", "--data", str(new), "--out", "o.jsonl", cwd=tmp_path)
    assert res.returncode == 1 and "inconclusive" in res.stderr and "--arm" in res.stderr


def test_show_prints_messages_grammar_and_schema(tmp_path):
    run_grid(tmp_path)
    res = cli("show", "--run", "runs/sums.db", "--arm", "direct", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    assert shown["messages"][0]["role"] == "system" and "question: 0+0" in shown["messages"][-1]["content"]
    assert shown["grammar"].startswith("start:") and shown["json_schema"]["required"] == ["answer"]
    text = cli("show", "--run", "runs/sums.db", "--arm", "work_then_answer", cwd=tmp_path).stdout
    assert "--- Lark grammar (llguidance) ---" in text and "none: this layout's reply" in text
