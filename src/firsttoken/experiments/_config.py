"""``EvalConfig``: everything a run of ``evaluate`` is asked to do, validated in one place.

The command line builds one from its flags; ``evaluate(task, models, layouts, **settings)`` builds one from
keywords. A bad value or a bad combination is one ``ConfigError`` naming the command-line flag
(``FLAGS``) and the fix, before any model call. ``models`` holds ``--model`` specs (text or parsed) and
backend objects; ``model_options`` are ``--model-option NAME=VALUE`` settings (``--parallel N`` is
``parallel``), each set on every model whose backend has that option and whose spec did not set it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._errors import ConfigError
from .._options import GenerateOptions

# field -> the flag the command line sets it with (messages name the flag a user typed)
FLAGS = {"models": "--model", "layouts": "--layouts", "syntaxes": "--syntaxes", "constrained": "--constrained",
         "budgets": "--thinking-budgets", "store": "--store", "limit": "--limit", "sample": "--sample",
         "seed": "--seed", "demos": "--demos", "margin": "--margin", "until_decided": "--until-decided",
         "max_rows": "--max-rows", "max_tokens": "--max-tokens", "alpha": "--alpha",
         "model_options": "--model-option", "parallel": "--parallel", "probe": "--no-probe"}


class EvalConfig(BaseModel):
    """One run's settings (fractions, not points: ``margin=0.02`` is ``--margin 2``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    models: list[Any] = Field(min_length=1)  # --model specs (str or ModelSpec) and backend objects
    layouts: list[str] | None = None  # None: every registered layout
    syntaxes: list[str] = ["json"]
    constrained: list[bool] = [True]
    budgets: list[int | None] = [None]  # None: the default thinking budget
    store: Path | None = None  # None: runs/<task>.db
    limit: int | None = Field(None, ge=1)
    sample: int | None = Field(None, ge=1)
    seed: int = 0
    demos: list[dict] | None = None
    margin: float = Field(0.02, ge=0, lt=1)
    until_decided: bool = False
    max_rows: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    alpha: float = Field(0.05, gt=0, lt=1)
    model_options: dict[str, str] = {}
    parallel: int | None = Field(None, ge=1)  # set where a model's backend has ``parallel`` (never an error)
    probe: bool = True  # probe each server model once (backends with ``probes``): arms labelled as it finds

    @model_validator(mode="after")
    def _combinations(self) -> EvalConfig:
        for name in ("margin", "alpha"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name}: not a finite number")
        if (self.max_rows or self.max_tokens) and not self.until_decided:
            raise _Combination("--max-rows and --max-tokens are budgets of --until-decided",
                               "add --until-decided, or use --limit N for a fixed number of rows")
        if any(b is not None and b < 0 for b in self.budgets):
            raise ValueError("budgets: a thinking budget is 0 or more")
        return self

    @property
    def thinking_budgets(self) -> list[int]:
        default = GenerateOptions().max_thinking_tokens
        return [default if b is None else b for b in self.budgets]


class _Combination(ValueError):
    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message, self.hint = message, hint


_HINTS = {"models": "pass --model NAME (repeatable)", "margin": "e.g. --margin 2 (points, from 0 to 100)",
          "alpha": "e.g. --alpha 0.05", "budgets": "e.g. --thinking-budgets 0,64,256"}


def make_config(**settings: Any) -> EvalConfig:
    """An ``EvalConfig``, or one ``ConfigError`` naming the flag and the fix."""
    try:
        return EvalConfig(**settings)
    except ValidationError as e:
        err = e.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _Combination):
            raise ConfigError(cause.message, hint=cause.hint) from None
        field = str(err["loc"][0]) if err["loc"] else str(err["msg"]).partition(":")[0].split()[-1]
        flag = FLAGS.get(field, field)
        value = settings.get(field)
        if field == "margin" and isinstance(value, (int, float)):
            value = f"{value * 100:g}"
        msg = "must be 1 or more" if err["type"] == "greater_than_equal" and err.get("ctx", {}).get("ge") == 1 \
            else err["msg"]
        what = "no model given" if field == "models" else f"{flag} {value}: {msg}"
        raise ConfigError(what, hint=_HINTS.get(field, f"e.g. {flag} 50, or leave it out")) from None
