"""scripts/results.py end to end on a scripted model: run slices into stores, render the document from them."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = "scripted:tests.fakes:echo_sum"


@pytest.fixture
def results(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("results_script", ROOT / "scripts" / "results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    data = tmp_path / "sums.jsonl"  # GSM8K's format; echo_sum is wrong exactly where b is 0 (every third row)
    data.write_text("".join(json.dumps({"question": f"{i}+{i % 3}", "answer": f"so\n#### {i + i % 3}"}) + "\n"
                            for i in range(24)))
    base = {"task": "gsm8k", "data": str(data), "store": "sums"}
    monkeypatch.setattr(mod.slices, "ROOT", tmp_path)
    monkeypatch.setattr(mod.slices, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(mod.slices, "MODELS", [MODEL, "not-run-model"])
    monkeypatch.setattr(mod.slices, "SLICES", {
        "five": {"what": "all five layouts", **base, "limit": 21, "layouts": mod.slices.FIVE},
        "tax": {"what": "forced vs prompt", **base, "limit": 21, "layouts": ["work_then_answer"],
                "constrained": [True, False]},
        "budget": {"what": "budgets", **base, "limit": 21, "layouts": ["thoughts_first"], "budgets": [0, 64]},
        "candidates": {"what": "a layout by reference", **base, "limit": 21, "versus": "work_then_answer",
                       "layouts": ["work_then_answer", f"{ROOT}/scripts/json_thoughts.py:ThoughtsCalc"]},
        "demos": {"what": "worked demos", **base, "limit": 21, "layouts": ["thoughts_first"], "demos": "demos.jsonl",
                  "n_demos": 2, "versus": "work_then_answer"},
    })
    (tmp_path / "demos.jsonl").write_text("".join(json.dumps({"question": f"{i}+1", "answer": i + 1,
                                                              "reasoning": f"{i} + 1 = {i + 1}"}) + "\n"
                                                  for i in (5, 6, 7)))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the scripted model lives in tests/fakes.py
    return mod


def test_run_then_render_reads_every_number_from_the_stores(results, tmp_path):
    assert results.run([MODEL], list(results.slices.SLICES)) == 0
    db = tmp_path / "results" / MODEL / "sums.db"
    with sqlite3.connect(db) as con:  # compacted: one self-contained file, no WAL left beside it
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        # five layouts + unconstrained work + thoughts_first at budgets 0 and 64 + the layout by reference + the
        # 2-shot thoughts_first; the shared arms are made once
        assert con.execute("SELECT COUNT(*) FROM arms").fetchone()[0] == 10
    (tmp_path / "sums.jsonl").unlink()  # render reads the committed stores only, not the data files
    text = results.render()
    intro, _, rest = text.partition("## At a glance")
    assert "Constrained unless a row says `unconstrained`." in intro and "Constrained unless" not in rest
    assert "firsttoken eval --model scripted:tests.fakes:echo_sum --store results/" in text
    # every layout answers 14 of 21 rows right, so no thinking layout is claimed to help or hurt
    assert "work_then_answer 66.7% vs direct 66.7%: not shown to differ, +0.0 points" in text
    assert "No row's outcome differed, so the data say nothing about a +1-point effect." in text
    assert "helps," not in text and "hurts," not in text
    assert "work_then_answer: forced 66.7% (0 parse failures)" in text
    assert "thoughts_first, budget: accuracy (reasoning tokens used): 0: 66.7%" in text and "64: 66.7%" in text
    assert f"Knee of {MODEL} thoughts_first [script]: the knee is the best budget, 0 (66.7%" in text  # ties: fewer tokens
    # all equal: the cheapest arm is proven within the margin, and the document says why
    assert (f"Recommendation: **{MODEL} direct [script]**, because {MODEL} direct [script] is the cheapest arm") in text
    assert f"| {MODEL} | five | 21/21 | **66.7%** | **66.7%** | **66.7%** | **66.7%** | **66.7%** |  | direct [script] |" in text
    # every slice is at a glance; arms outside the five columns in their own
    assert (f"| {MODEL} | budget | 21/21 |  |  |  |  |  | **thoughts_first [script] b0 66.7%**; **thoughts_first "
            "[script] b64 66.7%** |") in text
    assert "| **thoughts_calc [script] b512 66.7%** | " in text
    # candidates and demos against the versus layout's 0-shot arm, paired, whatever else differs
    assert ("thoughts_calc [script] b512 66.7% vs work_then_answer 66.7%: +0.0 points (95% CI +0.0 to +0.0, McNemar "
            "p = 1, n = 21): shown within 5 points of it") in text
    assert "thoughts_first [script] b512 2-shot 66.7% vs work_then_answer 66.7%: +0.0 points" in text
    assert "## Not yet run" in text and "- not-run-model / five" in text
    assert "Incomplete" not in text


def test_render_marks_a_slice_that_stopped_early_as_incomplete(results, tmp_path):
    assert results.run([MODEL], ["five"]) == 0
    db = tmp_path / "results" / MODEL / "sums.db"
    with sqlite3.connect(db) as con:  # as if the run had been killed before the last rows of one arm
        arm = con.execute("SELECT id FROM arms WHERE layout = 'work_then_answer'").fetchone()[0]
        con.execute("DELETE FROM results WHERE arm_id = ? AND row_key IN "
                    "(SELECT row_key FROM results WHERE arm_id = ? LIMIT 3)", (arm, arm))
    text = results.render()
    assert "**Incomplete:** 1 of 5 arms have fewer than the 21 planned rows" in text
    assert f"| {MODEL} | five | 18/21 |" in text


def test_label_tasks_get_confusions_and_whether_the_reasoning_named_the_right_label(results, tmp_path, monkeypatch):
    # title_label answers the title's first word; rows 0-9 right, 10-15 wrong (beauty → furniture), and
    # the description of rows 10-12 names the expected label.
    records = [{"id": i, "title": "beauty item", "category": "beauty", "description": "a thing"} for i in range(10)]
    records += [{"id": 10 + i, "title": "beauty chair", "category": "furniture",
                 "description": "sold as home furniture" if i < 3 else "a thing"} for i in range(6)]
    records += [{"id": 16 + i, "title": "furniture table", "category": "furniture", "description": "x"}
                for i in range(6)]
    data = tmp_path / "products.json"
    data.write_text(json.dumps(records))
    monkeypatch.setattr(results.slices, "MODELS", ["scripted:tests.fakes:title_label"])
    monkeypatch.setattr(results.slices, "SLICES", {"labels": {"what": "labels", "task": "products", "data": str(data),
                                                       "store": "labels", "layouts": ["direct", "thoughts_first"]}})
    assert results.run(results.slices.MODELS, ["labels"]) == 0
    text = results.render()
    assert "direct [script]: 6 wrong; most common (expected → answered): furniture → beauty (6)." in text
    assert "In 3 of the 6 wrong replies the reasoning names the expected label" in text


def test_verify_reruns_a_slice_into_a_fresh_store_and_finds_rows_that_differ(results, tmp_path, capsys):
    assert results.run([MODEL], ["five"]) == 0
    assert results.verify(MODEL, "five", limit=4) == 0
    assert "20 of 20 rows reproduced exactly (same reply text); 0 with the same outcome" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "results" / MODEL / "sums.db") as con:  # a committed row that is not true
        con.execute("UPDATE results SET outcome = 'correct', outputs = '{\"answer\": 1}' WHERE row_key = "
                    "(SELECT key FROM rows ORDER BY position LIMIT 1) AND arm_id = "
                    "(SELECT id FROM arms WHERE layout = 'direct')")
    assert results.verify(MODEL, "five", limit=4) == 1
    out = capsys.readouterr().out
    assert "19 of 20 rows reproduced exactly" in out and "1 differ in outcome or answer." in out
    assert "direct [script] row 1: committed correct {\"answer\": 1}, rerun wrong {\"answer\": 1}" in out
    with sqlite3.connect(tmp_path / "results" / MODEL / "sums.db") as con:  # only the reply's wording differs
        con.execute("UPDATE results SET outcome = 'wrong', raw = raw || ' ' WHERE row_key = "
                    "(SELECT key FROM rows ORDER BY position LIMIT 1) AND arm_id = "
                    "(SELECT id FROM arms WHERE layout = 'direct')")
    assert results.verify(MODEL, "five", limit=4) == 0
    out = capsys.readouterr().out
    assert "1 with the same outcome and answer but different text; 0 differ in outcome or answer." in out
    assert "direct [script] row 1: same outcome and answer, reply text first differs at character" in out
