"""The Predictor over the scripted backend: typed outputs, usage, options, errors."""

from __future__ import annotations

import pytest

import firsttoken as ft

from .signatures import Arithmetic, Products


def test_prediction_has_typed_outputs_reasoning_and_usage():
    model = ft.Scripted(['{"thoughts": "2 + 2 = 4", "answer": 4}'])
    pred = ft.Predictor(Arithmetic, layout="thoughts_first", model=model)(question="2+2?")
    assert pred.answer == 4 and pred.thoughts == "2 + 2 = 4"
    assert pred.raw == '{"thoughts": "2 + 2 = 4", "answer": 4}'
    assert pred.usage.estimated  # the scripted backend only estimates
    assert pred.usage.reasoning_tokens > 0 and pred.usage.answer_tokens > 0
    assert pred.usage.completion_tokens == pred.usage.reasoning_tokens + pred.usage.answer_tokens
    messages = model.calls[0]
    assert messages[0]["role"] == "system" and "question: 2+2?" in messages[-1]["content"]


def test_backend_counts_are_used_as_given():
    gen = ft.Generation(text="work\nAnswer: 7", prompt_tokens=50, completion_tokens=12, reasoning_tokens=3,
                        seconds=0.5, closed_by="model")
    pred = ft.Predictor(Arithmetic, layout="work_then_answer", model=ft.Scripted([gen]))(question="q")
    assert pred.usage == ft.Usage(prompt_tokens=50, reasoning_tokens=3, answer_tokens=9, seconds=0.5)
    assert pred.closed_by == "model"


def test_parse_failure_raises_with_raw_and_usage():
    p = ft.Predictor(Products, layout="direct", model=ft.Scripted(["It is beauty."]))
    with pytest.raises(ft.ParseError) as info:
        p(item_name="lipstick", item_description="red")
    assert info.value.raw == "It is beauty." and info.value.usage.answer_tokens > 0


def test_backend_error_is_not_a_parse_error():
    p = ft.Predictor(Products, layout="direct", model=ft.Scripted([ConnectionError("down")]))
    with pytest.raises(ft.BackendError, match="down"):
        p(item_name="a", item_description="b")


def test_options_default_and_per_call():
    seen = []

    def reply(messages):
        return '{"answer": 1}'

    class Spy(ft.Scripted):
        def generate(self, request):
            seen.append((request.constraint, request.options))
            return super().generate(request)

    p = ft.Predictor(Arithmetic, layout="direct", model=Spy(reply), max_thinking_tokens=64, temperature=0.5)
    p(question="q")
    p(question="q", max_thinking_tokens=8, constrained=False)
    assert seen[0][1].max_thinking_tokens == 64 and seen[0][1].temperature == 0.5
    assert seen[0][0] is not None and seen[0][0].lark.startswith("start:")
    assert seen[1][1].max_thinking_tokens == 8 and seen[1][1].temperature == 0.5
    assert seen[1][0] is None  # unconstrained: no constraint sent


@pytest.mark.parametrize("kwargs,match", [
    ({"max_thinking_tokens": -1}, "max_thinking_tokens"),
    ({"temprature": 0.5}, "temprature"),
])
def test_bad_options_fail_loudly(kwargs, match):
    with pytest.raises(ft.ConfigError, match=match):
        ft.Predictor(Arithmetic, model=ft.Scripted([]), **kwargs)


def test_bad_calls():
    p = ft.Predictor(Arithmetic, model=ft.Scripted([]))
    with pytest.raises(ft.ConfigError, match="missing input 'question'"):
        p()
    with pytest.raises(ft.ConfigError, match="'qestion' is neither an input"):
        p(qestion="x")
    with pytest.raises(ft.ConfigError, match="unknown layout 'nope'"):
        ft.Predictor(Arithmetic, layout="nope", model=ft.Scripted([]))
    with pytest.raises(ft.ConfigError, match="no syntax 'fields'"):
        ft.Predictor(Arithmetic, layout="work_then_answer", syntax="fields", model=ft.Scripted([]))
    with pytest.raises(ft.ConfigError, match="needs a model"):
        ft.Predictor(Arithmetic)


def test_output_field_colliding_with_layout_field_is_refused():
    class Noted(ft.Signature):
        """x"""

        text: str = ft.InputField()
        thoughts: str = ft.OutputField()

    with pytest.raises(ft.ConfigError, match="collides") as info:
        ft.Predictor(Noted, layout="thoughts_first", model=ft.Scripted([]))
    assert "rename" in info.value.hint
    ft.Predictor(Noted, layout="direct", model=ft.Scripted([]))  # no collision there


def test_demos_become_prior_turns_before_the_row():
    demos = [{"question": "1+1?", "answer": 2, "reasoning": "one and one"}]
    model = ft.Scripted(['{"thoughts": "t", "answer": 3}'])
    ft.Predictor(Arithmetic, layout="thoughts_first", model=model, demos=demos)(question="1+2?")
    roles = [m["role"] for m in model.calls[0]]
    assert roles == ["system", "user", "assistant", "user"]
    assert model.calls[0][2]["content"] == '{"thoughts": "one and one", "answer": 2}'


def test_scripted_is_built_through_the_registry():
    model = ft.build_backend("scripted", replies=['{"answer": 5}'])
    assert ft.Predictor(Arithmetic, layout="direct", model=model)(question="q").answer == 5
    with pytest.raises(ft.ConfigError, match="unknown backend"):
        ft.build_backend("nope")


def test_user_layout_registers_like_the_builtins(restore_registries):
    from firsttoken.layouts import Parsed

    @ft.register_layout
    class Shout(ft.Layout):
        name = "shout"
        description = "the answer in capitals"

        def format_instructions(self, sig):
            return "Shout the answer."

        def constraint(self, sig):
            return ft.Constraint('start: /[A-Z]+/\n', None, None)

        def render(self, sig, outputs, reasoning=None, extras=None):
            return str(next(iter(outputs.values()))).upper()

        def parse(self, sig, text, reasoning=None):
            return Parsed({"category": text.strip().lower()})

    assert "shout" in ft.layout_names()
    pred = ft.Predictor(Products, layout="shout", model=ft.Scripted(["TOPS"]))(item_name="a", item_description="b")
    assert pred.category == "tops"
