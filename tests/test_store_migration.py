"""m003_identity: a store written before rows, tasks and arms had identities keeps working."""

from __future__ import annotations

import json
import sqlite3

import pytest

import firsttoken as ft
from firsttoken.experiments import Store, summarize
from firsttoken.experiments._store import MIGRATIONS

SIG = {"name": "Sums", "instructions": "Add.", "inputs": {"question": ""},
       "outputs": {"answer": {"type": "int", "desc": ""}}}
URL = "openai:m@http://127.0.0.1:9/v1"


def old_store(path):
    """A store as firsttoken wrote it before m003: rows by display id, arms by their axes only."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied REAL)")
    for name, sql in MIGRATIONS[:2]:
        con.executescript(sql)
        con.execute("INSERT INTO migrations VALUES (?, 0)", (name,))
    config = {"signature": SIG, "labels": None, "output": "answer", "metric": "numeric", "demo_rows": []}
    con.execute("INSERT INTO runs (started, task, config, versions) VALUES (0, 'sums', ?, '{}')", (json.dumps(config),))
    rows = [("1", "1+1", 2), ("2", "2+2", 4), ("3", "1+1", 2), ("4", "3+3", 6)]  # lines 1 and 3 are identical
    for i, (rid, q, a) in enumerate(rows):
        con.execute("INSERT INTO rows VALUES ('sums', ?, ?, ?, ?, NULL)", (rid, i, json.dumps({"question": q}), json.dumps(a)))
    for conc in (8, 16):  # the same server under two concurrencies: two arms then, one arm now
        arm = f"sums|{URL}?concurrency={conc}|direct|json|on|-|0shot"
        con.execute("INSERT INTO arms VALUES (?, 'sums', ?, 'direct', 'json', 1, NULL, 0, '{}')",
                    (arm, f"{URL}?concurrency={conc}"))
        for rid, q, a in rows:
            outcome = "correct" if conc == 16 or rid != "4" else "backend_error"
            con.execute("INSERT INTO results (arm_id, row_id, call_hash, outcome, outputs, created) VALUES "
                        "(?, ?, ?, ?, ?, ?)", (arm, rid, f"h{conc}{rid}", outcome, json.dumps({"answer": a}), conc))
    con.commit()
    con.close()


def test_an_old_store_is_migrated_and_reports_the_same_rows(tmp_path):
    path = tmp_path / "old.db"
    old_store(path)
    with pytest.raises(ft.DataError, match="needs upgrading .*m003_identity"):
        Store(path, readonly=True)
    store = Store(path)
    try:
        arms = store.arms("sums")
        assert len(arms) == 1 and arms[0]["model"] == URL  # fetch-only options are not the model's identity
        assert arms[0]["id"].startswith(f"sums|{URL}|direct|json|on|-|0shot#")
        results = store.results(arms[0]["id"])
        assert [r["row_id"] for r in results] == ["1", "2", "3", "4"]  # display ids kept, in order
        assert len({r["row_key"] for r in results}) == 4  # the identical rows 1 and 3 stay two rows
        assert all(r["outcome"] == "correct" for r in results)  # a final outcome wins over a backend error
        summary = summarize(store, "sums")
        assert summary["arms"][0]["n"] == 4 and summary["arms"][0]["correct"] == 4
        assert store.definition("sums")["instructions"] == "Add."
    finally:
        store.close()
    Store(path, readonly=True).close()  # current now: read-only opening works


def test_committed_results_stores_are_current_and_open_read_only():
    from pathlib import Path

    ROOT = Path(__file__).resolve().parents[1]
    stores = sorted((ROOT / "results").glob("*/*.db"))
    assert stores
    for path in stores:
        store = Store(path, readonly=True)
        try:
            task = store.tasks()[0]
            assert store.definition(task) is not None and store.row_keys(task)
        finally:
            store.close()


def test_committed_stores_keep_their_arm_ids_and_call_hashes():
    """Today's code computes every committed arm's id from its stored axes and model spec, and every stored
    call's hash from what it stored (model, messages, grammar, options, what the spec enforced)."""
    import json
    import sqlite3
    from pathlib import Path

    from firsttoken._options import GenerateOptions
    from firsttoken.experiments import build_grid
    from firsttoken.experiments._identity import call_hash, grammar_version

    ROOT = Path(__file__).resolve().parents[1]
    stores = sorted((ROOT / "results").glob("*/*.db"))
    checked = 0
    for path in stores:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        con.row_factory = sqlite3.Row
        try:
            for a in con.execute("SELECT * FROM arms"):
                config = json.loads(a["config"])
                demos = config.get("demo_rows") or None
                budget = [a["budget"]] if a["budget"] is not None else [None]
                layout = a["layout"]
                if config.get("layout_ref"):  # a user's layout (scripts/json_thoughts.py), stored by absolute path
                    layout = str(ROOT / "scripts" / Path(config["layout_ref"]).name)
                grid = build_grid(a["task"], [a["model"]], [layout], [a["syntax"]], [bool(a["constrained"])],
                                  budget, demos)
                assert [g.id for g in grid] == [a["id"]], path
                assert grid[0].enforced == a["enforced"], path
                calls = con.execute("SELECT c.* FROM calls c JOIN results r ON r.call_hash = c.hash WHERE r.arm_id = ? "
                                    "LIMIT 3", (a["id"],)).fetchall()
                for c in calls:
                    options = GenerateOptions(**json.loads(c["options"]))
                    again = call_hash(c["model"], json.loads(c["messages"]), c["constraint_lark"], options,
                                      grammar_version(grid[0].enforced if c["constraint_lark"] else None))
                    assert again == c["hash"], path
                    checked += 1
        finally:
            con.close()
    assert checked > 50
