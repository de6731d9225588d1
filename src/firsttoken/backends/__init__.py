"""The backend registry. Built-in backends register through the same call a user's plugin uses.

``register_backend("name", factory)``; ``build_backend("name", **kwargs)`` makes one.
Real backends (``LlamaCpp``, ``OpenAICompatible``) import their heavy libraries only when built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._errors import ConfigError
from ._protocol import Backend, Generation, Messages, estimate_tokens
from .llamacpp import LlamaCpp
from .openai_compat import OpenAICompatible
from .scripted import Scripted

_REGISTRY: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str, factory: Callable[..., Backend]) -> None:
    _REGISTRY[name] = factory


def build_backend(name: str, **kwargs: Any) -> Backend:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown backend {name!r}", hint=f"use one of: {', '.join(_REGISTRY)}") from None
    return factory(**kwargs)


def backend_names() -> list[str]:
    return list(_REGISTRY)


register_backend("scripted", Scripted)
register_backend("llamacpp", LlamaCpp)
register_backend("openai", OpenAICompatible)

__all__ = ["Backend", "Generation", "LlamaCpp", "Messages", "OpenAICompatible", "Scripted", "backend_names", "build_backend",
           "estimate_tokens", "register_backend"]
