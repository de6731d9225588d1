"""A reasoning region closed by the client on a server, by continuation: each layout's reply as two grammars
(``Constraint.split``), how step 1's text is closed, the trace's cut at a smaller budget, and the request
bodies each engine receives (a recording stub on loopback). Real servers: tests/test_llama_server.py and
tests/test_vllm.py."""

from __future__ import annotations

import json
import random

import llguidance
import pytest

import firsttoken as ft
from firsttoken._backend import Generation
from firsttoken._options import GenerateOptions
from firsttoken.backends import _continue, resolve
from firsttoken.layouts import Region, _gbnf

from .grammar import accepts, gbnf_reader
from .helpers import eval_words
from .engines import EngineStub
from .servers import recording
from .signatures import EXAMPLES, Everything, Products, builtin_arms, least, reasoning_for

REGION_ARMS = [(n, s) for n, s in builtin_arms() if ft.get_layout(n, s).has_reasoning]
REASONING = "Compare the words.\n\nBlank lines, <tags>, [[ brackets ]], \"quotes\" and \\ are fine."


def halves(layout: ft.Layout, sig: type, reasoning: str) -> tuple[str, str, str]:
    """A rendered reply cut where the client cuts it: the opener, the region's text with its end, the rest."""
    text = layout.render(sig, EXAMPLES[sig], reasoning)
    region = layout.constraint(sig).region
    assert text.startswith(region.open)
    body = text[len(region.open):]
    end = region.find_end(body) + len(region.end)
    return region.open, body[:end], body[end:]


@pytest.mark.parametrize("sig", [Products, Everything], ids=["labels", "every-type"])
@pytest.mark.parametrize("name,syntax", REGION_ARMS)
@pytest.mark.parametrize("dialect", ["gbnf", "lark"])
def test_each_layout_splits_into_its_region_and_the_rest_and_the_two_take_its_own_replies(dialect, name, syntax,
                                                                                           sig):
    layout = ft.get_layout(name, syntax)
    first_grammar, rest_grammar = layout.constraint(sig).split(dialect, 0)
    check = (lambda g: gbnf_reader(g)) if dialect == "gbnf" else (lambda g: lambda t: accepts(g, t))
    in_region, after = check(first_grammar), check(rest_grammar)
    _, text, rest = halves(layout, sig, reasoning_for(name, syntax, REASONING))
    assert in_region(text + rest) and after(rest)  # the first: the rest may follow the region's end (a token
    # such as '",' holds both); the client cuts there
    assert in_region("".join(halves(layout, sig, "x" * (5000 + least(name, syntax)))[1:]))  # no length bound
    assert sig is not Products or not after(rest.replace("kitchen-accessories", "kitchen"))  # outside the list
    if least(name, syntax):
        assert not in_region("".join(halves(layout, sig, "x" * (least(name, syntax) - 1))[1:]))  # the minimum
    region = layout.constraint(sig).region
    if not region.json_string:  # its end, written early, ends it
        assert not in_region(f"first{region.end} then more{text}{rest}")
    # whatever the budget, a few KB
    assert max(len(first_grammar), len(rest_grammar)) < (8000 if sig is Everything else 4000)


@pytest.mark.parametrize("dialect", ["gbnf", "lark"])
def test_a_region_short_of_its_minimum_has_exactly_the_missing_characters_written_before_its_end(dialect):
    layout = ft.get_layout("thoughts_long")
    _, rest = layout.constraint(Products).split(dialect, 5)
    after = gbnf_reader(rest) if dialect == "gbnf" else (lambda t: accepts(rest, t))
    tail = ', "category": "beauty"}'
    assert after('abcde"' + tail) and after('a\\nbcd"' + tail)  # an escape counts as one
    assert not after('abcd"' + tail) and not after('abcdef"' + tail)


