"""llama.cpp's own llama-server on loopback with SmolLM2, every layout under schema_mode=gbnf (the products task's
signature, 24 labels). Two paths: the reasoning region closed by continuation (the default: the region, then the
answer continuing it; budgets 16 and 64 on 4 rows, every budget from one trace, and that trace against each budget
run alone, once per kind of region), and one request a reply (close_by=grammar), the region bounded by the grammar
(4 characters per token of the thinking budget; a run of partial markers is charged as the longest marker, so the
region's length in characters is at most that).

Sized for `make test` (issue 47): a handful of rows per layout, one server per configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import firsttoken as ft
from firsttoken.backends import resolve
from firsttoken.experiments._probe import SLACK, probe
from firsttoken.backends.engines import CHARS_PER_TOKEN
from firsttoken.layouts import _gbnf

from .engines import Gateway
from .helpers import cli, split_by_gateway
from .servers import start_llama_cpp_server
from .signatures import CATEGORIES, ROWS, Products, builtin_arms

pytestmark = pytest.mark.llama_server

BUDGET = 48  # tokens of thinking: a 192-character region, so that SmolLM2 reaches the bound on some rows
FEW = ROWS[:3]  # one request a reply: each layout's grammar on three rows


@pytest.fixture(scope="module")
def server():
    proc, url = start_llama_cpp_server(ft.load("smollm2-135m").llm.model_path)
    yield url
    proc.kill()
    proc.wait()


def region_forbidden(layout: ft.Layout) -> tuple[str, ...]:
    """The markers the reasoning may not hold besides its end: in the fields syntax, every field's."""
    end = layout.constraint(Products).region.end
    return tuple(m for m in layout._markers(Products) if m != end) if layout.syntax == "fields" else ()


@pytest.mark.parametrize("name,syntax", builtin_arms())
def test_every_layout_is_enforced_by_llama_server_in_one_request_with_the_reasoning_bounded(server, name, syntax):
    backend = ft.OpenAICompatible(f"{server}/v1", "smollm2", schema_mode="gbnf", max_retries=0, close_by="grammar",
                                  engine="llama-server")
    predictor = ft.Predictor(Products, layout=name, syntax=syntax, model=backend, max_thinking_tokens=BUDGET)
    assert backend.enforcement(predictor.layout.constraint(Products)) == "gbnf"
    for item_name, item_description in FEW:
        pred = predictor(item_name=item_name, item_description=item_description)  # a parse failure raises
        assert pred.category in CATEGORIES
        assert pred.generation.finish_reason == "stop"  # never cut by max_tokens
        if predictor.layout.has_reasoning:
            region = predictor.layout.constraint(Products).region
            if region.open == "<think>":  # the backend splits a leading <think> block off as reasoning
                text = pred.generation.reasoning
            else:
                body = pred.raw[pred.raw.index(region.open) + len(region.open):]
                text = body[: region.find_end(body)]
            if not region.json_string:  # a JSON string's bound counts characters (an escape as one)
                assert len(text) <= _gbnf.cost(text, region.end, region_forbidden(predictor.layout)) \
                    <= CHARS_PER_TOKEN * BUDGET


REGION_ARMS = [(n, s) for n, s in builtin_arms() if ft.get_layout(n, s).has_reasoning]
BUDGETS = (16, 64)
# One equality check per kind of region (the continuation path is shared by every layout): a JSON string, markers,
# no opener, a minimum length. thoughts_first/fields is markers again, as think_then_answer is.
KINDS = [("thoughts_first", "json"), ("think_then_answer", "json"), ("work_then_answer", "lines"),
         ("thoughts_long", "json")]


def requests(backend, name: str, syntax: str, rows: list[tuple[str, str]], budgets=BUDGETS) -> list[ft.Request]:
    predictor = ft.Predictor(Products, layout=name, syntax=syntax, model=backend)
    return [predictor.request({"item_name": n, "item_description": d, "max_thinking_tokens": b})
            for n, d in rows for b in budgets]


def replies(backend, reqs: list[ft.Request]) -> list:
    out = [None] * len(reqs)
    for i, gen in backend.generate_batch(reqs):
        assert isinstance(gen, ft.Generation), gen  # no backend error
        out[i] = gen
    return out


@pytest.mark.parametrize("name,syntax", REGION_ARMS)
def test_llama_server_closes_each_region_by_continuation_within_the_budget_in_its_own_tokens(server, name, syntax):
    """4 rows x budgets 16 and 64, every budget of a row from one trace: 0 parse failures, 0 replies cut, the
    reasoning within the budget in the server's tokens (its /tokenize; thoughts_long's 600-character minimum
    outlasts a small budget: its region then closes at the minimum exactly), and a grammar of a few KB whatever
    the budget (2,048 here)."""
    backend = resolve(f"openai:smollm2@{server}/v1?engine=llama-server&schema_mode=gbnf&max_retries=0")
    layout = ft.get_layout(name, syntax)
    constraint = layout.constraint(Products)
    assert backend.enforcement(constraint) == "gbnf+continuation"
    reqs = requests(backend, name, syntax, ROWS[:4])
    region = constraint.region
    closed = []
    for request, gen in zip(reqs, replies(backend, reqs)):
        budget = request.options.max_thinking_tokens
        layout.parse(Products, gen.text)  # a parse failure raises
        assert gen.finish_reason == "stop", gen.text  # never cut
        body = gen.text[len(region.open):]
        text = body[: region.find_end(body)]
        # a minimum that outlasts the budget: the region closes as soon as it may
        over = region.least and gen.closed_by == "budget" and region.length(text) == region.least
        assert gen.reasoning_tokens <= budget or over, (gen.reasoning_tokens, budget)
        if gen.closed_by == "model":  # the region as the model ended it, counted by the server's tokenizer
            assert backend.count_tokens(text) <= budget
        closed.append(gen.closed_by)
    print(name, syntax, {c: closed.count(c) for c in set(closed)})
    assert backend.counts_exactly
    for budget in (16, 2048):  # the grammar sent per request does not grow with the budget
        request = requests(backend, name, syntax, ROWS[:1], (budget,))[0]
        sizes = [len(backend.step(request.messages, "", grammar, budget, request)["extra_body"]["grammar"])
                 for grammar in constraint.split("gbnf", 0)]
        assert max(sizes) <= 4096, sizes


