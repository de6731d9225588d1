"""Every layout constrained on a server: the GBNF and bounded Lark each layout writes, the exact request bodies
vLLM and SGLang receive (a recording stub on loopback), and honest labels for arms whose constraint a
schema mode cannot carry. The real llama.cpp llama-server runs every layout in tests/test_llama_server.py."""

from __future__ import annotations

import json
import random
import sqlite3

import llguidance
import pytest

import firsttoken as ft
from firsttoken._options import GenerateOptions
from firsttoken.layouts import _gbnf

from .grammar import accepts
from .servers import start_stub
from .signatures import EXAMPLES, Everything, Products, builtin_arms
from .test_eval import cli

_BYTES = llguidance.LLTokenizer("byte")
REASONING = "Compare the words.\n\nBlank lines, <tags>, [[ brackets ]], \"quotes\" and \\ are fine."


def gbnf_accepts(gbnf: str, text: str) -> bool:
    """llguidance reading the GBNF, byte by byte (a second engine besides llama-server's own)."""
    grammar = llguidance.grammar_from("gbnf", gbnf)
    assert not llguidance.LLMatcher.validate_grammar(grammar, _BYTES)
    matcher = llguidance.LLMatcher(_BYTES, grammar, log_level=0)
    tokens = _BYTES.tokenize_str(text)
    return matcher.try_consume_tokens(tokens) == len(tokens) and matcher.is_accepting()


def reply(layout: ft.Layout, sig: type, reasoning: str) -> str:
    extras = {"explanation": "because it is"} if "explanation" in layout.own_fields else None
    return layout.render(sig, EXAMPLES[sig], reasoning if layout.has_reasoning else None, extras)


def region_length(layout: ft.Layout, sig: type, text: str) -> int:
    region = layout.constraint(sig).region
    body = text[text.index(region.open) + len(region.open):]
    return region.find_end(body)


@pytest.mark.parametrize("sig", [Products, Everything], ids=["labels", "every-type"])
@pytest.mark.parametrize("name,syntax", builtin_arms())
@pytest.mark.parametrize("dialect", ["gbnf", "lark"])
def test_every_layout_has_a_bounded_server_grammar_that_takes_its_own_replies(dialect, name, syntax, sig):
    layout = ft.get_layout(name, syntax)
    grammar = layout.constraint(sig).grammar(dialect, 120)
    check = gbnf_accepts if dialect == "gbnf" else accepts
    assert check(grammar, reply(layout, sig, REASONING)), grammar
    if layout.has_reasoning:  # the region's own text (what the layout writes around the reasoning counts)
        pad = region_length(layout, sig, reply(layout, sig, ""))
        assert check(grammar, reply(layout, sig, "x" * (120 - pad)))  # the bound itself
        assert not check(grammar, reply(layout, sig, "x" * (121 - pad)))  # one over: refused
    wrong = reply(layout, sig, REASONING).replace("kitchen-accessories", "kitchen")
    assert sig is not Products or not check(grammar, wrong)  # a label outside the list is refused


@pytest.mark.parametrize("name,syntax", [(n, s) for n, s in builtin_arms() if ft.get_layout(n, s).has_reasoning])
def test_the_reasoning_cannot_contain_the_marker_that_ends_it(name, syntax):
    layout = ft.get_layout(name, syntax)
    region = layout.constraint(Products).region
    if region.json_string:
        return  # a JSON string: an unescaped quote ends it, which the JSON grammar already says
    grammar = layout.constraint(Products).grammar("gbnf", 500)
    assert not gbnf_accepts(grammar, reply(layout, Products, f"first{region.end} then more"))


@pytest.mark.parametrize("marker", ["</think>", "\nAnswer:", "aab", "abab", "[[ ## x ## ]]"])
def test_until_takes_exactly_the_texts_whose_first_marker_is_at_the_end(marker):
    g = _gbnf.Gbnf()
    grammar = g.render(_gbnf.until(g, "r", marker, 1000))
    alphabet = sorted(set(marker)) + ["z"]
    rng = random.Random(0)
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9))) + (marker if rng.random() < .6 else "")
        body = text[: -len(marker)] if text.endswith(marker) else None
        # the text before the marker holds no marker and does not end in a part of one (the price of the bound)
        expected = body is not None and marker not in body and not any(marker.startswith(body[i:])
                                                                        for i in range(len(body)))
        assert gbnf_accepts(grammar, text) == expected, repr(text)


# --- the exact request bodies, on a recording stub ------------------------------------------------------
ENGINES = {  # mode, engine -> where the grammar goes, and how the engine reads it (as its own code does)
    ("lark", "vllm"): (lambda body: body["structured_outputs"]["grammar"], "grammar"),
    ("ebnf", "vllm"): (lambda body: body["structured_outputs"]["grammar"], "gbnf"),
    ("lark", "sglang"): (lambda body: body["ebnf"], "ebnf"),
    ("ebnf", "sglang"): (lambda body: body["ebnf"], "gbnf"),
    ("gbnf", "vllm"): (lambda body: body["grammar"], "gbnf"),  # llama-server; the engine option is not used
}


