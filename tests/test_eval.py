"""`firsttoken eval` and `report` end to end with scripted models: resuming, caching, bad input, outputs."""

from __future__ import annotations

import json
import sqlite3
import time
from html.parser import HTMLParser

import pytest

from .helpers import SUM, cli, count_calls, eval_args, kill_after_results, write_sums

def test_json_summary_has_every_field(tmp_path):
    data = write_sums(tmp_path / "sums.jsonl")
    res = cli(*eval_args(data, "-m", SUM, "--layouts", "direct,thoughts_first,work_then_answer",
                         "--thinking-budgets", "0,64", "--json"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert len(summary["arms"]) == 5  # direct has no budget axis: 1 + 2 + 2
    arm = summary["arms"][0]
    for key in ("model", "layout", "syntax", "constrained", "budget", "n", "correct", "accuracy", "ci_low",
                "ci_high", "accuracy_parsed", "parse_failures", "backend_errors", "mean_prompt_tokens",
                "mean_reasoning_tokens", "mean_answer_tokens", "seconds"):
        assert key in arm, key
    assert arm["n"] == 12 and arm["correct"] == 8  # echo_sum is wrong where the second number is 0
    assert {c["axis"] for c in summary["comparisons"]} == {"layout", "budget"}
    assert summary["recommendation"]["status"] in ("recommended", "inconclusive")
    assert (tmp_path / "runs" / "sums.db").is_file()


def test_rerun_of_a_finished_run_makes_no_model_calls(tmp_path):
    data = write_sums(tmp_path / "sums.jsonl")
    calls = tmp_path / "calls.txt"
    env = {"FAKE_CALLS": str(calls), "FAKE_DELAY": "0"}
    args = eval_args(data, "-m", "scripted:tests.fakes:slow_sum", "--layouts", "direct")
    assert cli(*args, cwd=tmp_path, env=env).returncode == 0
    assert count_calls(calls) == 12
    assert cli(*args, cwd=tmp_path, env=env).returncode == 0
    assert count_calls(calls) == 12
    # A new layout runs only what is new; an identical call is answered from the store.
    assert cli(*eval_args(data, "-m", "scripted:tests.fakes:slow_sum", "--layouts", "direct,thoughts_first"),
               cwd=tmp_path, env=env).returncode == 0
    assert count_calls(calls) == 24


def test_killed_run_resumes_with_every_row_stored_once(tmp_path):
    data = write_sums(tmp_path / "sums.jsonl", n=30)
    calls = tmp_path / "calls.txt"
    env = {"FAKE_CALLS": str(calls), "FAKE_DELAY": "0.1"}
    args = eval_args(data, "-m", "scripted:tests.fakes:slow_sum", "--layouts", "direct")
    db = tmp_path / "runs" / "sums.db"
    kill_after_results(args, tmp_path, db, 10, env)
    first = count_calls(calls)
    assert 10 <= first < 30
    assert cli(*args, cwd=tmp_path, env=env).returncode == 0
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT row_key, COUNT(*) FROM results GROUP BY row_key").fetchall()
    assert len(rows) == 30 and all(n == 1 for _, n in rows)
    assert count_calls(calls) <= 30 + 1  # at most the call in flight is made twice


def test_outcomes_are_kept_apart_and_backend_errors_are_retried(tmp_path):
    data = write_sums(tmp_path / "sums.jsonl", n=6)
    down = cli(*eval_args(data, "-m", "scripted:tests.fakes:flaky", "--layouts", "direct", "--json"),
               cwd=tmp_path, env={"FAKE_FAIL": "1"})
    arm = json.loads(down.stdout)["arms"][0]
    assert arm["backend_errors"] == 6 and arm["n"] == 0 and arm["parse_failures"] == 0
    up = cli(*eval_args(data, "-m", "scripted:tests.fakes:flaky", "--layouts", "direct", "--json"), cwd=tmp_path)
    arm = json.loads(up.stdout)["arms"][0]
    assert arm["backend_errors"] == 0 and arm["n"] == 6
    bad = cli(*eval_args(data, "-m", "scripted:tests.fakes:garbage", "--layouts", "direct", "--json",
                         "--store", "g.db"), cwd=tmp_path)
    arm = json.loads(bad.stdout)["arms"][0]
    assert arm["parse_failures"] == 6 and arm["accuracy"] == 0 and arm["accuracy_parsed"] == 0


@pytest.mark.parametrize("name,content,args,message", [
    ("bad.jsonl", '{"question": "1+1", "answer": 2}\n{"question": "2+2", "answer": 4\n', [],
     r"bad.jsonl:2:\d+: invalid JSON"),
    ("missing.jsonl", '{"question": "1+1", "answer": 2}\n{"question": "2+2"}\n', [],
     "missing.jsonl:2: missing column 'answer'"),
    ("labels.jsonl", '{"question": "x", "answer": "a"}\n{"question": "y", "answer": "c"}\n',
     ["--labels", "a,b", "--metric", "label"], "labels.jsonl:2: label 'c' in column 'answer' is not one"),
    ("empty.jsonl", "", [], "empty.jsonl: the file is empty"),
    ("latin1.csv", b"question,answer\n1+1,2\ncaf\xe9,3\n", [], "latin1.csv:3: not UTF-8"),
])
def test_bad_files_are_named_precisely_and_stop_before_any_call(tmp_path, name, content, args, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    calls = tmp_path / "calls.txt"
    res = cli("eval", "--data", str(path), "--inputs", "question", "--output", "answer", "--quiet",
              "-m", "scripted:tests.fakes:slow_sum", *args, cwd=tmp_path, env={"FAKE_CALLS": str(calls)})
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert __import__("re").search(message, lines[0]), lines[0]
    assert "hint:" in lines[0] and count_calls(calls) == 0


def test_skip_bad_rows_counts_them(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"question": "1+1", "answer": 2}\nnot json\n{"question": "2+2"}\n{"question": "3+1", "answer": 4}\n')
    res = cli(*eval_args(path, "-m", SUM, "--layouts", "direct", "--skip-bad-rows", "--json"), cwd=tmp_path)
    summary = json.loads(res.stdout)
    assert summary["bad_rows"] == 2 and summary["arms"][0]["n"] == 2


@pytest.mark.parametrize("args,message", [
    (["--layouts", "direct,nope"], "unknown layout 'nope'"),
    (["-m", "gpt-9"], "unknown model 'gpt-9'"),
    (["-m", "openai:gpt-4o"], "expected openai:MODEL@URL"),
    (["-m", "openai:m@http://127.0.0.1:9/v1?schema_mod=none"], "unknown option 'schema_mod'"),
    (["--constrained", "maybe"], "not on or off"),
])
def test_bad_options_are_named(tmp_path, args, message):
    data = write_sums(tmp_path / "sums.jsonl")
    res = cli(*eval_args(data, *(args if "-m" in args else ["-m", SUM, *args])), cwd=tmp_path)
    assert res.returncode == 1 and message in res.stderr and "hint:" in res.stderr


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_html_report_shows_model_text_as_text(tmp_path):
    data = write_sums(tmp_path / "sums.jsonl", n=3)
    assert cli(*eval_args(data, "-m", "scripted:tests.fakes:script_tag", "--layouts", "direct,work_then_answer"),
               cwd=tmp_path).returncode == 0
    res = cli("report", "runs/sums.db", "--html", "report.html", "--md", "report.md", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "report.html").read_text()
    parser = _Tags()
    parser.feed(page)
    assert "script" not in parser.tags
    assert "<script>alert(1)</script>" in "".join(parser.text)  # shown, as text
    assert "img" in parser.tags  # the plots are embedded
    assert "## sums" in (tmp_path / "report.md").read_text()


def test_a_report_leaves_a_current_store_s_file_as_it_was(tmp_path):
    """A report only reads: a store committed in rollback-journal mode (as results/ are) is not switched to WAL or
    otherwise rewritten, so it does not show as modified."""
    data = write_sums(tmp_path / "sums.jsonl", n=3)
    assert cli(*eval_args(data, "-m", SUM, "--layouts", "direct"), cwd=tmp_path).returncode == 0
    store = tmp_path / "runs" / "sums.db"
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA journal_mode=DELETE")
    before = store.read_bytes()
    res = cli("report", "runs/sums.db", "--html", "report.html", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert store.read_bytes() == before and not (tmp_path / "runs" / "sums.db-wal").exists()


def test_python_api_returns_the_summary(tmp_path):
    from firsttoken.experiments import evaluate, file_task

    task = file_task(write_sums(tmp_path / "sums.jsonl"), ["question"], "answer", metric="numeric")
    import firsttoken as ft
    from tests import fakes

    summary = ft.evaluate(task, [ft.Scripted(fakes.echo_sum)], layouts=["direct"], store=tmp_path / "x.db")
    assert summary["arms"][0]["accuracy"] == pytest.approx(8 / 12)
    assert evaluate is ft.evaluate


def test_unreachable_server_stops_the_run_with_one_line(tmp_path):
    data = write_sums(tmp_path / "sums.jsonl", n=50)
    spec = "openai:m@http://127.0.0.1:9/v1?unreachable_after=1&max_retries=20&parallel=1"
    start = time.time()
    res = cli(*eval_args(data, "-m", spec, "--layouts", "direct"), cwd=tmp_path)
    assert res.returncode == 1 and "unreachable" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and time.time() - start < 60


def test_demos_and_sampling_reach_the_prompt_and_the_store(tmp_path):
    data = write_sums(tmp_path / "sums.jsonl", n=30)
    demos = tmp_path / "demos.jsonl"
    demos.write_text(json.dumps({"question": "1+1", "answer": 2, "reasoning": "one and one"}) + "\n" +
                     json.dumps({"question": "2+2", "answer": 4}) + "\n")
    res = cli(*eval_args(data, "-m", SUM, "--layouts", "thoughts_first", "--demos", str(demos), "--n-demos", "1",
                         "--sample", "7", "--seed", "3", "--json"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["arms"][0]["n"] == 7 and summary["arms"][0]["demos"] == 1
    with sqlite3.connect(tmp_path / "runs" / "sums.db") as con:
        messages = [json.loads(m) for (m,) in con.execute("SELECT messages FROM calls")]
        rows = {r for (r,) in con.execute("SELECT row_key FROM results")}
    assert all(len(m) == 4 and m[2]["content"] == '{"thoughts": "one and one", "answer": 2}' for m in messages)
    again = cli(*eval_args(data, "-m", SUM, "--layouts", "thoughts_first", "--demos", str(demos), "--n-demos", "1",
                           "--sample", "7", "--seed", "3", "--json"), cwd=tmp_path)
    assert json.loads(again.stdout)["arms"][0]["n"] == 7  # the same seed draws the same rows
    with sqlite3.connect(tmp_path / "runs" / "sums.db") as con:
        assert {r for (r,) in con.execute("SELECT row_key FROM results")} == rows


def test_a_short_model_name_labels_the_arms_and_is_not_their_identity(tmp_path):
    data = write_sums(tmp_path / "sums.jsonl", n=4)
    named = cli(*eval_args(data, "-m", f"echo={SUM}", "--layouts", "direct", "--json"), cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    arm = json.loads(named.stdout)["arms"][0]
    assert arm["model"] == SUM and arm["name"] == "echo" and arm["label"].startswith("echo direct")
    plain = cli(*eval_args(data, "-m", SUM, "--layouts", "direct", "--json"), cwd=tmp_path)
    again = json.loads(plain.stdout)["arms"][0]
    assert again["id"] == arm["id"] and again["name"] is None and again["label"].startswith(f"{SUM} direct")
