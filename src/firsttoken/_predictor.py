"""``Predictor``: one signature, one layout, one backend. Calling it runs one row.

Flow: inputs -> layout.messages -> Request(messages, layout.constraint or None, options) -> backend
(``_backend.call``: the failure boundary) -> layout.parse -> Prediction (typed outputs + reasoning + usage,
and the Generation it came from). A reply that does not parse raises ParseError (with the raw reply and
usage); a failed call raises BackendError. Never a silent retry. Many rows go through the backend's
``generate_batch`` (``completed``: as they finish; ``batch``: in input order).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from functools import cached_property
from typing import Any

from ._async import acall, acompleted
from ._backend import Backend, Generation, Request, call, estimate_tokens, guarded_batch
from ._errors import ConfigError, FirstTokenError, ParseError
from ._options import OPTION_NAMES, GenerateOptions, make_options
from ._prediction import Prediction, Usage
from ._signature import Signature
from .layouts import Constraint, Layout, Parsed, get_layout


class Predictor:
    def __init__(self, signature: type[Signature], layout: str | Layout = "thoughts_first",
                 syntax: str | None = None, model: Backend | None = None,
                 demos: list[dict[str, Any]] | None = None, **options: Any):
        if not (isinstance(signature, type) and issubclass(signature, Signature)) or not signature.output_fields:
            raise ConfigError(f"{signature!r} is not a Signature subclass with output fields",
                              hint="declare `class MyTask(firsttoken.Signature): ...`")
        if model is None or not callable(getattr(model, "generate", None)):
            raise ConfigError("Predictor needs a model backend",
                              hint="pass model=firsttoken.load('smollm2-135m') or model=firsttoken.Scripted([...])")
        clash = OPTION_NAMES & set(signature.input_fields)
        if clash:
            raise ConfigError(f"input field {sorted(clash)[0]!r} has the name of a generation option",
                              hint="rename the input field")
        self.signature = signature
        self.layout = get_layout(layout, syntax)
        named = signature.reasoning_field()
        # A reasoning field (``thoughts: str`` first) is the layout's reasoning region where it has one.
        self.reasoning_field = named if self.layout.has_reasoning else None
        self.layout_signature = layout_signature(signature, self.layout)
        self.layout.check(self.layout_signature)
        self.model = model
        self.demos = list(demos or [])
        if named:  # a demo's reasoning field and its reasoning are one text (a demos file has "reasoning")
            self.demos = [{**d, named: d.get(named, d.get("reasoning") or ""),
                           "reasoning": d.get("reasoning", d.get(named))} for d in self.demos]
        for i, demo in enumerate(self.demos):
            missing = [n for n in [*signature.input_fields, *signature.output_fields] if n not in demo]
            if missing:
                raise ConfigError(f"demo {i}: missing field {missing[0]!r}",
                                  hint="each demo needs every input and output field")
        self.options = make_options(options)

    @cached_property
    def constraint(self) -> Constraint:
        return self.layout.constraint(self.layout_signature)

    def messages(self, **inputs: Any) -> list[dict[str, str]]:
        missing = [n for n in self.signature.input_fields if n not in inputs]
        if missing:
            raise ConfigError(f"missing input {missing[0]!r} for {self.signature.__name__}",
                              hint=f"call with {', '.join(f'{n}=...' for n in self.signature.input_fields)}")
        return self.layout.messages(self.layout_signature, inputs, self.demos)

    def split_kwargs(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], GenerateOptions]:
        inputs = {k: v for k, v in kwargs.items() if k in self.signature.input_fields}
        rest = {k: v for k, v in kwargs.items() if k not in self.signature.input_fields}
        unknown = [k for k in rest if k not in OPTION_NAMES]
        if unknown:
            raise ConfigError(f"{unknown[0]!r} is neither an input of {self.signature.__name__} nor an option",
                              hint=f"inputs: {', '.join(self.signature.input_fields)}; "
                                   f"options: {', '.join(sorted(OPTION_NAMES))}")
        return inputs, self.options.merged(**rest) if rest else self.options

    def request(self, row: dict[str, Any], on_text: Callable[[str], None] | None = None) -> Request:
        """The backend request for one row: its inputs and per-call options as keys."""
        inputs, options = self.split_kwargs(row)
        return Request(self.messages(**inputs), self.constraint if options.constrained else None, options, on_text)

    def __call__(self, *, on_text: Callable[[str], None] | None = None, **kwargs: Any) -> Prediction:
        """Run one row: inputs and per-call options as keywords; ``on_text`` streams the reply's text."""
        return self.finish(call(self.model, self.request(kwargs, on_text)))

    def completed(self, rows: list[dict[str, Any]], **options: Any) -> Iterator[tuple[int, Prediction | FirstTokenError]]:
        """Run many rows through the backend's ``generate_batch``; yield ``(index, Prediction or the error that
        ended that row)`` as each finishes, in whatever order (a concurrent backend finishes out of order)."""
        return completed_many([(self, {**row, **options}) for row in rows])

    def batch(self, rows: list[dict[str, Any]], **options: Any) -> list[Prediction | FirstTokenError]:
        """Run many rows (up to the backend's ``concurrency`` at once; 1 for local models). Returns, in input
        order, a Prediction or the error that ended that row's call."""
        results: list[Prediction | FirstTokenError | None] = [None] * len(rows)
        for i, out in self.completed(rows, **options):
            results[i] = out
        return results  # type: ignore[return-value]

    async def acall(self, **kwargs: Any) -> Prediction:
        """``__call__``, awaited (``_async``: a server's async client, or a worker thread for a local model)."""
        return self.finish(await acall(self.model, self.request(kwargs)))

    def acompleted(self, rows: list[dict[str, Any]], **options: Any) -> AsyncIterator[Done]:
        """``completed``, as an async iterator: ``async for i, out in predictor.acompleted(rows)``."""
        return acompleted_many([(self, {**row, **options}) for row in rows])

    async def abatch(self, rows: list[dict[str, Any]], **options: Any) -> list[Prediction | FirstTokenError]:
        """``batch``, awaited: in input order, a Prediction or the error that ended that row's call."""
        results: list[Prediction | FirstTokenError | None] = [None] * len(rows)
        async for i, out in self.acompleted(rows, **options):
            results[i] = out
        return results  # type: ignore[return-value]

    def finish(self, gen: Generation) -> Prediction:
        """Parse a generation into a Prediction, or raise ParseError carrying the usage."""
        try:
            if gen.finish_reason == "length":
                raise ParseError("the reply was cut at the token limit before it was complete", raw=gen.text,
                                 reasoning=gen.reasoning, hint="raise max_answer_tokens (or max_thinking_tokens)")
            parsed = self.layout.parse(self.layout_signature, gen.text, gen.reasoning)
        except ParseError as e:
            e.usage, e.generation = self._usage(gen, None), gen
            raise
        outputs = parsed.outputs
        if self.reasoning_field:  # the region is the field, in the signature's order
            outputs = {n: parsed.reasoning or "" if n == self.reasoning_field else outputs[n]
                       for n in self.signature.output_fields}
        return Prediction(outputs, parsed.reasoning, gen.text, self._usage(gen, parsed),
                          parsed.extras, parsed.order_violated, gen.closed_by, gen)

    def _usage(self, gen: Generation, parsed: Parsed | None) -> Usage:
        estimated = gen.estimated
        completion = gen.completion_tokens
        if completion is None:
            completion, estimated = estimate_tokens(gen.text + (gen.reasoning or "")), True
        prompt = gen.prompt_tokens
        if prompt is None:
            prompt, estimated = 0, True
        reasoning = gen.reasoning_tokens
        if reasoning is None:
            text = parsed.reasoning if parsed else None
            if text:
                count = getattr(self.model, "count_tokens", None)
                reasoning = count(text) if count else estimate_tokens(text)
                # counted in the model's own tokenizer (a server's tokenize endpoint) is not an estimate
                estimated = estimated or not (count and getattr(self.model, "counts_exactly", False))
            else:
                reasoning = 0
        reasoning = min(reasoning, completion)
        return Usage(prompt, reasoning, completion - reasoning, gen.seconds, estimated)


