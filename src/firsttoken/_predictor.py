"""``Predictor``: one signature, one layout, one backend. Calling it runs one row.

Flow: inputs -> layout.messages -> backend.generate(messages, layout.constraint or None, options)
-> layout.parse -> Prediction (typed outputs + reasoning + usage). A reply that does not parse raises
ParseError (with the raw reply and usage); a failed call raises BackendError. Never a silent retry.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any

from ._errors import BackendError, ConfigError, FirstTokenError, ParseError
from ._options import OPTION_NAMES, GenerateOptions, make_options
from ._prediction import Prediction, Usage
from ._signature import Signature
from ._text import redact
from .backends import Backend, Generation, estimate_tokens
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
        self.layout.check(signature)
        self.model = model
        self.demos = list(demos or [])
        for i, demo in enumerate(self.demos):
            missing = [n for n in [*signature.input_fields, *signature.output_fields] if n not in demo]
            if missing:
                raise ConfigError(f"demo {i}: missing field {missing[0]!r}",
                                  hint="each demo needs every input and output field")
        self.options = make_options(options)

    @cached_property
    def constraint(self) -> Constraint:
        return self.layout.constraint(self.signature)

    def messages(self, **inputs: Any) -> list[dict[str, str]]:
        missing = [n for n in self.signature.input_fields if n not in inputs]
        if missing:
            raise ConfigError(f"missing input {missing[0]!r} for {self.signature.__name__}",
                              hint=f"call with {', '.join(f'{n}=...' for n in self.signature.input_fields)}")
        return self.layout.messages(self.signature, inputs, self.demos)

    def split_kwargs(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], GenerateOptions]:
        inputs = {k: v for k, v in kwargs.items() if k in self.signature.input_fields}
        rest = {k: v for k, v in kwargs.items() if k not in self.signature.input_fields}
        unknown = [k for k in rest if k not in OPTION_NAMES]
        if unknown:
            raise ConfigError(f"{unknown[0]!r} is neither an input of {self.signature.__name__} nor an option",
                              hint=f"inputs: {', '.join(self.signature.input_fields)}; "
                                   f"options: {', '.join(sorted(OPTION_NAMES))}")
        return inputs, self.options.merged(**rest) if rest else self.options

    def __call__(self, *, on_text: Callable[[str], None] | None = None, **kwargs: Any) -> Prediction:
        """Run one row: inputs and per-call options as keywords; ``on_text`` streams the reply's text."""
        inputs, options = self.split_kwargs(kwargs)
        messages = self.messages(**inputs)
        constraint = self.constraint if options.constrained else None
        return self.finish(self.generate(messages, constraint, options, on_text))

    def generate(self, messages: list[dict[str, str]], constraint: Constraint | None, options: GenerateOptions,
                 on_text: Callable[[str], None] | None = None) -> Generation:
        """The one place a backend is called: anything it raises that is not a firsttoken error (a bug in a
        plugin, a library's own exception) becomes a BackendError, so a run records it and goes on."""
        try:
            if on_text is None:
                return self.model.generate(messages, constraint, options)
            return self.model.generate(messages, constraint, options, on_text=on_text)
        except FirstTokenError:
            raise
        except Exception as e:
            label = getattr(self.model, "label", None) or getattr(self.model, "name", "backend")
            raise BackendError(redact(f"{label}: {type(e).__name__}: {e}"),
                               hint="the backend failed on this call; rerun to retry it") from e

    def batch(self, rows: list[dict[str, Any]], concurrency: int | None = None,
              **options: Any) -> list[Prediction | FirstTokenError]:
        """Run many rows, up to ``concurrency`` at once (default: the backend's own, 1 for local models).

        Returns, in input order, a Prediction or the error that ended that row's call.
        """
        workers = concurrency or getattr(self.model, "concurrency", 1)

        def one(row: dict[str, Any]) -> Prediction | FirstTokenError:
            try:
                return self(**row, **options)
            except FirstTokenError as e:
                return e

        if workers <= 1:
            return [one(row) for row in rows]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, rows))

    def finish(self, gen: Generation) -> Prediction:
        """Parse a generation into a Prediction, or raise ParseError carrying the usage."""
        try:
            if gen.finish_reason == "length":
                raise ParseError("the reply was cut at the token limit before it was complete", raw=gen.text,
                                 reasoning=gen.reasoning, hint="raise max_answer_tokens (or max_thinking_tokens)")
            parsed = self.layout.parse(self.signature, gen.text, gen.reasoning)
        except ParseError as e:
            e.usage = self._usage(gen, None)
            raise
        return Prediction(parsed.outputs, parsed.reasoning, gen.text, self._usage(gen, parsed),
                          parsed.extras, parsed.order_violated, gen.closed_by)

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
                estimated = True
            else:
                reasoning = 0
        reasoning = min(reasoning, completion)
        return Usage(prompt, reasoning, completion - reasoning, gen.seconds, estimated)
