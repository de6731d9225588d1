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
from firsttoken.backends import resolve
from firsttoken.layouts import _gbnf

from .engines import EngineStub
from .grammar import accepts, gbnf_accepts, gbnf_reader
from .servers import recording
from .signatures import EXAMPLES, Everything, Products, builtin_arms, least, reasoning_for
from .helpers import cli

_BYTES = llguidance.LLTokenizer("byte")
REASONING = "Compare the words.\n\nBlank lines, <tags>, [[ brackets ]], \"quotes\" and \\ are fine."


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
    bound = 120 + least(name, syntax)  # a layout with a minimum length (thoughts_long) is bounded above it
    grammar = layout.constraint(sig).grammar(dialect, bound)
    check = gbnf_accepts if dialect == "gbnf" else accepts
    text = reasoning_for(name, syntax, REASONING)
    assert check(grammar, reply(layout, sig, text)), grammar
    if layout.has_reasoning:  # the region's own text (what the layout writes around the reasoning counts)
        pad = region_length(layout, sig, reply(layout, sig, ""))
        assert check(grammar, reply(layout, sig, "x" * (bound - pad)))  # the bound itself
        assert not check(grammar, reply(layout, sig, "x" * (bound + 1 - pad)))  # one over: refused
    wrong = reply(layout, sig, text).replace("kitchen-accessories", "kitchen")
    assert sig is not Products or not check(grammar, wrong)  # a label outside the list is refused


@pytest.mark.parametrize("name,syntax", [(n, s) for n, s in builtin_arms() if ft.get_layout(n, s).has_reasoning])
def test_the_reasoning_cannot_contain_the_marker_that_ends_it(name, syntax):
    layout = ft.get_layout(name, syntax)
    region = layout.constraint(Products).region
    if region.json_string:
        return  # a JSON string: an unescaped quote ends it, which the JSON grammar already says
    grammar = layout.constraint(Products).grammar("gbnf", 500)
    assert not gbnf_accepts(grammar, reply(layout, Products, f"first{region.end} then more"))


@pytest.mark.parametrize("most", [200, 11])
@pytest.mark.parametrize("marker", ["</think>", "\nAnswer:", "aab", "abab", "[[ ## x ## ]]"])
def test_until_takes_exactly_the_texts_whose_first_marker_is_at_the_end_within_the_bound(marker, most):
    g = _gbnf.Gbnf()
    accepts = gbnf_reader(g.render(_gbnf.until(g, "r", marker, most)))
    alphabet = sorted(set(marker)) + ["z"]
    rng = random.Random(most)
    seen = set()
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16))) + (marker if rng.random() < .6 else "")
        body = text[: -len(marker)] if text.endswith(marker) else None
        # the text before the marker holds no marker, does not end in a part of one (the price of the bound),
        # and costs at most the bound (runs of partial markers no longer than the marker)
        expected = body is not None and marker not in body and not any(marker.startswith(body[i:])
                                                                        for i in range(len(body)))
        price = _gbnf.cost(body, marker) if expected else None
        expected = expected and price is not None and price <= most
        seen.add(expected)
        assert accepts(text) == expected, repr(text)
    assert seen == {True, False}


def test_the_cost_of_free_text_is_at_least_its_length_and_near_markers_pay_the_most():
    marker, others = "[[ ## completed ## ]]", ("[[ ## explanation ## ]]",)
    assert _gbnf.cost("plain words, no brackets", marker, others) == len("plain words, no brackets")
    assert _gbnf.cost("a [b] c", marker, others) == 7  # "[b" is a two-character run
    loop = "[[ ## explanation ## ] ]" * 3  # what SmolLM2 wrote once the exact marker was refused
    assert _gbnf.cost(loop, marker, others) == 3 * (len(others[0]) + 1)  # a run "[[ ## explanation ## ] ", "]"
    assert _gbnf.cost("x [[ ## explanation ## ]] y", marker, others) is None  # a forbidden marker
    assert _gbnf.cost("[[[[[[[[[[[[[[[[[[[[[[[[[", marker, others) is None  # a run longer than any marker
    for text in ["", "a\nb", "[[ ## completed ## ] x", "x[" * 40, "\n\n[[ # x"]:
        price = _gbnf.cost(text, marker, others)
        assert price is None or price >= len(text)


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
    with recording('{"category": "beauty"}', tmp_path_factory.mktemp("rec")) as stub:
        yield stub


