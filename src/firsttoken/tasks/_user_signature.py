"""``--signature module:Class`` or ``path/to/file.py:Class``: a user's firsttoken or DSPy signature.

A run stores the reference and a fingerprint of what the signature declares (instructions, fields, their
types as JSON Schema, nested pydantic models included, descriptions and label descriptions), so ``predict``
and ``show`` rebuild the very signature, or refuse in one line when it has changed since.
Does not handle: a signature whose module changed in ways its declaration does not show (e.g. a validator).
"""

from __future__ import annotations

from typing import Any

from .._errors import ConfigError
from .._imports import import_object
from .._signature import Signature
from . import _identity

EXAMPLE = "--signature tickets.py:Ticket (or mypackage.tasks:Ticket)"


def load_signature(ref: str) -> type[Signature]:
    obj = import_object(ref, "--signature", EXAMPLE, must_call=False)
    if isinstance(obj, type) and issubclass(obj, Signature):
        if not obj.output_fields:
            raise ConfigError(f"--signature {ref!r} declares no output fields", hint="add an OutputField()")
        return obj
    if _is_dspy(obj):
        return Signature.from_dspy(obj)
    raise ConfigError(f"--signature {ref!r} is neither a firsttoken nor a DSPy Signature",
                      hint="name a class derived from firsttoken.Signature or dspy.Signature")


def _is_dspy(obj: Any) -> bool:
    return isinstance(obj, type) and any(c.__module__.split(".")[0] == "dspy" for c in obj.__mro__[1:]) \
        and isinstance(getattr(obj, "output_fields", None), dict)


def fingerprint(sig: type[Signature]) -> str:
    return _identity.digest({"name": sig.__name__, **_identity.signature_definition(sig)})[:16]


def rebuild(ref: str, expected: str) -> type[Signature]:
    """The stored signature, loaded again; refused if what it declares has changed since the run."""
    sig = load_signature(ref)
    if fingerprint(sig) != expected:
        raise ConfigError(f"--signature {ref} has changed since the run (its instructions, fields, types or "
                          "descriptions differ)", hint="restore it, or run `firsttoken eval` again with it")
    return sig
