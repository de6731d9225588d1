"""The run store: one SQLite file (WAL mode) holding every call, reply, outcome and count.

Schema changes are named, append-only migrations (``m001_initial``, ``m002_...``) recorded in the
``migrations`` table; a store is migrated forward when opened. Each row's result is committed on its own,
so a process killed mid-run loses at most the call in flight.

Tables: ``runs`` (each invocation: task, configuration, library versions), ``arms`` (one per model x layout
x syntax x constrained x budget), ``rows`` (task rows), ``calls`` (model calls by hash of model, messages,
constraint and options: the cache), ``results`` (one per arm and row: outcome, parsed outputs, tokens).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from .._errors import DataError

MIGRATIONS: list[tuple[str, str]] = [
    ("m001_initial", """
        CREATE TABLE runs (id INTEGER PRIMARY KEY, started REAL, task TEXT, config TEXT, versions TEXT);
        CREATE TABLE arms (id TEXT PRIMARY KEY, task TEXT, model TEXT, layout TEXT, syntax TEXT,
                           constrained INTEGER, budget INTEGER, demos INTEGER, config TEXT);
        CREATE TABLE rows (task TEXT, row_id TEXT, position INTEGER, inputs TEXT, expected TEXT,
                           difficulty REAL, PRIMARY KEY (task, row_id));
        CREATE TABLE calls (hash TEXT PRIMARY KEY, model TEXT, messages TEXT, constraint_lark TEXT,
                            options TEXT, text TEXT, reasoning TEXT, prompt_tokens INTEGER,
                            completion_tokens INTEGER, reasoning_tokens INTEGER, seconds REAL,
                            estimated INTEGER, closed_by TEXT, created REAL);
        CREATE TABLE results (arm_id TEXT, row_id TEXT, call_hash TEXT, outcome TEXT, outputs TEXT,
                              thoughts TEXT, raw TEXT, score REAL, prompt_tokens INTEGER,
                              reasoning_tokens INTEGER, answer_tokens INTEGER, seconds REAL,
                              estimated INTEGER, order_violated INTEGER, error TEXT, created REAL,
                              PRIMARY KEY (arm_id, row_id));
    """),
    ("m002_call_retries", """ALTER TABLE calls ADD COLUMN retries INTEGER DEFAULT 0;
                             ALTER TABLE calls ADD COLUMN finish_reason TEXT DEFAULT 'stop';"""),
]

OUTCOMES = ("correct", "wrong", "parse_failure", "backend_error")


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise DataError(f"{self.path}: not a firsttoken store ({e})",
                            hint="give --store a new file name, or the .db an earlier run wrote") from None

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL)")
        done = {r[0] for r in self.db.execute("SELECT name FROM migrations")}
        for name, sql in MIGRATIONS:
            if name not in done:
                self.db.executescript(f"BEGIN; {sql} INSERT INTO migrations VALUES ('{name}', {time.time()}); COMMIT;")

    def close(self) -> None:
        self.db.close()

    # --- writing ----------------------------------------------------------------------------------
    def add_run(self, task: str, config: dict, versions: dict) -> int:
        cur = self.db.execute("INSERT INTO runs (started, task, config, versions) VALUES (?, ?, ?, ?)",
                              (time.time(), task, json.dumps(config), json.dumps(versions)))
        return int(cur.lastrowid)

    def add_arm(self, arm: dict) -> None:
        self.db.execute("INSERT OR IGNORE INTO arms VALUES (:id, :task, :model, :layout, :syntax, :constrained,"
                        " :budget, :demos, :config)", {**arm, "config": json.dumps(arm.get("config", {}))})

    def add_rows(self, task: str, rows: list[Any]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            for i, r in enumerate(rows):
                self.db.execute("INSERT OR IGNORE INTO rows VALUES (?, ?, ?, ?, ?, ?)",
                                (task, r.id, i, json.dumps(r.inputs, default=str),
                                 json.dumps(r.expected, default=str), r.difficulty))

    def add_call(self, h: str, record: dict) -> None:
        row = {**record, "hash": h, "created": time.time()}
        self.db.execute(f"INSERT OR REPLACE INTO calls ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})",
                        row)

    def add_result(self, result: dict) -> None:
        """One row's outcome for one arm; replaces an earlier backend_error for the same pair."""
        self.db.execute("INSERT OR REPLACE INTO results VALUES (:arm_id, :row_id, :call_hash, :outcome, :outputs,"
                        " :thoughts, :raw, :score, :prompt_tokens, :reasoning_tokens, :answer_tokens, :seconds,"
                        " :estimated, :order_violated, :error, :created)", {**result, "created": time.time()})

    # --- reading ----------------------------------------------------------------------------------
    def call(self, h: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM calls WHERE hash = ?", (h,)).fetchone()

    def done_rows(self, arm_id: str) -> set[str]:
        """Rows of an arm with a final outcome (backend errors are retried, so they do not count)."""
        return {r[0] for r in self.db.execute(
            "SELECT row_id FROM results WHERE arm_id = ? AND outcome != 'backend_error'", (arm_id,))}

    def row_ids(self, task: str) -> list[str]:
        """The task's registered rows (every row a run planned, before its first call), in run order."""
        return [r[0] for r in self.db.execute("SELECT row_id FROM rows WHERE task = ? ORDER BY position", (task,))]

    def arms(self, task: str | None = None) -> list[dict]:
        q = "SELECT * FROM arms" + (" WHERE task = ?" if task else "") + " ORDER BY rowid"
        return [dict(r) for r in self.db.execute(q, (task,) if task else ())]

    def results(self, arm_id: str) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            "SELECT results.*, rows.difficulty, rows.expected, rows.inputs FROM results "
            "JOIN arms ON arms.id = results.arm_id "
            "LEFT JOIN rows ON rows.task = arms.task AND rows.row_id = results.row_id "
            "WHERE arm_id = ? ORDER BY rows.position", (arm_id,))]

    def tasks(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT task FROM arms ORDER BY rowid")]

    def last_run(self, task: str) -> dict | None:
        r = self.db.execute("SELECT * FROM runs WHERE task = ? ORDER BY id DESC LIMIT 1", (task,)).fetchone()
        return dict(r) if r else None
