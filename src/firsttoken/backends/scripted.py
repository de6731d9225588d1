"""``Scripted``: replies from a list, or from a function of the messages. For tests and dry runs.

Registered and built like every other backend. It ignores the constraint (it is not a model) and
estimates token counts (``estimated=True``). A reply that is an exception instance is raised, so
tests can script backend failures; ``delay`` sleeps before each reply, for a slow model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Union

from .._errors import BackendError, FirstTokenError
from .._options import GenerateOptions
from ..layouts import Constraint
from ._protocol import Generation, Messages, estimate_tokens

Reply = Union[str, Generation, BaseException]


class Scripted:
    name = "scripted"

    def __init__(self, replies: Iterable[Reply] | Callable[[Messages], Reply], *, delay: float = 0.0):
        self._fn = replies if callable(replies) else None
        self._replies = None if callable(replies) else list(replies)
        self.delay = delay
        self.calls: list[Messages] = []

    def generate(self, messages: Messages, constraint: Constraint | None, options: GenerateOptions,
                 on_text: Callable[[str], None] | None = None) -> Generation:
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

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)
