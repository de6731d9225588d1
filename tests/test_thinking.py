"""Thinking models on servers: each engine's request fields, reasoning returned apart or R1-style, the probe that
names each engine's silent failures, arms labelled as the probe found them, hosted APIs' refused fields."""

from __future__ import annotations

import json
import sqlite3

import pytest

import firsttoken as ft
from firsttoken.backends import model_key, parse_spec, resolve
from firsttoken.experiments._probe import Probe, probe

from .engines import REASONING_WORDS, EngineStub
from .helpers import cli, eval_words



def test_r1_style_replies_parse_and_their_reasoning_is_kept(tmp_path):
    """A template that opens <think> makes the reply close a block it never opened: split, not a parse failure."""
    with EngineStub("llama-server", r1=True) as url:
        stub_spec = f"openai:m@{url}/v1?engine=llama-server&schema_mode=gbnf&model_thinking=on&model_thinking_tokens=16"
        res = eval_words(tmp_path, stub_spec, "--layouts", "direct")
    assert res.returncode == 0, res.stderr
    arm = json.loads(res.stdout)["arms"][0]
    assert (arm["n"], arm["correct"], arm["parse_failures"]) == (5, 5, 0)
    assert arm["mean_reasoning_tokens"] == 16  # the budget the stub honoured, as the server counted it
    with sqlite3.connect(tmp_path / "runs" / "words.db") as db:
        assert {r[0] for r in db.execute("SELECT reasoning FROM calls")} == {" ".join(["hmm"] * 16)}


def test_reasoning_comes_back_from_any_of_the_fields_engines_use():
    for field in ("reasoning_content", "reasoning", "thinking"):
        backend = ft.OpenAICompatible("http://127.0.0.1:9/v1", "m")

        class Message:
            content, model_extra = '{"answer": 4}', {field: "because"}

        class Choice:
            message, finish_reason = Message, "stop"

        class Response:
            choices, usage = [Choice], None

        gen = backend._generation(Response, 0.1, 0)
        assert (gen.text, gen.reasoning) == ('{"answer": 4}', "because"), field


# engine -> what a thinking request with a budget of 16 carries, for a constrained direct layout
BODIES = {
    "vllm": ({"thinking_token_budget": 16, "chat_template_kwargs": {"enable_thinking": True},
              "structured_outputs": "grammar"}, "lark", "max_tokens"),
    "sglang": ({"custom_params": {"thinking_budget": 16}, "chat_template_kwargs": {"enable_thinking": True},
                "ebnf": "grammar"}, "ebnf", "max_tokens"),
    "llama-server": ({"thinking_budget_tokens": 16, "reasoning_format": "deepseek",
                      "chat_template_kwargs": {"enable_thinking": True}, "grammar": "grammar"}, "gbnf", "max_tokens"),
    "ollama": ({"response_format": "schema"}, "json_schema", "max_tokens"),
    "openai": ({"response_format": "schema", "reasoning_effort": "low"}, "json_schema", "max_completion_tokens"),
}


@pytest.mark.parametrize("engine", list(BODIES))
def test_each_engine_is_sent_its_own_thinking_fields_and_nothing_else(engine):
    expected, mode, limit = BODIES[engine]
    stub = EngineStub(engine)
    effort = "&reasoning_effort=low" if engine == "openai" else ""
    try:
        backend = resolve(stub.spec(schema_mode=mode, model_thinking="on", model_thinking_tokens=16) + effort)
        ft.Predictor(Probe, layout="direct", model=backend)(question="q")
        body = stub.bodies[-1]
    finally:
        stub.close()
    for key, value in expected.items():
        assert key in body, key
        if value not in ("grammar", "schema"):
            assert body[key] == value, key
    assert limit in body and ({"max_tokens", "max_completion_tokens"} - {limit}).isdisjoint(body)
    assert not [k for k in body if k.startswith("guided_")]  # vLLM ignores them with HTTP 200
    thinking = {"thinking_token_budget", "custom_params", "thinking_budget_tokens", "reasoning_format"}
    assert thinking & set(body) == thinking & set(expected)  # only where the engine takes it


def test_thinking_off_and_auto_send_what_each_engine_takes():
    for engine, off in (("vllm", {"chat_template_kwargs": {"enable_thinking": False}}),
                        ("ollama", {"reasoning_effort": "none"}), ("openai", {})):
        stub = EngineStub(engine, thinks=False)
        try:
            ft.Predictor(Probe, layout="direct", model=resolve(stub.spec(model_thinking="off")))(
                question="q")
            ft.Predictor(Probe, layout="direct", model=resolve(stub.spec()))(question="q")
        finally:
            stub.close()
        sent_off, sent_auto = stub.bodies
        assert {k: sent_off[k] for k in off} == off
        assert not {"chat_template_kwargs", "reasoning_effort"} & set(sent_auto)  # auto: the server's default


