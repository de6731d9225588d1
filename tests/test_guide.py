"""The decoding guide with llguidance's byte tokenizer and a hand-made "model": no weights needed."""

from __future__ import annotations

import llguidance
import numpy as np
import pytest

import firsttoken as ft
from firsttoken.backends._guide import Guide

from .signatures import Arithmetic, builtin_arms, least

TOK = llguidance.LLTokenizer("byte")
EOS = TOK.eos_token


def run(layout: str, want, budget: int, steps: int = 400):
    """Greedy decoding where ``want(text)`` names the byte (or EOS) the model prefers most."""
    constraint = ft.get_layout(layout).constraint(Arithmetic)
    matcher = llguidance.LLMatcher(TOK, llguidance.LLMatcher.grammar_from_lark(constraint.lark), log_level=0)
    guide = Guide(matcher, TOK, TOK.vocab_size, constraint.region, budget, {EOS},
                  lambda t: TOK.decode_bytes([t]))
    ids: list[int] = []
    for _ in range(steps):
        scores = np.zeros(TOK.vocab_size, dtype=np.float32)
        scores[ord("7")] = 1.0  # its second choice, whatever it is doing
        scores[EOS] = 0.5
        wanted = want(bytes(ids).decode("utf-8", "replace") if EOS not in ids else "")
        scores[EOS if wanted == "EOS" else ord(wanted)] = 5.0
        token = int(np.argmax(guide(ids, scores)))
        if token == EOS:
            break
        ids.append(token)
    return bytes(ids).decode(), guide



REASONING = list(dict.fromkeys(n for n, s in builtin_arms() if ft.get_layout(n, s).has_reasoning and s != "fields"))

@pytest.mark.parametrize("layout", REASONING)
def test_budget_closes_the_region_and_the_answer_is_still_forced(layout):
    # a layout with a minimum length (thoughts_long) is closed as soon as its grammar lets the region end
    n = max(5, least(layout))
    text, guide = run(layout, lambda text: "a", budget=5, steps=n + 100)
    assert guide.closed_by == "budget" and guide.reasoning_tokens == n
    parsed = ft.get_layout(layout).parse(Arithmetic, text)
    assert parsed.reasoning == "a" * n and isinstance(parsed.outputs["answer"], int)


@pytest.mark.parametrize("layout", REASONING)
def test_end_of_turn_while_reasoning_forces_the_answer(layout):
    n = least(layout)
    text, guide = run(layout, lambda text: "EOS" if text.endswith("hi") else "hi"[len(text) % 2 if "h" in text else 0],
                      budget=n + 300, steps=n + 400)
    assert guide.closed_by == "end_of_turn", text
    parsed = ft.get_layout(layout).parse(Arithmetic, text)
    if n:  # the model wanted to stop long before the minimum: closed at its first end of turn after it
        assert n <= guide.reasoning_tokens < n + 3 and len(parsed.reasoning) == guide.reasoning_tokens
    else:
        assert guide.reasoning_tokens < 10 and parsed.reasoning.endswith("hi")


def test_closer_waits_for_an_unfinished_json_escape():
    # The model writes a backslash when the budget runs out: '"' would be escaped, so the guide waits.
    text, guide = run("thoughts_first", lambda text: "\\" if text.endswith('"ab') else "ab"[len(text) % 2],
                      budget=3)
    assert guide.closed_by == "budget", text
    parsed = ft.get_layout("thoughts_first").parse(Arithmetic, text)
    assert parsed.reasoning == "ab\b"  # the escape was finished (as \b) before the quote closed the string
    assert isinstance(parsed.outputs["answer"], int)


def test_model_closing_the_region_itself():
    def want(text):
        if '"thoughts": "ok' in text and '", ' not in text:
            return '"'
        return "o" if text.endswith('"') else "k"

    text, guide = run("thoughts_first", want, budget=50)
    assert guide.closed_by == "model" and guide.reasoning_tokens == 2  # "o", "k"; the quote is a delimiter
    assert text.startswith('{"thoughts": "ok"')


def test_no_region_layout_counts_no_reasoning():
    text, guide = run("direct", lambda text: "7", budget=0)
    assert guide.closed_by is None and guide.reasoning_tokens == 0
    assert ft.get_layout("direct").parse(Arithmetic, text).outputs == {"answer": 777777777777777}


def test_dead_end_grammar_is_a_constraint_error():
    grammar = llguidance.LLMatcher.grammar_from_lark("start: A\nA: /a/ & /b/\n")  # matches nothing
    matcher = llguidance.LLMatcher(TOK, grammar, log_level=0)
    guide = Guide(matcher, TOK, TOK.vocab_size, None, 0, {EOS}, lambda t: TOK.decode_bytes([t]))
    with pytest.raises(ft.ConstraintError, match="allows no next token"):
        guide([], np.zeros(TOK.vocab_size, dtype=np.float32))
