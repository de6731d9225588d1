"""Per-row metrics: ``exact`` (normalised text), ``numeric`` (with tolerance), ``label``, or a callable.

A metric is ``fn(expected, predicted) -> bool | float``; a number counts as correct when >= 0.5.
``module:function`` names a user callable with that signature.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from .._errors import ConfigError
from .._imports import import_object

Metric = Callable[[Any, Any], "bool | float"]


def normalise(text: Any) -> str:
    return re.sub(r"\s+", " ", str(text)).strip().casefold()


def exact(expected: Any, predicted: Any) -> bool:
    return normalise(expected) == normalise(predicted)


def to_number(value: Any) -> float | None:
    """A number from a value or text like "1,234", "$18" or "3.50"; None when there is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = re.sub(r"[,$\s]", "", str(value))
    try:
        return float(text)
    except ValueError:
        return None


def numeric(expected: Any, predicted: Any, tolerance: float = 1e-6) -> bool:
    e, p = to_number(expected), to_number(predicted)
    if e is None or p is None:
        return False
    return math.isclose(e, p, rel_tol=tolerance, abs_tol=tolerance)


def label(expected: Any, predicted: Any) -> bool:
    return normalise(expected) == normalise(getattr(predicted, "value", predicted))


BUILTIN: dict[str, Metric] = {"exact": exact, "numeric": numeric, "label": label}


def get_metric(name: str) -> Metric:
    if name in BUILTIN:
        return BUILTIN[name]
    if ":" not in name:
        raise ConfigError(f"unknown metric {name!r}",
                          hint="use exact, numeric, label, or module:function for your own")
    return import_object(name, "metric", "--metric mymetrics:close_enough (a function fn(expected, predicted))")


def is_correct(score: Any) -> bool:
    return bool(score) if isinstance(score, bool) else float(score) >= 0.5