@pytest.fixture(scope="module")
def recorder(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "bodies.jsonl"
    proc, url = start_stub('{"category": "beauty"}', record=path)
    yield url, path
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("mode,engine", list(ENGINES))
@pytest.mark.parametrize("name,syntax", builtin_arms())
def test_request_bodies_have_each_engines_documented_shape(recorder, mode, engine, name, syntax):
    url, path = recorder
    path.write_text("")
    backend = ft.OpenAICompatible(f"{url}/v1", "m", schema_mode=mode, engine=engine, max_retries=0)
    layout = ft.get_layout(name, syntax)
    constraint = layout.constraint(Products)
    options = GenerateOptions(max_thinking_tokens=50, max_answer_tokens=100)
    backend.generate(ft.Request([{"role": "user", "content": "q"}], constraint, options))
    (body,) = [json.loads(line) for line in path.read_text().splitlines()]
    where, reads_as = ENGINES[(mode, engine)]
    grammar = where(body)
    dialect = "lark" if mode == "lark" else "gbnf"
    expected = constraint.grammar(dialect, 200)  # 4 characters per token of the thinking budget
    assert grammar == ("%llguidance {}\n" + expected if mode == "lark" else expected)
    # the engine can read it: vLLM's guidance backend and SGLang's llguidance backend call grammar_from
    assert not llguidance.LLMatcher.validate_grammar(llguidance.grammar_from(reads_as, grammar), _BYTES)
    others = {"response_format", "grammar", "ebnf", "structured_outputs"} - {next(iter(set(body) & {
        "grammar", "ebnf", "structured_outputs"}))}
    assert not others & set(body)  # one constraint field, nothing else that constrains
    assert body["max_tokens"] == (200 + 100 if layout.has_reasoning else 100)
    assert backend.enforced(constraint) == mode


def test_json_modes_carry_only_json_layouts_and_say_so(recorder):
    url, path = recorder
    backend = ft.OpenAICompatible(f"{url}/v1", "m", schema_mode="json_schema")
    for name, syntax in builtin_arms():
        constraint = ft.get_layout(name, syntax).constraint(Products)
        path.write_text("")
        backend.generate(ft.Request([{"role": "user", "content": "q"}], constraint, GenerateOptions()))
        (body,) = [json.loads(line) for line in path.read_text().splitlines()]
        carried = "response_format" in body
        assert carried == (syntax == "json" and name != "think_then_answer")
        assert backend.enforced(constraint) == ("json_schema" if carried else None)


def test_an_unknown_engine_is_refused_with_the_choices():
    with pytest.raises(ft.ConfigError, match="engine 'tgi'") as info:
        ft.OpenAICompatible("http://127.0.0.1:9/v1", "m", schema_mode="lark", engine="tgi")
    assert "vllm, sglang" in info.value.hint


# --- honest labels --------------------------------------------------------------------------------------
def test_a_prompt_only_arm_is_labelled_so_in_the_summary_the_html_and_the_store(recorder, tmp_path):
    url, _ = recorder
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"item": f"thing {i}", "category": "beauty"}) + "\n" for i in range(3)))
    store = tmp_path / "s.db"
    res = cli("eval", "--data", str(data), "--inputs", "item", "--output", "category", "--labels", "beauty,tops",
              "--metric", "label", "--quiet", "--json", "-m", f"openai:m@{url}/v1", "--layouts",
              "direct,think_then_answer", "--store", str(store), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    arms = {a["layout"]: a for a in json.loads(res.stdout)["arms"]}
    assert arms["direct"]["enforced"] == "json_schema" and arms["direct"]["constrained"] is True
    assert "[json_schema]" in arms["direct"]["label"]
    think = arms["think_then_answer"]
    assert think["enforced"] == "prompt-only" and think["constrained"] is False  # never "constrained"
    assert "prompt-only" in think["label"] and "constrained" not in think["label"]
    with sqlite3.connect(store) as db:
        stored = dict(db.execute("SELECT layout, enforced FROM arms").fetchall())
    assert stored == {"direct": "json_schema", "think_then_answer": None}
    html = tmp_path / "r.html"
    assert cli("report", str(store), "--html", str(html), cwd=tmp_path).returncode == 0
    assert "think_then_answer [prompt-only]" not in html.read_text()
    assert "think_then_answer prompt-only" in html.read_text()


def test_the_engine_is_part_of_a_models_identity_where_it_is_not_the_default():
    from firsttoken.backends import model_key

    base = "openai:m@http://127.0.0.1:9/v1"
    assert model_key(f"{base}?schema_mode=lark&engine=vllm") == f"{base}?schema_mode=lark"
    assert model_key(f"{base}?schema_mode=lark&engine=sglang") == f"{base}?engine=sglang&schema_mode=lark"


@pytest.mark.parametrize("name", ["thoughts_first", "answer_then_explain"])
def test_free_text_in_the_fields_syntax_holds_none_of_the_layouts_markers(name):
    """The parser reads each of the layout's markers as a field's start, so both grammars refuse one inside
    free text (an unknown marker name is plain text)."""
    layout = ft.get_layout(name, "fields")
    constraint = layout.constraint(Products)
    ok = layout.render(Products, EXAMPLES[Products], "see [[ ## x ## ]] here", {"explanation": "[[ ## y ## ]]"})
    bad = layout.render(Products, EXAMPLES[Products], "see [[ ## completed ## ]]", {"explanation": "[[ ## category ## ]]"})
    for check, grammar in ((accepts, constraint.lark), (gbnf_accepts, constraint.grammar("gbnf", 500))):
        assert check(grammar, ok) and not check(grammar, bad)
        with pytest.raises(ft.ParseError):
            layout.parse(Products, bad)