@pytest.mark.parametrize("marker", ["</think>", "\nAnswer:", "aab", "[[ ## x ## ]]"])
def test_unbounded_free_text_takes_exactly_the_texts_whose_first_marker_is_at_the_end(marker):
    g = _gbnf.Gbnf()
    check = gbnf_reader(g.render(_gbnf.until(g, "r", marker, None, ("[[ ## y ## ]]",))))
    alphabet = sorted(set(marker + "[[ ## y ## ]]")) + ["z"]
    rng = random.Random(7)
    seen = set()
    for _ in range(1000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) + (marker if rng.random() < .6 else "")
        body = text[: -len(marker)] if text.endswith(marker) else None
        if body:  # no run of a partial marker open where the marker starts (that much the grammar refuses)
            body += "z"
            text = body + marker
        expected = body is not None and marker not in body and "[[ ## y ## ]]" not in body
        seen.add(expected)
        assert check(text) == expected, repr(text)
    assert seen == {True, False}
    assert check("z" * 3000 + marker)  # any length


@pytest.mark.parametrize("body,cut,expected", [
    ('I think so." and more', True, ("I think so.", 'I think so."', 0, "model")),
    ("I think \\", True, ("I think ", 'I think "', 0, "budget")),
    ("I think \\u00", True, ("I think ", 'I think "', 0, "budget")),
    ("I think \\\\", True, ("I think \\\\", 'I think \\\\"', 0, "budget")),
    ("no end", False, ("no end", 'no end"', 0, "end_of_turn")),
])
def test_step_one_is_closed_where_the_model_ended_it_or_trimmed_and_closed_at_the_budget(body, cut, expected):
    region = Region(open='{"thoughts": "', end='"', close='"', json_string=True)
    got = _continue.close(region, body, cut)
    assert (got.reasoning, got.written, got.owed, got.closed_by) == expected


def test_a_cut_inside_a_marker_drops_the_marker_s_start_and_a_region_short_of_its_minimum_owes_the_rest():
    work = Region(open="", end="\nAnswer:", close="\nAnswer:")
    assert _continue.close(work, "6 * 7 = 42\nAns", True).written == "6 * 7 = 42\nAnswer:"
    long = Region(open='{"thoughts": "', end='"', close='"', json_string=True, least=10)
    got = _continue.close(long, "a\\nbc", True)
    assert (got.written, got.owed) == ("a\\nbc", 6)  # not closed: step 2 writes 6 more characters, then '"'


def test_a_smaller_budget_is_the_trace_cut_at_its_tokens_or_at_the_region_s_end_where_that_comes_first():
    region = Region(open="<think>", end="</think>", close="\n</think>")
    tokens = [b"a", b" b", b" c", b"</", b"think>"]
    trace = _continue.Trace(Generation(text="a b c</think>", completion_tokens=5, prompt_tokens=9), tokens)
    two = _continue.at_budget(trace, region, 2)
    assert (two.text, two.completion_tokens, two.finish_reason) == ("a b", 2, "length")
    five = _continue.at_budget(trace, region, 5)
    assert (five.text, five.completion_tokens, five.finish_reason) == ("a b c</think>", 5, "stop")
    assert _continue.at_budget(trace, region, 9).text == "a b c</think>"  # ended before the budget: the same
    split = _continue.Trace(Generation(text="é", completion_tokens=2), [b"\xc3", b"\xa9"])
    assert _continue.at_budget(split, region, 1).text == ""  # half a character is no character
    assert _continue.at_budget(_continue.Trace(trace.generation, None), region, 2) is None


# --- the exact request bodies of the two steps, on a recording stub -------------------------------------------
STEPS = {  # mode, engine -> where the grammar goes, how the engine reads it, the continuation fields it is sent
    ("lark", "vllm"): (lambda body: body["structured_outputs"]["grammar"], "grammar",
                       {"continue_final_message": True, "add_generation_prompt": False}),
    ("ebnf", "vllm"): (lambda body: body["structured_outputs"]["grammar"], "gbnf",
                       {"continue_final_message": True, "add_generation_prompt": False}),
    ("lark", "sglang"): (lambda body: body["ebnf"], "ebnf",
                         {"continue_final_message": True, "add_generation_prompt": False}),
    ("gbnf", "llama-server"): (lambda body: body["grammar"], "gbnf", {}),  # it continues a final message anyway
}


