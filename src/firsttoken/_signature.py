"""Signatures: a task declared once as typed input and output fields, DSPy-style.

    class Classify(Signature):
        '''Assign the product to exactly one category.'''
        item_name: str = InputField()
        category: Literal["beauty", "groceries"] = OutputField(desc="the product's category")

The docstring is the task instruction; declaration order is kept everywhere (prompts, schema, grammar).

A **reasoning field**: a first output of type ``str`` named one of ``REASONING_NAMES`` (``thoughts``,
``reasoning``, ...) followed by the answer fields. Under a layout with its own reasoning region that region
is the field (its description joins the instructions); under any other layout it is an ordinary field.
Label descriptions (``OutputField(labels={"billing": "payment problems"})``) are listed under the field.
Does not handle: default values for outputs, optional outputs, union types (see ``_types``).
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field as dc_field, replace
from typing import Any, ClassVar

from . import _types
from ._errors import ConfigError
from ._prediction import RESERVED


@dataclass(frozen=True)
class Field:
    """One declared field. ``annotation`` is its type; ``kind`` is "input" or "output"."""

    kind: str
    desc: str = ""
    name: str = ""
    annotation: Any = None
    labels: dict[str, str] = dc_field(default_factory=dict)  # label -> its description (shown in the prompt)


def InputField(desc: str = "") -> Any:  # noqa: N802 - DSPy spelling
    return Field("input", desc)


def OutputField(desc: str = "", labels: dict[str, str] | None = None) -> Any:  # noqa: N802 - DSPy spelling
    """``labels``: a description per label of a ``Literal``/``Enum`` output, listed under it in the prompt."""
    return Field("output", desc, labels=dict(labels or {}))


REASONING_NAMES = ("thoughts", "thought", "reasoning", "rationale", "thinking", "scratchpad")


class Signature:
    """Base class of task declarations. Subclass it; do not instantiate it."""

    instructions: ClassVar[str] = ""
    input_fields: ClassVar[dict[str, Field]] = {}
    output_fields: ClassVar[dict[str, Field]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        hints = typing.get_type_hints(cls, include_extras=False)
        inputs: dict[str, Field] = {}
        outputs: dict[str, Field] = {}
        for name in cls.__dict__.get("__annotations__", {}):
            marker = cls.__dict__.get(name)
            if not isinstance(marker, Field):
                raise ConfigError(f"{cls.__name__}.{name}: not declared with InputField() or OutputField()",
                                  hint=f"write `{name}: str = firsttoken.InputField()`")
            field = Field(marker.kind, marker.desc, name, hints[name], marker.labels)
            (inputs if field.kind == "input" else outputs)[name] = field
        if cls.__dict__.get("__annotations__"):
            if not outputs:
                raise ConfigError(f"{cls.__name__}: no output fields",
                                  hint="declare at least one field with firsttoken.OutputField()")
            for name, field in outputs.items():
                _types.check_supported(field.annotation, f"{cls.__name__}.{name}")
                _check_output(cls.__name__, name, field)
            cls.input_fields, cls.output_fields = inputs, outputs
            cls.instructions = (cls.__doc__ or "").strip() or f"Given {', '.join(inputs)}, produce {', '.join(outputs)}."

    def __init__(self) -> None:
        raise TypeError("a Signature is a declaration: pass the class itself to Predictor(...)")

    @classmethod
    def output_schema(cls) -> dict:
        """JSON Schema of the outputs, properties in declaration order."""
        return _types.object_schema({n: _types.json_schema(f.annotation) for n, f in cls.output_fields.items()})

    @classmethod
    def make(cls, name: str, instructions: str, inputs: dict[str, Any], outputs: dict[str, Any],
             descs: dict[str, str] | None = None, labels: dict[str, dict[str, str]] | None = None) -> type[Signature]:
        """Build a signature at run time: ``inputs``/``outputs`` map field names to types; ``labels``: per
        output, a description per label."""
        descs, labels = descs or {}, labels or {}
        for field_name in [*inputs, *outputs]:
            if not field_name.isidentifier():
                raise ConfigError(f"field name {field_name!r} is not a Python identifier",
                                  hint="rename the column or field to letters, digits and underscores")
        ns: dict[str, Any] = {"__doc__": instructions, "__annotations__": {}}
        for kind, fields in (("input", inputs), ("output", outputs)):
            for fname, tp in fields.items():
                ns["__annotations__"][fname] = tp
                ns[fname] = Field(kind, descs.get(fname, ""), labels=dict(labels.get(fname) or {}))
        return typing.cast(type[Signature], type(name, (Signature,), ns))

    @classmethod
    def to_spec(cls) -> dict | None:
        """A JSON-able description (stored with experiment runs); None if an output type cannot be stored."""
        outputs = {n: _types.type_to_spec(f.annotation) for n, f in cls.output_fields.items()}
        if any(v is None for v in outputs.values()):
            return None
        return {"name": cls.__name__, "instructions": cls.instructions,
                "inputs": {n: f.desc for n, f in cls.input_fields.items()},
                "outputs": {n: {"type": outputs[n], "desc": f.desc, **({"labels": f.labels} if f.labels else {})}
                            for n, f in cls.output_fields.items()}}

    @classmethod
    def from_spec(cls, spec: dict) -> type[Signature]:
        descs = {**spec["inputs"], **{n: o["desc"] for n, o in spec["outputs"].items()}}
        return cls.make(spec["name"], spec["instructions"], {n: str for n in spec["inputs"]},
                        {n: _types.type_from_spec(o["type"]) for n, o in spec["outputs"].items()}, descs,
                        {n: o["labels"] for n, o in spec["outputs"].items() if o.get("labels")})

    @classmethod
    def reasoning_field(cls) -> str | None:
        """The name of the signature's reasoning field (see the module's docstring), or None."""
        names = list(cls.output_fields)
        if len(names) > 1 and names[0] in REASONING_NAMES and cls.output_fields[names[0]].annotation is str:
            return names[0]
        return None

    @classmethod
    def without_reasoning(cls) -> type[Signature]:
        """This signature as a layout with its own reasoning region sees it: the reasoning field left out (the
        region is that field) and its description added to the instructions. Itself where it has none."""
        name = cls.reasoning_field()
        if name is None:
            return cls
        desc = cls.output_fields[name].desc
        instructions = cls.instructions + (f"\n\nBefore the answer, reason ({name}): {desc}" if desc else "")
        return cls._remade(instructions, {n: f for n, f in cls.output_fields.items() if n != name})

    @classmethod
    def with_labels(cls, name: str, labels: list[str], descriptions: dict[str, str] | None = None) -> type[Signature]:
        """This signature with output ``name`` (a ``str``) made one of ``labels`` (``--labels`` given with a
        signature: asked for, so not silent)."""
        if cls.output_fields[name].annotation is not str:
            raise ConfigError(f"--labels: {cls.__name__}.{name} is not a str output",
                              hint="labels replace only a str output; a Literal or Enum already has its own")
        chosen = replace(cls.output_fields[name], annotation=typing.Literal[tuple(labels)],  # type: ignore[misc]
                         labels=dict(descriptions or {}))
        return cls._remade(cls.instructions, {n: chosen if n == name else f for n, f in cls.output_fields.items()})

    @classmethod
    def _remade(cls, instructions: str, outputs: dict[str, Field]) -> type[Signature]:
        """This signature's name and inputs with these instructions and outputs."""
        return cls.make(cls.__name__, instructions, {n: f.annotation for n, f in cls.input_fields.items()},
                        {n: f.annotation for n, f in outputs.items()},
                        {n: f.desc for n, f in {**cls.input_fields, **outputs}.items()},
                        {n: f.labels for n, f in outputs.items() if f.labels})

    @classmethod
    def notes(cls) -> list[str]:
        """One line per ``str`` output whose description lists choices that nothing enforces."""
        out = []
        for name, f in cls.output_fields.items():
            if f.annotation is str and _LISTS_CHOICES.search(f.desc or ""):
                out.append(f"{cls.__name__}.{name} is a str whose description lists choices: they are asked for, "
                           f"not enforced; to enforce them declare it Literal[...] (or an Enum), or pass --labels "
                           f"/ --output-type labels")
        return out

    @classmethod
    def from_dspy(cls, dspy_signature: Any) -> type[Signature]:
        """Convert a DSPy signature class (needs ``dspy`` installed only to have made it)."""
        try:
            ins, outs = dspy_signature.input_fields, dspy_signature.output_fields
        except AttributeError:
            raise ConfigError(f"{dspy_signature!r} is not a DSPy signature",
                              hint="pass a class derived from dspy.Signature") from None

        def desc(info: Any) -> str:
            extra = getattr(info, "json_schema_extra", None) or {}
            text = extra.get("desc") or ""
            return "" if text.startswith("${") else text  # DSPy's placeholder for "no description"

        return cls.make(dspy_signature.__name__, getattr(dspy_signature, "instructions", "") or "",
                        {n: f.annotation for n, f in ins.items()}, {n: f.annotation for n, f in outs.items()},
                        {n: desc(f) for n, f in {**ins, **outs}.items()})


_LISTS_CHOICES = re.compile(r"\bone of\b|\bchoose (?:from|between)\b|\boptions?:|\bchoices?:", re.I)


def _check_output(sig_name: str, name: str, field: Field) -> None:
    if name in RESERVED:
        raise ConfigError(f"{sig_name}.{name}: an output may not be named {name!r}, a Prediction's own attribute",
                          hint=f"rename the field (e.g. {name}_)")
    if field.labels:
        opts = _types.choices(field.annotation)
        unknown = [lab for lab in field.labels if opts is None or lab not in [str(o) for o in opts]]
        if unknown:
            raise ConfigError(f"{sig_name}.{name}: a description for {unknown[0]!r}, which is not one of its labels",
                              hint="describe only the labels of its Literal[...] or Enum")
