"""The backend protocol: generate a reply from chat messages, an optional constraint and options.

A backend is one class with ``generate`` (required) and ``count_tokens`` (optional). It raises only
``firsttoken`` errors (``BackendError`` and subclasses), never a library's own exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .._options import GenerateOptions
from ..layouts import Constraint

Messages = list[dict[str, str]]


@dataclass
class Generation:
    """One reply. Token counts are None where the backend could not count them."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None  # inside the constraint's region, delimiters excluded
    reasoning: str | None = None  # reasoning delivered apart from the text (thinking models on servers)
    seconds: float = 0.0
    estimated: bool = False
    closed_by: str | None = None  # "model" | "end_of_turn" | "budget"; None without a region
    finish_reason: str = "stop"  # "length": cut at the token limit, so not a complete reply
    retries: int = 0  # failed attempts before this reply (servers)


@runtime_checkable
class Backend(Protocol):
    name: str

    def generate(self, messages: Messages, constraint: Constraint | None, options: GenerateOptions,
                 on_text: Callable[[str], None] | None = None) -> Generation:
        """``constraint`` is None when the caller runs unconstrained (prompt only). ``on_text``, where
        given, receives the reply's text as it is generated."""
        ...


def estimate_tokens(text: str) -> int:
    """About four characters a token: the fallback where no tokenizer is at hand (marked estimated)."""
    return (len(text) + 3) // 4