SILENT = [  # (engine stub, its spec options, the finding the probe must report)
    (dict(engine="vllm", ignores={"structured_outputs"}), dict(schema_mode="lark"),
     ("constraint", "direct/json", "broken")),
    (dict(engine="vllm", json_in_reasoning=True), dict(schema_mode="json_schema"),
     ("reasoning apart", "direct/json", "in reasoning")),
    (dict(engine="llama-server", grammar_off_when_thinking=True), dict(schema_mode="gbnf"),
     ("constraint", "direct/json", "broken")),
    (dict(engine="ollama", ignores={"response_format"}), dict(schema_mode="json_schema"),
     ("constraint", "direct/json", "broken")),
    (dict(engine="sglang", ignores={"custom_params"}), dict(schema_mode="ebnf"),
     ("model thinking tokens", "-", "exceeded")),
    (dict(engine="vllm", ignores={"chat_template_kwargs"}), dict(schema_mode="lark"),
     ("model thinking off", "-", "still thinking")),
]


@pytest.mark.parametrize("stub_kw,options,finding", SILENT, ids=lambda x: str(x)[:40])
def test_the_probe_names_each_engines_silent_failure(stub_kw, options, finding):
    kw = dict(stub_kw)
    stub = EngineStub(kw.pop("engine"), **kw)
    try:
        healthy = EngineStub(stub.engine)
        try:
            good = {(f.check, f.layout, f.outcome) for f in probe(
                resolve(healthy.spec(**options, model_thinking="on", model_thinking_tokens=16)), [("direct", "json")])}
        finally:
            healthy.close()
        found = {(f.check, f.layout, f.outcome) for f in probe(
            resolve(stub.spec(**options, model_thinking="on", model_thinking_tokens=16)), [("direct", "json")])}
    finally:
        stub.close()
    assert finding in found
    assert finding not in good and ("constraint", "direct/json", "held") in good  # the same engine, healthy


def test_a_grammar_that_writes_think_on_a_vllm_thinking_model_is_named_broken_with_where_the_reply_went():
    """As real vLLM does (tests/test_vllm.py): the layout's literal <think> clashes with the model's own <think>
    token and the request ends with an empty content; the probe says so instead of "reply: " and nothing."""
    with EngineStub("vllm") as url:
        findings = probe(resolve(f"openai:m@{url}/v1?schema_mode=lark&model_thinking=on&model_thinking_tokens=16"),
                         [("think_then_answer", "json"), ("direct", "json")])
    table = {(f.check, f.layout): (f.outcome, f.detail) for f in findings}
    assert table["constraint", "think_then_answer/json"] == (
        "broken", "lark sent; the content was empty and no reasoning came back")
    assert table["constraint", "direct/json"][0] == "held"


def test_an_arm_is_labelled_as_the_probe_found_it_and_the_report_shows_the_probe(tmp_path):
    with EngineStub("vllm", ignores={"structured_outputs"}) as url:  # an old vLLM: the grammar ignored, HTTP 200
        res = eval_words(tmp_path, f"openai:m@{url}/v1?schema_mode=lark", "--layouts", "direct,think_then_answer")
    assert res.returncode == 0, res.stderr
    arms = {a["layout"]: a for a in json.loads(res.stdout)["arms"]}
    assert arms["direct"]["enforced"] == "prompt-only" and arms["direct"]["constrained"] is False
    assert "prompt-only" in arms["direct"]["label"] and arms["direct"]["parse_failures"] == 5
    summary = json.loads(res.stdout)
    found = {(f["layout"], f["outcome"]) for f in next(iter(summary["probe"].values()))}
    assert ("direct/json", "broken") in found
    report = cli("report", str(tmp_path / "runs" / "words.db"), cwd=tmp_path)
    assert "Probe of openai:m@" in report.stdout and "| constraint | direct/json | broken |" in report.stdout
    (tmp_path / "healthy").mkdir()
    with EngineStub("vllm") as url:  # a healthy one: labelled by what it enforces
        res = eval_words(tmp_path / "healthy", f"openai:m@{url}/v1?schema_mode=lark", "--layouts", "direct")
    arm = json.loads(res.stdout)["arms"][0]
    assert arm["enforced"] == "lark" and "[lark]" in arm["label"] and arm["correct"] == 5


