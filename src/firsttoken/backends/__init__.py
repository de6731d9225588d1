"""The backend registry: every backend, and every ``--model`` spec, goes through it.

    register_backend(OpenAICompatible)              # its ``name`` is the spec prefix: openai:MODEL@URL?...
    register_backend(LlamaCpp, default=True)        # specs without a registered prefix go here

``parse_spec(spec)`` turns a ``--model`` spec into a ``ModelSpec`` once (backend class, target, typed
options; see ``_spec``); everything else works on that: ``.key`` (identity), ``.check()``, ``.build()``,
``.enforcement(constraint)``, ``.set(option, value)``. ``resolve(spec)`` builds the backend a spec names.
``build_backend(name, **kwargs)`` makes one from keyword arguments. Backends other packages publish in the
``firsttoken.backends`` entry-point group are registered when a spec first names an unknown prefix
(``load_plugins``). Built-in backends register below
through the same call a plugin uses, one line each; heavy libraries (llama_cpp, openai) are imported only
when a backend is built.
"""

from __future__ import annotations

from typing import Any

from .._backend import Backend, BackendBase, Generation, Messages, Request, estimate_tokens
from .._errors import ConfigError, ModelNotFoundError
from .._models import CATALOGUE
from .._spec import BackendOptions, ModelSpec, fetch_only, parse
from .llamacpp import LlamaCpp, load
from .openai_compat import OpenAICompatible
from .scripted import Scripted

_REGISTRY: dict[str, type] = {}
_DEFAULT: list[str] = []  # the name of the backend that takes specs without a prefix


def register_backend(backend: type, *, default: bool = False) -> None:
    """Register a backend class under its ``name``: ``--model NAME:TARGET?options`` builds it with
    ``backend.from_spec``; ``default=True``: also every spec without a registered prefix."""
    name = getattr(backend, "name", None)
    options = getattr(backend, "Options", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"backend {backend!r} has no usable name", hint="give the class name = 'mine' (a spec prefix)")
    if not (isinstance(options, type) and issubclass(options, BackendOptions)):
        raise ConfigError(f"backend {name!r}: Options must subclass firsttoken's BackendOptions",
                          hint="subclass ft.BackendBase, or declare class Options(ft.BackendOptions)")
    if not callable(getattr(backend, "from_spec", None)):
        raise ConfigError(f"backend {name!r} has no from_spec(spec)", hint="subclass ft.BackendBase")
    _REGISTRY[name] = backend
    if default:
        _DEFAULT[:] = [name]


def build_backend(name: str, **kwargs: Any) -> Backend:
    try:
        backend = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown backend {name!r}", hint=f"use one of: {', '.join(_REGISTRY)}") from None
    return backend(**kwargs)


def backend_names() -> list[str]:
    load_plugins()
    return list(_REGISTRY)


def spec_prefixes() -> list[str]:
    return [f"{name}:" for name in _REGISTRY]


def parse_spec(spec: str | ModelSpec) -> ModelSpec:
    """A ``--model`` spec parsed (``_spec.parse``) against the registered backends; a ``ModelSpec`` as it is."""
    if isinstance(spec, ModelSpec):
        return spec
    name, sep, _ = spec.partition(":")
    if sep and name not in _REGISTRY and name.isidentifier():
        load_plugins()
    return parse(spec, _REGISTRY, _DEFAULT[0] if _DEFAULT else None)


GROUP = "firsttoken.backends"
_PLUGINS: list[str] = []  # entry points already loaded


def load_plugins() -> None:
    """Register the backends other packages publish in the ``firsttoken.backends`` entry-point group (in their
    pyproject.toml: ``[project.entry-points."firsttoken.backends"] mine = "mine_pkg:MineBackend"``), so that
    ``--model mine:...`` works from a shell. Each is loaded once; one that fails to load is one line naming it."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=GROUP):
        if ep.name in _PLUGINS or ep.name in _REGISTRY:
            continue
        _PLUGINS.append(ep.name)
        try:
            backend = ep.load()
        except Exception as e:
            where = f" (package {ep.dist.name})" if ep.dist is not None else ""
            raise ConfigError(f"the backend plugin {ep.name!r} = {ep.value!r}{where} failed to load: "
                              f"{type(e).__name__}: {e}", hint="fix or uninstall that package") from None
        if getattr(backend, "name", None) != ep.name:
            raise ConfigError(f"the backend plugin {ep.name!r} = {ep.value!r} is named "
                              f"{getattr(backend, 'name', None)!r}", hint="its entry point's name must be its name")
        register_backend(backend)


def check_spec(spec: str | ModelSpec) -> ModelSpec:
    """The parsed spec, checked: fails now, with the fix, on a spec that cannot work (no model loaded)."""
    parsed = parse_spec(spec)
    try:
        parsed.check()
    except ModelNotFoundError as e:
        if parsed.prefixed or parsed.target in CATALOGUE:
            raise
        raise ModelNotFoundError(e.message, hint=f"{e.hint}, or a spec with one of the prefixes "
                                                 f"{', '.join(spec_prefixes())}") from None
    return parsed


def resolve(spec: str | ModelSpec) -> Backend:
    """The backend a ``--model`` spec names, built (a local model is loaded here)."""
    return check_spec(spec).build()


def model_key(spec: str | ModelSpec) -> str:
    """A spec's identity: what can change a reply (fetch-only options and secrets left out)."""
    return parse_spec(spec).key


register_backend(Scripted)
register_backend(OpenAICompatible)
register_backend(LlamaCpp, default=True)

__all__ = ["Backend", "BackendBase", "BackendOptions", "Generation", "LlamaCpp", "Messages", "ModelSpec",
           "OpenAICompatible", "Request", "Scripted", "backend_names", "build_backend", "check_spec",
           "estimate_tokens", "fetch_only", "load", "model_key", "parse_spec", "register_backend", "resolve",
           "spec_prefixes"]
