"""``Scripted``: replies from a list, or from a function of the messages. For tests and dry runs.

Registered and built like every other backend; ``--model scripted:module:function`` names a function of
the messages. It ignores the constraint (it is not a model) and estimates token counts
(``estimated=True``). A reply that is an exception instance is raised, so tests can script backend
failures; ``delay`` sleeps before each reply, for a slow model.
Since it applies no constraint, its arms are labelled prompt-only, unless the caller declares what holds
the replies (``enforces="script"``, or an ``enforces`` attribute on the script function): for tests of
code that treats constrained and prompt-only arms differently.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Union

from .._backend import BackendBase, Generation, Messages, Request, estimate_tokens
from .._errors import BackendError, FirstTokenError
from .._imports import import_object
from .._spec import ModelSpec

Reply = Union[str, Generation, BaseException]


class Scripted(BackendBase):
    name = "scripted"

    def __init__(self, replies: Iterable[Reply] | Callable[[Messages], Reply], *, delay: float = 0.0,
                 label: str = "scripted", enforces: str | None = None):
        self.label = label
        self.enforces = enforces if enforces is not None else getattr(replies, "enforces", None)
        self._fn = replies if callable(replies) else None
        self._replies = None if callable(replies) else list(replies)
        self.delay = delay
        self.calls: list[Messages] = []

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> Scripted:
        """``scripted:module:function`` (``function(messages) -> reply text``)."""
        return cls(_function(spec.target), label=spec.key)

    @classmethod
    def check_spec(cls, spec: ModelSpec) -> None:
        _function(spec.target)

    @classmethod
    def spec_enforcement(cls, spec: ModelSpec, constraint: object) -> str | None:
        return getattr(_function(spec.target), "enforces", None)

    def enforcement(self, constraint: object) -> str | None:
        return self.enforces if constraint is not None else None

    def generate(self, request: Request) -> Generation:
        messages, on_text = request.messages, request.on_text
        self.calls.append(messages)
        if self.delay:
            time.sleep(self.delay)
        if self._fn is not None:
            try:
                reply = self._fn(messages)
            except FirstTokenError:
                raise
            except Exception as e:  # the script's failure is the backend's failure
                raise BackendError(f"scripted failure: {type(e).__name__}: {e}") from e
        elif len(self.calls) <= len(self._replies or []):
            reply = self._replies[len(self.calls) - 1]  # type: ignore[index]
        else:
            raise BackendError(f"scripted backend has no reply for call {len(self.calls)}",
                               hint="give Scripted(...) one reply per call, or a function")
        if isinstance(reply, FirstTokenError):
            raise reply
        if isinstance(reply, BaseException):
            raise BackendError(f"scripted failure: {reply}") from reply
        if isinstance(reply, Generation):
            return reply
        if on_text:
            on_text(reply)
        prompt = sum(estimate_tokens(m["content"]) for m in messages)
        return Generation(text=reply, prompt_tokens=prompt, completion_tokens=estimate_tokens(reply),
                          estimated=True)


def _function(rest: str) -> Callable[[Messages], Reply]:
    return import_object(rest, "model scripted:", "--model scripted:mytests.fake:reply")