def test_a_hosted_api_refusing_fields_is_one_line_naming_the_option(tmp_path):
    """A hosted reasoning model refuses temperature and wants max_completion_tokens: each 400 is one line that
    names the option to change; with them eval and ask run."""
    with EngineStub("openai", refuses={"temperature", "max_tokens"}, thinks=True) as url:
        base = f"openai:o9@{url}/v1"
        first = eval_words(tmp_path, base, "--layouts", "direct", "--no-probe")
        assert first.returncode == 1 and len(first.stderr.strip().splitlines()) == 1
        assert "refuses the field 'max_tokens'" in first.stderr and "?engine=openai" in first.stderr
        second = eval_words(tmp_path, f"{base}?engine=openai", "--layouts", "direct", "--no-probe",
                            "--store", str(tmp_path / "b.db"))
        assert second.returncode == 1 and "'temperature'" in second.stderr and "?sampling=0" in second.stderr
        ok = eval_words(tmp_path, f"{base}?engine=openai&sampling=0", "--layouts", "direct",
                        "--store", str(tmp_path / "c.db"))
        assert ok.returncode == 0, ok.stderr
        arm = json.loads(ok.stdout)["arms"][0]
        assert arm["correct"] == 5 and arm["mean_reasoning_tokens"] == REASONING_WORDS  # counted, not shown
        asked = cli("ask", "which word?", "-m", f"{base}?engine=openai&sampling=0", "--layout", "direct",
                    "-o", "answer:zebulon|quillet", "--json", cwd=tmp_path)
        assert asked.returncode == 0, asked.stderr
        assert json.loads(asked.stdout)["outputs"]["answer"] == "zebulon"
        refused = cli("ask", "which word?", "-m", f"{base}?engine=openai", "--layout", "direct",
                      "-o", "answer:zebulon|quillet", cwd=tmp_path)
        assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
        assert "?sampling=0" in refused.stderr


