"""A reasoning region closed by the client on a server, by continuation: two requests a reply.

1. **The region.** The reply's opener (``Region.open``: ``{"thoughts": "``, ``<think>``, a field marker; none
   for ``work_then_answer``) is written as the start of the assistant's message, and the server continues it
   under the reply's grammar with the region free (no character bound) and ``max_tokens`` = the budget. So the
   budget is counted in the server's own tokens, and every token up to the region's end is reasoning. The
   grammar goes on past the region's end because a token may hold the end and what follows (Qwen's ``",``: with
   a grammar that ended at ``"`` the model almost never closed its thoughts); the client cuts the reply there.
2. **The answer.** The region's text is closed (its end as the model wrote it; or, cut at the budget, without a
   trailing partial escape or marker and with ``Region.close``: a forced close, ``closed_by="budget"``), and a
   second request continues that message under the grammar of what follows the region (``Constraint.split``),
   reusing the server's prefix cache. The reply is the whole message: opener, region, closer, answer.

A region with a minimum (``Region.least``) cut before it has its missing characters written in the second step,
exactly as many as it lacks, then its end: as in-process, where the region closes as soon as it may.

**Every budget from one trace** (``family``): requests that differ only in their budget (``budget_families``)
send step 1 once, at the largest budget, with ``logprobs`` (each generated token's bytes); a smaller budget's
region is the trace's first B tokens (or its natural end, where that comes first). Greedy, that is what step 1
alone at budget B returns; each budget then has its own step 2. Without token bytes in the reply, each budget
sends its own step 1.

The plans are generators free of I/O: they yield the keyword arguments of each request (``backend.step``) and
are sent its ``Generation``, its text the continuation alone (an echoed message cut: ``unechoed``), or for a
trace a ``Trace``; the backend drives them, blocking or awaited. They use ``backend.step(messages, prefix,
grammar, limit, request, logprobs=False)``, ``backend.split_dialect()`` and ``backend.count_tokens(text)``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from .._backend import (Generation, Messages, Outcome, Request, budget_families, foreign, one_call, parallel_of,
                        run_jobs)
from .._errors import ConfigError, FirstTokenError
from ..layouts import Constraint, Region
from . import _http
from .engines import CHARS_PER_TOKEN, GRAMMAR_MODES

Plan = Generator[dict[str, Any], Generation, Generation]


@dataclass(frozen=True)
class Closed:
    """Step 1's outcome: the region's text, what the message holds after the opener (the text, its end or the
    closer), the characters a minimum still asks for, and how the region ended."""

    reasoning: str
    written: str
    owed: int
    closed_by: str


def close(region: Region, body: str, cut: bool) -> Closed:
    """Step 1's ``body`` (text after the opener) closed: at the region's end where the model wrote it, else
    trimmed and closed by the client (``cut``: at the budget; otherwise the model's turn ended)."""
    end = region.find_end(body)
    if end is not None:
        return Closed(body[:end], body[:end] + region.end, 0, "model")
    text = region.trimmed(body)
    owed = max(0, region.least - region.length(text))
    return Closed(text, text + ("" if owed else region.close), owed, "budget" if cut else "end_of_turn")


def unechoed(text: str, prefix: str) -> str:
    """A continuation's own text, where the engine returns the continued message first (llama-server)."""
    return text[len(prefix):] if prefix and text.startswith(prefix) else text


def plan(backend: Any, request: Request) -> Plan:
    """One reply in two steps (step 1 skipped at budget 0: the region is closed empty)."""
    (reply,) = yield from family(backend, [request])
    if isinstance(reply, FirstTokenError):
        raise reply
    return reply


def answer(backend: Any, request: Request, closed: Closed, first: Generation | None) -> Plan:
    """Step 2: the message up to the region's close continued under the answer's grammar; the whole reply."""
    constraint = request.constraint
    assert constraint is not None and constraint.region is not None and constraint.split is not None
    prefix = constraint.region.open + closed.written
    _, tail = constraint.split(backend.split_dialect(), closed.owed)
    second = yield backend.step(request.messages, prefix, tail, request.options.max_answer_tokens + closed.owed,
                                request)
    answer_text = second.text
    if first is not None and closed.closed_by == "budget" and not closed.owed and first.completion_tokens:
        reasoning_tokens: int | None = first.completion_tokens  # the budget, spent: all of step 1 is reasoning
    elif backend.counts_exactly:  # ended by the model (step 1 also wrote the end), or finished in step 2
        reasoning_tokens = backend.count_tokens(closed.reasoning + answer_text[:closed.owed])
    else:
        reasoning_tokens = None  # counted from the parsed reasoning, marked estimated (Predictor)
    steps = [g for g in (first, second) if g is not None]
    completion = [g.completion_tokens for g in steps]
    return Generation(text=prefix + answer_text, prompt_tokens=steps[0].prompt_tokens,
                      completion_tokens=sum(completion) if None not in completion else None,  # type: ignore[arg-type]
                      reasoning_tokens=reasoning_tokens, seconds=sum(g.seconds for g in steps),
                      estimated=any(g.estimated for g in steps), closed_by=closed.closed_by,
                      finish_reason=second.finish_reason, retries=sum(g.retries for g in steps))


@dataclass
class Trace:
    """Step 1 at a family's largest budget: its generation and each generated token's bytes (None: the reply
    gave none)."""

    generation: Generation
    tokens: list[bytes] | None


def at_budget(trace: Trace, region: Region, budget: int) -> Generation | None:
    """What step 1 alone would have returned at ``budget`` (a smaller one than the trace's): its first tokens up
    to the region's end or ``budget``; None where the reply gave no tokens to cut it by."""
    if trace.tokens is None:
        return None
    raw = b""
    for n, token in enumerate(trace.tokens[:budget], start=1):
        raw += token
        body = raw.decode("utf-8", errors="ignore")
        if region.find_end(body) is not None:  # the region ended within the budget: as the trace did
            return replace(trace.generation, text=body, completion_tokens=n, finish_reason="stop", seconds=0.0)
    if len(trace.tokens) < budget:  # the trace's turn ended first (not cut): so would this budget's
        return replace(trace.generation, seconds=0.0)
    text = raw.decode("utf-8", errors="ignore")
    return replace(trace.generation, text=text, completion_tokens=budget, finish_reason="length", seconds=0.0)


def family(backend: Any, requests: list[Request]) -> Generator[dict[str, Any], Any, list[Generation | FirstTokenError]]:
    """The replies of requests that differ only in their budget, from one step-1 trace at the largest (sent
    with ``logprobs`` where there are several, and then sent back a ``Trace``) and one step 2 each."""
    top = max(requests, key=lambda r: r.options.max_thinking_tokens)
    constraint: Constraint = top.constraint  # type: ignore[assignment]
    region = constraint.region
    assert region is not None and constraint.split is not None
    budget = top.options.max_thinking_tokens
    text_grammar, _ = constraint.split(backend.split_dialect(), 0)
    trace: Trace | None = None
    if budget > 0:
        several = len(requests) > 1
        sent = yield backend.step(top.messages, region.open, text_grammar, budget, top, logprobs=several)
        trace = sent if several else Trace(sent, None)
    out: list[Generation | FirstTokenError] = []
    for request in requests:
        b = request.options.max_thinking_tokens
        first: Generation | None
        if b == 0 or trace is None:
            first = None
        elif b == budget:
            first = trace.generation
        else:
            first = at_budget(trace, region, b)
            if first is None:  # no token bytes to cut the trace by: this budget's own step 1
                first = yield backend.step(request.messages, region.open, text_grammar, b, request)
        body = "" if first is None else first.text
        cut = first is None or first.finish_reason == "length"
        try:
            out.append((yield from answer(backend, request, close(region, body, cut), first)))
        except FirstTokenError as e:  # this budget's answer failed; the others go on
            out.append(e)
    return out


class Continuing:
    """The two-step path of ``OpenAICompatible`` (mixed into it): which requests take it, their request bodies,
    and the drivers of the plans above (blocking, awaited, and a batch's families on the thread pool). It uses the
    backend's ``options``, ``engine``, ``request``, ``mode``, ``_steps``, ``_drive``, ``_adrive`` and
    ``count_tokens``."""

    options: Any
    engine: Any

    def cannot_continue(self) -> str | None:
        """Why this backend closes no region by continuation (None: it does, where the layout can be split)."""
        o = self.options
        if o.close_by == "grammar":
            return "close_by=grammar"
        if self.engine.continuation is None:
            return f"engine {o.engine} cannot continue a message"
        if o.schema_mode not in GRAMMAR_MODES:
            return f"schema_mode {o.schema_mode} carries no grammar to split"
        return "the model's own thinking is on (model_thinking=on)" if o.model_thinking == "on" else None

    def closes_by_continuation(self, constraint: Constraint | None) -> bool:
        """Whether this request's region is closed by continuation (else one request bounds it)."""
        return (constraint is not None and constraint.region is not None and constraint.split is not None
                and self.cannot_continue() is None and self.mode(constraint) in GRAMMAR_MODES)  # type: ignore[attr-defined]

    def region_path(self) -> str:
        """Which path a layout's reasoning region takes on this backend, in words (the probe says it)."""
        why = self.cannot_continue()
        if why is None:
            return "reasoning regions close by continuation: two requests a reply, the budget in the server's tokens"
        if self.options.schema_mode in GRAMMAR_MODES:
            return (f"one request a reply ({why}): a reasoning region is bounded by a grammar of {CHARS_PER_TOKEN} "
                    "characters a budget token")
        return f"one request a reply ({why}): a reasoning region is bounded by max_tokens only"

    def check_close_by(self) -> None:
        why = self.cannot_continue()
        if self.options.close_by == "continuation" and why:
            raise ConfigError(f"{self.label}: close_by=continuation, but {why}",  # type: ignore[attr-defined]
                              hint="leave close_by at auto: it takes one request where continuation cannot be used")

    def split_dialect(self) -> str:
        return GRAMMAR_MODES[self.options.schema_mode]

    def step(self, messages: Messages, prefix: str, grammar: str | None, limit: int, request: Request,
             logprobs: bool = False) -> dict[str, Any]:
        """One step's request: ``prefix`` as the start of the assistant's message (continued with the engine's
        continuation fields; none at all where it is empty), at most ``limit`` tokens, ``grammar`` on the new text."""
        o, engine = self.options, self.engine
        sent = [*messages, {"role": "assistant", "content": prefix}] if prefix else messages
        kwargs = self.request(sent, None, request.options.merged(max_thinking_tokens=0,  # type: ignore[attr-defined]
                                                                 max_answer_tokens=limit))
        kwargs[engine.limit_field] = limit  # exactly: not the model's own thinking on top
        fields = dict(engine.continuation or {}) if prefix else {}
        if grammar is not None:
            fields.update(engine.grammar_fields(o.schema_mode, engine.grammar_text(o.schema_mode, grammar, "auto")))
        fields.update(kwargs.get("extra_body", {}))  # the model's thinking fields and the user's extra_body win
        if fields:
            kwargs["extra_body"] = fields
        if logprobs:
            kwargs["logprobs"] = True
        return kwargs

    def step_result(self, kwargs: dict[str, Any], response: Any, seconds: float, retries: int) -> Any:
        """A step's reply: its own text (an echoed message cut), not split into reasoning; a ``Trace`` where it
        was sent with ``logprobs``."""
        gen = _http.generation(response, lambda extra: None, seconds, retries, split=False)
        last = kwargs["messages"][-1]
        if self.engine.echoes_prefix and last["role"] == "assistant":
            gen.text = unechoed(gen.text, last["content"])
        if not kwargs.get("logprobs"):
            return gen
        content = getattr(getattr(response.choices[0], "logprobs", None), "content", None)
        tokens = None if not content else [bytes(t.bytes) if getattr(t, "bytes", None) else t.token.encode()
                                           for t in content]
        return Trace(gen, tokens)

    def run_step(self, kwargs: dict[str, Any], on_text: Any = None) -> Any:
        return self._drive(self._steps(kwargs, partial(self.step_result, kwargs)), on_text)  # type: ignore[attr-defined]

    def follow(self, steps: Generator[dict[str, Any], Any, Any], on_text: Any = None) -> Any:
        """Drive a plan, blocking. ``on_text`` is shown the opener and step 1 as it streams, the rest at the end."""
        kwargs = next(steps)
        shown = ""
        if on_text:
            last = kwargs["messages"][-1]
            shown = last["content"] if last["role"] == "assistant" else ""
            on_text(shown)
        stream = on_text
        while True:
            try:
                result = self.run_step(kwargs, stream)
            except FirstTokenError as e:
                try:
                    kwargs = steps.throw(e)
                except StopIteration as done:
                    return done.value
                continue
            if stream:
                shown += result.text
                stream = None
            try:
                kwargs = steps.send(result)
            except StopIteration as done:
                if on_text and isinstance(done.value, Generation):
                    rest = done.value.text
                    on_text(rest[len(shown):] if rest.startswith(shown) else "\n" + rest)
                return done.value

    async def afollow(self, steps: Generator[dict[str, Any], Any, Any]) -> Any:
        """Drive a plan, awaited."""
        kwargs = next(steps)
        while True:
            result = await self._adrive(self._steps(kwargs, partial(self.step_result, kwargs)))  # type: ignore[attr-defined]
            try:
                kwargs = steps.send(result)
            except StopIteration as done:
                return done.value

    def generate_batch(self, requests: list[Request]) -> Iterator[Outcome]:
        """As ``BackendBase``'s (``parallel`` at once), but the budgets of one row that close by continuation
        share one trace (``family``): one job on the pool."""
        keys = budget_families(requests)
        groups: dict[str, list[int]] = {}
        jobs = []
        for i, key in enumerate(keys):
            if key is not None and self.closes_by_continuation(requests[i].constraint):
                groups.setdefault(key, []).append(i)
            else:
                jobs.append(partial(one_call, self, requests, i))
        jobs += [partial(self._family, requests, members) for members in groups.values()]
        yield from run_jobs(parallel_of(self), jobs)  # type: ignore[arg-type]

    def _family(self, requests: list[Request], members: list[int]) -> list[Outcome]:
        try:
            replies = self.follow(family(self, [requests[i] for i in members]))
        except FirstTokenError as e:  # the trace failed: so does every budget of the row
            return [(i, e) for i in members]
        except Exception as e:
            error = foreign(self, e, "call")  # type: ignore[arg-type]
            return [(i, error) for i in members]
        return list(zip(members, replies))
