"""A ``--model`` spec, parsed once into (backend class, target, typed options).

    NAME:TARGET[?option=value&...]      a registered backend NAME (``openai:MODEL@URL``, ``scripted:mod:fn``)
    TARGET[?option=value&...]           the default backend (a packaged model name or a ``.gguf`` path)
    SHORT=SPEC                          either, called SHORT in reports (a label: never part of the identity)

A backend declares its options as a pydantic ``Options`` class (``BackendOptions``, ``extra="forbid"``): a
typo fails loudly, text from the command line is coerced to the field's type, and each field is either part
of the model's identity (it can change a reply: the default) or fetch-only (``fetch_only(...)``: how replies
are fetched, such as ``parallel`` or retries). A spec's identity (``ModelSpec.key``) is its target (without
secrets) and its identity options that differ from their defaults; the store keys arms and calls by it.
``ModelSpec.set(name, value)`` is how a command-line flag (``--parallel``, ``--model-option``) reaches a
backend: the field is set where the backend has one and the spec did not set it itself.

Does not handle: options whose value holds ``&`` (the query is split on it).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, replace
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ._errors import ConfigError

_FETCH_ONLY = "fetch_only"
_IDENTITY_NAME = "identity_name"


class DeprecatedSpelling(FutureWarning):
    """An option given by its old name (the command line prints it as one ``note:`` line)."""


def fetch_only(default: Any, **kwargs: Any) -> Any:
    """A field that changes how replies are fetched, never what they say: left out of a model's identity."""
    return Field(default, json_schema_extra={_FETCH_ONLY: True}, **kwargs)


class BackendOptions(BaseModel):
    """A backend's spec options, and its configuration: subclass it as the backend's ``Options``; every field is
    identity unless it is declared with ``fetch_only(...)``. A dict or list field takes JSON text in a spec
    (``?extra_body={...}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # old option name -> its new name: the old spelling still works, with a one-line note (DeprecatedSpelling)
    renamed: ClassVar[dict[str, str]] = {}

    # rows run at once: how replies are fetched, never what they say. Every backend has it; one whose rows
    # run one at a time whatever is asked (the default generate_batch at 1) simply keeps the default.
    parallel: int = fetch_only(1, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _old_spellings(cls, values: Any) -> Any:
        if not isinstance(values, dict) or not cls.renamed or not set(values) & set(cls.renamed):
            return values
        out = dict(values)
        for old, new in cls.renamed.items():
            if old in out:
                if new in out:
                    raise ValueError(f"{old} and {new} are the same option: give {new} alone")
                warnings.warn(f"option {old} is now {new} (same meaning, same identity); {old} still works",
                              DeprecatedSpelling, stacklevel=2)
                out[new] = out.pop(old)
        return out

    @field_validator("*", mode="before")
    @classmethod
    def _json_text(cls, value: Any, info: ValidationInfo) -> Any:
        annotation = str(cls.model_fields[info.field_name].annotation) if info.field_name else ""
        if isinstance(value, str) and value.lstrip()[:1] in ("{", "[") and ("dict" in annotation or "list" in annotation):
            try:
                return json.loads(value)
            except json.JSONDecodeError as e:
                raise ValueError(f"not valid JSON ({e.msg} at character {e.pos})") from None
        return value


def identity_name(default: str | None = None, **kwargs: Any) -> Any:
    """A field whose identity keeps an older name: a renamed option still means the same model (the same arm ids
    and call hashes as the stores made under the old name)."""
    return Field(default, json_schema_extra={_IDENTITY_NAME: kwargs.pop("name")}, **kwargs)


def _key_name(options: type[BackendOptions], name: str) -> str:
    extra = options.model_fields[name].json_schema_extra
    return str(extra.get(_IDENTITY_NAME, name)) if isinstance(extra, dict) else name


def is_fetch_only(options: type[BackendOptions], name: str) -> bool:
    extra = options.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get(_FETCH_ONLY))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


@dataclass(frozen=True)
class ModelSpec:
    """``backend`` is the registered class; ``prefixed``: the spec named its backend (``NAME:``)."""

    backend: type
    target: str
    options: BackendOptions
    prefixed: bool = True
    alias: str | None = None  # ``SHORT=SPEC``: what reports call the model

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def text(self) -> str:
        """The spec as written back (every option set explicitly, secrets kept: never show or store it)."""
        query = {k: _text(getattr(self.options, k)) for k in sorted(self.options.model_fields_set)}
        return self._prefix(self.target + (f"?{urlencode(query)}" if query else ""))

    @property
    def key(self) -> str:
        """The model's identity: what can change a reply (fetch-only options and secrets left out)."""
        cls = type(self.options)
        defaults = cls()
        kept = {_key_name(cls, k): _text(getattr(self.options, k)) for k in cls.model_fields
                if not is_fetch_only(cls, k) and getattr(self.options, k) != getattr(defaults, k)}
        kept = dict(sorted(kept.items()))
        target = self.backend.public_target(self.target)
        return self._prefix(target + (f"?{urlencode(kept)}" if kept else ""))

    def _prefix(self, text: str) -> str:
        return f"{self.name}:{text}" if self.prefixed else text

    def set(self, name: str, value: Any) -> ModelSpec:
        """This spec with option ``name`` set to ``value``, where its backend has that option and the spec did
        not set it; otherwise unchanged."""
        new = type(self.options).renamed.get(name, name)  # an old name is renamed (with its note) by the Options
        if new not in type(self.options).model_fields or new in self.options.model_fields_set:
            return self
        values = {k: getattr(self.options, k) for k in self.options.model_fields_set}
        return replace(self, options=make_options(self.backend, {**values, name: value}, self.text))

    def takes(self, name: str) -> bool:
        return type(self.options).renamed.get(name, name) in type(self.options).model_fields

    def check(self) -> None:
        """Fail now, with the fix, if this spec cannot work (nothing is loaded or sent)."""
        self.backend.check_spec(self)

    def build(self) -> Any:
        """The backend (a ``Backend``) this spec names, built: ``backend.from_spec(self)``."""
        return self.backend.from_spec(self)

    def enforcement(self, constraint: Any) -> str | None:
        """What the backend would enforce of ``constraint`` (None: nothing, prompt-only), without building it."""
        return None if constraint is None else self.backend.spec_enforcement(self, constraint)


