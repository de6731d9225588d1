"""llama.cpp's own llama-server on loopback with SmolLM2: every layout under schema_mode=gbnf, on 10 products
rows each: 0 parse failures, and the reasoning within the grammar's bound (4 characters per token of the
thinking budget; the bound counts chunks, where a run of partial markers and the character after it is
one). The server cannot close a region itself: the grammar does."""

from __future__ import annotations

import pytest

import firsttoken as ft
from firsttoken.backends.openai_compat import CHARS_PER_TOKEN
from firsttoken.layouts import _gbnf
from firsttoken.tasks import get_task

from .servers import start_llama_cpp_server
from .signatures import builtin_arms

BUDGET = 48  # tokens of thinking: a 192-character region, so that SmolLM2 reaches the bound on some rows


@pytest.fixture(scope="module")
def server():
    proc, url = start_llama_cpp_server(ft.load("smollm2-135m").llm.model_path)
    yield url
    proc.kill()
    proc.wait()


@pytest.mark.model
@pytest.mark.parametrize("name,syntax", builtin_arms())
def test_every_layout_is_enforced_by_llama_server_with_the_reasoning_bounded(server, name, syntax):
    task = get_task("products")
    backend = ft.OpenAICompatible(f"{server}/v1", "smollm2", schema_mode="gbnf", max_retries=0)
    predictor = ft.Predictor(task.signature, layout=name, syntax=syntax, model=backend, max_thinking_tokens=BUDGET)
    assert backend.enforced(predictor.layout.constraint(task.signature)) == "gbnf"
    labels = set(task.labels)
    for row in task.rows(limit=10):
        pred = predictor(**row.inputs)  # a parse failure raises ParseError: the test fails
        assert pred.category in labels
        assert pred.generation.finish_reason == "stop"  # never cut by max_tokens
        if predictor.layout.has_reasoning:
            region = predictor.layout.constraint(task.signature).region
            if region.open == "<think>":  # the backend splits a leading <think> block off as reasoning
                text = pred.generation.reasoning
            else:
                body = pred.raw[pred.raw.index(region.open) + len(region.open):]
                text = body[: region.find_end(body)]
            if not region.json_string:  # a JSON string's bound counts characters (an escape as one)
                assert _gbnf.chunks(text, region.end) <= CHARS_PER_TOKEN * BUDGET