def test_probe_command_prints_its_findings(tmp_path):
    with EngineStub("ollama", ignores={"response_format"}) as url:
        res = cli("probe", "-m", f"openai:m@{url}/v1?engine=ollama&model_thinking=off", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    findings = json.loads(res.stdout)["findings"]
    assert {"check": "constraint", "layout": "direct/json", "outcome": "broken"}.items() <= findings[0].items()
    assert any(f["check"] == "model thinking off" and f["outcome"] == "off" for f in findings)


def test_bad_thinking_options_are_one_line():
    with pytest.raises(ft.ConfigError, match="thinking='maybe'"):
        resolve("openai:m@http://127.0.0.1:9/v1?model_thinking=maybe")
    with pytest.raises(ft.ConfigError, match="extra_body"):
        resolve("openai:m@http://127.0.0.1:9/v1?extra_body={broken")


def test_ask_streams_a_servers_reasoning_then_its_answer(tmp_path):
    with EngineStub("vllm") as url:
        res = cli("ask", "which word?", "-m",
                  f"openai:m@{url}/v1?schema_mode=lark&model_thinking=on&model_thinking_tokens=12",
                  "--layout", "direct", "-o", "answer:zebulon|quillet", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    shown = res.stdout
    assert shown.index("<think>hmm") < shown.index("</think>") < shown.index('{"answer": "zebulon"}')
    assert shown.count("hmm") == 12 and "answer = 'zebulon'" in shown
    assert "reasoning 12" in shown  # the server's count, from the last chunk


def test_an_error_event_inside_a_streamed_reply_is_handled_as_its_status_not_retried():
    """vLLM streams a refused request as a 200 whose one event is {"error": {..., "code": 400}}; the client raises
    a bare APIError. It is the 400 it carries (here: a field refused, one line), not a "bad response" retried."""
    import httpx
    import openai

    backend = ft.OpenAICompatible("http://127.0.0.1:9/v1", "m", model_thinking="on", model_thinking_tokens=16)
    kwargs = backend.request([{"role": "user", "content": "x"}], None, ft.GenerateOptions())
    message = ("thinking_token_budget is set but reasoning_config is not configured. Please set --reasoning-parser "
               "and/or --reasoning-config to use thinking_token_budget.")
    event = openai.APIError(message, httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions"),
                            body={"message": message, "type": "BadRequestError", "code": 400})
    failure = backend._failure(event, kwargs)
    assert isinstance(failure, ft.ConfigError) and "'thinking_token_budget'" in str(failure)
    assert "--reasoning-parser" in failure.hint
    busy = openai.APIError("overloaded", httpx.Request("POST", "http://x/v1"), body={"message": "x", "code": 503})
    assert type(backend._failure(busy, kwargs)).__name__ == "_Retry"


def test_the_model_s_own_thinking_options_have_names_of_their_own_and_the_old_ones_still_mean_the_same(tmp_path):
    """model_thinking / model_thinking_tokens (the server model's own thinking) cannot be confused with a layout's
    reasoning budget (--thinking-budgets); thinking / thinking_budget still work, with one note line, and name the
    same model: the same identity, so the same arm ids and call hashes as stores made under the old names."""
    new = "openai:m@http://127.0.0.1:9/v1?model_thinking=on&model_thinking_tokens=16"
    old = "openai:m@http://127.0.0.1:9/v1?thinking=on&thinking_budget=16"
    with pytest.warns(FutureWarning, match="option thinking_budget is now model_thinking_tokens"):
        assert model_key(old) == model_key(new) == "openai:m@http://127.0.0.1:9/v1?thinking=on&thinking_budget=16"
    assert parse_spec(new).set("thinking", "off").options.model_thinking == "on"  # set by the spec: kept
    plain = parse_spec("openai:m@http://127.0.0.1:9/v1")
    with pytest.warns(FutureWarning):
        assert plain.set("thinking_budget", 8).options.model_thinking_tokens == 8  # --model-option, old name
    with pytest.raises(ft.ConfigError, match="same option"), pytest.warns(FutureWarning):
        parse_spec(old + "&model_thinking_tokens=4")
    with EngineStub("vllm") as url:
        res = cli("probe", "-m", f"openai:m@{url}/v1?schema_mode=lark&thinking=on&thinking_budget=16",
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    notes = [line for line in res.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 2 and "thinking is now model_thinking" in notes[0], res.stderr
    assert "model thinking tokens" in res.stdout


def test_the_probe_says_whether_the_server_continues_a_partial_assistant_message():
    """The building block of closing a reasoning region by continuation: vLLM is sent continue_final_message and
    continues; one that ignores it starts a new turn; llama-server continues by default; a hosted API is never
    asked (not offered). Each engine's fields are its own (engines.py)."""
    def continuation(stub, **options):
        with stub:
            backend = resolve(stub.spec(**options))
            found = [f for f in probe(backend, []) if f.check == "continuation"]
        return found[0].outcome, stub.bodies[-1]

    outcome, body = continuation(EngineStub("vllm"))
    assert outcome == "continues" and body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["messages"][-1] == {"role": "assistant", "content": "1, 2, 3, 4,"}
    assert continuation(EngineStub("vllm", ignores={"continue_final_message"}))[0] == "new turn"
    outcome, body = continuation(EngineStub("llama-server"))  # it repeats the message, then goes on
    assert outcome == "continues" and "continue_final_message" not in body
    with EngineStub("openai") as url:
        found = [f for f in probe(resolve(f"openai:m@{url}/v1?engine=openai"), []) if f.check == "continuation"]
    assert [f.outcome for f in found] == ["not offered"]


def test_reasoning_the_server_does_not_count_is_counted_in_its_own_tokenizer_where_it_has_one():
    """vLLM and llama-server have a tokenize endpoint: reasoning tokens the reply does not report are counted there
    (exact, not marked estimated); an engine without one (Ollama) falls back to the estimate, marked so, and is
    asked once."""
    with EngineStub("vllm", thinks=False) as url:
        backend = resolve(f"openai:m@{url}/v1?schema_mode=lark")
        assert backend.count_tokens("one two three") == 3 and backend.counts_exactly
    with EngineStub("llama-server", thinks=False) as url:
        assert resolve(f"openai:m@{url}/v1?engine=llama-server").count_tokens("a b c d") == 4
    with EngineStub("ollama", thinks=False) as url:
        backend = resolve(f"openai:m@{url}/v1?engine=ollama")
        assert backend.count_tokens("one two three four five six seven eight") == 10  # 40 characters / 4
        assert not backend.counts_exactly
    with EngineStub("vllm", thinks=False) as url:  # a server whose tokenize fails: estimated, not asked again
        backend = resolve(f"openai:m@{url}/v1")
        backend.base_url = backend.base_url.replace("/v1", "/nowhere/v1")
        assert backend.count_tokens("one two three") == 4 and not backend.counts_exactly
