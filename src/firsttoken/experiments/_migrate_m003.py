"""Migration m003_identity: a store written before rows, tasks and arms had identities gets them.

* rows: keyed by content (inputs and expected answer, plus occurrence) instead of their display id; the
  rows the store registered become the task's current data, in their order.
* tasks: the definition is rebuilt from the last run's stored signature, labels, output and metric (left
  unknown where that run could not store its signature: such a store then refuses new runs of the task).
* arms: renamed to readable axes + fingerprint; the model loses fetch-only options (arms that differed only
  in those merge); each arm keeps the demos of the task's last run (the first ``demos`` of them).
* calls: rehashed with the model's identity; results follow their arms, rows and calls.
Assumes, as the store could not record otherwise, that one task's runs shared one definition and demos.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from typing import Any

from .._errors import FirstTokenError
from .._options import GenerateOptions
from .._signature import Signature
from ..tasks import content_hash, digest, task_definition
from . import _frozen, _identity


def run(db: sqlite3.Connection) -> None:
    configs = _last_configs(db)
    _tasks(db, configs)
    keys = _rows(db)
    arm_ids = _arms(db, configs)
    call_ids = _calls(db)
    _results(db, keys, arm_ids, call_ids)
    db.execute("ALTER TABLE runs ADD COLUMN fingerprint TEXT")


def _last_configs(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in db.execute("SELECT task, config FROM runs ORDER BY id"):
        out[r[0]] = json.loads(r[1] or "{}")
    return out


def _tasks(db: sqlite3.Connection, configs: dict[str, dict[str, Any]]) -> None:
    db.execute("CREATE TABLE tasks (name TEXT PRIMARY KEY, fingerprint TEXT, definition TEXT)")
    for task, config in configs.items():
        definition = None
        if config.get("signature"):
            try:
                sig = Signature.from_spec(config["signature"])
                definition = task_definition(sig, config.get("output"), config.get("metric", "exact"),
                                                       config.get("labels"))
            except (FirstTokenError, KeyError, TypeError):
                definition = None
        db.execute("INSERT INTO tasks VALUES (?, ?, ?)",
                   (task, digest(definition)[:16] if definition else None,
                    json.dumps(definition) if definition else None))


def _rows(db: sqlite3.Connection) -> dict[tuple[str, str], tuple[str, str]]:
    """(task, old row id) -> (key, content hash)."""
    db.execute("ALTER TABLE rows RENAME TO rows_m002")
    db.execute("CREATE TABLE rows (task TEXT, key TEXT, hash TEXT, display_id TEXT, position INTEGER, inputs TEXT,"
               " expected TEXT, difficulty REAL, PRIMARY KEY (task, key))")
    keys: dict[tuple[str, str], tuple[str, str]] = {}
    seen: Counter[tuple[str, str]] = Counter()
    old = db.execute("SELECT * FROM rows_m002 ORDER BY task, position").fetchall()
    for position, r in enumerate(old):
        h = content_hash(json.loads(r["inputs"]), json.loads(r["expected"]))
        seen[(r["task"], h)] += 1
        n = seen[(r["task"], h)]
        key = h if n == 1 else f"{h}~{n}"
        keys[(r["task"], r["row_id"])] = (key, h)
        db.execute("INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (r["task"], key, h, r["row_id"], position, r["inputs"], r["expected"], r["difficulty"]))
    db.execute("DROP TABLE rows_m002")
    return keys


def _arms(db: sqlite3.Connection, configs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """old arm id -> new arm id."""
    renamed: dict[str, str] = {}
    old = db.execute("SELECT * FROM arms ORDER BY rowid").fetchall()
    db.execute("DELETE FROM arms")
    for a in old:
        model = _frozen.m003_model_key(a["model"])
        version = _frozen.layout_version(a["layout"], a["syntax"])
        options = _identity.arm_options(bool(a["constrained"]), a["budget"])
        demos = (configs.get(a["task"], {}).get("demo_rows") or [])[: a["demos"] or 0]
        fp = _identity.arm_fingerprint(a["task"], model, a["layout"], version, a["syntax"], options, demos)
        new = _identity.arm_id(a["task"], model, a["layout"], a["syntax"], bool(a["constrained"]), a["budget"],
                               a["demos"] or 0, fp)
        renamed[a["id"]] = new
        config = {"layout_version": version, "options": options.model_dump(), "demo_rows": demos}
        db.execute("INSERT OR IGNORE INTO arms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (new, a["task"], model, a["layout"], a["syntax"], a["constrained"], a["budget"], a["demos"],
                    json.dumps(config)))
    return renamed


def _calls(db: sqlite3.Connection) -> dict[str, str]:
    """old call hash -> new call hash (only those that change: a model spec with fetch-only options)."""
    changed: dict[str, str] = {}
    for c in db.execute("SELECT hash, model, messages, constraint_lark, options FROM calls").fetchall():
        key = _frozen.m003_model_key(c["model"])
        if key == c["model"]:
            continue
        new = _identity.call_hash(key, json.loads(c["messages"]), c["constraint_lark"],
                                  GenerateOptions(**json.loads(c["options"])))
        changed[c["hash"]] = new
        if db.execute("SELECT 1 FROM calls WHERE hash = ?", (new,)).fetchone():
            db.execute("DELETE FROM calls WHERE hash = ?", (c["hash"],))
        else:
            db.execute("UPDATE calls SET hash = ?, model = ? WHERE hash = ?", (new, key, c["hash"]))
    return changed


def _results(db: sqlite3.Connection, keys: dict[tuple[str, str], tuple[str, str]], arm_ids: dict[str, str],
             call_ids: dict[str, str]) -> None:
    tasks = {new: db.execute("SELECT task FROM arms WHERE id = ?", (new,)).fetchone()[0] for new in set(arm_ids.values())}
    db.execute("ALTER TABLE results RENAME TO results_m002")
    db.execute("CREATE TABLE results (arm_id TEXT, row_key TEXT, row_hash TEXT, call_hash TEXT, outcome TEXT,"
               " outputs TEXT, thoughts TEXT, raw TEXT, score REAL, prompt_tokens INTEGER, reasoning_tokens INTEGER,"
               " answer_tokens INTEGER, seconds REAL, estimated INTEGER, order_violated INTEGER, error TEXT,"
               " created REAL, PRIMARY KEY (arm_id, row_key))")
    # Oldest first, backend errors before final outcomes: where two old results merge, a final one wins.
    old = db.execute("SELECT * FROM results_m002 ORDER BY outcome = 'backend_error' DESC, created").fetchall()
    for r in old:
        arm = arm_ids.get(r["arm_id"])
        if arm is None:
            continue  # a result of an arm the store never recorded
        key, h = keys.get((tasks[arm], r["row_id"]), (f"legacy:{r['row_id']}", ""))
        db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (arm, key, h, call_ids.get(r["call_hash"], r["call_hash"]), r["outcome"], r["outputs"],
                    r["thoughts"], r["raw"], r["score"], r["prompt_tokens"], r["reasoning_tokens"],
                    r["answer_tokens"], r["seconds"], r["estimated"], r["order_violated"], r["error"], r["created"]))
    db.execute("DROP TABLE results_m002")
