"""Generation options, validated: a typo or a negative budget fails loudly."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import ConfigError


class GenerateOptions(BaseModel):
    """Defaults on ``Predictor(...)``, overridable per call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    constrained: bool = True  # False: prompt only, the reply is parsed as the model wrote it
    max_thinking_tokens: int = Field(512, ge=0)  # the reasoning region's budget
    max_answer_tokens: int = Field(1024, ge=1)  # tokens allowed after the reasoning region
    temperature: float = Field(0.0, ge=0.0)  # 0: greedy, reproducible
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = 0

    def merged(self, **changes: object) -> GenerateOptions:
        return make_options({**self.model_dump(), **changes})


OPTION_NAMES = frozenset(GenerateOptions.model_fields)


def make_options(values: dict) -> GenerateOptions:
    try:
        return GenerateOptions(**values)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "options"
        raise ConfigError(f"option {where}: {err['msg']}",
                          hint=f"options are: {', '.join(sorted(OPTION_NAMES))}") from None
