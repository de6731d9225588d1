"""`LlamaCpp(parallel=N)`: many rows decoded together in one llama.cpp context, each with its own grammar,
budget and end-of-turn close (packaged SmolLM2-135M)."""

from __future__ import annotations

import json
import sqlite3

import pytest

import firsttoken as ft
from firsttoken.layouts import Constraint, Region

from .signatures import Arithmetic, builtin_arms, least
from .helpers import cli, kill_after_results

pytestmark = pytest.mark.model

QUESTIONS = ["Tom has 3 apples and buys 4 more. How many apples does he have?",
             "What is 12 times 3?", "Ann had 20 stickers and gave 7 away. How many are left?",
             "A box holds 6 eggs. How many eggs are in 5 boxes?", "What is 100 minus 58?",
             "Sam reads 9 pages a day for 4 days. How many pages?"]
REASONING = list(dict.fromkeys(n for n, s in builtin_arms() if ft.get_layout(n, s).has_reasoning and not least(n)))


@pytest.fixture(scope="module")
def smol4():
    return ft.load("smollm2-135m", parallel=4)


def test_prompt_tokens_are_those_create_chat_completion_evaluates(smol):
    seen = []

    def spy(input_ids, scores):
        if not seen:
            seen.append(list(input_ids))
        return scores

    messages = ft.Predictor(Arithmetic, layout="thoughts_first", model=smol).messages(question=QUESTIONS[0])
    smol.llm.create_chat_completion(messages=messages, max_tokens=1, logits_processor=[spy])
    tokens, stop = smol.prompt_tokens(messages)
    assert tokens == seen[0] and stop  # the chat template's stop text comes along


@pytest.mark.parametrize("layout", REASONING)
def test_a_batch_keeps_validity_budgets_and_closed_by_as_one_at_a_time(smol, smol4, layout):
    rows = [{"question": q} for q in QUESTIONS]
    one = ft.Predictor(Arithmetic, layout=layout, model=smol, max_thinking_tokens=24).batch(rows)
    many = ft.Predictor(Arithmetic, layout=layout, model=smol4, max_thinking_tokens=24).batch(rows)
    for a, b in zip(one, many):
        assert isinstance(b, ft.Prediction), b
        assert isinstance(b.answer, int) and b.usage.reasoning_tokens <= 24 and not b.usage.estimated
        assert b.closed_by in ("model", "budget", "end_of_turn") or (b.closed_by is None and not b.thoughts)
        assert (b.closed_by == "budget") == (b.usage.reasoning_tokens == 24)
        if a.raw == b.raw:  # the same greedy text: the same counts and the same way of closing
            assert (a.closed_by, a.usage.reasoning_tokens, a.usage.answer_tokens) == \
                (b.closed_by, b.usage.reasoning_tokens, b.usage.answer_tokens)
    assert sum(a.raw == b.raw for a, b in zip(one, many)) >= len(rows) // 2  # batch splits change little


def test_rows_of_different_layouts_and_unconstrained_rows_share_one_batch(smol4):
    requests = []
    for i, (name, syntax) in enumerate(builtin_arms()):
        p = ft.Predictor(Arithmetic, layout=name, syntax=syntax, model=smol4, max_thinking_tokens=16,
                         max_answer_tokens=48, constrained=i % 3 != 0)
        requests.append((p, p.request({"question": QUESTIONS[i % len(QUESTIONS)]})))
    outs = dict(smol4.generate_batch([r for _, r in requests]))
    assert sorted(outs) == list(range(len(requests)))
    for i, (p, r) in enumerate(requests):
        gen = outs[i]
        assert isinstance(gen, ft.Generation), gen
        if r.constraint is not None:
            pred = p.finish(gen)
            assert isinstance(pred.answer, int)  # forced: always parses
            if r.constraint.region is not None and r.constraint.region.least:  # thoughts_long, beside the others
                assert len(pred.thoughts) >= r.constraint.region.least and pred.closed_by == "budget"


