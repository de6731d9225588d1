"""``OpenAICompatible``: any OpenAI-compatible chat endpoint (vLLM, SGLang, Ollama, llama.cpp, hosted APIs).

Built on the official ``openai`` client (or one the caller injects). The client's own retries are off
(``max_retries=0``): ours are the only ones, with exponential backoff and jitter on 429, 5xx, connection
errors and timeouts, honouring ``Retry-After``, never on other 4xx. Each failure reaches the caller as a
``BackendError``; when the server has been unreachable for longer than ``unreachable_after`` seconds, an
``UnreachableError`` tells a run to stop. The API key is read from ``api_key_env`` and never kept in a
message, a repr or a store; keyless local servers get a placeholder (the client refuses an empty key).

Server-side constraints (``schema_mode``), because servers differ:
  json_schema   response_format={"type": "json_schema", ...}      OpenAI, vLLM, SGLang, Ollama
  json_object   response_format={"type": "json_object", "schema"}  llama-cpp-python's server
  gbnf          the layout's GBNF in ``grammar``                    llama.cpp's llama-server
  lark          the layout's Lark (llguidance)                      vLLM (guidance), SGLang (llguidance)
  ebnf          the layout's GBNF as xgrammar EBNF                  vLLM, SGLang (xgrammar)
  grammar       the JSON Schema converted to GBNF, in ``grammar``   llama-server (before gbnf; kept for stores)
  none          no constraint: parse only
``lark`` and ``ebnf`` go in vLLM's ``structured_outputs.grammar``, or with ``engine="sglang"`` in SGLang's
``ebnf`` field (Lark prefixed ``%llguidance {}``). ``engine`` (``_engines``) also says how thinking is switched
and budgeted (``thinking``, ``thinking_budget``, ``reasoning_effort``) and which token-limit field is sent;
``extra_body`` adds any other field (and wins over ours); ``sampling=False`` sends no temperature, top_p or seed
(hosted reasoning models refuse them). A 400 naming a field we sent stops the run with one line naming the
option that changes it. The JSON modes carry only layouts whose reply is one
JSON object; the grammar modes carry every built-in layout. ``enforced(constraint)`` says what a request
carries; an arm that asked for a constraint the mode cannot carry is labelled ``prompt-only``.
A server cannot close a reasoning region early, so a grammar bounds it: at most ``CHARS_PER_TOKEN`` x the
thinking budget characters, and ``max_tokens`` leaves room for all of them (a token is at least one
character) plus the answer. Under the JSON modes only ``max_tokens`` bounds it.
Reasoning delivered apart (``reasoning_content`` / ``reasoning`` / ``thinking``), as a leading ``<think>``
block, or R1-style (a reply that closes ``</think>`` without opening it) is split off before parsing; its
token count comes from ``completion_tokens_details.reasoning_tokens`` when the server reports it, otherwise
it is estimated (and marked so).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field

from .._backend import BackendBase, Generation, Messages, Request
from .._errors import BackendError, ConfigError, ContextOverflowError, UnreachableError
from .._options import GenerateOptions
from .._spec import BackendOptions, ModelSpec, fetch_only
from .._text import redact
from ..layouts import Constraint
from ._engines import (ENGINES, FIELD_FIXES, REASONING_FIELDS, THINKING, after_thinking, engine as engine_named,
                       refused_field, streamed)

SCHEMA_MODES = ("json_schema", "json_object", "gbnf", "lark", "ebnf", "grammar", "none")
GRAMMAR_MODES = {"gbnf": "gbnf", "lark": "lark", "ebnf": "gbnf"}  # mode -> the layout's grammar dialect
CHARS_PER_TOKEN = 4  # a server-side region's bound, in characters per token of thinking budget
_PLACEHOLDER_KEY = "sk-no-key-needed"
_THINK = re.compile(r"^\s*<think>(.*?)</think>\s*", re.S)
_R1 = re.compile(r"^(?!\s*<think>)(.*?)</think>\s*", re.S)  # R1-style: the template opened the block, not the reply


@dataclass(frozen=True)
class _Send:
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class _Wait:
    seconds: float


class _Retry(Exception):
    def __init__(self, why: str, wait: float | None = None, connection: bool = False):
        super().__init__(why)
        self.why, self.wait, self.connection = why, wait, connection


class OpenAICompatible(BackendBase):
    """Runs ``parallel`` requests at once (``BackendBase.generate_batch``'s thread pool; on the async path,
    ``_async``'s limit). ``generate`` and ``agenerate`` drive one retry policy (``_steps``), blocking or awaited.
    Its spec: ``openai:MODEL@URL[?options]`` (``Options``)."""

    name = "openai"
    probes = True  # evaluate probes it once per run: what a server enforces is checked, not assumed

    class Options(BackendOptions):
        schema_mode: str = "json_schema"  # checked by the constructor (its hint names the modes)
        engine: str = "vllm"  # vllm, sglang, llama-server, ollama, openai (_engines)
        thinking: str = "auto"  # auto: send nothing; on (with thinking_budget) or off, as the engine takes it
        thinking_budget: int | None = Field(None, ge=0)  # the model's own thinking, in tokens
        reasoning_effort: str | None = None
        sampling: bool = True  # False: no temperature, top_p or seed (hosted reasoning models refuse them)
        extra_body: dict = {}  # any other request field, as JSON; wins over ours
        # how replies are fetched, never what they say: not part of a model's identity
        parallel: int = fetch_only(4, ge=1)
        api_key_env: str = fetch_only("OPENAI_API_KEY")
        timeout: float = fetch_only(120.0, gt=0)
        max_retries: int = fetch_only(4, ge=0)
        unreachable_after: float = fetch_only(120.0, ge=0)
        deadline: float = fetch_only(300.0, ge=0)

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> OpenAICompatible:
        model, base = _split_target(spec)
        return cls(base, model, label=spec.key, **spec.options.model_dump())

    @classmethod
    def check_spec(cls, spec: ModelSpec) -> None:
        cls.from_spec(spec)  # cheap: nothing is sent

    @classmethod
    def spec_enforcement(cls, spec: ModelSpec, constraint: Constraint) -> str | None:
        return cls.from_spec(spec).enforcement(constraint)

    @classmethod
    def public_target(cls, target: str) -> str:
        model, _, url = target.partition("@")
        return f"{model}@{_public(url)}"

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", timeout: float = 120.0,
                 client: Any = None, schema_mode: str = "json_schema", parallel: int = 4, max_retries: int = 4,
                 backoff: float = 0.5, max_backoff: float = 30.0, unreachable_after: float = 120.0,
                 deadline: float = 300.0, label: str | None = None, extra_body: dict | None = None,
                 engine: str = "vllm", thinking: str = "auto", thinking_budget: int | None = None,
                 reasoning_effort: str | None = None, sampling: bool = True):
        if schema_mode not in SCHEMA_MODES:
            raise ConfigError(f"unknown schema_mode {schema_mode!r}", hint=f"use one of: {', '.join(SCHEMA_MODES)}")
        if engine not in ENGINES:
            raise ConfigError(f"unknown engine {engine!r}", hint=f"use one of: {', '.join(ENGINES)}")
        if thinking not in THINKING:
            raise ConfigError(f"thinking={thinking!r}: use one of {', '.join(THINKING)}",
                              hint="on sends the engine's thinking switch and thinking_budget; off turns it off")
        if parallel < 1 or max_retries < 0:
            raise ConfigError("parallel must be >= 1 and max_retries >= 0")
        self.base_url, self.model, self.schema_mode, self.engine = base_url, model, schema_mode, engine
        self.parallel, self.max_retries = parallel, max_retries
        self.backoff, self.max_backoff, self.unreachable_after = backoff, max_backoff, unreachable_after
        self.timeout, self.extra_body, self.deadline = timeout, dict(extra_body or {}), deadline
        self.thinking, self.thinking_budget, self.reasoning_effort = thinking, thinking_budget, reasoning_effort
        self.sampling = sampling
        self.label = label or f"{model}@{_public(base_url)}"
        self._secrets = [os.environ.get(api_key_env), urlsplit(base_url).password]  # redacted from every error
        self._down_since: float | None = None
        self._lock = threading.Lock()
        self._api_key = os.environ.get(api_key_env) or _PLACEHOLDER_KEY
        self._async_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        if client is None:
            try:
                import openai
            except ImportError:
                raise ConfigError("the openai client is not installed", hint='pip install "firsttoken[server]"') from None
            client = openai.OpenAI(base_url=base_url, api_key=self._api_key, timeout=timeout, max_retries=0)
        self._client = client

    def __repr__(self) -> str:
        return f"OpenAICompatible({self.label!r}, schema_mode={self.schema_mode!r})"

    # --- request ----------------------------------------------------------------------------------
    def enforcement(self, constraint: Constraint | None) -> str | None:
        """The schema_mode a request with this constraint carries, or None: nothing is sent (prompt-only)."""
        if constraint is None or self.schema_mode == "none":
            return None
        if self.schema_mode in GRAMMAR_MODES:
            return self.schema_mode if constraint.grammar is not None else None
        return self.schema_mode if constraint.json_schema is not None else None

    @staticmethod
    def carries_constraint(kwargs: dict[str, Any]) -> bool:
        extra = kwargs.get("extra_body") or {}
        return bool(kwargs.get("response_format") or {"grammar", "ebnf", "structured_outputs"} & set(extra))

    @property
    def takes_budget(self) -> bool:
        return engine_named(self.engine).takes_budget

    def region_bound(self, options: GenerateOptions) -> int:
        """The most characters a grammar lets the reasoning region hold."""
        return CHARS_PER_TOKEN * options.max_thinking_tokens

    def request(self, messages: Messages, constraint: Constraint | None, options: GenerateOptions) -> dict[str, Any]:
        """The keyword arguments of one chat.completions.create call."""
        mode = self.enforcement(constraint)
        region = constraint is None or constraint.region is not None
        thinking = self.region_bound(options) if mode in GRAMMAR_MODES and region else \
            options.max_thinking_tokens if region else 0
        if constraint is not None and constraint.region is not None:  # a minimum length may outlast the budget
            thinking = max(thinking, constraint.region.least)
        spec = engine_named(self.engine)
        native = (self.thinking_budget or 0) if self.thinking == "on" else 0  # the model's own thinking
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages,
                                  spec.limit_field: options.max_answer_tokens + thinking + native}
        if self.sampling:
            kwargs.update(temperature=options.temperature, top_p=options.top_p, seed=options.seed)
        extra = spec.thinking_fields(self.thinking, self.thinking_budget, self.reasoning_effort)
        if mode == "json_schema":
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "reply", "schema": constraint.json_schema, "strict": True}}
        elif mode == "json_object":
            kwargs["response_format"] = {"type": "json_object", "schema": constraint.json_schema}
        elif mode == "grammar":
            extra["grammar"] = _gbnf(constraint.json_schema)
        elif mode is not None:
            text = constraint.grammar(GRAMMAR_MODES[mode], self.region_bound(options))
            if mode == "gbnf" and self.thinking == "on":  # llama-server applies it from the first token
                text = after_thinking(text, CHARS_PER_TOKEN * (self.thinking_budget or options.max_thinking_tokens))
            if mode == "lark":
                text = "%llguidance {}\n" + text
            if mode == "gbnf":
                extra["grammar"] = text
            elif spec.grammar_field == "ebnf":
                extra["ebnf"] = text
            else:
                extra["structured_outputs"] = {"grammar": text}
        extra.update(self.extra_body)  # the user's fields win
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    def generate(self, request: Request) -> Generation:
        steps = self._steps(request)
        step = next(steps)
        while True:  # the sync driver of ``_steps``
            try:
                if isinstance(step, _Wait):
                    time.sleep(step.seconds)
                    step = steps.send(None)
                else:
                    step = steps.send(self._attempt(step.kwargs, request.on_text))
            except _Retry as r:
                step = steps.send(r)
            except StopIteration as done:
                return done.value

    async def agenerate(self, request: Request) -> Generation:
        """``generate`` on the async client: the same request, retries, deadline and errors (``_steps``)."""
        if request.on_text:
            raise ConfigError("streaming (on_text) is not offered on the async path", hint="call generate() for it")
        steps = self._steps(request)
        step = next(steps)
        while True:  # the async driver of ``_steps``
            try:
                if isinstance(step, _Wait):
                    await asyncio.sleep(step.seconds)
                    step = steps.send(None)
                else:
                    step = steps.send(await self._aattempt(step.kwargs))
            except _Retry as r:
                step = steps.send(r)
            except StopIteration as done:
                return done.value

    def _steps(self, request: Request) -> Generator[_Send | _Wait, Any, Generation]:
        """The one retry policy, free of I/O: yields what to send (and is sent the response, or the ``_Retry``
        that attempt ended in) and how long to wait; returns the Generation. A driver does the sending and
        waiting (``generate``: blocking; ``agenerate``: awaited)."""
        kwargs = self.request(request.messages, request.constraint, request.options)
        retries = 0
        waited = 0.0
        start = time.perf_counter()
        while True:
            outcome = yield _Send(kwargs)
            if not isinstance(outcome, _Retry):
                return self._generation(outcome, time.perf_counter() - start, retries)
            self._note_failure(outcome.connection)
            if retries >= self.max_retries:
                raise BackendError(f"{self.label}: {outcome.why} (gave up after {retries + 1} attempts)",
                                   hint="the server kept failing; rerun later to retry, or raise max_retries")
            delay = max(min(self.max_backoff, self.backoff * 2 ** retries) * random.uniform(0.5, 1.5),
                        outcome.wait or 0.0)
            if waited + delay > self.deadline:  # the waits of one call are capped, whatever Retry-After says
                asked = f"the server asked to wait {outcome.wait:g} s; " \
                    if outcome.wait and outcome.wait > self.deadline - waited else ""
                raise BackendError(f"{self.label}: {outcome.why}; {asked}gave up after {retries + 1} attempts and "
                                   f"{waited:.0f} s of waiting (deadline {self.deadline:g} s)",
                                   hint="rerun later to retry, or raise ?deadline=SECONDS")
            yield _Wait(delay)
            waited += delay
            retries += 1

    def _attempt(self, kwargs: dict[str, Any], on_text: Any = None) -> Any:
        """One request; with ``on_text`` it is streamed, reasoning (inside ``<think>``) and text as they come."""
        try:
            response = streamed(self._client, kwargs, on_text) if on_text else \
                self._client.chat.completions.create(**kwargs)
        except Exception as e:
            raise self._failure(e, kwargs) from None
        return self._accepted(response)

    async def _aattempt(self, kwargs: dict[str, Any]) -> Any:
        try:
            response = await self._async_client().chat.completions.create(**kwargs)
        except Exception as e:
            raise self._failure(e, kwargs) from None
        return self._accepted(response)

    def _async_client(self) -> Any:
        """The async client of the running event loop (an httpx pool belongs to one loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async_clients.get(loop)
            if client is None:
                import openai

                client = self._async_clients[loop] = openai.AsyncOpenAI(
                    base_url=self.base_url, api_key=self._api_key, timeout=self.timeout, max_retries=0)
        return client

    def _failure(self, e: Exception, kwargs: dict[str, Any]) -> Exception:
        """What an attempt's exception means: a ``_Retry``, or the firsttoken error to raise."""
        import openai

        if isinstance(e, openai.APITimeoutError):
            return _Retry(f"no answer within {self.timeout:g} s")
        if isinstance(e, openai.APIConnectionError):
            return _Retry(f"connection failed ({_cause(e)})", connection=True)
        status = e.status_code if isinstance(e, openai.APIStatusError) else _stream_status(e)
        if status is not None:
            body = redact(_safe_body(e), self._secrets)
            refused = refused_field(body, kwargs) if status in (400, 422) else None
            if refused:
                return ConfigError(f"{self.label}: the server refuses the field {refused!r} (HTTP {status}: "
                                   f"{body[:160]})", hint=f"use {FIELD_FIXES[refused]}")
            if status in (400, 422, 500) and self.carries_constraint(kwargs) and _SCHEMA_REFUSED.search(body):
                return ConfigError(f"{self.label}: the server rejects schema_mode {self.schema_mode!r} "
                                   f"(HTTP {status}: {body[:160]})", hint=_schema_hint(self.schema_mode))
            if status == 429 or status >= 500:
                return _Retry(f"HTTP {status}", wait=_retry_after(getattr(e, "response", None)))
            if status == 400 and re.search(r"context|too long|exceed", body, re.I):
                return ContextOverflowError(f"{self.label}: HTTP 400: {body}")
            return BackendError(f"{self.label}: HTTP {status}: {body}", hint=_hint_for(status))
        if isinstance(e, openai.OpenAIError):  # a truncated response body, and the like
            return _Retry(f"bad response ({type(e).__name__})")
        if isinstance(e, ValueError):  # a body that is not JSON (the client parses it with json.loads)
            return _Retry("malformed response body (not JSON)")
        return e

    def _accepted(self, response: Any) -> Any:
        with self._lock:
            self._down_since = None
        if not getattr(response, "choices", None):
            raise _Retry("response without choices")
        return response

    def _note_failure(self, connection: bool) -> None:
        if not connection:
            return
        with self._lock:
            now = time.monotonic()
            self._down_since = self._down_since or now
            if now - self._down_since > self.unreachable_after:
                raise UnreachableError(f"{self.label} has been unreachable for {now - self._down_since:.0f} s")

    def _generation(self, response: Any, seconds: float, retries: int) -> Generation:
        choice = response.choices[0]
        message = choice.message
        text = message.content or ""
        extra = getattr(message, "model_extra", None) or {}
        reasoning = next((extra[f] for f in REASONING_FIELDS if isinstance(extra.get(f), str) and extra[f]), None)
        if reasoning is None and ((m := _THINK.match(text)) or (m := _R1.match(text))):
            reasoning, text = m.group(1).strip(), text[m.end():]
        usage = response.usage
        details = getattr(usage, "completion_tokens_details", None) if usage else None
        reported = getattr(details, "reasoning_tokens", None) if details else None
        return Generation(text=text, reasoning=reasoning,
                          prompt_tokens=getattr(usage, "prompt_tokens", None),
                          completion_tokens=getattr(usage, "completion_tokens", None),
                          reasoning_tokens=reported or None,  # None: counted from the parsed reasoning
                          seconds=seconds, finish_reason="length" if choice.finish_reason == "length" else "stop",
                          retries=retries, estimated=usage is None)


def _gbnf(schema: dict) -> str:
    try:
        from llama_cpp.llama_grammar import json_schema_to_gbnf
    except ImportError:
        raise ConfigError("schema_mode='grammar' converts the JSON Schema with llama-cpp-python",
                          hint='pip install "firsttoken[local]", or use schema_mode json_schema') from None
    return json_schema_to_gbnf(json.dumps(schema))


# A server that refuses the response_format itself (422; llama-cpp-python's server: 500 with a validation
# error naming response_format): retrying cannot help, another schema_mode can.
_SCHEMA_REFUSED = re.compile(r"response_format|json_schema|json_object|grammar|ebnf|structured_outputs|lark", re.I)


def _schema_hint(mode: str) -> str:
    return {"json_schema": "try ?schema_mode=json_object (llama-cpp-python's server) or gbnf (llama.cpp's llama-server)",
            "json_object": "try ?schema_mode=json_schema (vLLM, SGLang, Ollama, OpenAI) or gbnf (llama-server)",
            "gbnf": "gbnf is for llama.cpp's llama-server; vLLM and SGLang take lark or ebnf",
            "lark": "start vLLM with --structured-outputs-config.backend guidance, or SGLang with --grammar-backend "
                    "llguidance and add &engine=sglang; or try ?schema_mode=ebnf",
            "ebnf": "vLLM and SGLang take ebnf with their default xgrammar backend (SGLang: add &engine=sglang); "
                    "llama-server takes gbnf"}.get(mode, "try another ?schema_mode (see the README's engine table), "
                                                        "or none for no constraint")


def _stream_status(e: Exception) -> int | None:
    """The HTTP status an error event inside a streamed 200 carries (vLLM streams a refused request as
    ``data: {"error": {..., "code": 400}}``), so it is handled as that status, not retried as a bad response."""
    body = getattr(e, "body", None)
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) and 400 <= code < 600 else None


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _cause(e: Exception) -> str:
    inner = e.__cause__ or e.__context__
    return type(inner).__name__ if inner else type(e).__name__


def _safe_body(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        body = body.get("message") or body.get("error") or body
    text = body if isinstance(body, str) else json.dumps(body, default=str) if body else e.__class__.__name__
    return " ".join(text.split())[:300]


def _hint_for(status: int) -> str:
    return {401: "set the API key in the variable named by api_key_env (default OPENAI_API_KEY)",
            403: "the key lacks access to this model", 404: "check the model name and the base URL (…/v1)",
            422: "the server rejects this request; try another schema_mode (e.g. json_object for "
                 "llama-cpp-python's server)"}.get(status, "the server refused the request")


def _split_target(spec: ModelSpec) -> tuple[str, str]:
    """``MODEL@URL`` -> (model, base URL)."""
    model, sep, url = spec.target.partition("@")
    if not sep or not model or not url.startswith(("http://", "https://")):
        raise ConfigError(f"model {spec.text!r}: expected openai:MODEL@URL",
                          hint="e.g. --model openai:qwen2.5-1.5b@http://127.0.0.1:8000/v1")
    return model, url


def _public(url: str) -> str:
    """``url`` without user-info (``http://user:KEY@host`` -> ``http://host``): what labels and ids show."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