def layout_signature(signature: type[Signature], layout: Layout) -> type[Signature]:
    """The signature as ``layout`` sees it: without its reasoning field where the layout has a reasoning
    region (the region is that field)."""
    return signature.without_reasoning() if layout.has_reasoning else signature


Work = list[tuple["Predictor", dict[str, Any]]]  # rows of predictors that share one backend
Done = tuple[int, "Prediction | FirstTokenError"]  # a row's index and its prediction or error


def completed_many(work: Work) -> Iterator[Done]:
    """Rows of several predictors (e.g. the arms of an experiment) in one ``generate_batch`` of their shared
    backend, so a batching backend keeps its slots full across them; yield ``(index in work, Prediction or
    error)`` as each finishes. Every predictor must have the same ``model``."""
    backend, requests, at, refused = _requests(work)
    yield from refused
    if requests:
        for j, out in guarded_batch(backend, requests):
            yield _finished(work, at[j], out)


async def acompleted_many(work: Work) -> AsyncIterator[Done]:
    """``completed_many``, as an async iterator (``_async.acompleted``)."""
    backend, requests, at, refused = _requests(work)
    for out in refused:
        yield out
    if requests:
        async for j, gen in acompleted(backend, requests):
            yield _finished(work, at[j], gen)


def _requests(work: Work) -> tuple[Any, list[Request], list[int], list[tuple[int, FirstTokenError]]]:
    """The shared backend, the requests of the rows that make one, the index in ``work`` of each request, and
    the rows refused before any call (a missing input, an unknown option)."""
    if not work:
        return None, [], [], []
    backend = work[0][0].model
    if any(p.model is not backend for p, _ in work):
        raise ConfigError("completed_many: the predictors have different models",
                          hint="group the rows by model and run each group on its own")
    requests: list[Request] = []
    at: list[int] = []
    refused: list[tuple[int, FirstTokenError]] = []
    for i, (predictor, row) in enumerate(work):
        try:
            requests.append(predictor.request(row))
            at.append(i)
        except FirstTokenError as e:
            refused.append((i, e))
    return backend, requests, at, refused


def _finished(work: Work, i: int, out: Generation | FirstTokenError) -> Done:
    if isinstance(out, FirstTokenError):
        return i, out
    try:
        return i, work[i][0].finish(out)
    except ParseError as e:
        return i, e
