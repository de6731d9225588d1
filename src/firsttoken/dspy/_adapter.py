"""``Adapter``: DSPy signatures under any firsttoken layout, parsed by firsttoken's strict parser.

    dspy.configure(lm=firsttoken.dspy.LM("qwen2.5-coder-1.5b"), adapter=firsttoken.dspy.Adapter("thoughts_first"))

Per call: the DSPy signature becomes a firsttoken ``Signature`` (``Signature.from_dspy``; a first ``str`` output
named ``thoughts``/``reasoning``/... is the layout's reasoning region, so ``dspy.ChainOfThought``'s
``reasoning`` is the region), the layout writes the messages (demos as its worked examples), and the reply is
parsed by the layout: a reply that does not parse raises DSPy's ``AdapterParseError``, never a fallback to
another format. With ``LM`` the request carries the layout's constraint and the backend enforces it; with any
other DSPy LM (or a backend that cannot carry this layout's constraint) the layout is only asked for in the
prompt, and a ``NotEnforced`` warning says so, once per LM and layout.

DSPy's settings (the LM's own, then the call's) map onto firsttoken's options: ``temperature``, ``top_p``,
``seed``, ``max_tokens`` (the answer's tokens; the reasoning region has ``max_thinking_tokens``) and
``rollout_id``; ``n`` must be 1.
Does not handle: tools, ``dspy.History``, images, native-reasoning types (``dspy.Reasoning``), streaming.
"""

from __future__ import annotations

import warnings
from typing import Any

import dspy
from dspy import lm15
from dspy.utils.exceptions import AdapterParseError

from .._backend import Generation, enforcement
from .._errors import ConfigError, ParseError
from .._options import make_options
from .._predictor import Predictor
from .._signature import Signature
from ..layouts import get_layout
from ._engine import EXTENSION, LM

_SETTINGS = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "max_tokens": "max_answer_tokens"}


class NotEnforced(UserWarning):
    """The layout's constraint is asked for in the prompt but nothing enforces it."""


