"""llama.cpp's own llama-server on loopback with SmolLM2: every layout under schema_mode=gbnf, on 10 product
catalogue rows each (the products task's signature, 24 labels): 0 parse failures, and the reasoning within the grammar's bound (4 characters per token of the
thinking budget; the grammar charges a run of partial markers as the longest marker, so the region's
length in characters is at most that). The server cannot close a region itself: the grammar does."""

from __future__ import annotations

from pathlib import Path

import pytest

import firsttoken as ft
from firsttoken.backends import resolve
from firsttoken.experiments._probe import SLACK, probe
from firsttoken.backends.openai_compat import CHARS_PER_TOKEN
from firsttoken.layouts import _gbnf

from .servers import start_llama_cpp_server
from .signatures import CATEGORIES, ROWS, Products, builtin_arms

BUDGET = 48  # tokens of thinking: a 192-character region, so that SmolLM2 reaches the bound on some rows


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


@pytest.mark.model
@pytest.mark.parametrize("name,syntax", builtin_arms())
def test_every_layout_is_enforced_by_llama_server_with_the_reasoning_bounded(server, name, syntax):
    backend = ft.OpenAICompatible(f"{server}/v1", "smollm2", schema_mode="gbnf", max_retries=0)
    predictor = ft.Predictor(Products, layout=name, syntax=syntax, model=backend, max_thinking_tokens=BUDGET)
    assert backend.enforcement(predictor.layout.constraint(Products)) == "gbnf"
    for item_name, item_description in ROWS:
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


@pytest.fixture(scope="module")
def thinking_server():
    """llama-server with a thinking chat template (tests/templates/thinking.jinja: the prompt opens <think>)."""
    template = str(Path(__file__).parent / "templates" / "thinking.jinja")
    proc, url = start_llama_cpp_server(ft.load("smollm2-135m").llm.model_path,
                                       extra=("--jinja", "--chat-template-file", template))
    yield url
    proc.kill()
    proc.wait()


@pytest.mark.model
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
