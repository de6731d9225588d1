"""--until-decided: anytime-valid confidence sequences, the decision rule, its error rate in simulation,
and the sequential run (rounds, stopped arms, resume, open-ended rows)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import firsttoken as ft
from firsttoken.experiments import evaluate, file_task
from firsttoken.experiments._confseq import decide, diff_cs, eb_cs
from firsttoken.experiments._simulate import simulate
from firsttoken.tasks import get_task

from . import fakes
from .helpers import cli, eval_args, kill_after_results, write_sums

# 200 Bernoulli(0.7) draws (numpy default_rng(0)), and the PrPl-EB bounds at alpha 0.05, truncation 1/2,
# without the running intersection, as the authors' reference code gives them (confseq's
# predmix_empbern_cs, gostevehoward/confseq src/confseq/predmix.py, re-typed: the package needs Boost).
BITS = ("11110010100101010111111111001111101110011111101110010111101111111110111010111001011010001000100010"
        "001100111010110101010111011101111101110101110110101011111001011110011001101100100001110110111111011001")
REFERENCE = {50: (0.4556453238751711, 0.934891687814496), 200: (0.5290179272178567, 0.7663493531411625)}


def test_the_bounds_are_those_of_the_reference_implementation():
    x = np.array([float(c) for c in BITS])
    low, high = eb_cs(x, 0.05, intersect=False)
    for t, (lo, hi) in REFERENCE.items():
        assert low[t - 1] == pytest.approx(lo, abs=1e-12) and high[t - 1] == pytest.approx(hi, abs=1e-12)
    ilow, ihigh = eb_cs(x, 0.05)  # the running intersection only tightens, and stays monotone
    assert np.all(np.diff(ilow) >= 0) and np.all(np.diff(ihigh) <= 0) and np.all(ilow >= low - 1e-15)


def test_a_confidence_sequence_holds_at_every_time_at_once():
    rng = np.random.default_rng(1)
    x = (rng.random((4000, 1000)) < 0.3).astype(float)
    low, high = eb_cs(x, 0.05)
    ever_missed = ((low > 0.3) | (high < 0.3)).any(axis=1).mean()
    assert ever_missed <= 0.05  # (it is conservative: well under)
    width = (high - low)[:, -1].mean()
    assert width < 0.12  # and still narrows: about +-5 points after 1,000 rows
    d_low, d_high = diff_cs(x[:, :500], x[:, 500:], 0.05)  # a difference of two independent halves: 0
    assert ((d_low > 0) | (d_high < 0)).any(axis=1).mean() <= 0.05


def test_decide_stops_the_clearly_worse_and_picks_the_cheapest_within_the_margin():
    # arms 0 (cheap), 1 (dear), 2 (clearly worse); bounds on acc_i - acc_j
    low = np.array([[0, -0.01, 0.2], [-0.015, 0, 0.25], [-0.4, -0.45, 0]])
    high = -low.T
    stopped, pick = decide(low, high, np.array([10.0, 300.0, 5.0]), margin=0.02)
    assert list(stopped) == [False, False, True] and pick == 0
    undecided = low.copy()
    undecided[0, 1] = -0.05  # acc_1 - acc_0 may be up to 5 points: the cheap arm is not proven close enough
    stopped, pick = decide(undecided, -undecided.T, np.array([10.0, 300.0, 5.0]), margin=0.02)
    assert pick == -1


SCENARIOS = {  # accuracies, costs
    "equal arms": ([0.6, 0.6], [100, 10]),
    "a true difference of 5 points": ([0.55, 0.60], [10, 100]),
    "a cheap arm within the margin": ([0.59, 0.60], [10, 100]),
    "one clearly worse arm": ([0.3, 0.6, 0.6], [5, 10, 100]),
    "five arms": ([0.5, 0.55, 0.58, 0.6, 0.6], [5, 10, 20, 50, 100]),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_wrong_decision_rate_stays_under_alpha(name):
    acc, cost = SCENARIOS[name]
    res = simulate(acc, cost, margin=0.02, alpha=0.05, sims=2000, max_rows=1500, round_rows=10, seed=7)
    assert res["wrong"] <= 0.05 + 2 * res["mc_error"], res


def test_naive_repeated_fixed_n_testing_decides_wrongly_far_more_often():
    acc, cost = SCENARIOS["equal arms"]
    naive = simulate(acc, cost, margin=0.0, alpha=0.05, sims=2000, max_rows=1500, round_rows=10, seed=7, method="naive")
    valid = simulate(acc, cost, margin=0.0, alpha=0.05, sims=2000, max_rows=1500, round_rows=10, seed=7)
    assert naive["wrong"] > 0.05 + 3 * naive["mc_error"] and valid["wrong"] <= 0.05, (naive, valid)


def _sums(path, n):
    path.write_text("".join(json.dumps({"question": f"{i}+1", "answer": i + 1}) + "\n" for i in range(n)))
    return file_task(path, ["question"], "answer", metric="numeric")


def test_until_decided_stops_the_worse_arm_decides_and_resumes_without_a_call(tmp_path):
    task = _sums(tmp_path / "sums.jsonl", 400)
    backend = ft.Scripted(fakes.thinks_better)
    kw = dict(layouts=["direct", "thoughts_first"], store=tmp_path / "s.db", until_decided=True)
    summary = evaluate(task, [backend], **kw)
    seq = summary["sequential"]
    assert summary["recommendation"]["status"] == "recommended" and "thoughts_first" in summary["recommendation"]["label"]
    assert seq["rows"] < 400 and seq["status"] == "recommended"
    direct = next(a for a in seq["arms"] if "direct" in a["arm_label"])
    assert direct["stopped_after"] is not None or seq["rows"] == direct["n"]
    calls = len(backend.calls)
    assert calls <= 2 * seq["rows"]
    from firsttoken.experiments import Store
    from firsttoken.experiments._report import html_page, markdown

    text = markdown(summary)
    assert "anytime-valid" in text and "fixed-n" in text and f"Spent: {seq['rows']} rows" in text
    db = Store(tmp_path / "s.db")
    assert "fixed-n" in html_page([summary], db) and "anytime-valid" in html_page([summary], db)
    from firsttoken.experiments import summarize

    reported = summarize(db, task.name)  # what `firsttoken report` shows: the decision the run reached
    assert reported["recommendation"] == summary["recommendation"] and reported["sequential"] == seq
    assert [a["n"] for a in reported["arms"]] == [a["n"] for a in summary["arms"]]
    db.close()
    again = evaluate(task, [backend], **kw)  # the same order and looks: answered from the store
    assert len(backend.calls) == calls and again["sequential"]["rows"] == seq["rows"]
    assert again["recommendation"] == summary["recommendation"]


def test_an_open_ended_task_draws_rows_as_used_and_a_bigger_budget_continues(tmp_path):
    task = get_task("arithmetic:1-3", open_ended=True)
    assert task.open_ended and task.all_rows == []
    backend = ft.Scripted(lambda messages: '{"answer": 0}' if '"thoughts"' not in messages[0]["content"]
                          else '{"thoughts": "", "answer": 0}')
    kw = dict(layouts=["direct", "thoughts_first"], store=tmp_path / "a.db", until_decided=True)
    first = evaluate(task, [backend], max_rows=30, **kw)
    assert first["sequential"]["rows"] == 30 and first["recommendation"]["status"] == "inconclusive"
    assert "inconclusive after 30 rows" in first["recommendation"]["reason"]
    assert len(backend.calls) == 60
    more = evaluate(get_task("arithmetic:1-3", open_ended=True), [backend], max_rows=40, **kw)
    assert more["sequential"]["rows"] == 40 and len(backend.calls) == 80  # 30 rows from the store, 10 new
    assert more["sequential"]["pairs"][0]["n"] == 40 and [a["n"] for a in more["sequential"]["arms"]] == [40, 40]
    assert task.draw(3) == get_task("arithmetic:1-3", open_ended=True).draw(3)  # the same rows every time
    with pytest.raises(ft.ConfigError, match="no end of rows"):
        evaluate(get_task("arithmetic:1-3", open_ended=True), [backend], layouts=["direct"], store=tmp_path / "b.db")
    with pytest.raises(ft.ConfigError, match="needs a budget"):
        evaluate(get_task("arithmetic:1-3", open_ended=True), [backend], store=tmp_path / "c.db", layouts=["direct"],
                 until_decided=True)


def test_a_killed_until_decided_run_continues_its_sequence(tmp_path):
    import sqlite3

    data = write_sums(tmp_path / "sums.jsonl", n=30)
    calls = tmp_path / "calls.txt"
    env = {"FAKE_CALLS": str(calls), "FAKE_DELAY": "0.05"}
    args = eval_args(data, "-m", "scripted:tests.fakes:slow_sum", "--layouts", "direct,thoughts_first",
                     "--until-decided")
    db = tmp_path / "runs" / "sums.db"
    kill_after_results(args, tmp_path, db, 10, env)
    res = cli(*args, "--json", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    seq = json.loads(res.stdout)["sequential"]  # equal arms: no decision, the rows run out
    assert seq["rows"] == 30 and seq["status"] == "inconclusive" and "the rows ran out (30)" in seq["reason"]
    made = len(calls.read_text().splitlines())  # every row of both arms once, plus the call in flight at the kill
    assert 60 <= made <= 61
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT arm_id || row_key) FROM results").fetchone() == (60, 60)


def test_an_arm_proven_worse_stops_being_run_while_the_others_go_on(tmp_path):
    def direct_guesses(messages):  # direct gets odd first numbers wrong; the two other layouts are always right
        reply = fakes.echo_sum(messages)
        system = messages[0]["content"]
        if '"thoughts"' in system or '"explanation"' in system:
            return reply
        return fakes.thinks_better(messages)

    task = _sums(tmp_path / "sums.jsonl", 200)
    summary = evaluate(task, [ft.Scripted(direct_guesses)], ["direct", "thoughts_first", "answer_then_explain"],
                       store=tmp_path / "s.db", until_decided=True)
    seq = summary["sequential"]
    arms = {a["arm_label"].split()[1]: a for a in seq["arms"]}
    assert seq["status"] == "inconclusive" and seq["rows"] == 200  # two equal arms: not told apart in 200 rows
    assert arms["direct"]["stopped_after"] is not None and arms["direct"]["n"] == arms["direct"]["stopped_after"] < 100
    assert arms["thoughts_first"]["n"] == arms["answer_then_explain"]["n"] == 200
    assert arms["thoughts_first"]["stopped_after"] is None


@pytest.mark.parametrize("cheap_first", [True, False])
def test_the_fixed_n_comparison_asks_whether_the_cheaper_arm_is_within_the_margin(cheap_first):
    """The cheaper arm 1.1 points better with a 1-point margin: a fixed-n design would plan to show it within
    the margin (a gap of 2.1 points to -1), not to show it better by more than the margin (0.1 points)."""
    from types import SimpleNamespace

    from firsttoken.experiments._confseq import fixed_n, pair_alpha
    from firsttoken.experiments._sequential import _block

    cost = {"cheap": 6.0, "dear": 67.0}
    a, b = ("cheap", "dear") if cheap_first else ("dear", "cheap")
    diff = 0.011 if cheap_first else -0.011  # a - b: the cheap arm is the better one either way
    look = {"rows": 1000, "pick": None, "tokens": 0, "stopped": [],
            "arms": [{"arm": k, "mean_completion_tokens": v} for k, v in cost.items()],
            "pairs": [{"a": a, "b": b, "n": 1000, "diff": diff, "cs_low": -0.01, "cs_high": 0.03, "sd": 0.2}]}
    arms = [SimpleNamespace(id=k) for k in cost]
    block = _block(look, arms, 1000, "rows", 0.01, 0.05, {}, None, None, [])
    expected = fixed_n(0.011, 0.2, -0.01, pair_alpha(0.05, 2))
    assert block["fixed_n"] == expected < fixed_n(0.011, 0.2, 0.01, pair_alpha(0.05, 2)) / 10