@pytest.fixture(scope="module")
def recorder(tmp_path_factory):
    with recording("It is zebulon.\" and on", tmp_path_factory.mktemp("rec")) as stub:
        yield stub


@pytest.mark.parametrize("budget", [50, 0])
@pytest.mark.parametrize("mode,engine", list(STEPS))
@pytest.mark.parametrize("name,syntax", REGION_ARMS)
def test_the_two_steps_send_the_region_then_its_continuation_with_each_engines_fields(recorder, mode, engine,
                                                                                        name, syntax, budget):
    url, path = recorder
    path.write_text("")
    backend = ft.OpenAICompatible(f"{url}/v1", "m", schema_mode=mode, engine=engine, max_retries=0)
    constraint = ft.get_layout(name, syntax).constraint(Products)
    region = constraint.region
    gen = backend.generate(ft.Request([{"role": "user", "content": "q"}], constraint,
                                      GenerateOptions(max_thinking_tokens=budget, max_answer_tokens=100)))
    bodies = [b for b in map(json.loads, path.read_text().splitlines()) if "messages" in b]  # not /tokenize
    where, reads_as, fields = STEPS[(mode, engine)]
    dialect = "lark" if mode == "lark" else "gbnf"
    wrap = (lambda g: "%llguidance {}\n" + g) if mode == "lark" else (lambda g: g)
    if budget:
        first = bodies.pop(0)
        assert first["max_tokens"] == budget  # the budget, in the server's tokens: every token is reasoning
        assert where(first) == wrap(constraint.split(dialect, 0)[0])
        if region.open:  # the opener written as the start of the assistant's message, continued
            assert first["messages"][-1] == {"role": "assistant", "content": region.open}
            assert {k: first.get(k) for k in fields} == fields
        else:  # nothing to continue: a plain request
            assert first["messages"][-1]["role"] == "user" and not {"continue_final_message"} & set(first)
    (second,) = bodies
    prefix = second["messages"][-1]["content"]
    owed = region.least if not budget else 0  # the stub's reply ends the region (real servers: at its minimum)
    assert where(second) == wrap(constraint.split(dialect, owed)[1])
    assert second["max_tokens"] == 100 + owed
    assert {k: second.get(k) for k in fields} == fields
    assert prefix.startswith(region.open)
    if budget and region.json_string:
        assert prefix == region.open + 'It is zebulon."'  # the model's own end of the region
        assert gen.closed_by == "model"
    elif not budget:
        assert prefix == region.open + ("" if owed else region.close) and gen.closed_by == "budget"
    assert gen.text.startswith(prefix) and gen.text.endswith("It is zebulon.\" and on")
    for grammar in (where(b) for b in (second, *([first] if budget else []))):
        assert not llguidance.LLMatcher.validate_grammar(llguidance.grammar_from(reads_as, grammar),
                                                         llguidance.LLTokenizer("byte"))
    assert backend.enforcement(constraint) == f"{mode}+continuation"