@pytest.mark.parametrize("mode,engine", list(ENGINES))
@pytest.mark.parametrize("name,syntax", builtin_arms())
def test_one_request_bodies_have_each_engines_documented_shape(recorder, mode, engine, name, syntax):
    """The one-request path (close_by=grammar; the two steps: tests/test_continuation.py)."""
    url, path = recorder
    path.write_text("")
    backend = ft.OpenAICompatible(f"{url}/v1", "m", schema_mode=mode, engine=engine, max_retries=0,
                                  close_by="grammar")
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
    # the region's bound (4 characters a token of the 50-token budget), or its minimum length where larger
    assert body["max_tokens"] == (max(200, least(name, syntax)) + 100 if layout.has_reasoning else 100)
    assert backend.enforcement(constraint) == mode
    assert backend.enforcement(constraint) == ft.OpenAICompatible(f"{url}/v1", "m", schema_mode=mode, engine=engine) \
        .enforcement(constraint).removesuffix("+continuation")


def test_json_modes_carry_only_json_layouts_and_say_so(recorder):
    url, path = recorder
    backend = ft.OpenAICompatible(f"{url}/v1", "m", schema_mode="json_schema")
    for name, syntax in builtin_arms():
        constraint = ft.get_layout(name, syntax).constraint(Products)
        path.write_text("")
        backend.generate(ft.Request([{"role": "user", "content": "q"}], constraint, GenerateOptions()))
        (body,) = [json.loads(line) for line in path.read_text().splitlines()]
        carried = "response_format" in body
        # think_then_answer is not one JSON object; thoughts_long's minimum length is not in a JSON Schema
        assert carried == (syntax == "json" and name not in ("think_then_answer", "thoughts_long"))
        assert backend.enforcement(constraint) == ("json_schema" if carried else None)


def test_an_unknown_engine_is_refused_with_the_choices():
    with pytest.raises(ft.ConfigError, match="engine 'tgi'") as info:
        ft.OpenAICompatible("http://127.0.0.1:9/v1", "m", schema_mode="lark", engine="tgi")
    assert "use one of vllm, sglang, llama-server, ollama, openai" in str(info.value)


# --- honest labels --------------------------------------------------------------------------------------
def test_a_prompt_only_arm_is_labelled_so_in_the_summary_the_html_and_the_store(recorder, tmp_path):
    url, _ = recorder
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"item": f"thing {i}", "category": "beauty"}) + "\n" for i in range(3)))
    store = tmp_path / "s.db"
    res = cli("eval", "--data", str(data), "--inputs", "item", "--output", "category", "--labels", "beauty,tops",
              "--metric", "label", "--quiet", "--json", "-m", f"openai:m@{url}/v1", "--layouts",
              "direct,think_then_answer", "--store", str(store), "--no-probe", cwd=tmp_path)  # labels as claimed
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


def test_an_arm_enforced_by_our_gbnf_is_a_new_arm_when_that_grammar_changes(monkeypatch):
    """A store never answers for a server arm with results an earlier GBNF enforced (its arm and its calls
    carry the grammar's version); arms no GBNF enforces keep their identity whatever the version."""
    from firsttoken.experiments import Arm, build_grid
    from firsttoken.experiments import _identity

    def arm(model: str) -> Arm:
        return build_grid("t", [model], ["think_then_answer"], ["json"], [True], [64])[0]

    def again(a: Arm) -> Arm:  # a fresh Arm (its id is cached), as a later run would make it
        return Arm(**{f: getattr(a, f) for f in ("task", "model", "layout", "syntax", "constrained", "budget",
                                                  "demos", "demo_rows", "enforced")})

    base = "openai:m@http://127.0.0.1:9/v1"
    arms = {mode: arm(f"{base}?schema_mode={mode}&close_by=grammar") for mode in ("gbnf", "ebnf", "lark")}
    local = arm("smollm2-135m")
    assert [a.enforced for a in [*arms.values(), local]] == ["gbnf", "ebnf", "lark", "llguidance"]
    # closed by continuation (the default where it can be): the path joins the identity, with the GBNF's version
    assert arm(f"{base}?schema_mode=lark").enforced == "lark+continuation"
    assert _identity.grammar_version("lark+continuation") == "continuation-1"
    assert _identity.grammar_version("gbnf+continuation") == f"gbnf-{_gbnf.VERSION}+continuation-1"
    options = GenerateOptions()
    before = {k: again(a).id for k, a in {**arms, "local": local}.items()}
    calls = [_identity.call_hash("m", [], "lark", options, _identity.grammar_version(e)) for e in ("gbnf", "lark")]
    assert arms["gbnf"].record()["config"]["server_grammar"] == f"gbnf-{_gbnf.VERSION}"
    assert "server_grammar" not in local.record()["config"]
    monkeypatch.setattr(_gbnf, "VERSION", _gbnf.VERSION + 1)
    after = {k: again(a).id for k, a in {**arms, "local": local}.items()}
    assert before["gbnf"] != after["gbnf"] and before["ebnf"] != after["ebnf"]
    assert before["lark"] == after["lark"] and before["local"] == after["local"]
    now = [_identity.call_hash("m", [], "lark", options, _identity.grammar_version(e)) for e in ("gbnf", "lark")]
    assert calls[0] != now[0] and calls[1] == now[1]
    assert _identity.call_hash("m", [], "lark", options) == now[1]  # no GBNF: the hash as before this field


