"""Load a user's object named ``module:attribute`` (a metric, a scripted model), with a clear error."""

from __future__ import annotations

import importlib
from typing import Any

from ._errors import ConfigError


def import_object(ref: str, what: str, example: str) -> Any:
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"{what} {ref!r}: expected module:function", hint=f"e.g. {example}")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{what} {ref!r} cannot be loaded: {e}",
                          hint="the module must be importable (on PYTHONPATH) and define it") from None
    if not callable(obj):
        raise ConfigError(f"{what} {ref!r} is not callable", hint=f"e.g. {example}")
    return obj
