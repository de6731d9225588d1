"""``LM``: a DSPy language model that runs any firsttoken backend, through DSPy 3.4's engine contract.

DSPy owns the call (history, callbacks, usage, its cache); our engine turns one ``dspy.lm15.Request`` into a
firsttoken ``Request`` and the ``Generation`` back into a ``dspy.lm15.Response``. ``Adapter`` gives the engine
the layout's constraint before it calls (``Engine.constraint_key``: a digest of the constraint, so DSPy's cache,
which keys on the request, tells constraints apart) and names it, with the generation options, in
``config.extensions["firsttoken"]``; the backend enforces it (llguidance in-process; a server what its
``schema_mode`` carries). Any other request (``lm("hi")``, another adapter's) runs unconstrained. Reasoning a
server returns apart comes back as a ``ThinkingPart``.

Retries are the backend's own (``OpenAICompatible``'s); DSPy's are off (``num_retries=0``), so a failing
server is not retried twice over. Failures reach DSPy as ``dspy.lm15`` errors with firsttoken's message.
Does not handle: ``n`` > 1, tools, images; DSPy's ``stream`` gets the whole reply as one event.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import dspy
from dspy import lm15

from .._async import acall
from .._backend import Backend, Generation, Request, call
from .._errors import BackendError, ConfigError, ContextOverflowError, FirstTokenError, UnreachableError
from .._options import GenerateOptions, make_options
from ..backends import resolve
from ..layouts import Constraint

EXTENSION = "firsttoken"  # the key of config.extensions our Adapter fills


class Engine:
    """One request, one ``backend.generate`` (sync DSPy calls)."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self._constraints: dict[str, Constraint] = {}

    def constraint_key(self, constraint: Constraint) -> str:
        """Keep a constraint for the requests that name it; its key is a digest of what it allows."""
        text = json.dumps([constraint.lark, constraint.json_schema, repr(constraint.region)], sort_keys=True)
        key = hashlib.sha256(text.encode()).hexdigest()[:20]
        self._constraints.setdefault(key, constraint)
        return key

    def request(self, request: lm15.Request) -> Request:
        """The firsttoken request for a DSPy one."""
        messages = _messages(request)
        plan = (request.config.extensions or {}).get(EXTENSION)
        if plan is None:
            config = request.config
            values = {k: v for k, v in (("temperature", config.temperature), ("top_p", config.top_p),
                                        ("seed", config.seed), ("max_answer_tokens", config.max_tokens))
                      if v is not None}
            return Request(messages, None, make_options(values))
        options = GenerateOptions(**plan["options"])
        if plan.get("constraint") is None:
            return Request(messages, None, options)
        constraint = self._constraints.get(plan["constraint"])
        if constraint is None:
            raise ConfigError(f"the request names constraint {plan['constraint']!r}, which this LM was not given",
                              hint="let firsttoken.dspy.Adapter make the request: it hands the LM the constraint")
        return Request(messages, constraint, options)

    def complete(self, request: lm15.Request) -> lm15.Response:
        try:
            return _response(call(self.backend, self.request(request)), request.model)
        except FirstTokenError as e:
            raise _lm15_error(e) from e

    def stream(self, request: lm15.Request) -> Any:
        return lm15.response_to_events(self.complete(request))

    def close(self) -> None:
        pass


class AsyncEngine:
    """The same, awaited (``_async.acall``: a server's async client, a local model in a worker thread)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    async def complete(self, request: lm15.Request) -> lm15.Response:
        try:
            return _response(await acall(self.engine.backend, self.engine.request(request)), request.model)
        except FirstTokenError as e:
            raise _lm15_error(e) from e

    async def stream(self, request: lm15.Request) -> Any:
        for event in lm15.response_to_events(await self.complete(request)):
            yield event

    async def aclose(self) -> None:
        pass


class LM(dspy.LM):
    """``firsttoken.dspy.LM("qwen2.5-coder-1.5b")``, ``LM("openai:m@http://host/v1?schema_mode=gbnf&...")`` or
    ``LM(a_backend)``: a DSPy LM whose replies come from a firsttoken backend. With ``Adapter`` the layout's
    constraint is enforced; ``backend`` is the firsttoken backend it runs."""

    def __init__(self, model: str | Backend, *, cache: bool = True, **kwargs: Any):
        backend = resolve(model) if isinstance(model, str) else model
        if not callable(getattr(backend, "generate", None)):
            raise ConfigError(f"{model!r} is neither a --model spec nor a firsttoken backend",
                              hint='e.g. firsttoken.dspy.LM("smollm2-135m")')
        engine = Engine(backend)
        super().__init__(f"firsttoken/{backend.label}", engine=engine, async_engine=AsyncEngine(engine),
                         cache=cache, num_retries=0, **kwargs)
        self.backend, self._firsttoken_engine = backend, engine

    @property
    def engine(self) -> Engine:
        """Our engine (kept here, not read from DSPy's private attribute; ``copy()`` shares it, as DSPy does)."""
        return self._firsttoken_engine


def _messages(request: lm15.Request) -> list[dict[str, str]]:
    out = []
    if request.system is not None:
        system = request.system if isinstance(request.system, str) else "".join(
            getattr(p, "text", "") or "" for p in request.system)
        out.append({"role": "system", "content": system})
    for m in request.messages:
        text = "".join(getattr(p, "text", "") or "" for p in m.parts if getattr(p, "type", "") == "text")
        out.append({"role": m.role, "content": text})
    return out


def _response(gen: Generation, model: str) -> lm15.Response:
    parts: list[Any] = [lm15.TextPart(gen.text)]
    if gen.reasoning:
        parts.insert(0, lm15.ThinkingPart(gen.reasoning))
    prompt, completion = gen.prompt_tokens, gen.completion_tokens
    usage = lm15.Usage(input_tokens=prompt, output_tokens=completion,
                       total_tokens=prompt + completion if prompt is not None and completion is not None else None,
                       reasoning_tokens=gen.reasoning_tokens)
    return lm15.Response(id=None, model=model, message=lm15.Message.assistant(parts),
                         finish_reason="length" if gen.finish_reason == "length" else "stop", usage=usage)


def _lm15_error(e: FirstTokenError) -> lm15.LM15Error:
    """firsttoken's error as the ``dspy.lm15`` error DSPy expects, with our message and hint."""
    text = f"{e.message} ({e.hint})" if getattr(e, "hint", None) else e.message
    if isinstance(e, ContextOverflowError):
        return lm15.ContextLengthError(text)
    if isinstance(e, UnreachableError):
        return lm15.TransportError(text)
    if isinstance(e, BackendError):
        return lm15.ServerError(text)
    return lm15.ConfigurationError(text)
