"""firsttoken: let a model think before it commits to its answer, force the answer into the exact
type, and measure which response layout wins on your own data."""

from __future__ import annotations

from ._errors import (BackendError, ConfigError, ConstraintError, ContextOverflowError, DataError, FirstTokenError,
                      ModelNotFoundError, ParseError, UnreachableError)
from ._options import GenerateOptions
from ._prediction import Prediction, Usage
from ._predictor import Predictor
from ._signature import InputField, OutputField, Signature
from ._models import models
from ._backend import Backend, BackendBase, Generation, Request
from ._spec import BackendOptions, ModelSpec, fetch_only
from .backends import LlamaCpp, OpenAICompatible, Scripted, build_backend, load, parse_spec, register_backend
from .layouts import Constraint, Layout, Region, get_layout, layout_names, register_layout

__version__ = "0.1.0"

__all__ = [
    "Backend", "BackendBase", "BackendError", "BackendOptions", "ConfigError", "Constraint", "ConstraintError",
    "ContextOverflowError", "DataError", "FirstTokenError", "GenerateOptions", "Generation", "InputField", "Layout",
    "LlamaCpp", "ModelNotFoundError", "ModelSpec", "OpenAICompatible", "OutputField", "ParseError", "Prediction",
    "Predictor", "Region", "Request", "Scripted", "Signature", "Task", "UnreachableError", "Usage", "__version__",
    "build_backend", "evaluate", "fetch_only", "get_layout", "layout_names", "load", "models", "parse_spec",
    "register_backend", "register_layout",
]


def __getattr__(name: str) -> object:
    """``evaluate`` and ``Task`` load the harness (firsttoken.experiments) only when used."""
    if name in ("evaluate", "Task"):
        from . import experiments

        return getattr(experiments, name)
    raise AttributeError(f"module 'firsttoken' has no attribute {name!r}")
