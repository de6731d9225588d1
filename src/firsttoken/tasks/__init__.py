"""Built-in tasks by name (``--task NAME``), each a ``Task`` like any ``--data`` file.

Data sets are read from ``--data PATH`` (a file or folder as the task needs); without it, from
``$FIRSTTOKEN_DATA/<task>`` or ``../shared/data/<task>`` where that exists. Nothing is downloaded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import ConfigError, DataError
from ..experiments._tasks import Task
from ._arithmetic import Arithmetic, arithmetic_task
from ._datasets import banking77_task, bbh_task, gsm8k_task, products_task

_REGISTRY: dict[str, Callable[..., Task]] = {}


def register_task(name: str, factory: Callable[..., Task]) -> None:
    """``factory(data_path_or_None, skip_bad_rows=...)`` returns a Task."""
    _REGISTRY[name] = factory


def get_task(name: str, data: str | None = None, **kwargs: Any) -> Task:
    """A built-in task; ``arithmetic:3-5:8`` asks for difficulties 3 to 5, 8 problems each."""
    name, _, params = name.partition(":")
    open_ended = kwargs.pop("open_ended", False)  # a generated task without a count: rows without end
    if params:
        kwargs.update(_arithmetic_params(name, params))
    if open_ended and name == "arithmetic" and "per_difficulty" not in kwargs:
        kwargs["open_ended"] = True
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}",
                          hint=f"built-in tasks: {', '.join(_REGISTRY)}; or pass --data FILE --inputs COLS "
                               "--output COL") from None
    return factory(data, **kwargs)


def _arithmetic_params(name: str, params: str) -> dict[str, Any]:
    m = re.fullmatch(r"(\d+)-(\d+)(?::(\d+))?", params)
    if name != "arithmetic" or not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ConfigError(f"task {name}:{params}: only arithmetic takes parameters, as arithmetic:FROM-TO[:PER]",
                          hint="e.g. --task arithmetic:1-6:15 (difficulties 1 to 6, 15 problems each)")
    out: dict[str, Any] = {"difficulties": range(int(m.group(1)), int(m.group(2)) + 1)}
    if m.group(3):
        out["per_difficulty"] = int(m.group(3))
    return out


def task_names() -> list[str]:
    return list(_REGISTRY)


def data_path(data: str | None, task: str) -> Path:
    """Where a built-in task's data is: --data, else $FIRSTTOKEN_DATA/<task>, else ../shared/data/<task>."""
    if data:
        path = Path(data).expanduser()
        if not path.exists():
            raise DataError(f"{path}: not found", hint=f"point --data at the {task} file or folder")
        return path
    for root in (os.environ.get("FIRSTTOKEN_DATA"), "../shared/data"):
        if root and (Path(root) / task).exists():
            return Path(root) / task
    raise DataError(f"task {task!r} needs its data set", hint=f"pass --data PATH (a {task} file or folder)")


for _name, _factory in (("arithmetic", arithmetic_task), ("gsm8k", gsm8k_task), ("products", products_task),
                        ("banking77", banking77_task), ("bbh", bbh_task)):
    register_task(_name, _factory)

__all__ = ["Arithmetic", "arithmetic_task", "banking77_task", "bbh_task", "data_path", "get_task", "gsm8k_task",
           "products_task", "register_task", "task_names"]