def test_a_new_engine_is_one_class_and_a_registration(restore_registries):
    """An engine that takes its grammar and its thinking budget in fields of its own: one subclass of Engine,
    registered, and ``?engine=`` shapes requests through it (the transport, retries and schema modes unchanged)."""
    from firsttoken.backends.engines import Engine, register_engine

    @register_engine
    class Mine(Engine):
        name = "mine"
        budget_field = "max_thinking"

        def grammar_fields(self, mode, text):
            return {"my_grammar": {"syntax": mode, "text": text}}

    backend = resolve("openai:m@http://127.0.0.1:9/v1?engine=mine&schema_mode=lark&model_thinking=on"
                      "&model_thinking_tokens=8")
    sent = backend.request([{"role": "user", "content": "x"}], ft.get_layout("direct").constraint(Products),
                           ft.GenerateOptions())
    extra = sent["extra_body"]
    assert extra["max_thinking"] == 8 and extra["chat_template_kwargs"] == {"enable_thinking": True}
    assert extra["my_grammar"]["syntax"] == "lark" and extra["my_grammar"]["text"].startswith("%llguidance")
    assert backend.takes_budget and "structured_outputs" not in extra


def test_an_option_added_to_the_server_backend_reaches_the_spec_the_flag_and_the_request(tmp_path, monkeypatch,
                                                                                         restore_registries):
    """One field in Options (and the line of request() that sends it): ``?top_k=`` and ``--model-option top_k=``
    reach it, typed, with nothing else touched; it is part of the model's identity."""
    from typer.testing import CliRunner

    from firsttoken.cli import app

    class TopK(ft.OpenAICompatible):
        name = "topk"

        class Options(ft.OpenAICompatible.Options):
            top_k: int | None = None  # the field

        def request(self, messages, constraint, options):
            kwargs = super().request(messages, constraint, options)
            if self.options.top_k is not None:  # the line that sends it
                kwargs.setdefault("extra_body", {})["top_k"] = self.options.top_k
            return kwargs

    ft.register_backend(TopK)
    data = tmp_path / "words.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}", "answer": "zebulon"}) + "\n" for i in range(2)))
    monkeypatch.chdir(tmp_path)
    stub = EngineStub("vllm", thinks=False)
    try:
        for i, extra in enumerate((["-m", f"topk:m@{stub.url}/v1?top_k=20"],
                                   ["-m", f"topk:m@{stub.url}/v1", "--model-option", "top_k=20"])):
            res = CliRunner().invoke(app, ["eval", "--data", str(data), "--inputs", "question", "--output", "answer",
                                           "--labels", "zebulon,quillet", "--layouts", "direct", "--no-probe",
                                           "--quiet", "--json", "--store", f"s{i}.db", *extra])
            assert res.exit_code == 0, res.output
            assert json.loads(res.stdout)["arms"][0]["model"].endswith("?top_k=20")
    finally:
        stub.close()
    assert len(stub.bodies) == 4 and all(b["top_k"] == 20 for b in stub.bodies)
    bad = CliRunner().invoke(app, ["eval", "--data", str(data), "--inputs", "question", "--output", "answer",
                                   "-m", f"topk:m@{stub.url}/v1?top_k=many", "--layouts", "direct", "--quiet"])
    assert bad.exit_code != 0 and "top_k" in str(bad.exception)
