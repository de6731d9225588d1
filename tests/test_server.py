"""The OpenAI-compatible backend against real servers on loopback: the stub from bench/ (fast, for the
client's own logic) and llama-cpp-python's server with SmolLM2 (every layout, and faults in between)."""

from __future__ import annotations

import json
import time

import pytest

import firsttoken as ft
from firsttoken._options import GenerateOptions

from .servers import FaultProxy, start_llama_server, start_stub
from .signatures import CATEGORIES, Arithmetic, Products, builtin_arms

ANSWER = '{"answer": 4}'


def backend(url: str, **kw) -> ft.OpenAICompatible:
    kw.setdefault("backoff", 0.05)
    return ft.OpenAICompatible(f"{url}/v1", "stub", **kw)


def test_keyless_server_works_and_counts_come_from_usage(stub, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pred = ft.Predictor(Arithmetic, layout="direct", model=backend(stub))(question="2+2?")
    assert pred.answer == 4 and pred.usage.prompt_tokens == 10 and pred.usage.answer_tokens == 5


@pytest.mark.parametrize("mode", ["json_schema", "json_object", "grammar", "none"])
def test_schema_modes_shape_the_request(mode):
    b = ft.OpenAICompatible("http://127.0.0.1:9/v1", "m", schema_mode=mode)
    constraint = ft.get_layout("thoughts_first").constraint(Arithmetic)
    kwargs = b.request([{"role": "user", "content": "x"}], constraint, GenerateOptions(max_thinking_tokens=64))
    assert kwargs["max_tokens"] == 64 + 1024
    if mode == "json_schema":
        schema = kwargs["response_format"]["json_schema"]["schema"]
        assert list(schema["properties"])[0] == "thoughts" and schema["required"][0] == "thoughts"
    elif mode == "json_object":
        assert kwargs["response_format"]["type"] == "json_object" and "schema" in kwargs["response_format"]
    elif mode == "grammar":
        assert "thoughts" in kwargs["extra_body"]["grammar"] and "response_format" not in kwargs
    else:
        assert "response_format" not in kwargs and "extra_body" not in kwargs
    # Layouts whose reply is not one JSON object send no schema in any mode.
    work = b.request([], ft.get_layout("work_then_answer").constraint(Arithmetic), GenerateOptions())
    assert "response_format" not in work and "grammar" not in work.get("extra_body", {})


def test_unknown_schema_mode_is_refused():
    with pytest.raises(ft.ConfigError, match="schema_mode"):
        ft.OpenAICompatible("http://127.0.0.1:9/v1", "m", schema_mode="xml")


def test_retries_honour_retry_after_and_are_counted(stub):
    proxy = FaultProxy(stub, plan=["429", "500", "reset"], retry_after="1")
    start = time.time()
    gen = backend(proxy.url).generate(ft.Request([{"role": "user", "content": "q"}], None, GenerateOptions()))
    assert gen.text == ANSWER and gen.retries == 3
    assert time.time() - start >= 1.0  # waited for Retry-After
    assert proxy.log == ["429", "500", "reset", "ok"]


def test_other_4xx_is_not_retried(stub):
    proxy = FaultProxy(stub, plan=["400"])
    with pytest.raises(ft.BackendError, match="HTTP 400") as info:
        backend(proxy.url).generate(ft.Request([{"role": "user", "content": "q"}], None, GenerateOptions()))
    assert proxy.log == ["400"] and "UnreachableError" not in type(info.value).__name__


def test_timeouts_and_truncated_bodies_are_retried(stub):
    proxy = FaultProxy(stub, plan=["stall", "truncate"], stall=2.0)
    gen = backend(proxy.url, timeout=0.5).generate(ft.Request([{"role": "user", "content": "q"}], None, GenerateOptions()))
    assert gen.text == ANSWER and gen.retries == 2


def test_gives_up_after_max_retries_with_a_backend_error(stub):
    proxy = FaultProxy(stub, plan=["500"] * 10)
    with pytest.raises(ft.BackendError, match="gave up after 3 attempts"):
        backend(proxy.url, max_retries=2).generate(ft.Request([{"role": "user", "content": "q"}], None, GenerateOptions()))


def test_thinking_model_reasoning_is_split_off_and_counted():
    proc, url = start_stub(ANSWER, reasoning="Two and two make four.")
    try:
        pred = ft.Predictor(Arithmetic, layout="direct", model=backend(url))(question="2+2?")
        assert pred.answer == 4 and pred.thoughts == "Two and two make four."
        assert pred.usage.reasoning_tokens == 7 and pred.usage.answer_tokens == 5  # as the server reported
        assert not pred.usage.estimated
    finally:
        proc.kill()
    proc, url = start_stub("<think>\nadd {them}\n</think>\n" + ANSWER)
    try:
        pred = ft.Predictor(Arithmetic, layout="direct", model=backend(url))(question="2+2?")
        assert pred.answer == 4 and pred.thoughts == "add {them}" and pred.usage.estimated
    finally:
        proc.kill()


def test_api_key_never_leaks(stub, tmp_path, monkeypatch):
    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    proxy = FaultProxy(stub, plan=["400", "500", "500", "500"])
    b = backend(proxy.url, max_retries=1)
    messages = []
    for _ in range(2):
        try:
            b.generate(ft.Request([{"role": "user", "content": "q"}], None, GenerateOptions()))
        except ft.FirstTokenError as e:
            messages.append(str(e) + repr(e) + e.hint)
    assert messages and not any(secret in m for m in messages)
    assert secret not in repr(b)
    from firsttoken.experiments import evaluate, file_task
    from firsttoken.experiments._report import html_page, markdown
    from firsttoken.experiments import Store

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i}+2", "answer": 4}) + "\n" for i in range(3)))
    summary = evaluate(file_task(data, ["question"], "answer", "numeric"), [f"openai:stub@{stub}/v1"],
                       layouts=["direct"], store=tmp_path / "r.db")
    store = Store(tmp_path / "r.db")
    page = html_page([summary], store)
    store.close()
    assert summary["arms"][0]["accuracy"] == 1.0
    for text in (json.dumps(summary), markdown(summary), page):
        assert secret not in text
    for path in tmp_path.glob("r.db*"):
        assert secret.encode() not in path.read_bytes()


