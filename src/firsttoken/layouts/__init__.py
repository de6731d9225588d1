"""The layout registry. Built-in layouts register through the same call a user's own layout uses."""

from __future__ import annotations

from .._errors import ConfigError
from ._base import Constraint, Layout, Parsed, Region
from ._ordered import AnswerThenExplain, Direct, ThoughtsFirst
from ._think import ThinkThenAnswer
from ._work import WorkThenAnswer

_REGISTRY: dict[str, type[Layout]] = {}


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


def layout_names() -> list[str]:
    return list(_REGISTRY)


def layout_classes() -> list[type[Layout]]:
    return list(_REGISTRY.values())


for _cls in (Direct, AnswerThenExplain, ThoughtsFirst, ThinkThenAnswer, WorkThenAnswer):
    register_layout(_cls)

__all__ = ["Constraint", "Layout", "Parsed", "Region", "get_layout", "layout_names", "layout_classes",
           "register_layout"]
