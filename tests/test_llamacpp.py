"""The real llama.cpp backend on the packaged SmolLM2-135M (installed by `make test`)."""

from __future__ import annotations

import pytest

import firsttoken as ft
from firsttoken.layouts import Parsed

from .signatures import CATEGORIES, Arithmetic, Extract, Person, Products, builtin_arms, least

pytestmark = pytest.mark.model

ARMS = builtin_arms()
REASONING_LAYOUTS = list(dict.fromkeys(n for n, s in ARMS if ft.get_layout(n, s).has_reasoning))
BUDGETED = [n for n in REASONING_LAYOUTS if not least(n)]  # the budget is a hard limit (no minimum length)
ROWS = {
    Products: ({"item_name": "Blender", "item_description": "A kitchen blender for smoothies"},
               lambda p: p.category in CATEGORIES),
    Arithmetic: ({"question": "Tom has 3 apples and buys 4 more. How many apples does he have?"},
                 lambda p: isinstance(p.answer, int)),
    Extract: ({"text": "Ann lives at 7 Main St. Tags: friend."}, lambda p: isinstance(p.person, Person)),
}
APPLES = ROWS[Arithmetic][0]


@pytest.mark.parametrize("sig", list(ROWS), ids=lambda s: s.__name__)
@pytest.mark.parametrize("name,syntax", ARMS)
def test_every_layout_constrained_gives_a_valid_typed_prediction(smol, name, syntax, sig):
    inputs, valid = ROWS[sig]
    pred = ft.Predictor(sig, layout=name, syntax=syntax, model=smol, max_thinking_tokens=48)(**inputs)
    assert valid(pred), pred.raw
    u = pred.usage
    assert u.prompt_tokens > 0 and u.answer_tokens > 0 and not u.estimated
    if ft.get_layout(name, syntax).has_reasoning:
        assert pred.closed_by in ("model", "end_of_turn", "budget") and u.reasoning_tokens <= max(48, least(name))
        assert pred.thoughts is not None
    else:
        assert u.reasoning_tokens == 0 and pred.closed_by is None


def test_a_minimum_length_outlasts_a_smaller_budget_and_the_answer_is_still_forced(smol):
    pred = ft.Predictor(Arithmetic, layout="thoughts_long", model=smol)(**APPLES, max_thinking_tokens=16)
    assert isinstance(pred.answer, int) and pred.closed_by == "budget"
    assert least("thoughts_long") <= len(pred.thoughts) < least("thoughts_long") + 40  # closed at the minimum
    assert pred.usage.reasoning_tokens > 16


@pytest.mark.parametrize("layout", BUDGETED)
def test_thinking_budget_bounds_the_reasoning(smol, layout):
    pred = ft.Predictor(Products, layout=layout, model=smol)(
        item_name="Lipstick", item_description="A long-lasting red lipstick", max_thinking_tokens=16)
    assert pred.category in CATEGORIES
    assert pred.usage.reasoning_tokens <= 16
    assert smol.count_tokens(pred.thoughts) <= 16 + 2  # a delimiter token may carry a character or two


def test_end_of_turn_while_reasoning_gets_the_answer_forced(smol):
    pred = ft.Predictor(Arithmetic, layout="work_then_answer", model=smol, max_thinking_tokens=400)(**APPLES)
    assert pred.closed_by == "end_of_turn"
    assert pred.usage.reasoning_tokens < 100  # not a 400-token ramble
    assert isinstance(pred.answer, int)


def test_greedy_decoding_reproduces(smol):
    p = ft.Predictor(Arithmetic, layout="thoughts_first", model=smol, max_thinking_tokens=32)
    assert p(**APPLES).raw == p(**APPLES).raw


def test_unconstrained_returns_the_raw_reply_and_reports_parse_failures(smol):
    outcomes = []
    for name, syntax in ARMS:
        p = ft.Predictor(Products, layout=name, syntax=syntax, model=smol, constrained=False,
                         max_thinking_tokens=48, max_answer_tokens=48)
        try:
            pred = p(**ROWS[Products][0])
            assert pred.raw and pred.category in CATEGORIES
            outcomes.append("parsed")
        except ft.ParseError as e:
            assert isinstance(e.raw, str) and e.usage is not None
            outcomes.append("parse_failure")
    assert "parse_failure" in outcomes  # the 135M model breaks formats when only asked


def test_answer_cut_by_the_token_limit_is_a_parse_failure(smol):
    p = ft.Predictor(Extract, layout="direct", model=smol, max_answer_tokens=3)
    with pytest.raises(ft.ParseError, match="cut at the token limit") as info:
        p(**ROWS[Extract][0])
    assert info.value.raw and "max_answer_tokens" in info.value.hint
    unconstrained = ft.Predictor(Arithmetic, layout="work_then_answer", model=smol, constrained=False,
                                 max_thinking_tokens=2, max_answer_tokens=2)
    with pytest.raises(ft.ParseError, match="cut at the token limit"):
        unconstrained(**APPLES)


def test_prompt_longer_than_the_context_window(smol):
    small = ft.LlamaCpp(smol.llm.model_path, n_ctx=256)
    with pytest.raises(ft.ContextOverflowError) as info:
        ft.Predictor(Products, model=small)(item_name="x " * 600, item_description="y")
    assert "n_ctx" in info.value.hint


def test_unsatisfiable_constraint_is_a_clear_error(smol):
    class Impossible(ft.Layout):
        name = "impossible"
        description = "an integer between 5 and 2"

        def format_instructions(self, sig):
            return ""

        def constraint(self, sig):
            return ft.Constraint('start: %json {"type": "integer", "minimum": 5, "maximum": 2}\n', None, None)

        def parse(self, sig, text, reasoning=None):
            return Parsed({"answer": int(text)})

    with pytest.raises(ft.ConstraintError, match="does not compile"):
        ft.Predictor(Arithmetic, layout=Impossible(), model=smol)(**APPLES)


def test_wraps_a_llama_the_user_built(smol):
    import llama_cpp

    llm = llama_cpp.Llama(model_path=smol.llm.model_path, n_ctx=2048, n_threads=2, verbose=False)
    pred = ft.Predictor(Arithmetic, layout="direct", model=ft.LlamaCpp(llm=llm))(**APPLES)
    assert isinstance(pred.answer, int)


@pytest.mark.parametrize("content,match", [(None, "not found"), (b"NOTGGUF" * 10, "not a GGUF"),
                                           ("truncated", "could not load")])
def test_bad_model_files(tmp_path, smol, content, match):
    path = tmp_path / "model.gguf"
    if content == "truncated":
        with open(smol.llm.model_path, "rb") as f:
            path.write_bytes(f.read(3_000_000))
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ft.ModelNotFoundError, match=match):
        ft.LlamaCpp(path)