def test_a_row_whose_constraint_dead_ends_fails_alone(smol4):
    good = ft.Predictor(Arithmetic, layout="thoughts_first", model=smol4, max_thinking_tokens=8)
    requests = [good.request({"question": q}) for q in QUESTIONS[:3]]
    # A region whose closer the grammar never accepts: once the budget is spent it cannot be closed.
    broken = Constraint('start: /[a-z ]*/ "!"\n', None, Region(open="", end="!", close="?"))
    requests.insert(1, ft.Request(requests[0].messages, broken, ft.GenerateOptions(max_thinking_tokens=2)))
    outs = dict(smol4.generate_batch(requests))
    assert isinstance(outs[1], ft.ConstraintError)
    assert all(isinstance(outs[i], ft.Generation) for i in (0, 2, 3))
    assert all(isinstance(good.finish(outs[i]).answer, int) for i in (0, 2, 3))


def test_sampled_rows_follow_their_seed(smol4):
    p = ft.Predictor(Arithmetic, layout="direct", model=smol4, temperature=1.0)
    rows = [{"question": QUESTIONS[0], "seed": s} for s in (1, 2, 1, 2)]
    raws = [r.raw for r in p.batch(rows)]
    assert raws[0] == raws[2] and raws[1] == raws[3]


def test_a_killed_parallel_run_resumes_with_every_row_once(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {i} plus {i + 3}?", "answer": 2 * i + 3}) + "\n"
                            for i in range(16)))
    args = ["eval", "--data", str(data), "--inputs", "question", "--output", "answer", "--metric", "numeric",
            "-m", "smollm2-135m", "--parallel", "4", "--layouts", "thoughts_first", "--thinking-budgets", "48",
            "--quiet"]
    db = tmp_path / "runs" / "q.db"
    kill_after_results(args, tmp_path, db, 5, seconds=300)
    with sqlite3.connect(db) as con:
        first = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert 5 <= first < 16
    res = cli(*args, "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["arms"][0]["n"] == 16
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT row_key) FROM results").fetchone() == (16, 16)
        assert con.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 16


def test_a_rows_prompt_is_split_the_same_whatever_rows_run_beside_it(smol4):
    """llama.cpp's logits depend on how a prompt is split between decode calls, so the shared prefix an arm's
    rows reuse ends where the last message's text starts: beside copies of itself or beside other rows, a row's
    own part is the same tokens (measured on Qwen, another split changed replies). One row alone goes the
    one-at-a-time path."""
    p = ft.Predictor(Arithmetic, layout="direct", model=smol4)
    lengths = {}
    for name, questions in (("copies", QUESTIONS[:1] * 4), ("others", QUESTIONS[:4]),
                            ("alike", ["What is 12 times 3?", "What is 12 times 4?"])):
        p.batch([{"question": q} for q in questions])
        lengths[name] = len(smol4.decoder().prefix)
    prompt, _ = smol4.prompt_tokens(p.messages(question=QUESTIONS[0]))
    own = smol4.llm.detokenize(prompt[lengths["copies"]:]).decode()
    assert len(set(lengths.values())) == 1, lengths
    assert own.startswith("question: " + QUESTIONS[0]), own  # the row's own part: its last message's text on


def test_local_specs_take_parallel_and_batch_invariant():
    from firsttoken.backends import model_key, parse_spec

    spec = parse_spec("smollm2-135m?parallel=4&batch_invariant=1")
    assert (spec.backend, spec.target, spec.options.parallel, spec.options.batch_invariant) == (
        ft.LlamaCpp, "smollm2-135m", 4, True)
    assert model_key("smollm2-135m?parallel=4&batch_invariant=0") == "smollm2-135m"
    # other kernels, other results: kept apart in a store (parallel is scheduling, not identity)
    assert model_key("smollm2-135m?batch_invariant=1&parallel=4") == "smollm2-135m?batch_invariant=1"
    with pytest.raises(ft.ConfigError, match="option batch_invariant='maybe'.*bool"):
        parse_spec("smollm2-135m?batch_invariant=maybe")
    with pytest.raises(ft.ConfigError, match="unknown option 'paralel'"):
        parse_spec("smollm2-135m?paralel=4")


def test_batch_invariant_needs_a_model_firsttoken_loads_and_the_tiled_kernel_off(smol, monkeypatch):
    with pytest.raises(ft.ConfigError, match="needs firsttoken to load the model"):
        ft.LlamaCpp(llm=smol.llm, batch_invariant=True)
    monkeypatch.setenv("GGML_CPU_TILED_MM", "1")
    with pytest.raises(ft.ConfigError, match="GGML_CPU_TILED_MM=1"):
        ft.load("smollm2-135m", batch_invariant=True)