def test_batch_returns_results_in_input_order(stub):
    p = ft.Predictor(Arithmetic, layout="direct", model=backend(stub, parallel=8))
    results = p.batch([{"question": f"{i}?"} for i in range(40)])
    assert len(results) == 40 and all(r.answer == 4 for r in results)


# --- the real server --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llama_server():
    proc, url = start_llama_server(ft.load("smollm2-135m").llm.model_path)
    yield url
    proc.kill()
    proc.wait()


ARMS = builtin_arms()


@pytest.mark.model
@pytest.mark.parametrize("name,syntax", ARMS)
def test_every_layout_end_to_end_against_llama_cpp_python_server(llama_server, name, syntax):
    model = ft.OpenAICompatible(f"{llama_server}/v1", "smollm2", schema_mode="json_object")
    p = ft.Predictor(Products, layout=name, syntax=syntax, model=model, max_thinking_tokens=64)
    constrained_by_server = p.constraint.json_schema is not None
    try:
        pred = p(item_name="Blender", item_description="A kitchen blender for smoothies")
    except ft.ParseError as e:
        assert not constrained_by_server, f"the server's schema should have made this parse: {e.raw!r}"
        return
    assert pred.category in CATEGORIES and pred.usage.prompt_tokens > 0


@pytest.mark.model
def test_fault_proxy_batch_loses_and_duplicates_nothing(llama_server):
    proxy = FaultProxy(llama_server, rate=0.35, seed=7, stall=3.0)
    model = ft.OpenAICompatible(f"{proxy.url}/v1", "smollm2", schema_mode="json_object", timeout=2.0,
                                parallel=4, max_retries=6, backoff=0.05, max_backoff=0.5)
    p = ft.Predictor(Arithmetic, layout="direct", model=model)
    rows = [{"question": f"What is {i % 10} + {i % 10}?"} for i in range(50)]
    results = p.batch(rows)
    assert len(results) == 50
    faulted = sum(f != "ok" for f in proxy.log) / len(proxy.log)
    assert faulted >= 0.30, faulted
    answers: dict[str, set[int]] = {}
    for row, r in zip(rows, results):
        assert isinstance(r, (ft.Prediction, ft.BackendError)), r
        if isinstance(r, ft.Prediction):
            answers.setdefault(row["question"], set()).add(r.answer)
    assert all(len(v) == 1 for v in answers.values())  # greedy: a row never got another row's reply
    assert sum(isinstance(r, ft.Prediction) for r in results) >= 45
