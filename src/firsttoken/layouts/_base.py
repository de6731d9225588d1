"""What a layout is: a prompt, a constraint on the whole reply, and a strict parser for that reply.

A layout never talks to a model. The backend receives the layout's ``Constraint``: a Lark grammar for
llguidance (local decoding), a JSON Schema (servers) and the ``Region`` where free reasoning happens, so
the backend can close that region itself (budget spent, or the model wants to stop while reasoning).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .. import _types
from . import _gbnf
from .._errors import ConfigError, ParseError
from .._signature import Signature


@dataclass(frozen=True)
class Region:
    """The free-text reasoning region of a reply.

    ``open``: the text that starts the region (the grammar forces it; "" = the reply starts with it).
    ``end``: the text that ends it when the model writes it (for a JSON string: the closing quote).
    ``close``: what a backend appends to end the region early; the grammar must accept it there.
    ``json_string``: the region is the inside of a JSON string, so only an unescaped quote ends it.
    ``least``: the fewest characters the grammar lets the region hold (an escape counts as one); a backend
    that closes the region (budget spent, end of turn) writes the closer once the grammar accepts it.
    """

    open: str
    end: str
    close: str
    json_string: bool = False
    least: int = 0

    def length(self, body: str) -> int:
        """The characters of region text ``body`` as a minimum length counts them (an escape counts as one)."""
        if not self.json_string:
            return len(body)
        return len(re.sub(r'\\(u[0-9a-fA-F]{4}|.)', "x", body))

    def trimmed(self, body: str) -> str:
        """Region text cut short (at a token limit) made closable by ``close``: without a trailing partial escape
        (JSON string), or a trailing partial start of the end marker."""
        if self.json_string:
            i = 0
            while i < len(body):  # whole characters and whole escapes only
                step = 1 if body[i] != "\\" else 6 if body[i + 1: i + 2] == "u" else 2
                if i + step > len(body) or (step == 6 and not re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2: i + 6])):
                    return body[:i]
                i += step
            return body
        for k in range(min(len(self.end) - 1, len(body)), 0, -1):
            if self.end.startswith(body[-k:]):
                return body[:-k]
        return body

    def find_end(self, body: str) -> int | None:
        """Index in ``body`` (text after ``open``) where the region ends, or None while it is open."""
        if not self.json_string:
            i = body.find(self.end)
            return None if i < 0 else i
        escaped = False
        for i, ch in enumerate(body):
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                return i
        return None


@dataclass(frozen=True)
class Constraint:
    """Every valid reply of one (layout, syntax, signature).

    ``grammar(dialect, bound)``: the same replies for a server, which cannot close the region itself, so
    the region holds at most ``bound`` characters: ``"lark"`` (llguidance: vLLM's guidance backend,
    SGLang's llguidance backend) or ``"gbnf"`` (llama.cpp's llama-server; xgrammar's EBNF). None: the
    layout has no server grammar (a user's layout that does not define ``server_grammar``).

    ``split(dialect, owed)``: the same replies as two grammars, for a server client that closes the region
    itself (the reply starts with ``region.open``, which the client writes): the reply after the opener, its
    region free of any bound but its own (at least ``region.least`` characters; the client cuts the reply at
    the region's end, but a token may hold the end and what follows it, such as ``",``); then what follows the
    end. With ``owed`` > 0 the second starts with ``owed`` more characters of the region and its end (a budget
    spent before the region's minimum). None: the layout cannot be split so (one request, ``grammar``).
    """

    lark: str
    json_schema: dict | None  # for servers; None where the layout's reply is not one JSON object
    region: Region | None  # None: no reasoning region (e.g. ``direct``)
    grammar: Callable[[str, int], str] | None = field(default=None, compare=False, repr=False)
    split: Callable[[str, int], tuple[str, str]] | None = field(default=None, compare=False, repr=False)


@dataclass
class Parsed:
    outputs: dict[str, Any]
    reasoning: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # layout fields such as ``explanation``
    order_violated: bool = False


def input_lines(sig: type[Signature], inputs: dict[str, Any]) -> str:
    return "\n".join(f"{name}: {inputs[name]}" for name in sig.input_fields)


def strip_fence(text: str) -> str:
    """Surrounding whitespace and one Markdown code fence are the only wrapping a parser forgives."""
    text = text.strip()
    m = re.fullmatch(r"```[a-zA-Z]*\s*\n(.*?)\n?```", text, flags=re.S)
    return m.group(1).strip() if m else text


class Layout:
    """Base class. Subclasses set the class attributes and implement the four methods below."""

    name: ClassVar[str]
    description: ClassVar[str]
    syntaxes: ClassVar[tuple[str, ...]] = ("json",)
    own_fields: ClassVar[tuple[str, ...]] = ()  # names an output field may not take
    # Part of every arm's identity: raise it when the prompt, grammar or parser changes, so that stores
    # never answer for an older version (tests/test_layout_versions.py pins each prompt and grammar).
    version: ClassVar[int] = 1

    def __init__(self, syntax: str | None = None):
        syntax = syntax or self.syntaxes[0]
        if syntax not in self.syntaxes:
            raise ConfigError(f"layout {self.name!r} has no syntax {syntax!r}",
                              hint=f"use one of: {', '.join(self.syntaxes)}")
        self.syntax = syntax

    def __repr__(self) -> str:
        return f"<layout {self.name} syntax={self.syntax}>"

    @property
    def has_reasoning(self) -> bool:
        return False

    def check(self, sig: type[Signature]) -> None:
        """Refuse a signature whose output names collide with this layout's own fields."""
        for name in sig.output_fields:
            if name in self.own_fields:
                raise ConfigError(f"output field {name!r} of {sig.__name__} collides with layout "
                                  f"{self.name!r}, which writes its own {name!r}",
                                  hint=f"rename the output field (e.g. {name}_) or pick another layout")

    # --- prompt -----------------------------------------------------------------------------------
    def messages(self, sig: type[Signature], inputs: dict[str, Any],
                 demos: list[dict[str, Any]] | None = None) -> list[dict[str, str]]:
        """System prompt (shared across rows, so its prefix is reused), demos, then this row."""
        msgs = [{"role": "system", "content": self.system_prompt(sig)}]
        for demo in demos or []:
            msgs.append({"role": "user", "content": self.user_prompt(sig, demo)})
            outputs = {n: demo[n] for n in sig.output_fields}
            msgs.append({"role": "assistant", "content": self.render(sig, outputs, demo.get("reasoning"),
                                                                      {k: demo[k] for k in self.own_fields
                                                                       if k in demo})})
        msgs.append({"role": "user", "content": self.user_prompt(sig, inputs)})
        return msgs

    def system_prompt(self, sig: type[Signature]) -> str:
        ins = "\n".join(f"- {n}" + (f": {f.desc}" if f.desc else "") for n, f in sig.input_fields.items())
        outs = "\n".join(f"- {n} ({_types.type_name(f.annotation)})" + (f": {f.desc}" if f.desc else "")
                         + "".join(f"\n  - {label}: {text}" for label, text in f.labels.items())
                         for n, f in sig.output_fields.items())
        return (f"{sig.instructions}\n\nYou are given:\n{ins}\n\nYou must produce:\n{outs}\n\n"
                f"{self.format_instructions(sig)}")

    def user_prompt(self, sig: type[Signature], inputs: dict[str, Any]) -> str:
        return input_lines(sig, inputs)

    # --- to implement -----------------------------------------------------------------------------
    def format_instructions(self, sig: type[Signature]) -> str:
        raise NotImplementedError

    def constraint(self, sig: type[Signature]) -> Constraint:
        raise NotImplementedError

    def render(self, sig: type[Signature], outputs: dict[str, Any], reasoning: str | None = None,
               extras: dict[str, Any] | None = None) -> str:
        """A well-formed reply carrying these outputs (used for few-shot demos and examples)."""
        raise NotImplementedError

    def parse(self, sig: type[Signature], text: str, reasoning: str | None = None) -> Parsed:
        """Reply text (and reasoning a server delivered separately) to typed outputs, or ParseError."""
        raise NotImplementedError

    # --- a server client that closes the region itself (Constraint.split) ------------------------------
    def server_split(self, sig: type[Signature], dialect: str, owed: int) -> tuple[str, str]:
        """``Constraint.split`` from ``split_parts``: the reply after the opener (the region, its end, the rest),
        then the rest alone, each a grammar of its own."""
        new = _types.Grammar if dialect == "lark" else _gbnf.Gbnf
        first, second = new(), new()
        region, rest = self.split_parts(sig, dialect, first, 0, True)
        return first.render(f"{region} {rest}"), second.render(self.split_parts(sig, dialect, second, owed, False)[1])

    def split_parts(self, sig: type[Signature], dialect: str, g: Any, owed: int, region: bool) -> tuple[str, str]:
        """The region's expression (where ``region``; "" otherwise) and the rest's, their rules written into ``g``;
        the rest starts with ``owed`` more region characters and its end where ``owed`` > 0."""
        raise NotImplementedError


def fail(message: str, raw: str, reasoning: str | None = None) -> ParseError:
    return ParseError(message, raw=raw, reasoning=reasoning)


def typed_outputs(sig: type[Signature], values: dict[str, Any], raw: str, plain: bool) -> dict[str, Any]:
    """Check each output value against its type; ParseError naming the field otherwise."""
    out = {}
    for name, f in sig.output_fields.items():
        if name not in values:
            raise fail(f"missing output field {name!r}", raw)
        try:
            out[name] = (_types.from_plain if plain else _types.from_json)(f.annotation, values[name], name)
        except ValueError as e:
            raise fail(str(e), raw) from None
    return out


def join_reasoning(delivered: str | None, written: str | None) -> str | None:
    """Reasoning a server delivered separately, then the reasoning written in the reply itself."""
    parts = [r for r in (delivered, written) if r]
    if parts:
        return "\n\n".join(parts)
    return written if written is not None else delivered
