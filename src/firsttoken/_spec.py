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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ._errors import ConfigError

if TYPE_CHECKING:
    from ._backend import Backend

_FETCH_ONLY = "fetch_only"


class BackendOptions(BaseModel):
    """A backend's spec options. Subclass it as the backend's ``Options``; every field is identity unless it is
    declared with ``fetch_only(...)``. A dict or list field takes JSON text in a spec (``?extra_body={...}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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


def fetch_only(default: Any, **kwargs: Any) -> Any:
    """A field that changes how replies are fetched, never what they say: left out of a model's identity."""
    return Field(default, json_schema_extra={_FETCH_ONLY: True}, **kwargs)


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
        defaults = type(self.options)()
        kept = {k: _text(getattr(self.options, k)) for k in sorted(type(self.options).model_fields)
                if not is_fetch_only(type(self.options), k) and getattr(self.options, k) != getattr(defaults, k)}
        target = self.backend.public_target(self.target)
        return self._prefix(target + (f"?{urlencode(kept)}" if kept else ""))

    def _prefix(self, text: str) -> str:
        return f"{self.name}:{text}" if self.prefixed else text

    def set(self, name: str, value: Any) -> ModelSpec:
        """This spec with option ``name`` set to ``value``, where its backend has that option and the spec did
        not set it; otherwise unchanged."""
        if name not in type(self.options).model_fields or name in self.options.model_fields_set:
            return self
        values = {k: getattr(self.options, k) for k in self.options.model_fields_set}
        return replace(self, options=make_options(self.backend, {**values, name: value}, self.text))

    def takes(self, name: str) -> bool:
        return name in type(self.options).model_fields

    def check(self) -> None:
        """Fail now, with the fix, if this spec cannot work (nothing is loaded or sent)."""
        self.backend.check_spec(self)

    def build(self) -> Backend:
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
            message = f"model {spec!r}: option {where}={values.get(where)!r}: {err['msg']}"
        raise ConfigError(message, hint=f"options of {backend.name}: {names}") from None


ALIAS = re.compile(r"([A-Za-z][\w.-]{0,39})=(.+)", re.S)


def split_alias(spec: str) -> tuple[str | None, str]:
    """``SHORT=SPEC`` -> (SHORT, SPEC); a spec without one -> (None, spec)."""
    m = ALIAS.fullmatch(spec)
    return (m.group(1), m.group(2)) if m else (None, spec)


def parse_query(backend: type, target: str, query: str, spec: str, prefixed: bool) -> ModelSpec:
    values: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in values:
            raise ConfigError(f"model {spec!r}: option {key} is given twice", hint="give each option once")
        values[key] = value
    return ModelSpec(backend, target, make_options(backend, values, spec), prefixed)
