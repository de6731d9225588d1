"""Careless and hostile use ends in one clear line: one test per item of issue 13, each checking the store,
the exit code and the shape of what is printed. Scripted models, stub servers and a fault proxy on
loopback; item 9 uses llama-cpp-python's real server."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest

import firsttoken as ft

from .servers import FaultProxy
from .helpers import CLI, SUM, cli, cli_env, count_calls, eval_args, write_sums

SECRET = "sk-hostile-secret-7781"


def fours(path, n=20):
    """Rows whose answer is 4: the stub's only reply is right for all of them."""
    path.write_text("".join(json.dumps({"question": f"{i} + 4 - {i}", "answer": 4}) + "\n" for i in range(n)))
    return path


def outcomes(db):
    with sqlite3.connect(db) as con:
        return [r[0] for r in con.execute("SELECT outcome FROM results ORDER BY rowid")]


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# 1 ---------------------------------------------------------------------------------------------------
def test_1_a_malformed_body_is_that_rows_backend_error_and_the_run_goes_on(tmp_path, stub):
    proxy = FaultProxy(stub, plan=["malformed"] * 5)
    data = fours(tmp_path / "f.jsonl")
    spec = f"openai:stub@{proxy.url}/v1?max_retries=0&parallel=1"
    res = cli(*eval_args(data, "-m", spec, "--layouts", "direct", "--no-probe"), cwd=tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == ("5 row(s) ended in a backend error (see the backend err column); "
                                                   "rerun the same command to retry them")
    db = tmp_path / "runs" / "f.db"
    assert outcomes(db).count("backend_error") == 5 and outcomes(db).count("correct") == 15
    with sqlite3.connect(db) as con:
        assert "malformed response body" in con.execute("SELECT error FROM results WHERE outcome = 'backend_error'"
                                                        ).fetchone()[0]
    again = cli(*eval_args(data, "-m", spec, "--layouts", "direct", "--no-probe"), cwd=tmp_path)
    assert again.returncode == 0 and outcomes(db).count("correct") == 20
    proxy.close()


class _Broken(ft.BackendBase):
    """A plugin backend with a bug: it raises a plain Python exception."""

    label = "broken"

    def generate(self, request):
        if "3" in request.messages[-1]["content"]:
            raise KeyError("choices")
        return ft.Generation('{"answer": 4}')


def test_1_anything_a_backend_raises_becomes_a_recorded_backend_error(tmp_path):
    from firsttoken.experiments import file_task

    task = file_task(fours(tmp_path / "f.jsonl", 6), ["question"], "answer", "numeric")
    summary = ft.evaluate(task, [_Broken()], layouts=["direct"], store=tmp_path / "b.db")
    assert summary["arms"][0]["backend_errors"] == 1 and summary["arms"][0]["n"] == 5
    with sqlite3.connect(tmp_path / "b.db") as con:
        assert con.execute("SELECT error FROM results WHERE outcome = 'backend_error'").fetchone()[0] == \
            "BackendError: broken: KeyError: 'choices' (hint: the backend failed on this call; rerun to retry it)"


# 2 ---------------------------------------------------------------------------------------------------
def test_2_a_usage_error_prints_typers_usage_and_exits_2(tmp_path):
    res = cli("eval", "--bogus", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "Usage: " in res.stderr and "No such option: --bogus" in res.stderr


def _interrupt(args, env, tmp_path, ready):
    # Ctrl-C as a terminal sends it: a shell's background job (`make test &`) ignores SIGINT, and a child
    # that starts with SIGINT ignored never gets Python's KeyboardInterrupt handler
    proc = subprocess.Popen([*CLI, *args], cwd=tmp_path, env=cli_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while not ready() and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)  # a safety net against a hang, not a timing claim
    return proc.returncode, stderr


def test_2_ctrl_c_stops_with_130_and_the_same_command_resumes(tmp_path):
    data = write_sums(tmp_path / "sums.jsonl", n=30)
    calls = tmp_path / "calls.txt"
    env = {"FAKE_CALLS": str(calls), "FAKE_DELAY": "0.2"}
    args = eval_args(data, "-m", "scripted:tests.fakes:slow_sum", "--layouts", "direct")
    code, stderr = _interrupt(args, env, tmp_path, lambda: count_calls(calls) >= 4)
    assert code == 130 and stderr.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"
    stored = len(outcomes(tmp_path / "runs" / "sums.db"))
    assert 3 <= stored < 30
    assert cli(*args, cwd=tmp_path, env=env).returncode == 0
    with sqlite3.connect(tmp_path / "runs" / "sums.db") as con:
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT row_key) FROM results").fetchone() == (30, 30)


def test_2_ctrl_c_abandons_server_calls_in_flight(tmp_path, stub):
    proxy = FaultProxy(stub, plan=["stall"] * 100, stall=600)
    data = fours(tmp_path / "f.jsonl")
    args = eval_args(data, "-m", f"openai:stub@{proxy.url}/v1?parallel=4&timeout=600", "--layouts", "direct",
                     "--no-probe")
    code, stderr = _interrupt(args, {}, tmp_path, lambda: len(proxy.log) >= 4)
    assert code == 130 and "interrupted; rerun the same command to resume" in stderr  # not 600 s of waiting
    proxy.close()


# 3 ---------------------------------------------------------------------------------------------------
def test_3_keys_never_reach_the_store_the_terminal_or_the_report(tmp_path, stub):
    proxy = FaultProxy(stub, plan=["echo_auth"] * 20)
    data = fours(tmp_path / "f.jsonl", 4)
    res = cli(*eval_args(data, "-m", f"openai:stub@{proxy.url}/v1", "--layouts", "direct", "--no-probe"),
              cwd=tmp_path, env={"OPENAI_API_KEY": SECRET})
    assert res.returncode == 1 and outcomes(tmp_path / "runs" / "f.db") == ["backend_error"] * 4
    assert any("echo_auth" == f for f in proxy.log)  # the server really echoed the header
    report = cli("report", "runs/f.db", "--html", "r.html", cwd=tmp_path)
    with sqlite3.connect(tmp_path / "runs" / "f.db") as con:
        error = con.execute("SELECT error FROM results").fetchone()[0]
    assert "Bearer ***" in error
    for text in (res.stdout, res.stderr, report.stdout, (tmp_path / "r.html").read_text()):
        assert SECRET not in text
    for path in (tmp_path / "runs").glob("f.db*"):
        assert SECRET.encode() not in path.read_bytes()
    proxy.close()


def test_3_url_userinfo_is_stripped_from_labels_reprs_and_arm_ids(tmp_path, stub):
    from firsttoken.backends import resolve

    host = stub.split("//")[1]
    spec = f"openai:stub@http://user:{SECRET}@{host}/v1"
    backend = resolve(spec)
    assert SECRET not in repr(backend) and SECRET not in backend.label
    res = cli(*eval_args(fours(tmp_path / "f.jsonl", 3), "-m", spec, "--layouts", "direct", "--no-probe", "--json"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert SECRET not in res.stdout and json.loads(res.stdout)["arms"][0]["id"].startswith(f"f|openai:stub@{stub}/v1|")


# 4 ---------------------------------------------------------------------------------------------------
def test_4_reports_and_predictions_never_overwrite_the_store_or_the_input(tmp_path):
    data = write_sums(tmp_path / "sums.jsonl", n=24)
    assert cli(*eval_args(data, "-m", SUM, "--layouts", "direct,work_then_answer"), cwd=tmp_path).returncode == 0
    store = tmp_path / "runs" / "sums.db"
    before = store.read_bytes()
    res = cli("report", "runs/sums.db", "--html", "runs/sums.db", cwd=tmp_path)
    assert res.returncode == 1 and "--html runs/sums.db is the store itself" in one_line(res.stderr)
    assert store.read_bytes()[:100] == before[:100] and len(outcomes(store)) == 48
    new = tmp_path / "new.csv"
    new.write_text("question\n1+2\n3+4\n")
    original = new.read_text()
    for out in (str(new), "runs/sums.db"):
        res = cli("predict", "--run", "runs/sums.db", "--data", str(new), "--out", out, cwd=tmp_path)
        assert res.returncode == 1 and "would destroy it" in one_line(res.stderr)
    assert new.read_text() == original and len(outcomes(store)) == 48


def test_4_out_ending_in_csv_writes_csv_into_a_new_folder(tmp_path):
    data = write_sums(tmp_path / "sums.jsonl", n=24)
    assert cli(*eval_args(data, "-m", SUM, "--layouts", "direct"), cwd=tmp_path).returncode == 0
    new = tmp_path / "new.csv"
    new.write_text("ticket,question\nT1,1+2\nT2,3+4\n")
    res = cli("predict", "--run", "runs/sums.db", "--arm", "1", "--data", str(new), "--out", "out/p.csv",
              "--id", "ticket", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with (tmp_path / "out" / "p.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["row"], r["question"], r["answer"], r["error_type"]) for r in rows] == [("T1", "1+2", "3", ""),
                                                                                   ("T2", "3+4", "7", "")]


# 5 ---------------------------------------------------------------------------------------------------
def test_5_eval_and_predict_exit_nonzero_on_backend_errors_and_predict_retries_them(tmp_path, stub):
    proxy = FaultProxy(stub, plan=["echo_auth"] * 4)
    data = fours(tmp_path / "f.jsonl", 4)
    spec = f"openai:stub@{proxy.url}/v1"
    down = cli(*eval_args(data, "-m", spec, "--layouts", "direct", "--no-probe"), cwd=tmp_path)
    assert down.returncode == 1 and "4 row(s) ended in a backend error" in down.stderr
    assert cli(*eval_args(data, "-m", spec, "--layouts", "direct", "--no-probe"), cwd=tmp_path).returncode == 0
    new = tmp_path / "new.jsonl"
    new.write_text("".join(json.dumps({"id": f"r{i}", "question": f"{i}+4-{i}"}) + "\n" for i in range(5)))
    proxy.plan = ["echo_auth"] * 2
    args = ["predict", "--run", "runs/f.db", "--arm", "1", "--data", str(new), "--out", "p.jsonl", "--id", "id"]
    first = cli(*args, cwd=tmp_path)
    assert first.returncode == 1 and "2 row(s) ended in a backend error; rerun the same command to retry them" in first.stderr
    second = cli(*args, cwd=tmp_path)
    assert second.returncode == 0 and "2 predictions, 0 errors, 3 rows already in" in second.stdout
    lines = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert sorted(x["row"] for x in lines) == [f"r{i}" for i in range(5)] and all(x["error"] is None for x in lines)
    proxy.close()


# 6 ---------------------------------------------------------------------------------------------------
def test_6_a_field_over_128_kb_is_read_whole(tmp_path):
    big = "1+1 " + "x" * 200_000
    (tmp_path / "big.csv").write_text(f"question,answer\n\"{big}\",2\n")
    res = cli(*eval_args(tmp_path / "big.csv", "-m", SUM, "--layouts", "direct"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with sqlite3.connect(tmp_path / "runs" / "big.db") as con:
        assert len(json.loads(con.execute("SELECT inputs FROM rows").fetchone()[0])["question"]) == len(big)


@pytest.mark.parametrize("name,content,message", [
    ("short.csv", "question,answer\n1+1,2\n2+2\n", "short.csv:3: only 1 of the header's 2 columns have a value"),
    ("null.jsonl", '{"question": "1+1", "answer": 2}\n{"question": null, "answer": 4}\n',
     "null.jsonl:2: column 'question' is null"),
])
def test_6_short_rows_and_nulls_are_named(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    res = cli(*eval_args(tmp_path / name, "-m", SUM, "--layouts", "direct"), cwd=tmp_path)
    line = one_line(res.stderr)
    assert res.returncode == 1 and line.startswith("error: ") and message in line


def test_6_lists_and_objects_are_sent_as_json_not_python_reprs(tmp_path):
    (tmp_path / "l.jsonl").write_text(json.dumps({"question": ["1+1", {"note": "é"}], "answer": 2}) + "\n")
    assert cli(*eval_args(tmp_path / "l.jsonl", "-m", SUM, "--layouts", "direct"), cwd=tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / "runs" / "l.db") as con:
        sent = json.loads(con.execute("SELECT messages FROM calls").fetchone()[0])[-1]["content"]
    assert sent == 'question: ["1+1", {"note": "é"}]'


@pytest.mark.parametrize("extra,message", [
    (["--limit", "-1"], "--limit -1: must be 1 or more"),
    (["--margin", "nan"], "--margin nan: not a number of accuracy points"),
    (["--store", "sums.jsonl/x.db"], "cannot create the store: a part of sums.jsonl is a file"),
])
def test_6_bad_numbers_and_paths_are_one_line(tmp_path, extra, message):
    data = write_sums(tmp_path / "sums.jsonl", n=3)
    res = cli(*eval_args(data, "-m", SUM, "--layouts", "direct", *extra), cwd=tmp_path)
    assert res.returncode == 1 and message in one_line(res.stderr)


@pytest.mark.parametrize("damage,message", [
    ("DROP TABLE results", "lacks its table(s) results"),
    ("corrupt", "the store is damaged"),
])
def test_6_a_damaged_store_is_named_with_the_fix(tmp_path, damage, message):
    data = write_sums(tmp_path / "sums.jsonl", n=40)
    assert cli(*eval_args(data, "-m", SUM), cwd=tmp_path).returncode == 0
    db = tmp_path / "runs" / "sums.db"
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if damage != "corrupt":
            con.execute(damage)
    if damage == "corrupt":
        raw = bytearray(db.read_bytes())
        raw[4096 * 3: 4096 * 3 + 512] = os.urandom(512)  # one page of a table, scribbled over
        db.write_bytes(bytes(raw))
    for args in (["report", "runs/sums.db"], eval_args(data, "-m", SUM)):
        res = cli(*args, cwd=tmp_path)
        line = one_line(res.stderr)
        assert res.returncode == 1 and message in line and "--store NEW.db" in line


# 7 ---------------------------------------------------------------------------------------------------
def test_7_escape_sequences_and_markup_never_reach_the_terminal(tmp_path, stub):
    data = tmp_path / "ansi.jsonl"
    data.write_text(json.dumps({"question": "1+1 \x1b[2J\x1b]0;pwned\x07 [bold]x[/bold]", "answer": 2}) + "\n")
    res = cli(*eval_args(data, "-m", SUM, "--layouts", "direct"), cwd=tmp_path)
    shown = cli("show", "--run", "runs/ansi.db", "--arm", "1", cwd=tmp_path)
    assert res.returncode == 0 and shown.returncode == 0
    assert "\x1b" not in res.stdout + shown.stdout and "\x07" not in shown.stdout
    assert "␛[2J" in shown.stdout and "[bold]x[/bold]" in shown.stdout  # shown as text
    assert "options {" in shown.stdout and "[bold]options" not in shown.stdout
    weird = f"openai:m[/b]@{stub}/v1"  # a model name with rich markup in it
    res = cli(*eval_args(fours(tmp_path / "f.jsonl", 3), "-m", weird, "--layouts", "direct", "--no-probe"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert outcomes(tmp_path / "runs" / "f.db") == ["correct"] * 3


# 8 ---------------------------------------------------------------------------------------------------
def test_8_retry_after_an_hour_ends_the_call_at_once(tmp_path, stub):
    proxy = FaultProxy(stub, plan=["429"], retry_after="3600")
    res = cli(*eval_args(fours(tmp_path / "f.jsonl", 2), "-m", f"openai:stub@{proxy.url}/v1?parallel=1",
                         "--layouts", "direct", "--no-probe"), cwd=tmp_path)
    assert res.returncode == 1 and outcomes(tmp_path / "runs" / "f.db") == ["backend_error", "correct"]
    with sqlite3.connect(tmp_path / "runs" / "f.db") as con:
        error = con.execute("SELECT error FROM results WHERE outcome = 'backend_error'").fetchone()[0]
    assert "the server asked to wait 3600 s" in error and "deadline 300 s" in error
    assert proxy.log == ["429", "ok"]  # no second attempt at the refused row
    proxy.close()


# 9 ---------------------------------------------------------------------------------------------------
@pytest.mark.model
def test_9_a_server_that_rejects_json_schema_stops_the_run_at_once_naming_the_mode(tmp_path):
    from .servers import start_llama_server

    proc, url = start_llama_server(ft.load("smollm2-135m").llm.model_path)
    proxy = FaultProxy(url)
    try:
        res = cli(*eval_args(fours(tmp_path / "f.jsonl", 10), "-m", f"openai:smol@{proxy.url}/v1?parallel=1",
                             "--layouts", "direct"), cwd=tmp_path)
        line = one_line(res.stderr)
        assert res.returncode == 1 and "the server rejects schema_mode 'json_schema' (HTTP 500" in line
        assert "try ?schema_mode=json_object" in line
        assert proxy.log == ["ok"]  # one request: no retries, no further rows
    finally:
        proxy.close()
        proc.kill()
        proc.wait()
