"""The backend registry: every backend, and every ``--model`` spec, goes through it.

    register_backend("openai", OpenAICompatible, from_spec=..., key=...)

``build_backend(name, **kwargs)`` makes one from keyword arguments. ``resolve(spec)`` makes one from a
``--model`` spec: ``NAME:REST`` goes to the backend registered as ``NAME`` with a spec parser; a spec
without a registered prefix goes to the default backend (local models: packaged names and ``.gguf`` paths).
``model_key(spec)`` is a spec's identity (what can change a reply); ``check_spec(spec)`` names a bad spec
before any model is loaded; ``spec_enforcement(spec, constraint)`` says what the spec's backend would
enforce of a constraint, also without loading a model. Built-in backends register below through the same call a plugin uses, one
line each; heavy libraries (llama_cpp, openai) are imported only when a backend is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._backend import Backend, BackendBase, Generation, Messages, Request, estimate_tokens
from .._errors import ConfigError
from . import llamacpp, openai_compat, scripted
from .llamacpp import LlamaCpp
from .openai_compat import OpenAICompatible
from .scripted import Scripted


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., Backend]
    from_spec: Callable[[str], Backend] | None
    key: Callable[[str], str] | None
    check: Callable[[str], Any] | None
    default: bool
    rows_at_once: str | None  # the spec option that sets how many rows run at once
    enforced: Callable[[str, Any], str | None] | None  # (REST, constraint) -> what is enforced, None: nothing


_REGISTRY: dict[str, _Entry] = {}


def register_backend(name: str, factory: Callable[..., Backend], *, from_spec: Callable[[str], Backend] | None = None,
                     key: Callable[[str], str] | None = None, check: Callable[[str], Any] | None = None,
                     default: bool = False, rows_at_once: str | None = None,
                     enforced: Callable[[str, Any], str | None] | None = None) -> None:
    """``factory(**kwargs)`` builds the backend. With ``from_spec``, ``--model NAME:REST`` builds it from
    REST (``default=True``: also every spec without a registered prefix, given whole). ``key(REST)`` is a
    spec's identity (default: REST itself); ``check(REST)`` validates cheaply (default: ``from_spec``);
    ``rows_at_once`` names the spec's ``?option=N`` that ``--parallel N`` sets; ``enforced(REST,
    constraint)`` names what the backend enforces of a constraint (default: nothing, so its arms are
    labelled prompt-only)."""
    _REGISTRY[name] = _Entry(factory, from_spec, key, check, default, rows_at_once, enforced)


def build_backend(name: str, **kwargs: Any) -> Backend:
    try:
        entry = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown backend {name!r}", hint=f"use one of: {', '.join(_REGISTRY)}") from None
    return entry.factory(**kwargs)


def backend_names() -> list[str]:
    return list(_REGISTRY)


def spec_prefixes() -> list[str]:
    return [f"{name}:" for name, e in _REGISTRY.items() if e.from_spec is not None]


def _entry(spec: str) -> tuple[str, _Entry, str]:
    """(name, entry, the spec text its parser gets) for a ``--model`` spec."""
    name, sep, rest = spec.partition(":")
    entry = _REGISTRY.get(name) if sep else None
    if entry is not None and entry.from_spec is not None:
        return name, entry, rest
    default = next(((n, e) for n, e in _REGISTRY.items() if e.default and e.from_spec), None)
    if default is None:
        raise ConfigError(f"unknown model {spec!r}", hint=f"use a spec with one of: {', '.join(spec_prefixes())}")
    return default[0], default[1], spec


def resolve(spec: str) -> Backend:
    """The backend a ``--model`` spec names, built (a local model is loaded here)."""
    _, entry, rest = _entry(spec)
    return entry.from_spec(rest)  # type: ignore[misc]


def check_spec(spec: str) -> None:
    """Fail now, with the fix, on a spec that cannot work (without loading a model)."""
    _, entry, rest = _entry(spec)
    (entry.check or entry.from_spec)(rest)  # type: ignore[misc]


def spec_enforcement(spec: str, constraint: Any) -> str | None:
    """What the backend a spec names enforces of ``constraint`` (None: nothing), without building it."""
    _, entry, rest = _entry(spec)
    return entry.enforced(rest, constraint) if constraint is not None and entry.enforced else None


def with_parallel(spec: str, n: int) -> str:
    """``spec`` running ``n`` rows at once (``--parallel``), where its backend can and the spec does not say."""
    _, entry, _ = _entry(spec)
    option = entry.rows_at_once
    if option is None or f"{option}=" in spec.partition("?")[2]:
        return spec
    return f"{spec}{'&' if '?' in spec else '?'}{option}={n}"


def model_key(spec: str) -> str:
    """A spec's identity: what can change a reply (fetch-only options and secrets left out)."""
    name, entry, rest = _entry(spec)
    if entry.key is None:
        return spec
    key = entry.key(rest)
    return key if rest == spec else f"{name}:{key}"


register_backend("scripted", Scripted, from_spec=scripted.from_spec, enforced=scripted.enforced_by_spec)
register_backend("openai", OpenAICompatible, from_spec=openai_compat.from_spec, key=openai_compat.spec_key,
                 rows_at_once="concurrency", enforced=lambda rest, c: openai_compat.from_spec(rest).enforced(c))
register_backend("llamacpp", LlamaCpp, from_spec=llamacpp.from_spec, key=llamacpp.spec_key,
                 check=llamacpp.check_spec, default=True, rows_at_once="parallel",
                 enforced=lambda rest, c: "llguidance")

__all__ = ["Backend", "BackendBase", "Generation", "LlamaCpp", "Messages", "OpenAICompatible", "Request", "Scripted",
           "backend_names", "build_backend", "check_spec", "estimate_tokens", "model_key", "register_backend",
           "resolve", "spec_enforcement", "spec_prefixes", "with_parallel"]
