"""Arms: one (model, layout, syntax, constrained, thinking budget, demos) each, and the grid of them.

An arm's model is its identity: a spec's ``key`` (``ModelSpec.key``), or a backend object's label. What
its backend enforces of the arm's constraint (``enforced``) is found once, when the grid is built, from the
spec or the object itself; where that is our GBNF, its version joins the arm's identity (``_identity``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

from .._backend import Backend, enforcement, parallel_of
from .._errors import ConfigError
from .._options import GenerateOptions
from .._predictor import Predictor, layout_signature
from .._signature import InputField, OutputField, Signature
from .._spec import ModelSpec
from ..backends import check_spec, parse_spec
from ..layouts import get_layout, layout_names, layout_ref, layout_source, load_layout
from . import _identity


@dataclass(frozen=True)
class Arm:
    """``demo_rows`` is the demos' content as JSON (part of the identity); ``enforced`` what the model
    enforces of a constrained arm (None: nothing, prompt-only)."""

    task: str
    model: str
    layout: str
    syntax: str
    constrained: bool
    budget: int | None  # None: the layout has no reasoning region
    demos: int = 0
    demo_rows: str = "[]"
    enforced: str | None = None

    @property
    def options(self) -> GenerateOptions:
        return _identity.arm_options(self.constrained, self.budget)

    @property
    def layout_version(self) -> int:
        return get_layout(self.layout, self.syntax).version

    @property
    def layout_source(self) -> str | None:
        return layout_source(self.layout)

    @property
    def server_grammar(self) -> str | None:
        return _identity.grammar_version(self.enforced if self.constrained else None)

    @cached_property
    def id(self) -> str:
        fp = _identity.arm_fingerprint(self.task, self.model, self.layout, self.layout_version, self.syntax,
                                       self.options, json.loads(self.demo_rows), self.server_grammar,
                                       self.layout_source)
        return _identity.arm_id(self.task, self.model, self.layout, self.syntax, self.constrained, self.budget,
                                self.demos, fp)

    def record(self) -> dict[str, Any]:
        config = {"layout_version": self.layout_version, "options": self.options.model_dump(),
                  "demo_rows": json.loads(self.demo_rows)}
        if self.server_grammar:
            config["server_grammar"] = self.server_grammar
        if self.layout_source:  # a user's layout: how to load it again, and the text it was
            config.update(layout_ref=layout_ref(self.layout), layout_source=self.layout_source)
        fields = {k: v for k, v in asdict(self).items() if k != "demo_rows"}
        return {**fields, "id": self.id, "constrained": int(self.constrained), "config": config}

    def predictor(self, signature: type, backend: Any) -> Predictor:
        """The Predictor that runs this arm (with the options its identity covers)."""
        return Predictor(signature, layout=self.layout, syntax=self.syntax, model=backend,
                         demos=json.loads(self.demo_rows), **self.options.model_dump())


class _Any(Signature):
    """-"""  # a stand-in where no task's signature is given: what is enforced depends on the layout

    question: str = InputField()
    answer: str = OutputField()


Model = str | ModelSpec | Backend


@dataclass(frozen=True)
class Source:
    """A model as a run knows it, whichever way it was given: a spec (parsed once, its backend built when first
    needed) or a backend object the caller made. What a run asks of a model goes through here, so nothing else
    branches on which it is."""

    key: str  # the model's identity: a spec's key, or an object's label
    spec: ModelSpec | None = None
    given: Backend | None = None

    @classmethod
    def of(cls, model: Model) -> Source:
        if isinstance(model, (str, ModelSpec)):
            spec = parse_spec(model)
            return cls(spec.key, spec=spec)
        return cls(getattr(model, "label", None) or type(model).__name__, given=model)

    @property
    def alias(self) -> str | None:
        return self.spec.alias if self.spec else None

    @property
    def backend_class(self) -> type:
        return self.spec.backend if self.spec else type(self.given)

    @property
    def parallel(self) -> int:
        """Rows it runs at once (a spec says so without building its backend)."""
        return self.spec.options.parallel if self.spec else parallel_of(self.given)  # type: ignore[arg-type]

    def build(self) -> Backend:
        return self.spec.build() if self.spec else self.given  # type: ignore[return-value]

    def configured(self, parallel: int | None, options: dict[str, Any]) -> Source:
        """With the run's ``--parallel`` and ``--model-option`` set where a spec's backend has them (checked:
        fails now, with the fix); a backend object is used as it was made."""
        if self.spec is None:
            return self
        spec = self.spec.set("parallel", parallel) if parallel else self.spec
        spec = check_spec(with_options(spec, options, every=False))
        return Source(spec.key, spec=spec)  # an identity option set here makes it another model

    def enforcement(self, constraint: Any) -> str | None:
        if self.spec is not None:
            return self.spec.enforcement(constraint)
        return enforcement(self.given, constraint)  # type: ignore[arg-type]


def with_options(spec: ModelSpec, options: dict[str, Any], every: bool = True) -> ModelSpec:
    """``spec`` with each ``--model-option`` its backend has set (where the spec did not set it itself);
    ``every``: an option the backend does not have is refused."""
    for name, value in options.items():
        if spec.takes(name):
            spec = spec.set(name, value)
        elif every:
            raise ConfigError(f"--model-option {name}: model {spec.key!r} has no such option",
                              hint=f"options of {spec.name}: {', '.join(type(spec.options).model_fields) or 'none'}")
    return spec


def arm_enforcement(source: Source, layout: str, syntax: str, signature: type | None = None) -> str | None:
    """What ``source`` enforces of a constrained (layout, syntax) arm's constraint."""
    the_layout = get_layout(layout, syntax)
    return source.enforcement(the_layout.constraint(layout_signature(signature or _Any, the_layout)))


def build_grid(task: str, models: Sequence[Model | Source], layouts: Sequence[str] | None, syntaxes: Sequence[str],
               constrained: Sequence[bool], budgets: Sequence[int | None], demos: list[dict] | None = None,
               signature: type | None = None) -> list[Arm]:
    """Every combination; a layout without a requested syntax uses its own; no duplicate arms. A layout may be
    named by reference (``file.py:Class``, see ``layouts.load_layout``)."""
    layouts = [load_layout(name) for name in layouts or layout_names()]
    for name in layouts:
        get_layout(name)  # unknown names fail here, before any model call
    demo_rows = json.dumps(demos or [], default=str)
    arms: list[Arm] = []
    for model in models:
        source = model if isinstance(model, Source) else Source.of(model)
        key = source.key
        for name in layouts:
            own = get_layout(name).syntaxes
            for syntax in syntaxes:
                s = syntax if syntax in own else own[0]
                has_region = get_layout(name, s).has_reasoning
                for c in constrained:
                    enforced = arm_enforcement(source, name, s, signature) if c else None
                    for budget in (budgets if has_region else [None]):
                        arm = Arm(task, key, name, s, c, budget, len(demos or []), demo_rows, enforced)
                        if arm not in arms:
                            arms.append(arm)
    return arms
