"""The run store: one SQLite file (WAL mode) holding every call, reply, outcome and count.

Schema changes are named, append-only migrations (``m001_initial``, ``m002_...``) recorded in the
``migrations`` table; a store is migrated forward when opened (a read-only store must already be current).
Each row's result is committed on its own, so a process killed mid-run loses at most the calls in flight.

Tables: ``tasks`` (one definition per task name, with its fingerprint), ``runs`` (each invocation: task,
configuration, library versions), ``arms`` (id = readable axes + a fingerprint of everything that changes a
reply, see ``_identity``), ``rows`` (every row ever seen, by identity key; ``position`` is set only for the
rows of the task's current data, in order), ``calls`` (model calls by hash: the cache), ``results`` (one per
arm and row key, with the content hash of the row it was scored for: a result for an edited row is stale).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import ConfigError, DataError
from ..tasks import changed_parts, digest
from . import _frozen, _migrate_m003

RESULT_COLUMNS = ("arm_id", "row_key", "row_hash", "call_hash", "outcome", "outputs", "thoughts", "raw", "score",
                  "prompt_tokens", "reasoning_tokens", "answer_tokens", "seconds", "estimated", "order_violated",
                  "error", "created")


def _m003_identity(db: sqlite3.Connection) -> None:
    """Rows by content, arms by what changes a reply, one definition per task (see ``_identity``)."""
    _migrate_m003.run(db)


def _m004_enforced(db: sqlite3.Connection) -> None:
    """Each arm records what its backend enforced: ``llguidance``, a server's schema mode, or NULL with
    ``constrained`` set: nothing was sent (prompt-only). Arms stored before are filled in from their model
    spec, layout and syntax (what the spec enforced when m004 was written: ``_frozen``); an arm whose model is not a spec (a
    backend object passed from Python) stays NULL with a note in ``config``: unknown."""
    db.execute("ALTER TABLE arms ADD COLUMN enforced TEXT")
    for arm in db.execute("SELECT id, model, layout, syntax, constrained, config FROM arms").fetchall():
        if not arm[4]:
            continue
        enforced, known = _frozen.m004_enforced(arm[1], arm[2], arm[3])
        if known:
            db.execute("UPDATE arms SET enforced = ? WHERE id = ?", (enforced, arm[0]))
        else:
            config = {**json.loads(arm[5] or "{}"), "enforced": "unknown (stored before m004_enforced)"}
            db.execute("UPDATE arms SET config = ? WHERE id = ?", (json.dumps(config), arm[0]))


MIGRATIONS: list[tuple[str, str | Callable[[sqlite3.Connection], None]]] = [
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
    ("m003_identity", _m003_identity),
    ("m004_enforced", _m004_enforced),
]

OUTCOMES = ("correct", "wrong", "parse_failure", "backend_error")


TABLES = {"migrations", "tasks", "runs", "arms", "rows", "calls", "results"}
_DAMAGED_HINT = "restore the file from a copy, or start a new store with --store NEW.db (the .db that eval wrote)"


class Store:
    """``readonly``: open without writing (``make results``); the store must then be current already."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        try:
            if readonly:
                self._connect_readonly()
            else:
                self._connect()
            self.db.row_factory = sqlite3.Row
            self._migrate(readonly)
            self._check_health()
        except sqlite3.OperationalError as e:
            if "readonly" in str(e) or "read-only" in str(e):
                raise DataError(f"{self.path}: the store cannot be written ({e})",
                                hint="make the file and its folder writable, or pass --store NEW.db") from None
            raise DataError(f"{self.path}: cannot open the store ({e})", hint=_DAMAGED_HINT) from None
        except sqlite3.DatabaseError as e:
            what = "the store is damaged" if "malformed" in str(e) else "not a firsttoken store, or a damaged one"
            raise DataError(f"{self.path}: {what} ({e})", hint=_DAMAGED_HINT) from None

    def _connect_readonly(self) -> None:
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such store", hint="pass the .db file that `firsttoken eval` wrote")
        self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)

    def _connect(self) -> None:
        if self.path.is_dir():
            raise DataError(f"{self.path}: is a folder, not a store", hint="pass a file name, e.g. runs/mytask.db")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise DataError(f"{self.path}: cannot create the store: a part of {self.path.parent} is a file, not a folder",
                            hint="pass --store a path in a folder") from None
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")

    def _check_health(self) -> None:
        """A quick integrity check and the expected tables: damage is named before any work is done."""
        problems = [r[0] for r in self.db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise DataError(f"{self.path}: the store is damaged ({'; '.join(problems)})", hint=_DAMAGED_HINT)
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = sorted(TABLES - tables)
        if missing:
            raise DataError(f"{self.path}: the store lacks its table(s) {', '.join(missing)}", hint=_DAMAGED_HINT)

    def _migrate(self, readonly: bool) -> None:
        if readonly:
            done = {r[0] for r in self.db.execute("SELECT name FROM migrations")}
            pending = [name for name, _ in MIGRATIONS if name not in done]
            if pending:
                raise DataError(f"{self.path}: the store needs upgrading ({', '.join(pending)}) and was opened "
                                "read-only", hint=f"upgrade it once with `firsttoken report {self.path}`")
            return
        self.db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL)")
        done = {r[0] for r in self.db.execute("SELECT name FROM migrations")}
        for name, step in MIGRATIONS:
            if name in done:
                continue
            with self.transaction():
                if callable(step):
                    step(self.db)
                else:
                    for statement in filter(str.strip, step.split(";")):
                        self.db.execute(statement)
                self.db.execute("INSERT INTO migrations VALUES (?, ?)", (name, time.time()))

    def transaction(self) -> Any:
        """``with store.transaction():`` — everything inside lands together, or not at all."""
        return _Transaction(self.db)

    def close(self) -> None:
        self.db.close()

    def compact(self) -> None:
        """Fold the write-ahead log into the file and leave WAL mode: one self-contained file (to commit)."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.execute("PRAGMA journal_mode=DELETE")

    # --- the task's definition --------------------------------------------------------------------
    def check_definition(self, task: str, definition: dict[str, Any]) -> None:
        """Record the task's definition, or refuse one that differs from the definition stored for it."""
        fingerprint = digest(definition)[:16]
        stored = self.db.execute("SELECT fingerprint, definition FROM tasks WHERE name = ?", (task,)).fetchone()
        if stored is None:
            self.db.execute("INSERT INTO tasks VALUES (?, ?, ?)", (task, fingerprint, json.dumps(definition)))
            return
        if stored["fingerprint"] == fingerprint:
            return
        if stored["definition"] is None:
            raise ConfigError(f"{self.path}: task {task!r} was stored by an older firsttoken that could not record "
                              "its definition, so new results could not be told apart from old ones",
                              hint=f"pass --store NEW.db (or move {self.path} away)")
        what = changed_parts(json.loads(stored["definition"]), definition) or ["definition"]
        raise ConfigError(f"{self.path} holds task {task!r} with other {', '.join(what)}: its results would not be "
                          "comparable with the new ones",
                          hint="pass --store NEW.db to evaluate the new definition, or undo the change to add to "
                               "this store")

    def definition(self, task: str) -> dict[str, Any] | None:
        r = self.db.execute("SELECT definition FROM tasks WHERE name = ?", (task,)).fetchone()
        return json.loads(r[0]) if r and r[0] else None

    # --- writing ----------------------------------------------------------------------------------
    def add_run(self, task: str, config: dict, versions: dict) -> int:
        cur = self.db.execute("INSERT INTO runs (started, task, config, versions) VALUES (?, ?, ?, ?)",
                              (time.time(), task, json.dumps(config, default=str), json.dumps(versions)))
        return int(cur.lastrowid)

    def note_run(self, run_id: int, key: str, value: Any) -> None:
        """Add ``key: value`` to a run's config (e.g. the decision an ``--until-decided`` run reached)."""
        row = self.db.execute("SELECT config FROM runs WHERE id = ?", (run_id,)).fetchone()
        config = {**json.loads(row[0] or "{}"), key: value}
        self.db.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(config, default=str), run_id))

    def add_arm(self, arm: dict) -> None:
        """Record an arm; what it enforces follows from its identity, so a later run may fill it in."""
        self.db.execute("INSERT INTO arms (id, task, model, layout, syntax, constrained, budget, demos, config, "
                        "enforced) VALUES (:id, :task, :model, :layout, :syntax, :constrained, :budget, :demos, "
                        ":config, :enforced) ON CONFLICT (id) DO UPDATE SET enforced = excluded.enforced, "
                        "config = excluded.config",
                        {"enforced": None, **arm, "config": json.dumps(arm.get("config", {}))})

    def set_rows(self, task: str, rows: list[Any]) -> None:
        """Make ``rows`` the task's current data, in this order (rows seen before stay, without a position)."""
        with self.transaction():
            self.db.execute("UPDATE rows SET position = NULL WHERE task = ?", (task,))
            self._upsert_rows(task, rows, 0)

    def _upsert_rows(self, task: str, rows: list[Any], start: int) -> None:
        self.db.executemany(
            "INSERT INTO rows (task, key, hash, display_id, position, inputs, expected, difficulty) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (task, key) DO UPDATE SET hash = excluded.hash, "
            "display_id = excluded.display_id, position = excluded.position, inputs = excluded.inputs, "
            "expected = excluded.expected, difficulty = excluded.difficulty",
            [(task, r.key, r.hash, r.id, start + i, json.dumps(r.inputs, default=str),
              json.dumps(r.expected, default=str), r.difficulty) for i, r in enumerate(rows)])

    def add_rows(self, task: str, rows: list[Any], start: int) -> None:
        """Append ``rows`` to the task's current data at positions ``start``, ``start + 1``, ... (rows drawn
        as they are used, from an open-ended source)."""
        with self.transaction():
            self._upsert_rows(task, rows, start)

    def add_call(self, h: str, record: dict) -> None:
        row = {**record, "hash": h, "created": time.time()}
        self.db.execute(f"INSERT OR REPLACE INTO calls ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})",
                        row)

    def add_result(self, result: dict) -> None:
        """One row's outcome for one arm; replaces an earlier one for the same pair (a retried backend error,
        or a result scored for an earlier version of the row)."""
        values = {**result, "created": time.time()}
        self.db.execute(f"INSERT OR REPLACE INTO results ({', '.join(RESULT_COLUMNS)}) "
                        f"VALUES ({', '.join(':' + c for c in RESULT_COLUMNS)})", values)

    def record(self, call: tuple[str, dict] | None, result: dict) -> None:
        """A new call (if any) and the row's result, in one transaction."""
        with self.transaction():
            if call is not None:
                self.add_call(*call)
            self.add_result(result)

    # --- reading ----------------------------------------------------------------------------------
    def call(self, h: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM calls WHERE hash = ?", (h,)).fetchone()

    def done_rows(self, arm_id: str) -> dict[str, str]:
        """Row key -> the content hash it was scored for, for rows of an arm with a final outcome (backend
        errors are retried, so they do not count)."""
        return {r[0]: r[1] for r in self.db.execute(
            "SELECT row_key, row_hash FROM results WHERE arm_id = ? AND outcome != 'backend_error'", (arm_id,))}

    def outcomes(self, arm_id: str) -> list[dict]:
        """Every final outcome of an arm (backend errors left out), whatever the current data: row key, the
        content hash it was scored for, outcome and token counts (``--until-decided`` replays them)."""
        return [dict(r) for r in self.db.execute(
            "SELECT row_key, row_hash, outcome, reasoning_tokens, answer_tokens FROM results "
            "WHERE arm_id = ? AND outcome != 'backend_error'", (arm_id,))]

    def row_keys(self, task: str) -> list[str]:
        """The keys of the task's current data (what its last run was given), in order."""
        return [r[0] for r in self.db.execute(
            "SELECT key FROM rows WHERE task = ? AND position IS NOT NULL ORDER BY position", (task,))]

    def first_row(self, task: str) -> dict[str, Any] | None:
        r = self.db.execute("SELECT inputs FROM rows WHERE task = ? AND position IS NOT NULL ORDER BY position LIMIT 1",
                            (task,)).fetchone()
        return json.loads(r[0]) if r else None

    def arms(self, task: str | None = None) -> list[dict]:
        q = "SELECT * FROM arms" + (" WHERE task = ?" if task else "") + " ORDER BY rowid"
        return [dict(r) for r in self.db.execute(q, (task,) if task else ())]

    def results(self, arm_id: str) -> list[dict]:
        """The arm's results for the rows of its task's current data, as they are now (``row_id`` is the
        row's display id, ``row_key`` its identity, ``closed_by`` how its call's reasoning region ended). Results for rows no longer in the data, or scored for an
        earlier version of a row, are kept in the store but not returned."""
        return [dict(r) for r in self.db.execute(
            "SELECT results.*, rows.display_id AS row_id, rows.difficulty, rows.expected, rows.inputs, "
            "calls.closed_by FROM results "
            "JOIN arms ON arms.id = results.arm_id "
            "LEFT JOIN calls ON calls.hash = results.call_hash "
            "JOIN rows ON rows.task = arms.task AND rows.key = results.row_key AND rows.hash = results.row_hash "
            "WHERE arm_id = ? AND rows.position IS NOT NULL ORDER BY rows.position", (arm_id,))]

    def tasks(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT task FROM arms ORDER BY rowid")]

    def last_run(self, task: str) -> dict | None:
        r = self.db.execute("SELECT * FROM runs WHERE task = ? ORDER BY id DESC LIMIT 1", (task,)).fetchone()
        return dict(r) if r else None

    def counts(self) -> dict[str, int]:
        """How many calls and results the store holds (tests and reruns check what a run added)."""
        return {t: self.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("calls", "results", "rows")}


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN")

    def __exit__(self, kind: Any, *_: Any) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
