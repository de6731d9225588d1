"""What a call returns: typed outputs as attributes, the reasoning, the raw reply and token usage.

Your output fields win: ``prediction.NAME`` is your field ``NAME`` whatever it is called. The layout's
reasoning (the text of its reasoning region) is always ``prediction.layout_reasoning``; ``thoughts`` and
``reasoning`` are aliases of it where your signature has no output of that name. Output fields may not take
the names of the other attributes (``RESERVED``: the signature refuses them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from . import _types


@dataclass(frozen=True)
class Usage:
    """Token counts of one call, one definition for every backend.

    ``reasoning_tokens``: generated inside the layout's reasoning region, delimiters excluded.
    ``answer_tokens``: every other completion token (delimiters, forced closers, the answer).
    ``estimated``: true when a count is not the backend's own count of this generation.
    """

    prompt_tokens: int
    reasoning_tokens: int
    answer_tokens: int
    seconds: float
    estimated: bool = False

    @property
    def completion_tokens(self) -> int:
        return self.reasoning_tokens + self.answer_tokens


@dataclass
class Prediction:
    outputs: dict[str, Any]
    layout_reasoning: str | None  # the layout's reasoning region (None: it has none, or it was empty)
    raw: str
    usage: Usage
    extras: dict[str, Any] = field(default_factory=dict)  # layout fields, e.g. ``explanation``
    order_violated: bool = False  # answer written before the reasoning in a reasoning-first layout
    closed_by: str | None = None  # how the reasoning region ended: "model", "end_of_turn", "budget"
    generation: Any = field(default=None, repr=False, compare=False)  # the backend's Generation it came from

    @property
    def thoughts(self) -> Any:
        return self.outputs["thoughts"] if "thoughts" in self.outputs else self.layout_reasoning

    @property
    def reasoning(self) -> Any:
        return self.outputs["reasoning"] if "reasoning" in self.outputs else self.layout_reasoning

    def __getattr__(self, name: str) -> Any:
        for store in ("outputs", "extras"):
            values = self.__dict__.get(store, {})
            if name in values:
                return values[name]
        raise AttributeError(f"prediction has no field {name!r}; outputs: {list(self.__dict__.get('outputs', {}))}")

    def to_dict(self) -> dict[str, Any]:
        return {"outputs": {k: _types.to_json(v) for k, v in self.outputs.items()}, "thoughts": self.layout_reasoning,
                "extras": self.extras, "raw": self.raw, "usage": asdict(self.usage),
                "order_violated": self.order_violated, "closed_by": self.closed_by}


# Attribute names an output field may not take (``thoughts`` and ``reasoning`` may: the field wins).
RESERVED = frozenset({"outputs", "layout_reasoning", "raw", "usage", "extras", "order_violated", "closed_by",
                      "generation", "to_dict"})
