"""Each kind of bad reply raises ParseError carrying the raw text; merely noisy reasoning still parses."""

from __future__ import annotations

import pytest

import firsttoken as ft

from .signatures import Arithmetic, Products

NOISE = 'Try {"category": "beauty"} } { and [[ ## category ## ]] here'


def parse(name, text, sig=Products, syntax=None, reasoning=None):
    return ft.get_layout(name, syntax).parse(sig, text, reasoning)


@pytest.mark.parametrize("name,syntax,text,match", [
    ("direct", "json", '{"category": "beauty"', "invalid JSON"),
    ("direct", "json", "The category is beauty.", "invalid JSON"),
    ("direct", "json", '["beauty"]', "expected a JSON object"),
    ("thoughts_first", "json", '{"thoughts": "x", "category": "beauty", "category": "tops"}', "twice"),
    ("direct", "json", '{"category": "toys"}', "toys"),
    ("direct", "fields", "[[ ## category ## ]]\ntoys\n\n[[ ## completed ## ]]", "toys"),
    ("work_then_answer", None, "so\nAnswer: toys", "toys"),
    ("direct", "json", "{}", "missing output field 'category'"),
    ("thoughts_first", "json", '{"category": "beauty"}', "missing field 'thoughts'"),
    ("answer_then_explain", "fields", "[[ ## category ## ]]\nbeauty\n\n[[ ## completed ## ]]", "explanation"),
    ("direct", "json", '{"category": "beauty", "price": 3}', "unexpected field 'price'"),
    ("think_then_answer", None, '{"category": "beauty"}', "does not start with <think>"),
    ("think_then_answer", None, '<think>hmm {"category": "beauty"}', "never closed"),
    ("work_then_answer", None, "I think it is beauty.", "no line starting with 'Answer:'"),
    ("work_then_answer", None, "x\nAnswer: beauty\nAnswer: tops", "text after"),
    ("direct", "fields", "Sure! [[ ## category ## ]]\nbeauty", "text before"),
])
def test_bad_reply(name, syntax, text, match):
    with pytest.raises(ft.ParseError, match=match) as info:
        parse(name, text, syntax=syntax)
    assert info.value.raw == text


@pytest.mark.parametrize("name,syntax", [(n, s) for n in ft.layout_names() for s in ft.get_layout(n).syntaxes])
@pytest.mark.parametrize("text", ["", "   \n "])
def test_empty_reply(name, syntax, text):
    with pytest.raises(ft.ParseError, match="empty reply|does not start|missing") as info:
        parse(name, text, syntax=syntax)
    assert info.value.raw == text


def test_int_answer_rejects_words_and_symbols():
    for text in ("x\nAnswer: eighteen", "x\nAnswer: $18", "x\nAnswer: 18.5"):
        with pytest.raises(ft.ParseError, match="expected an integer"):
            parse("work_then_answer", text, Arithmetic)
    with pytest.raises(ft.ParseError, match="expected an integer"):
        parse("direct", '{"answer": "18"}', Arithmetic)
    with pytest.raises(ft.ParseError, match="expected an integer"):
        parse("direct", '{"answer": true}', Arithmetic)


def test_noisy_reasoning_parses_where_it_is_split_off_first():
    thoughts = ft.get_layout("thoughts_first").render(Products, {"category": "tops"}, NOISE)
    assert parse("thoughts_first", thoughts).outputs == {"category": "tops"}
    think = f"<think>\n{NOISE}\n</think>\n" + '{"category": "tops"}'
    assert parse("think_then_answer", think).reasoning == NOISE
    work = f"{NOISE}\nAnswer: tops"
    assert parse("work_then_answer", work).outputs == {"category": "tops"}


def test_marker_inside_fields_reasoning_is_a_parse_error():
    text = f"[[ ## thoughts ## ]]\n{NOISE}\n\n[[ ## category ## ]]\ntops\n\n[[ ## completed ## ]]"
    with pytest.raises(ft.ParseError, match="appears twice") as info:
        parse("thoughts_first", text, syntax="fields")
    assert info.value.raw == text


def test_lenient_only_where_safe():
    fenced = '```json\n{"thoughts": "t", "category": "BEAUTY"}\n```'
    assert parse("thoughts_first", fenced).outputs == {"category": "beauty"}
    assert parse("direct", '  {"category": "beauty"}\n\n').outputs == {"category": "beauty"}
    with pytest.raises(ft.ParseError):
        parse("direct", 'Here you go: {"category": "beauty"}')


def test_order_violation_is_flagged_not_rejected():
    parsed = parse("thoughts_first", '{"category": "beauty", "thoughts": "after the fact"}')
    assert parsed.outputs == {"category": "beauty"} and parsed.order_violated
    fields = "[[ ## category ## ]]\nbeauty\n\n[[ ## thoughts ## ]]\nlate\n\n[[ ## completed ## ]]"
    assert parse("thoughts_first", fields, syntax="fields").order_violated


def test_reasoning_delivered_separately():
    parsed = parse("think_then_answer", '{"category": "beauty"}', reasoning="server thinking")
    assert parsed.reasoning == "server thinking"
    parsed = parse("direct", '{"category": "beauty"}', reasoning="server thinking")
    assert parsed.reasoning == "server thinking"