@pytest.mark.parametrize("name,syntax", KINDS)
def test_every_budget_from_one_trace_equals_each_budget_run_alone_on_llama_server(server, name, syntax):
    """Greedy, -np 1, without llama-server's prompt cache (it changes batch splits): the replies from one trace per
    row equal those of the two steps run alone at each budget, row for row in outcome and answer (2 rows x budgets
    16 and 64, once per kind of region)."""
    backend = resolve(f"openai:smollm2@{server}/v1?engine=llama-server&schema_mode=gbnf&max_retries=0"
                      '&extra_body={"cache_prompt":false}')
    layout = ft.get_layout(name, syntax)
    reqs = requests(backend, name, syntax, ROWS[:2])
    shared = replies(backend, reqs)
    alone = [backend.generate(r) for r in reqs]  # one request at a time: no family, no trace

    def outcome(gen):
        try:
            return layout.parse(Products, gen.text).outputs, gen.closed_by
        except ft.ParseError:
            return "parse failure", gen.closed_by
    assert [outcome(g) for g in shared] == [outcome(g) for g in alone]
    assert [g.text for g in shared] == [g.text for g in alone]


@pytest.fixture(scope="module")
def thinking_server():
    """llama-server with a thinking chat template (tests/templates/thinking.jinja: the prompt opens <think>)."""
    template = str(Path(__file__).parent / "templates" / "thinking.jinja")
    proc, url = start_llama_cpp_server(ft.load("smollm2-135m").llm.model_path,
                                       extra=("--jinja", "--chat-template-file", template))
    yield url
    proc.kill()
    proc.wait()


def test_a_thinking_budget_is_honoured_by_llama_server_and_every_answer_parses(thinking_server, smol):
    """thinking_budget_tokens per request: the model's own reasoning (returned apart) stays within the budget plus
    a closing tag's slack on 10 rows, and the answer after it parses (the grammar starts after </think>)."""
    budget = 16
    backend = resolve(f"openai:smollm2@{thinking_server}/v1?engine=llama-server&schema_mode=gbnf&model_thinking=on"
                      f"&model_thinking_tokens={budget}&max_retries=0")
    predictor = ft.Predictor(Products, layout="direct", model=backend)
    used = []
    for item_name, item_description in ROWS:
        pred = predictor(item_name=item_name, item_description=item_description)  # a parse failure raises
        assert pred.category in CATEGORIES and pred.generation.finish_reason == "stop"
        assert pred.generation.reasoning  # the model thought, and its thinking came back apart
        used.append(smol.count_tokens(pred.generation.reasoning))
    print("reasoning tokens per row:", used)
    assert max(used) <= budget + SLACK, used
    text = "Let me think: a pan is for cooking, so kitchen-accessories."
    assert backend.count_tokens(text) == smol.count_tokens(text) and backend.counts_exactly  # its /tokenize
    findings = {(f.check, f.outcome) for f in probe(backend, [("direct", "json")])}
    assert ("constraint", "held") in findings and ("model thinking tokens", "held") in findings
    # llama-server continues a final assistant message by default, returning it first (the probe strips it)
    assert ("continuation", "continues") in findings


def test_no_arm_is_labelled_enforced_whose_grammar_a_gateway_dropped_in_front_of_llama_server(server, tmp_path):
    """The real llama-server behind a gateway that drops every grammar over 1 KB (HTTP 200), products' 24 labels:
    each arm whose requests lost a grammar (the one request's, or either step's of a continuation) is prompt-only,
    even where SmolLM2, free of step 1's grammar, writes the layout's format of its own accord (the probe's marked
    grammar sees it); the arms whose grammars all passed are labelled by what enforced them. Two layouts, two
    syntaxes, two rows: one request's grammar dropped (answer_then_explain/fields), a continuation's step 1 dropped
    (thoughts_first/fields), and an arm of each path kept (their json syntax); every layout behind the gateway is
    tests/test_reports.py's (the llama-server stub)."""
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps({"item_name": n, "item_description": d, "category": c}) + "\n"
                            for (n, d), c in zip(ROWS[:2], CATEGORIES)))
    gateway = Gateway(server, limit=1024)
    with gateway as url:
        res = cli("eval", "--data", str(data), "--inputs", "item_name,item_description", "--output", "category",
                  "--labels", ",".join(CATEGORIES), "--metric", "label", "--quiet", "--json", "-m",
                  f"openai:smollm2@{url}/v1?engine=llama-server&schema_mode=gbnf&max_retries=0",
                  "--layouts", "answer_then_explain,thoughts_first", "--syntaxes", "json,fields",
                  "--thinking-budgets", "16", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    lost, kept = split_by_gateway(gateway, summary, "runs/items.db", tmp_path, rows=2)
    assert lost and kept
    assert all(arm["enforced"] in ("prompt-only", "unverified") for arm in lost), lost
    assert all(arm["enforced"].startswith("gbnf") for arm in kept), kept