class Adapter(dspy.Adapter):
    def __init__(self, layout: str = "thoughts_first", syntax: str | None = None, *, constrained: bool = True,
                 max_thinking_tokens: int = 512, max_answer_tokens: int = 1024, callbacks: list | None = None):
        super().__init__(callbacks=callbacks)
        self.layout = get_layout(layout, syntax)
        self.options = make_options({"constrained": constrained, "max_thinking_tokens": max_thinking_tokens,
                                     "max_answer_tokens": max_answer_tokens})
        self._signatures: dict[Any, type[Signature]] = {}
        self._warned: set[tuple[int, str]] = set()

    def __repr__(self) -> str:
        return f"firsttoken.dspy.Adapter({self.layout.name!r}, {self.layout.syntax!r})"

    # --- DSPy's Adapter API -----------------------------------------------------------------------
    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: list[Any],
                 inputs: dict[str, Any]) -> list[dict[str, Any]]:
        predictor, request, extra = self._request(lm, lm_kwargs, signature, demos, inputs)
        return [self._parsed(predictor, signature, lm(request, **extra))]

    async def acall(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: list[Any],
                    inputs: dict[str, Any]) -> list[dict[str, Any]]:
        predictor, request, extra = self._request(lm, lm_kwargs, signature, demos, inputs)
        return [self._parsed(predictor, signature, await lm.acall(request, **extra))]

    def format(self, signature: Any, demos: list[Any], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        """The chat messages the layout writes for these inputs and demos."""
        return self._predictor(signature, demos).messages(**self._inputs(signature, inputs))

    def parse(self, signature: Any, completion: str) -> dict[str, Any]:
        """A reply (its text) parsed by the layout into the signature's output fields."""
        return self._outputs(self._predictor(signature, []), signature, Generation(completion))

    # --- ours ----------------------------------------------------------------------------------------
    def signature(self, dspy_signature: Any) -> type[Signature]:
        """The firsttoken signature of a DSPy one (converted once)."""
        if dspy_signature not in self._signatures:
            self._signatures[dspy_signature] = Signature.from_dspy(dspy_signature)
        return self._signatures[dspy_signature]

    def _predictor(self, dspy_signature: Any, demos: list[Any]) -> Predictor:
        sig = self.signature(dspy_signature)
        return Predictor(sig, self.layout, model=_NO_MODEL, demos=_complete_demos(sig, demos),
                         **self.options.model_dump())

    def _inputs(self, dspy_signature: Any, inputs: dict[str, Any]) -> dict[str, Any]:
        return {name: inputs[name] for name in self.signature(dspy_signature).input_fields if name in inputs}

    def _request(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: list[Any],
                 inputs: dict[str, Any]) -> tuple[Predictor, lm15.Request, dict[str, Any]]:
        predictor = self._predictor(signature, demos)
        # the LM's own settings (dspy.LM(temperature=...)) under the call's: an explicit Request carries them all
        own = {k: v for k, v in (getattr(lm, "kwargs", None) or {}).items() if k in _SETTINGS}
        options, extra = self._options({**own, **lm_kwargs})
        messages = predictor.messages(**self._inputs(signature, inputs))
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [lm15.Message.user(m["content"]) if m["role"] == "user" else lm15.Message.assistant(m["content"])
                 for m in messages if m["role"] != "system"]
        config: dict[str, Any] = {"temperature": options.temperature, "top_p": options.top_p, "seed": options.seed,
                                  "max_tokens": options.max_answer_tokens + options.max_thinking_tokens}
        enforced = None
        if isinstance(lm, LM):
            constraint = predictor.constraint if options.constrained else None
            key = lm.engine.constraint_key(constraint) if constraint is not None else None
            config["extensions"] = {EXTENSION: {"constraint": key, "options": options.model_dump()}}
            enforced = enforcement(lm.backend, constraint)
        if enforced is None and options.constrained:
            self._warn(lm)
        return predictor, lm15.Request(model=lm.model, messages=tuple(turns), system=system or None,
                                       config=lm15.Config(**config)), extra

    def _options(self, lm_kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """DSPy's per-call settings as our options, and what goes to the LM call itself (``rollout_id``)."""
        changes, extra = {}, {}
        for key, value in lm_kwargs.items():
            if value is None:
                continue
            if key in _SETTINGS:
                changes[_SETTINGS[key]] = value
            elif key == "rollout_id":
                extra[key] = value
            elif key == "n" and value == 1:
                continue
            else:
                raise ConfigError(f"firsttoken.dspy.Adapter: the setting {key}={value!r} is not supported",
                                  hint="it takes temperature, top_p, seed, max_tokens, rollout_id (and n=1)")
        return (self.options.merged(**changes) if changes else self.options), extra

    def _warn(self, lm: Any) -> None:
        key = (id(lm), f"{self.layout.name}/{self.layout.syntax}")
        if key not in self._warned:
            self._warned.add(key)
            why = "its backend cannot carry this layout's constraint" if isinstance(lm, LM) else \
                "it is not a firsttoken.dspy.LM"
            warnings.warn(f"{lm.model}: layout {key[1]} is asked for in the prompt but not enforced ({why}); "
                          f"replies may not parse", NotEnforced, stacklevel=4)

    def _parsed(self, predictor: Predictor, signature: Any, response: lm15.Response) -> dict[str, Any]:
        parts = response.message.parts
        text = "".join(p.text for p in parts if getattr(p, "type", "") == "text")
        thinking = "".join(p.text for p in parts if getattr(p, "type", "") == "thinking")
        usage = response.usage
        gen = Generation(text, prompt_tokens=usage.input_tokens, completion_tokens=usage.output_tokens,
                         reasoning=thinking or None, finish_reason="length" if response.finish_reason == "length"
                         else "stop")
        return self._outputs(predictor, signature, gen)

    def _outputs(self, predictor: Predictor, signature: Any, gen: Generation) -> dict[str, Any]:
        try:
            prediction = predictor.finish(gen)
        except ParseError as e:
            raise AdapterParseError(adapter_name=repr(self), signature=signature, lm_response=gen.text,
                                    message=f"{e.message} (layout {self.layout.name}/{self.layout.syntax})") from e
        return {name: prediction.outputs[name] for name in signature.output_fields}


def _complete_demos(sig: type[Signature], demos: list[Any]) -> list[dict[str, Any]]:
    """DSPy's demos (``dspy.Example``s or dicts) as the layout's worked examples: those with every input and
    every answer field (a missing reasoning field is left empty; a ``reasoning`` key is the region's text where
    the signature has no reasoning field); a partial demo is left out."""
    reasoning = sig.reasoning_field()
    needed = [*sig.input_fields, *(n for n in sig.output_fields if n != reasoning)]
    out = []
    for demo in demos:
        values = dict(demo.items()) if hasattr(demo, "items") else dict(demo)
        if all(values.get(n) is not None for n in needed):
            out.append({n: values[n] for n in [*needed, reasoning or "reasoning"] if n in values})
    return out


class _NoModel:
    """The adapter's Predictor formats and parses; the LM generates."""

    label, parallel = "dspy", 1

    def generate(self, request: Any) -> Any:
        raise ConfigError("the adapter does not call a model itself")


_NO_MODEL = _NoModel()
