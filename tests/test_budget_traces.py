"""Every thinking budget from one trace (packaged SmolLM2-135M): requests that differ only in their budget are
decoded once and forked where each budget closes the region; under ``batch_invariant`` every reply equals the
one a run with that budget alone makes, on the batched path and at ``parallel`` 1."""

from __future__ import annotations

import json
import sqlite3

import pytest

import firsttoken as ft
from firsttoken._backend import budget_families as _families

from .signatures import Arithmetic, builtin_arms

pytestmark = pytest.mark.model

QUESTIONS = ["Tom has 3 apples and buys 4 more. How many apples does he have?",
             "What is 100 minus 58?", "Sam reads 9 pages a day for 4 days. How many pages?"]
BUDGETS = [0, 16, 64]
REGIONS = [(n, s) for n, s in builtin_arms() if ft.get_layout(n, s).has_reasoning]


@pytest.fixture(scope="module")
def invariant4():
    return ft.load("smollm2-135m", parallel=4, batch_invariant=True)


@pytest.fixture(scope="module")
def invariant1():
    return ft.load("smollm2-135m", batch_invariant=True)


def requests(model, layout, syntax, budgets=BUDGETS, questions=QUESTIONS, **options):
    out = []
    for b in budgets:
        p = ft.Predictor(Arithmetic, layout=layout, syntax=syntax, model=model, max_thinking_tokens=b,
                         max_answer_tokens=48, **options)
        out += [p.request({"question": q}) for q in questions]
    return out


def reply(out):
    if isinstance(out, ft.Generation):
        return (out.text, out.closed_by, out.reasoning_tokens, out.completion_tokens, out.finish_reason)
    return (type(out).__name__, str(out))


def shared_and_alone(model, reqs, per):
    """Every request in one batch (budgets share traces), and each budget's requests in a batch of their own."""
    model._decoder = None
    shared = dict(model.generate_batch(reqs))
    traced = model._decoder.stats["tokens"] if model._decoder else None
    alone = {}
    for start in range(0, len(reqs), per):
        alone.update({start + j: out for j, out in model.generate_batch(reqs[start: start + per])})
    return shared, alone, traced


@pytest.mark.parametrize("layout,syntax", REGIONS)
def test_every_budget_from_one_trace_equals_a_run_with_that_budget_alone(invariant4, layout, syntax):
    """Every layout with a region, on 2 rows x budgets 0, 16 and 64."""
    reqs = requests(invariant4, layout, syntax, questions=QUESTIONS[:2])
    shared, alone, traced = shared_and_alone(invariant4, reqs, 2)
    assert sorted(shared) == list(range(len(reqs)))
    for i in range(len(reqs)):
        assert reply(shared[i]) == reply(alone[i]), (i, reply(shared[i]), reply(alone[i]))
    budget_closed = [g for g in shared.values() if g.closed_by == "budget"]
    assert budget_closed  # forks happened (SmolLM2 rarely ends its reasoning within 64 tokens)
    # one trace per row: the steps decoded are its longest reasoning plus each fork's closer and answer
    assert traced < sum(g.completion_tokens for g in alone.values())


def test_at_parallel_1_budgets_share_a_trace_and_equal_llama_cpp_pythons_own_path(invariant1):
    reqs = requests(invariant1, "work_then_answer", "lines")
    shared, alone, traced = shared_and_alone(invariant1, reqs, len(QUESTIONS))
    assert invariant1._decoder is not None and traced < sum(g.completion_tokens for g in alone.values())
    assert [reply(shared[i]) for i in range(len(reqs))] == [reply(alone[i]) for i in range(len(reqs))]


def test_sampled_and_unconstrained_budgets_follow_the_run_alone(invariant4):
    reqs = requests(invariant4, "thoughts_first", "json", temperature=0.8, seed=5)
    shared, alone, _ = shared_and_alone(invariant4, reqs, len(QUESTIONS))
    assert [reply(shared[i]) for i in range(len(reqs))] == [reply(alone[i]) for i in range(len(reqs))]
    # unconstrained: no region to close, so a smaller budget is the trace cut at its own token limit
    reqs = requests(invariant4, "think_then_answer", "json", budgets=[8, 40], constrained=False)
    shared, alone, _ = shared_and_alone(invariant4, reqs, len(QUESTIONS))
    assert [reply(shared[i]) for i in range(len(reqs))] == [reply(alone[i]) for i in range(len(reqs))]
    assert any(g.finish_reason == "length" for g in shared.values())


def test_families_are_requests_that_differ_only_in_their_budget(smol):
    a = requests(smol, "thoughts_first", "json", budgets=[0, 16], questions=QUESTIONS[:2])
    other = requests(smol, "thoughts_first", "json", budgets=[16], questions=QUESTIONS[:1], seed=1)
    direct = requests(smol, "direct", "json", budgets=[0, 16], questions=QUESTIONS[:1])
    keys = _families(a + other + direct)
    assert keys[0] == keys[2] and keys[1] == keys[3] and keys[0] != keys[1]  # a row's budgets, not its neighbours
    assert keys[4] is None  # another seed: another family, of one
    assert keys[5:] == [None, None]  # no region: nothing to fork
    assert _families(a[:1] * 2) == [None, None]  # one budget twice is no family (the call cache sends it once)


def test_an_eval_over_budgets_stores_each_budget_as_its_own_arm_as_separate_runs_do(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n"
                            for q, a in zip(QUESTIONS, (7, 42, 36))))
    task = ft.Task.from_file(data, inputs=["question"], output="answer", metric="numeric")
    spec = "smollm2-135m?parallel=3&batch_invariant=1"
    together = ft.evaluate(task, [spec], ["work_then_answer"], budgets=BUDGETS, store=tmp_path / "t.db")
    apart = {b: ft.evaluate(task, [spec], ["work_then_answer"], budgets=[b], store=tmp_path / f"{b}.db")
             for b in BUDGETS}
    for arm in together["arms"]:
        alone = apart[arm["budget"]]["arms"][0]
        assert arm["id"] == alone["id"]  # the same arm, whichever way it was run
        same = ("correct", "parse_failures", "mean_reasoning_tokens", "mean_answer_tokens", "budget_closed")
        assert {k: arm[k] for k in same} == {k: alone[k] for k in same}
        assert 0.0 <= arm["budget_closed"] <= 1.0
    assert together["arms"][0]["budget_closed"] == 1.0  # budget 0: the budget closes every region
    with sqlite3.connect(tmp_path / "t.db") as con:
        calls = con.execute("SELECT hash, text FROM calls ORDER BY hash").fetchall()
    for b in BUDGETS:
        with sqlite3.connect(tmp_path / f"{b}.db") as con:
            for h, text in con.execute("SELECT hash, text FROM calls"):
                assert (h, text) in calls  # the same call hashes and replies
    again = ft.evaluate(task, [spec], ["work_then_answer"], budgets=BUDGETS, store=tmp_path / "t.db")
    assert [a["correct"] for a in again["arms"]] == [a["correct"] for a in together["arms"]]
    with sqlite3.connect(tmp_path / "t.db") as con:
        assert con.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == len(calls)  # answered from the store
