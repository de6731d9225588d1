"""What many test modules share: the scripted model's spec, data files, running the command line (and killing it).

Test modules import from here (and from fakes, signatures, servers, grammar), never from one another.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUM = "scripted:tests.fakes:echo_sum"


def write_sums(path: Path, n: int = 12) -> Path:
    path.write_text("".join(json.dumps({"question": f"{i}+{i % 3}", "answer": i + i % 3}) + "\n" for i in range(n)))
    return path


TICKETS = [("T-1", "Refund please", "I was charged twice for my plan, please refund.", "billing"),
           ("T-2", "App crash!", "The app shows an error and crashes on start.", "bug"),
           ("T-3", "Hello", "Where can I change my avatar?", "other"),
           ("T-4", "Double charge", "Another charge appeared on my card.", "billing"),
           ("T-5", "Crash on save", "Saving crashes with an error.", "bug"),
           ("T-6", "Question", "Do you have a dark mode?", "other")]
HEADER = ["ticket_id", "Subject", "Ticket Body", "Category (final)"]
MODEL = ["--model", "scripted:tests.fakes:ticket_triage"]  # the support-ticket triager of tests/fakes.py


def write_tickets(path: Path, rows=TICKETS, header=HEADER, delimiter=",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def cli_env(env: dict | None = None) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}


CLI = [sys.executable, "-c", "from firsttoken.cli import main; main()"]


def cli(*args, cwd: Path, env: dict | None = None, **kw):
    return subprocess.run([*CLI, *args], cwd=cwd, env=cli_env(env), capture_output=True, text=True, timeout=300, **kw)


def eval_args(data: Path, *extra):
    return ["eval", "--data", str(data), "--inputs", "question", "--output", "answer", "--metric", "numeric",
            "--quiet", *extra]


def count_calls(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def kill_after_results(args: list[str], cwd: Path, db: Path, n: int, env: dict | None = None,
                       seconds: float = 120) -> None:
    """Start `firsttoken` with ``args``; SIGKILL it once ``db`` holds ``n`` results (or ``seconds`` pass)."""
    proc = subprocess.Popen([*CLI, *args], cwd=cwd, env=cli_env(env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + seconds
    while time.time() < deadline:
        time.sleep(0.1)
        try:
            with sqlite3.connect(db) as con:
                if con.execute("SELECT COUNT(*) FROM results").fetchone()[0] >= n:
                    break
        except sqlite3.Error:
            pass  # not created yet, or mid-migration
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def labels_file(tmp_path: Path, n: int = 5) -> Path:
    """A label task of ``n`` rows, the probe's two made-up words (every answer zebulon)."""
    path = tmp_path / "words.jsonl"
    path.write_text("".join(json.dumps({"question": f"word {i}", "answer": "zebulon"}) + "\n" for i in range(n)))
    return path


def eval_words(tmp_path: Path, spec: str, *extra: str) -> subprocess.CompletedProcess:
    """``firsttoken eval --json`` of ``labels_file`` on model ``spec``."""
    return cli("eval", "--data", str(labels_file(tmp_path)), "--inputs", "question", "--output", "answer",
               "--labels", "zebulon,quillet", "--metric", "label", "--quiet", "--json", "-m", spec, *extra,
               cwd=tmp_path)


def split_by_gateway(gateway, summary: dict, store: str, cwd: Path, rows: int) -> tuple[list[dict], list[dict]]:
    """A run's arms behind a ``tests.engines.Gateway``: those with a request that lost its grammar there, and those
    whose grammars all passed. An arm's requests are found by its system message (`firsttoken show --arm N`); each
    arm sent at least ``rows`` through the gateway."""
    lost, kept = [], []
    for arm in summary["arms"]:
        shown = json.loads(cli("show", "--run", store, "--arm", str(arm["number"]), "--json", cwd=cwd).stdout)
        mine = [dropped for sent, dropped in gateway.requests if sent == shown["messages"][0]["content"]]
        assert len(mine) >= rows, (arm["label"], len(mine))  # the arm's rows went through the gateway
        (lost if any(mine) else kept).append(arm)
    print("grammar dropped:", [a["label"] for a in lost], "\nall passed:", [a["label"] for a in kept])
    return lost, kept
