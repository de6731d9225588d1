"""The layout registry. Built-in layouts register through the same call a user's own layout uses.

A user's layout may also be named by reference where a layout name goes (``--layouts my.py:StepsFirst``):
``load_layout`` imports and registers it. Its module's text joins the identity of the arms that use it
(``layout_source``), since a user's edits do not raise the class's ``version``.
"""

from __future__ import annotations

import hashlib
import inspect
import sys

from .._errors import ConfigError
from .._imports import absolute_ref, import_object
from ._base import Constraint, Layout, Parsed, Region
from ._ordered import AnswerThenExplain, Direct, ThoughtsFirst, ThoughtsLong
from ._think import ThinkThenAnswer
from ._work import WorkThenAnswer

_REGISTRY: dict[str, type[Layout]] = {}
_REFS: dict[str, str] = {}


def register_layout(cls: type[Layout]) -> type[Layout]:
    """Register a Layout subclass under ``cls.name`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Layout)) or not getattr(cls, "name", None):
        raise ConfigError(f"{cls!r} is not a Layout subclass with a name",
                          hint="subclass firsttoken.Layout and set `name` and `description`")
    _REGISTRY[cls.name] = cls
    return cls


def get_layout(name: str | Layout, syntax: str | None = None) -> Layout:
    """A layout instance by name (or the instance itself), in the given syntax (default: its first)."""
    if isinstance(name, Layout):
        return name
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown layout {name!r}",
                          hint=f"use one of: {', '.join(_REGISTRY)} (see `firsttoken layouts`)") from None
    return cls(syntax)


def load_layout(name: str) -> str:
    """A layout's name: ``name`` itself, or for a reference (``module:Class``, ``file.py:Class``) the name of
    the class it loads, registered (refused where another layout has that name)."""
    if ":" not in name:
        return name
    cls = import_object(name, "layout", "my_layouts.py:StepsFirst", must_call=False)
    if not (isinstance(cls, type) and issubclass(cls, Layout)) or not getattr(cls, "name", None):
        raise ConfigError(f"layout {name!r} is not a Layout subclass with a name",
                          hint="subclass firsttoken.Layout and set `name` and `description`")
    known = _REGISTRY.get(cls.name)
    if known is not None and known is not cls:
        raise ConfigError(f"layout {name!r}: the name {cls.name!r} is another layout's",
                          hint="give the class another `name`")
    register_layout(cls)
    _REFS[cls.name] = absolute_ref(name)
    return cls.name


def layout_ref(name: str) -> str | None:
    """The reference a layout was loaded by (None: built in, or registered in Python)."""
    return _REFS.get(name)


def layout_source(name: str) -> str | None:
    """A digest of the text of the module that defines a user's layout (None for the built-in ones, and where
    the text cannot be read)."""
    cls = get_layout(name).__class__
    if cls.__module__.startswith(__name__ + "."):
        return None
    try:
        text = inspect.getsource(sys.modules[cls.__module__])
    except (OSError, TypeError, KeyError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def layout_names() -> list[str]:
    return list(_REGISTRY)


def layout_classes() -> list[type[Layout]]:
    return list(_REGISTRY.values())


for _cls in (Direct, AnswerThenExplain, ThoughtsFirst, ThinkThenAnswer, WorkThenAnswer, ThoughtsLong):
    register_layout(_cls)

__all__ = ["Constraint", "Layout", "Parsed", "Region", "get_layout", "layout_names", "layout_classes",
           "layout_ref", "layout_source", "load_layout", "register_layout"]
