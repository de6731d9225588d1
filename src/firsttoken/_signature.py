"""Signatures: a task declared once as typed input and output fields, DSPy-style.

    class Classify(Signature):
        '''Assign the product to exactly one category.'''
        item_name: str = InputField()
        category: Literal["beauty", "groceries"] = OutputField(desc="the product's category")

The docstring is the task instruction; declaration order is kept everywhere (prompts, schema, grammar).
Does not handle: default values for outputs, optional outputs, union types (see ``_types``).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from . import _types
from ._errors import ConfigError


@dataclass(frozen=True)
class Field:
    """One declared field. ``annotation`` is its type; ``kind`` is "input" or "output"."""

    kind: str
    desc: str = ""
    name: str = ""
    annotation: Any = None


def InputField(desc: str = "") -> Any:  # noqa: N802 - DSPy spelling
    return Field("input", desc)


def OutputField(desc: str = "") -> Any:  # noqa: N802 - DSPy spelling
    return Field("output", desc)


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
            field = Field(marker.kind, marker.desc, name, hints[name])
            (inputs if field.kind == "input" else outputs)[name] = field
        if cls.__dict__.get("__annotations__"):
            if not outputs:
                raise ConfigError(f"{cls.__name__}: no output fields",
                                  hint="declare at least one field with firsttoken.OutputField()")
            for name, field in outputs.items():
                _types.check_supported(field.annotation, f"{cls.__name__}.{name}")
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
             descs: dict[str, str] | None = None) -> type[Signature]:
        """Build a signature at run time: ``inputs``/``outputs`` map field names to types."""
        descs = descs or {}
        for field_name in [*inputs, *outputs]:
            if not field_name.isidentifier():
                raise ConfigError(f"field name {field_name!r} is not a Python identifier",
                                  hint="rename the column or field to letters, digits and underscores")
        ns: dict[str, Any] = {"__doc__": instructions, "__annotations__": {}}
        for kind, fields in (("input", inputs), ("output", outputs)):
            for fname, tp in fields.items():
                ns["__annotations__"][fname] = tp
                ns[fname] = Field(kind, descs.get(fname, ""))
        return typing.cast(type[Signature], type(name, (Signature,), ns))

    @classmethod
    def to_spec(cls) -> dict | None:
        """A JSON-able description (stored with experiment runs); None if an output type cannot be stored."""
        outputs = {n: _types.type_to_spec(f.annotation) for n, f in cls.output_fields.items()}
        if any(v is None for v in outputs.values()):
            return None
        return {"name": cls.__name__, "instructions": cls.instructions,
                "inputs": {n: f.desc for n, f in cls.input_fields.items()},
                "outputs": {n: {"type": outputs[n], "desc": f.desc} for n, f in cls.output_fields.items()}}

    @classmethod
    def from_spec(cls, spec: dict) -> type[Signature]:
        descs = {**spec["inputs"], **{n: o["desc"] for n, o in spec["outputs"].items()}}
        return cls.make(spec["name"], spec["instructions"], {n: str for n in spec["inputs"]},
                        {n: _types.type_from_spec(o["type"]) for n, o in spec["outputs"].items()}, descs)

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
