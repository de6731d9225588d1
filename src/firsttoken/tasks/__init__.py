"""Built-in tasks by name (``--task NAME``), each a ``Task`` like any ``--data`` file.

``Task`` and ``Row`` (``_task``), tasks from data files (``_files``, ``_readers``), row and definition identity
(``_identity``), metrics (``_metrics``) and ``--signature`` classes (``_user_signature``) live here too: the
experiments harness builds on them, never the other way round.
Data sets are read from ``--data PATH`` (a file or folder as the task needs); without it, from
``$FIRSTTOKEN_DATA/<task>`` or ``../shared/data/<task>`` where that exists. Nothing is downloaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .._errors import ConfigError
from ._arithmetic import Arithmetic, arithmetic_task
from ._datasets import airline_task, banking77_task, bbh_task, data_path, gsm8k_task, products_task, sst2_task
from ._files import as_text, check_unique_ids, column_map, file_task, read_label_descriptions
from ._identity import assign_keys, changed_parts, content_hash, digest, task_definition
from ._metrics import is_correct
from ._readers import read_records
from ._task import Row, Task, sample_rows
from ._user_signature import load_signature, rebuild as rebuild_signature

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


for _name, _factory in (("arithmetic", arithmetic_task), ("gsm8k", gsm8k_task), ("products", products_task),
                        ("banking77", banking77_task), ("bbh", bbh_task), ("sst2", sst2_task),
                        ("airline", airline_task)):
    register_task(_name, _factory)

__all__ = ["Arithmetic", "Row", "Task", "airline_task", "arithmetic_task", "as_text", "assign_keys",
           "banking77_task", "bbh_task", "changed_parts", "check_unique_ids", "column_map", "content_hash",
           "data_path", "digest", "file_task", "get_task", "gsm8k_task", "is_correct", "load_signature",
           "products_task", "read_label_descriptions", "read_records", "rebuild_signature", "register_task",
           "sample_rows", "sst2_task", "task_definition", "task_names"]
