"""Built-in tasks by name (``--task NAME``). The registry is filled by the task modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._errors import ConfigError
from .experiments._tasks import Task

_REGISTRY: dict[str, Callable[..., Task]] = {}


def register_task(name: str, factory: Callable[..., Task]) -> None:
    _REGISTRY[name] = factory


def get_task(name: str, data: str | None = None, **kwargs: Any) -> Task:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY) or "none yet"
        raise ConfigError(f"unknown task {name!r}",
                          hint=f"built-in tasks: {known}; or pass --data FILE --inputs COLS --output COL") from None
    return factory(data, **kwargs)


def task_names() -> list[str]:
    return list(_REGISTRY)