# --- the paths a run takes, on engine stubs ----------------------------------------------------------------------
def test_each_engine_takes_the_path_it_can_and_its_arms_and_the_probe_say_which(tmp_path):
    """A server that continues a message: two requests a row, the arm labelled lark+continuation, the probe saying
    so. A hosted API (it cannot continue): one request a row, labelled by its schema mode alone, and the probe names
    the path. A server that starts a new turn instead: the run stops with one line naming close_by=grammar."""
    layouts = ("--layouts", "thoughts_first,think_then_answer,work_then_answer", "--syntaxes", "json,lines")
    for sub in "abcd":
        (tmp_path / sub).mkdir()
    with EngineStub("vllm", thinks=False) as url:
        res = eval_words(tmp_path / "a", f"openai:m@{url}/v1?schema_mode=lark", *layouts)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert {a["enforced"] for a in summary["arms"]} == {"lark+continuation"}
    assert all(a["parse_failures"] == 0 and a["correct"] == 5 for a in summary["arms"]), summary["arms"]
    assert all("[lark+continuation]" in a["label"] for a in summary["arms"])
    found = next(f for f in next(iter(summary["probe"].values())) if f["check"] == "continuation")
    assert found["outcome"] == "continues" and "close by continuation: two requests a reply" in found["detail"]

    hosted = EngineStub("openai", thinks=False)
    with hosted as url:
        res = eval_words(tmp_path / "b", f"openai:m@{url}/v1?engine=openai&schema_mode=lark", *layouts)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert {a["enforced"] for a in summary["arms"]} == {"lark"}
    rows = [b for b in hosted.bodies if "question: word " in b["messages"][-1]["content"]]
    assert len(rows) == 15  # 5 rows x 3 arms: one request a row (the probe's are not rows)
    assert not any(b["messages"][-1]["role"] == "assistant" for b in hosted.bodies)  # never continued
    found = next(f for f in next(iter(summary["probe"].values())) if f["check"] == "continuation")
    assert found["outcome"] == "not offered" and "one request a reply" in found["detail"]

    with EngineStub("vllm", thinks=False, ignores={"continue_final_message"}) as url:
        res = eval_words(tmp_path / "c", f"openai:m@{url}/v1?schema_mode=lark", *layouts)
    assert res.returncode != 0
    assert "close the region by continuation" in res.stderr and "close_by=grammar" in res.stderr
    with EngineStub("vllm", thinks=False, ignores={"continue_final_message"}) as url:
        res = eval_words(tmp_path / "d", f"openai:m@{url}/v1?schema_mode=lark&close_by=grammar", *layouts)
    assert res.returncode == 0, res.stderr
    assert {a["enforced"] for a in json.loads(res.stdout)["arms"]} == {"lark"}


def test_close_by_continuation_where_it_cannot_be_is_one_line():
    for spec, why in [("engine=openai&schema_mode=lark", "cannot continue a message"),
                      ("schema_mode=json_schema", "carries no grammar to split"),
                      ("schema_mode=lark&model_thinking=on", "model_thinking=on")]:
        with pytest.raises(ft.ConfigError, match=why):
            resolve(f"openai:m@http://127.0.0.1:9/v1?{spec}&close_by=continuation")


def test_a_rows_budgets_share_one_region_request_on_a_server_and_each_has_its_own_answer(tmp_path):
    """--thinking-budgets on a server: per row one region request at the largest budget (with logprobs: its tokens
    give each smaller budget's cut), then one answer request per budget; every arm parses."""
    stub = EngineStub("vllm", thinks=False)
    with stub as url:
        res = eval_words(tmp_path, f"openai:m@{url}/v1?schema_mode=lark", "--layouts", "think_then_answer",
                         "--thinking-budgets", "1,2,64", "--no-probe")
    assert res.returncode == 0, res.stderr
    arms = json.loads(res.stdout)["arms"]
    assert [(a["budget"], a["parse_failures"], a["correct"]) for a in arms] == [(1, 0, 5), (2, 0, 5), (64, 0, 5)]
    region = [b for b in stub.bodies if b["messages"][-1] == {"role": "assistant", "content": "<think>"}]
    assert len(region) == 5 and all(b["logprobs"] and b["max_tokens"] == 64 for b in region)  # one trace a row
    answers = [b for b in stub.bodies if b["messages"][-1]["role"] == "assistant" and b not in region]
    assert len(answers) == 15
    closes = sorted(b["messages"][-1]["content"] for b in answers)[:5]
    assert all(c == "<think>\nso \n</think>" for c in closes)  # budget 1: the trace's first token, closed
