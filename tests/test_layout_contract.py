"""One contract for every layout x syntax x signature: render -> grammar accepts -> parse round-trips."""

from __future__ import annotations

import json

import jsonschema
import pytest

import firsttoken as ft
from firsttoken import _types

from .grammar import accepts
from .signatures import EXAMPLES, builtin_arms, least, reasoning_for

REASONING = 'First {"a": 1} then [[ ## x ## ]] and </thi nk> "quoted" \\ back\nslash, line two'
ARMS = builtin_arms()


@pytest.mark.parametrize("sig", list(EXAMPLES), ids=lambda s: s.__name__)
@pytest.mark.parametrize("name,syntax", ARMS)
def test_round_trip(name, syntax, sig):
    layout = ft.get_layout(name, syntax)
    outputs = EXAMPLES[sig]
    reasoning = reasoning_for(name, syntax, REASONING) if layout.has_reasoning else None
    reply = layout.render(sig, outputs, reasoning, {"explanation": "Because it is."})
    parsed = layout.parse(sig, reply)
    assert parsed.outputs == outputs
    assert parsed.reasoning == reasoning
    assert not parsed.order_violated
    constraint = layout.constraint(sig)
    assert accepts(constraint.lark, reply), reply
    if constraint.json_schema is not None:
        jsonschema.validate(json.loads(reply), constraint.json_schema)
        first = next(iter(constraint.json_schema["properties"]))
        assert first == ("thoughts" if name == "thoughts_first" else next(iter(sig.output_fields)))
        assert constraint.json_schema["required"][0] == first


@pytest.mark.parametrize("sig", list(EXAMPLES), ids=lambda s: s.__name__)
@pytest.mark.parametrize("name,syntax", ARMS)
def test_grammar_and_schema_reject_invalid(name, syntax, sig):
    layout = ft.get_layout(name, syntax)
    constraint = layout.constraint(sig)
    ok = reasoning_for(name, syntax, "ok") if layout.has_reasoning else None
    good = layout.render(sig, EXAMPLES[sig], ok, {"explanation": "e"})
    assert accepts(constraint.lark, good)
    assert not accepts(constraint.lark, "")
    assert not accepts(constraint.lark, good[:-2])  # truncated
    assert not accepts(constraint.lark, good + "\nHope this helps!")  # chatter after the answer
    if constraint.region is None or constraint.region.open:
        assert not accepts(constraint.lark, "Sure! " + good)  # chatter before the reply
    first = next(iter(sig.output_fields))
    bad = dict(EXAMPLES[sig])
    bad[first] = {"not": "valid"} if not isinstance(bad[first], dict) else "not an object"
    if not isinstance(EXAMPLES[sig][first], str):
        wrong = layout.render(sig, bad, ok or "ok", {"explanation": "e"})
        assert not accepts(constraint.lark, wrong)
        if constraint.json_schema is not None:
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(json.loads(wrong), constraint.json_schema)


@pytest.mark.parametrize("name,syntax", [a for a in ARMS if least(*a)])
def test_a_reasoning_minimum_is_held_by_every_grammar(name, syntax):
    """thoughts_long: the string cannot close before its minimum, in the local grammar and the servers' ones."""
    from .grammar import gbnf_accepts

    layout = ft.get_layout(name, syntax)
    n = least(name, syntax)
    for sig in EXAMPLES:
        short, enough = ("a" * (n - 1), "a" * n)
        constraint = layout.constraint(sig)
        assert not accepts(constraint.lark, layout.render(sig, EXAMPLES[sig], short))
        assert accepts(constraint.lark, layout.render(sig, EXAMPLES[sig], enough))
        assert constraint.region.least == n and constraint.json_schema is None  # minLength is not held everywhere
        for dialect in ("lark", "gbnf"):
            grammar = constraint.grammar(dialect, 2000)
            check = accepts if dialect == "lark" else gbnf_accepts
            assert not check(grammar, layout.render(sig, EXAMPLES[sig], short)), dialect
            assert check(grammar, layout.render(sig, EXAMPLES[sig], enough)), dialect


def test_hand_worked_thoughts_first_json():
    """The founding example, written out by hand."""
    from .signatures import Products

    layout = ft.get_layout("thoughts_first")
    reply = '{"thoughts": "A blender is used in a kitchen.", "category": "Kitchen-Accessories"}'
    parsed = layout.parse(Products, reply)
    assert parsed.outputs == {"category": "kitchen-accessories"}  # letter case forgiven, value canonical
    assert parsed.reasoning == "A blender is used in a kitchen."
    assert layout.constraint(Products).region == ft.Region(open='{"thoughts": "', end='"', close='"',
                                                           json_string=True)


def test_unknown_category_rejected_by_grammar_and_schema():
    from .signatures import Products

    for name, syntax in ARMS:
        layout = ft.get_layout(name, syntax)
        reply = layout.render(Products, {"category": "toys"}, "hmm", {"explanation": "e"})
        assert not accepts(layout.constraint(Products).lark, reply), (name, syntax)
        with pytest.raises(ft.ParseError, match="toys"):
            layout.parse(Products, reply)


def test_region_find_end_json_string_respects_escapes():
    region = ft.Region(open='{"thoughts": "', end='"', close='"', json_string=True)
    assert region.find_end('a \\" b') is None
    assert region.find_end('a \\\\" b') == 4
    assert ft.Region(open="<think>", end="</think>", close="</think>").find_end("ab</think>") == 2


def test_str_bounds_in_grammar():
    from .signatures import Everything

    lark = ft.get_layout("direct").constraint(Everything).lark
    assert f"{{0,{_types.STR_MAX}}}" in lark