def make_options(backend: type, values: dict[str, Any], spec: str) -> BackendOptions:
    options_cls = backend.Options
    try:
        return options_cls(**values)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "options"
        names = ", ".join(options_cls.model_fields) or "none"
        if err["type"] == "extra_forbidden":
            message = f"model {spec!r}: unknown option {where!r}"
        else:
            given = next((values[k] for k in (where, *[o for o, n in options_cls.renamed.items() if n == where])
                          if k in values), None)
            message = f"model {spec!r}: option {where}={given!r}: {err['msg'].removeprefix('Value error, ')}"
        raise ConfigError(message, hint=f"options of {backend.name}: {names}") from None


ALIAS = re.compile(r"([A-Za-z][\w.-]{0,39})=(.+)", re.S)


def parse(spec: str, backends: Mapping[str, type], default: str | None) -> ModelSpec:
    """The one parser of ``--model`` specs: ``SHORT=``, then ``NAME:`` (a backend in ``backends``) or a target for
    the ``default`` backend, then ``?option=value&...``, typed by the backend's ``Options``."""
    m = ALIAS.fullmatch(spec)
    if m:
        return replace(parse(m.group(2), backends, default), alias=m.group(1))
    name, sep, rest = spec.partition(":")
    backend = backends.get(name) if sep else None
    prefixed = backend is not None
    if backend is None:
        if default is None:
            prefixes = ", ".join(f"{n}:" for n in backends)
            raise ConfigError(f"unknown model {spec!r}", hint=f"use a spec with one of: {prefixes}")
        backend, rest = backends[default], spec
    target, _, query = rest.partition("?")
    values: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in values:
            raise ConfigError(f"model {spec!r}: option {key} is given twice", hint="give each option once")
        values[key] = value
    return ModelSpec(backend, target, make_options(backend, values, spec), prefixed)
