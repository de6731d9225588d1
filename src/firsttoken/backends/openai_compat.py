"""``OpenAICompatible``: any OpenAI-compatible chat endpoint (vLLM, SGLang, Ollama, llama.cpp, hosted APIs).

Built on the official ``openai`` client (or one the caller injects), with its own retries off: ours are the only
ones (backoff with jitter on 429, 5xx, connection errors and timeouts, honouring ``Retry-After``, never other 4xx).
A failure reaches the caller as a ``BackendError``; a server unreachable for longer than ``unreachable_after``
seconds stops a run (``UnreachableError``). The API key is read from ``api_key_env`` and never kept in a message,
a repr or a store. ``schema_mode`` says what a request carries: json_schema / json_object (the JSON layouts), gbnf
(llama-server), lark and ebnf (vLLM, SGLang), grammar (older: the JSON Schema as GBNF), none. ``engine`` (one class
each, ``engines``) says where a grammar goes and how the model's own thinking is switched (``model_thinking``,
``model_thinking_tokens``); ``extra_body`` adds fields (yours win); ``sampling=False`` sends no temperature, top_p
or seed; a 400 naming a field we sent stops the run with one line naming the option that changes it. An arm whose
constraint the mode cannot carry is ``prompt-only``. A server cannot close a reasoning region early, so the client
does, by continuation (``_continue``: the region with ``max_tokens`` = its budget, then the answer continuing the
message) where the mode is a grammar mode and the engine continues a message; otherwise (``close_by=grammar``, a
hosted API, the model's own thinking on) one request, a grammar bounding the region (``CHARS_PER_TOKEN`` x the
budget, characters) and ``max_tokens`` room for all of it plus the answer; under the JSON modes only
``max_tokens`` bounds it. Reasoning returned apart, as a leading ``<think>``
block or R1-style is split off before parsing; its tokens are the server's report, else counted with the server's
tokenize endpoint where its engine has one (exact), else estimated (and marked so).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import field_validator

from .._backend import BackendBase, Generation, Messages, Request, estimate_tokens
from .._errors import BackendError, ConfigError, ContextOverflowError, UnreachableError
from .._options import GenerateOptions
from .._spec import BackendOptions, ModelSpec, fetch_only, identity_name, make_options
from .._text import redact
from ..layouts import Constraint
from . import _http
from ._continue import Continuing, plan
from .engines import CHARS_PER_TOKEN, GRAMMAR_MODES, Engine, engine as engine_named, engine_names

_PLACEHOLDER_KEY = "sk-no-key-needed"


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


class OpenAICompatible(Continuing, BackendBase):
    """Runs ``options.parallel`` requests at once (``BackendBase.generate_batch``'s thread pool; on the async path,
    ``_async``'s limit). ``generate`` and ``agenerate`` drive one retry policy (``_steps``), blocking or awaited.
    Its spec: ``openai:MODEL@URL[?options]`` (``Options``)."""

    name = "openai"
    probes = True  # evaluate probes it once per run: what a server enforces is checked, not assumed

    class Options(BackendOptions):
        schema_mode: Literal["json_schema", "json_object", "gbnf", "lark", "ebnf", "grammar", "none"] = "json_schema"
        engine: str = "vllm"  # a registered engine (engines.py): vllm, sglang, llama-server, ollama, openai
        # The model's own thinking, switched by the server (not a layout's reasoning region, whose budget is
        # max_thinking_tokens / --thinking-budgets). Renamed from thinking and thinking_budget: the old names
        # still work and are still its identity's names.
        model_thinking: Literal["auto", "on", "off"] = identity_name("auto", name="thinking")  # auto: sends nothing
        model_thinking_tokens: int | None = identity_name(None, name="thinking_budget", ge=0)
        renamed: ClassVar[dict[str, str]] = {"thinking": "model_thinking", "thinking_budget": "model_thinking_tokens"}
        reasoning_effort: str | None = None
        # How a layout's reasoning region is closed at its budget. continuation: two requests (the region, then
        # the answer continuing it; _continue.py); grammar: one request, the region bounded by a grammar of
        # CHARS_PER_TOKEN characters a budget token; auto: continuation where it can be (a grammar schema_mode,
        # an engine that continues a message, the model's own thinking not on), else grammar.
        close_by: Literal["auto", "continuation", "grammar"] = "auto"
        sampling: bool = True  # False: no temperature, top_p or seed (hosted reasoning models refuse them)
        extra_body: dict = {}  # any other request field, as JSON; wins over ours
        # how replies are fetched, never what they say: not part of a model's identity
        parallel: int = fetch_only(4, ge=1)
        api_key_env: str = fetch_only("OPENAI_API_KEY")
        timeout: float = fetch_only(120.0, gt=0)
        max_retries: int = fetch_only(4, ge=0)
        backoff: float = fetch_only(0.5, ge=0)  # the first retry's wait, doubled per retry up to max_backoff
        max_backoff: float = fetch_only(30.0, ge=0)
        unreachable_after: float = fetch_only(120.0, ge=0)
        deadline: float = fetch_only(300.0, ge=0)

        @field_validator("engine")
        @classmethod
        def _registered(cls, value: str) -> str:
            if value not in engine_names():
                raise ValueError(f"unknown engine {value!r}: use one of {', '.join(engine_names())}")
            return value

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> OpenAICompatible:
        model, base = _http.split_target(spec)
        return cls(base, model, label=spec.key, options=spec.options)  # type: ignore[arg-type]

    @classmethod
    def check_spec(cls, spec: ModelSpec) -> None:
        cls.from_spec(spec)  # cheap: nothing is sent

    @classmethod
    def spec_enforcement(cls, spec: ModelSpec, constraint: Constraint) -> str | None:
        return cls.from_spec(spec).enforcement(constraint)

    @classmethod
    def public_target(cls, target: str) -> str:
        model, _, url = target.partition("@")
        return f"{model}@{_http.public(url)}"

    def __init__(self, base_url: str, model: str, *, client: Any = None, label: str | None = None,
                 options: BackendOptions | None = None, **settings: Any):
        """``settings`` are ``Options`` fields (``schema_mode="lark", parallel=8``), or pass ``options`` whole."""
        self.options: OpenAICompatible.Options = options if options is not None else \
            make_options(type(self), settings, f"openai:{model}@{_http.public(base_url)}")  # type: ignore[assignment]
        self.base_url, self.model = base_url, model
        self.engine: Engine = engine_named(self.options.engine)
        self.check_close_by()
        self.label = label or f"{model}@{_http.public(base_url)}"
        key_env = self.options.api_key_env
        self._secrets = [os.environ.get(key_env), urlsplit(base_url).password]  # redacted from every error
        self._down_since: float | None = None
        self._tokenizes: bool | None = None  # whether the server's tokenize endpoint answers (None: not asked yet)
        self._lock = threading.Lock()
        self._api_key = os.environ.get(key_env) or _PLACEHOLDER_KEY
        self._async_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        if client is None:
            try:
                import openai
            except ImportError:
                raise ConfigError("the openai client is not installed", hint='pip install "firsttoken[server]"') from None
            client = openai.OpenAI(base_url=base_url, api_key=self._api_key, timeout=self.options.timeout,
                                   max_retries=0)
        import httpx  # noqa: F401  (the tokenize endpoint's client: imported once here, not by racing threads)

        self._client = client

    def __repr__(self) -> str:
        return f"OpenAICompatible({self.label!r}, schema_mode={self.options.schema_mode!r})"

    # --- request ----------------------------------------------------------------------------------
    def enforcement(self, constraint: Constraint | None) -> str | None:
        """What a request with this constraint is held to: its schema_mode, with ``+continuation`` where the
        region is closed by continuation; None: nothing is sent (prompt-only)."""
        mode = self.mode(constraint)
        return f"{mode}+continuation" if mode and self.closes_by_continuation(constraint) else mode

    def mode(self, constraint: Constraint | None) -> str | None:
        """The schema_mode a request with this constraint carries, or None: nothing is sent (prompt-only)."""
        mode = self.options.schema_mode
        if constraint is None or mode == "none":
            return None
        if mode in GRAMMAR_MODES:
            return mode if constraint.grammar is not None else None
        return mode if constraint.json_schema is not None else None

    @staticmethod
    def carries_constraint(kwargs: dict[str, Any]) -> bool:
        extra = kwargs.get("extra_body") or {}
        return bool(kwargs.get("response_format") or {"grammar", "ebnf", "structured_outputs"} & set(extra))

    @property
    def takes_budget(self) -> bool:
        return self.engine.takes_budget

    def region_bound(self, options: GenerateOptions) -> int:  # the most characters a grammar lets a region hold
        return CHARS_PER_TOKEN * options.max_thinking_tokens

    def request(self, messages: Messages, constraint: Constraint | None, options: GenerateOptions) -> dict[str, Any]:
        """The keyword arguments of one chat.completions.create call."""
        o, engine = self.options, self.engine
        mode = self.mode(constraint)
        region = constraint is None or constraint.region is not None
        thinking = self.region_bound(options) if mode in GRAMMAR_MODES and region else \
            options.max_thinking_tokens if region else 0
        if constraint is not None and constraint.region is not None:  # a minimum length may outlast the budget
            thinking = max(thinking, constraint.region.least)
        native = (o.model_thinking_tokens or 0) if o.model_thinking == "on" else 0  # the model's own thinking
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages,
                                  engine.limit_field: options.max_answer_tokens + thinking + native}
        if o.sampling:
            kwargs.update(temperature=options.temperature, top_p=options.top_p, seed=options.seed)
        extra = engine.thinking_fields(o.model_thinking, o.model_thinking_tokens, o.reasoning_effort)
        if mode == "json_schema":
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "reply", "schema": constraint.json_schema, "strict": True}}
        elif mode == "json_object":
            kwargs["response_format"] = {"type": "json_object", "schema": constraint.json_schema}
        elif mode == "grammar":
            extra["grammar"] = _http.gbnf(constraint.json_schema)
        elif mode is not None:
            text = constraint.grammar(GRAMMAR_MODES[mode], self.region_bound(options))
            extra.update(engine.grammar_fields(mode, engine.grammar_text(mode, text, o.model_thinking)))
        extra.update(o.extra_body)  # the user's fields win
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    # --- tokens ---------------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """``text``'s tokens in the server's own tokenizer, where its engine has a tokenize endpoint that answers
        (``counts_exactly``); otherwise about four characters a token."""
        count = self._server_count(text) if text else 0
        return count if count is not None else estimate_tokens(text)

    @property
    def counts_exactly(self) -> bool:
        return self.engine.tokenize is not None and self._tokenizes is not False

    def _server_count(self, text: str) -> int | None:
        if self.engine.tokenize is None or self._tokenizes is False:
            return None
        count = _http.tokenize(self.base_url, self.engine, self.model, text, self._api_key, self.options.timeout)
        self._tokenizes = self._tokenizes or count is not None  # a server whose first answer failed: not asked again
        return count

    def continue_message(self, messages: Messages, prefix: str, max_tokens: int = 16) -> Generation:
        """The model's continuation of an assistant message that starts with ``prefix`` (greedy, unconstrained),
        sent with the engine's continuation fields; the probe uses it to see whether the server continues the
        message or starts a new turn. The text is as the server returned it (an engine that echoes the prefix,
        llama-server, returns it first). ``ConfigError`` if the engine cannot continue a message at all."""
        if self.engine.continuation is None:
            raise ConfigError(f"engine {self.options.engine} cannot continue an assistant message",
                              hint="a hosted chat API answers a new turn")
        request = Request(messages, None, GenerateOptions(max_answer_tokens=max_tokens, max_thinking_tokens=0))
        return self._drive(self._steps(self.step(messages, prefix, None, max_tokens, request)))

    def generate(self, request: Request) -> Generation:
        if self.closes_by_continuation(request.constraint):
            return self.follow(plan(self, request), request.on_text)
        return self._drive(self._steps(self.request(request.messages, request.constraint, request.options)),
                           request.on_text)

    def _drive(self, steps: Generator[_Send | _Wait, Any, Any], on_text: Any = None) -> Any:
        """The sync driver of ``_steps``: sends and sleeps as it is told."""
        step = next(steps)
        while True:
            try:
                if isinstance(step, _Wait):
                    time.sleep(step.seconds)
                    step = steps.send(None)
                else:
                    step = steps.send(self._attempt(step.kwargs, on_text))
            except _Retry as r:
                step = steps.send(r)
            except StopIteration as done:
                return done.value

    async def agenerate(self, request: Request) -> Generation:
        """``generate`` on the async client: the same request, retries, deadline and errors (``_steps``)."""
        if request.on_text:
            raise ConfigError("streaming (on_text) is not offered on the async path", hint="call generate() for it")
        if self.closes_by_continuation(request.constraint):
            return await self.afollow(plan(self, request))
        return await self._adrive(self._steps(self.request(request.messages, request.constraint, request.options)))

    async def _adrive(self, steps: Generator[_Send | _Wait, Any, Any]) -> Any:
        """The async driver of ``_steps``: sends and sleeps as it is told, awaited."""
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

    def _steps(self, kwargs: dict[str, Any], read: Any = None) -> Generator[_Send | _Wait, Any, Any]:
        """The one retry policy, free of I/O: yields what to send (and is sent the response, or the ``_Retry``
        that attempt ended in) and how long to wait; returns the Generation (or what ``read(response, seconds,
        retries)`` makes of the response). A driver does the sending and waiting (``_drive``: blocking;
        ``_adrive``: awaited)."""
        retries = 0
        waited = 0.0
        start = time.perf_counter()
        while True:
            outcome = yield _Send(kwargs)
            if not isinstance(outcome, _Retry):
                return (read or self._generation)(outcome, time.perf_counter() - start, retries)
            self._note_failure(outcome.connection)
            if retries >= self.options.max_retries:
                raise BackendError(f"{self.label}: {outcome.why} (gave up after {retries + 1} attempts)",
                                   hint="the server kept failing; rerun later to retry, or raise max_retries")
            delay = max(min(self.options.max_backoff, self.options.backoff * 2 ** retries) * random.uniform(0.5, 1.5),
                        outcome.wait or 0.0)
            if waited + delay > self.options.deadline:  # the waits of one call are capped, whatever Retry-After says
                asked = f"the server asked to wait {outcome.wait:g} s; " \
                    if outcome.wait and outcome.wait > self.options.deadline - waited else ""
                raise BackendError(f"{self.label}: {outcome.why}; {asked}gave up after {retries + 1} attempts and "
                                   f"{waited:.0f} s of waiting (deadline {self.options.deadline:g} s)",
                                   hint="rerun later to retry, or raise ?deadline=SECONDS")
            yield _Wait(delay)
            waited += delay
            retries += 1

    def _attempt(self, kwargs: dict[str, Any], on_text: Any = None) -> Any:
        """One request; with ``on_text`` it is streamed, reasoning (inside ``<think>``) and text as they come."""
        try:
            response = _http.streamed(self._client, kwargs, on_text, self.engine.reasoning) if on_text else \
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
                    base_url=self.base_url, api_key=self._api_key, timeout=self.options.timeout, max_retries=0)
        return client

    def _failure(self, e: Exception, kwargs: dict[str, Any]) -> Exception:
        """What an attempt's exception means: a ``_Retry``, or the firsttoken error to raise."""
        import openai

        if isinstance(e, openai.APITimeoutError):
            return _Retry(f"no answer within {self.options.timeout:g} s")
        if isinstance(e, openai.APIConnectionError):
            return _Retry(f"connection failed ({_http.cause(e)})", connection=True)
        status = e.status_code if isinstance(e, openai.APIStatusError) else _http.stream_status(e)
        if status is not None:
            body = redact(_http.safe_body(e), self._secrets)
            refused = _http.refused_field(body, kwargs) if status in (400, 422) else None
            if refused:
                return ConfigError(f"{self.label}: the server refuses the field {refused!r} (HTTP {status}: "
                                   f"{body[:160]})", hint=f"use {self.engine.fix(refused)}")
            if status in (400, 422, 500) and self.carries_constraint(kwargs) and _http.SCHEMA_REFUSED.search(body):
                return ConfigError(f"{self.label}: the server rejects schema_mode {self.options.schema_mode!r} "
                                   f"(HTTP {status}: {body[:160]})", hint=_http.schema_hint(self.options.schema_mode))
            if status == 429 or status >= 500:
                return _Retry(f"HTTP {status}", wait=_http.retry_after(getattr(e, "response", None)))
            if status == 400 and re.search(r"context|too long|exceed", body, re.I):
                return ContextOverflowError(f"{self.label}: HTTP 400: {body}")
            return BackendError(f"{self.label}: HTTP {status}: {body}", hint=_http.hint_for(status))
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
            if now - self._down_since > self.options.unreachable_after:
                raise UnreachableError(f"{self.label} has been unreachable for {now - self._down_since:.0f} s")

    def _generation(self, response: Any, seconds: float, retries: int) -> Generation:
        return _http.generation(response, self.engine.reasoning, seconds, retries)
