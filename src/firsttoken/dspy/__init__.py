"""firsttoken inside DSPy programs (``pip install "firsttoken[dspy]"``): forced, typed answers in DSPy.

    import dspy, firsttoken.dspy as ftd
    dspy.configure(lm=ftd.LM("qwen2.5-coder-1.5b"), adapter=ftd.Adapter("thoughts_first"))
    dspy.Predict(MySignature)(text="...")      # every answer parses into the signature's types

``LM`` runs any firsttoken backend as a DSPy LM (DSPy 3.4's engine contract); ``Adapter`` formats a DSPy
signature under a firsttoken layout and parses with its strict parser. ``firsttoken export --dspy`` writes a
run's arm as a DSPy program that uses both.
"""

from __future__ import annotations

try:
    import dspy as _dspy  # noqa: F401
except ImportError as e:  # pragma: no cover - the extra is missing
    from .._errors import ConfigError

    raise ConfigError("firsttoken.dspy needs DSPy", hint='pip install "firsttoken[dspy]"') from e

from ._adapter import Adapter, NotEnforced
from ._engine import LM, AsyncEngine, Engine

__all__ = ["LM", "Adapter", "AsyncEngine", "Engine", "NotEnforced"]
