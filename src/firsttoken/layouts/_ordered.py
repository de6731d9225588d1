"""Layouts that are an ordered list of fields: ``direct``, ``answer_then_explain``, ``thoughts_first``.

Two syntaxes. ``json``: one JSON object, keys in layout order, e.g. ``{"thoughts": "...", "category":
"beauty"}``. ``fields``: DSPy ChatAdapter markers, ``[[ ## thoughts ## ]]`` ... ``[[ ## completed ## ]]``.
The reasoning field (``thoughts``) comes before the answer fields and is free text of any length; the
backend ends it. The ``explanation`` field comes after the answers and is bounded in the grammar.
Does not handle: multi-line ``str`` answers in the fields syntax (a ``str`` answer is one line).
"""

from __future__ import annotations

import json
import re
from functools import partial
from typing import Any, ClassVar

from .. import _types
from . import _gbnf
from .._signature import Signature
from ._base import (Constraint, Layout, Parsed, Region, fail, join_reasoning, strip_fence,
                    typed_outputs)

EXPLANATION_MAX = 1000  # characters
_THOUGHTS_HELP = "think step by step: work the task out in full before you give the answer"
_EXPLANATION_HELP = "a short explanation of the answer"


def _marker(name: str) -> str:
    return f"[[ ## {name} ## ]]"


def _repeat(bound: int | None, least: int = 0) -> str:
    """A Lark repetition: unbounded (the local backend closes the region) or at most ``bound``; at least
    ``least``."""
    if bound is None:
        return f"{{{least},}}" if least else "*"
    return f"{{{least},{max(bound, least)}}}"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup is not None:
        raise ValueError(f"key {dup!r} appears twice")
    return dict(pairs)


class OrderedFieldsLayout(Layout):
    syntaxes: ClassVar[tuple[str, ...]] = ("json", "fields")
    before: ClassVar[tuple[str, ...]] = ()  # reasoning field, written before the answers
    least: ClassVar[int] = 0  # the fewest characters the reasoning field holds (json syntax)
    after: ClassVar[tuple[str, ...]] = ()  # explanation field, written after the answers

    @property
    def own_fields(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.before + self.after + (("completed",) if self.syntax == "fields" else ())

    @property
    def has_reasoning(self) -> bool:
        return bool(self.before)

    @property
    def version(self) -> int:  # type: ignore[override]
        """2: in the fields syntax, free text (thoughts, explanation) cannot hold another of the layout's
        markers (the parser refused a reply the grammar allowed). The json syntax is unchanged."""
        return 2 if self.syntax == "fields" and (self.before or self.after) else 1

    def _order(self, sig: type[Signature]) -> list[str]:
        return [*self.before, *sig.output_fields, *self.after]

    def _markers(self, sig: type[Signature]) -> list[str]:
        """Every marker the parser reads as a field's start."""
        return [_marker(n) for n in [*self._order(sig), "completed"]]

    def _help(self, name: str, sig: type[Signature]) -> str:
        if name in self.before and self.least:
            return (f"a string of at least {self.least} characters: work the task out in full, every step with "
                    "its calculation written out; the answer comes after it")
        if name in self.before:
            return f"a string: {_THOUGHTS_HELP}"
        if name in self.after:
            return f"a string: {_EXPLANATION_HELP}"
        return "the answer field described above"

    # --- prompt -----------------------------------------------------------------------------------
    def format_instructions(self, sig: type[Signature], lead: str = "Reply with") -> str:
        """``lead`` opens the sentence ("The answer is …" where another layout embeds this one)."""
        order = self._order(sig)
        keys = "\n".join(f"- {n}: {self._help(n, sig)}" for n in order)
        if self.syntax == "json":
            shape = "{" + ", ".join(f'"{n}": <{n}>' for n in order) + "}"
            return (f"{lead} one JSON object and nothing else. Its keys, in this order:\n{keys}\n"
                    f"Shape: {shape}")
        shape = "\n\n".join(f"{_marker(n)}\n<{n}>" for n in order) + f"\n\n{_marker('completed')}"
        return (f"{lead} these fields, in this order, each after its marker:\n{keys}\n"
                f"End with the marker {_marker('completed')}. Shape:\n{shape}")

    def user_prompt(self, sig: type[Signature], inputs: dict[str, Any]) -> str:
        if self.syntax == "json":
            return super().user_prompt(sig, inputs)
        body = "\n\n".join(f"{_marker(n)}\n{inputs[n]}" for n in sig.input_fields)
        order = ", then ".join(f"`{_marker(n)}`" for n in self._order(sig))
        return (f"{body}\n\nRespond with the corresponding output fields, starting with {order}, "
                f"and then ending with the marker for `{_marker('completed')}`.")

    # --- constraint -------------------------------------------------------------------------------
    def json_grammar(self, sig: type[Signature], g: _types.Grammar,
                     bound: int | None = None, tail: bool = False) -> tuple[str, Region | None]:
        """The Lark expression of the reply's JSON object (its rules go into ``g``), and the reasoning region
        (at most ``bound`` characters; None: unbounded, the local backend closes it). ``tail``: only what
        follows the reasoning string (``split``)."""
        region = None
        parts = []
        for i, name in enumerate(self._order(sig)):
            key = ("{" if i == 0 else ", ") + json.dumps(name) + ": "
            if tail and name in self.before:
                continue
            if name in self.before:
                value, region = self.reasoning_value(g, name, key, bound)
            elif name in self.after:
                value = g.rule(name, f'/"{_types.JSON_CHAR}{{0,{EXPLANATION_MAX}}}"/')
            else:
                value = _types.json_value_rule(sig.output_fields[name].annotation, g, f"v_{name}")
            parts.append(f"{_types.lark_literal(key)} {value}")
        return " ".join(parts) + ' "}"', region

    def reasoning_value(self, g: _types.Grammar, name: str, key: str, bound: int | None) -> tuple[str, Region | None]:
        """The reasoning field's Lark value after ``key``, and its region: here a JSON string (a subclass may
        give the field another form)."""
        return (g.rule(name, f'/"{_types.JSON_CHAR}{_repeat(bound, self.least)}"/'),
                Region(open=key + '"', end='"', close='"', json_string=True, least=self.least))

    def constraint(self, sig: type[Signature]) -> Constraint:
        lark, region = self._lark(sig, None)
        schema = None
        if self.syntax == "json" and not self.least:  # JSON Schema's minLength is not held by every server
            props = {n: ({"type": "string"} if n in self.before + self.after
                         else _types.json_schema(sig.output_fields[n].annotation)) for n in self._order(sig)}
            schema = _types.object_schema(props)
        split = partial(self.server_split, sig) if region is not None else None
        return Constraint(lark, schema, region, grammar=partial(self.server_grammar, sig), split=split)

    def split_parts(self, sig: type[Signature], dialect: str, g: Any, owed: int, region: bool) -> tuple[str, str]:
        name = self.before[0]
        if dialect == "lark" and self.syntax == "json":
            text = g.rule(name, f'/{_types.JSON_CHAR}{_repeat(None, self.least)}"/') if region else ""
            owing = g.rule(f"{name}_rest", f'/{_types.JSON_CHAR}{{{owed}}}"/') + " " if owed else ""
            return text, owing + self.json_grammar(sig, g, tail=True)[0]
        if dialect == "lark":
            return self._fields_free(sig, g, name, None) if region else "", self._fields_lark(sig, g, None, True)
        if self.syntax == "json":
            jchar = g.rule("jchar", _gbnf._JCHAR)
            text = f'{jchar}{{{self.least},}} "\\""' if self.least else f'{jchar}* "\\""'
            owing = f'{jchar}{{{owed}}} "\\"" ' if owed else ""
            return text if region else "", owing + self.json_gbnf(sig, g, 0, tail=True)
        order = self._order(sig)
        nxt = _marker(order[order.index(name) + 1])
        text = _gbnf.until(g, name, nxt, None, tuple(m for m in self._markers(sig) if m != nxt)) if region else ""
        return text, self._fields_gbnf(sig, g, 0, True)

    def server_grammar(self, sig: type[Signature], dialect: str, bound: int) -> str:
        if dialect == "lark":
            return self._lark(sig, bound)[0]
        g = _gbnf.Gbnf()
        return g.render(self.json_gbnf(sig, g, bound) if self.syntax == "json" else self._fields_gbnf(sig, g, bound))

    def json_gbnf(self, sig: type[Signature], g: _gbnf.Gbnf, bound: int, tail: bool = False) -> str:
        """The GBNF expression of the reply's JSON object, its reasoning string at most ``bound`` characters
        (``tail``: only what follows the reasoning string)."""
        parts = []
        for i, name in enumerate(self._order(sig)):
            key = _gbnf.literal(("{" if i == 0 else ", ") + json.dumps(name) + ": ")
            if tail and name in self.before:
                continue
            if name in self.before:
                value = _gbnf.json_string(g, name, bound, self.least)
            elif name in self.after:
                value = _gbnf.json_string(g, name, EXPLANATION_MAX)
            else:
                value = _gbnf.json_value(sig.output_fields[name].annotation, g, f"v-{name}")
            parts.append(f"{key} {value}")
        return " ".join(parts) + ' "}"'

    def _fields_gbnf(self, sig: type[Signature], g: _gbnf.Gbnf, bound: int, tail: bool = False) -> str:
        order = self._order(sig)
        parts = []
        for i, name in enumerate(order):
            head = ("" if i == 0 else "\n\n") + _marker(name) + "\n"
            nxt = _marker(order[i + 1]) if i + 1 < len(order) else _marker("completed")
            if tail and name in self.before:  # written by the region's own step, up to the next marker
                parts.append(_gbnf.literal("\n"))
                continue
            if name in self.before + self.after:  # free text up to the next marker, holding no other
                most = bound if name in self.before else EXPLANATION_MAX
                others = tuple(m for m in self._markers(sig) if m != nxt)
                parts.append(f"{_gbnf.literal(head)} {_gbnf.until(g, name, nxt, most, others)}")
                if name in self.before:
                    parts.append(_gbnf.literal("\n"))
                continue
            value = _gbnf.plain_value(sig.output_fields[name].annotation, g, f"v-{name}")
            parts.append(value if i > 0 and order[i - 1] in self.before else f"{_gbnf.literal(head)} {value}")
        if not self.after:
            parts.append(_gbnf.literal("\n\n" + _marker("completed")))
        return " ".join(parts)

    def _lark(self, sig: type[Signature], bound: int | None) -> tuple[str, Region | None]:
        g = _types.Grammar()
        if self.syntax == "json":
            body, region = self.json_grammar(sig, g, bound)
            return g.render(body), region
        region = None
        if self.before:
            order = self._order(sig)
            head = ("" if order[0] == self.before[0] else "\n\n") + _marker(self.before[0]) + "\n"
            nxt = _marker(order[order.index(self.before[0]) + 1])
            region = Region(open=head, end=nxt, close="\n\n" + nxt)
        return g.render(self._fields_lark(sig, g, bound)), region

    def _free(self, sig: type[Signature], name: str) -> tuple[str, str]:
        """The Lark exclusion that keeps a free field's text from holding another of the layout's markers (the
        parser takes each of them as a field's start, wherever it is), and the marker that ends it."""
        order = self._order(sig)
        i = order.index(name)
        nxt = _marker(order[i + 1]) if i + 1 < len(order) else _marker("completed")
        others = "|".join(re.escape(m).replace("/", "\\/") for m in self._markers(sig) if m != nxt)
        return f" & ~/(.|\\n)*({others})(.|\\n)*/", nxt

    def _fields_free(self, sig: type[Signature], g: _types.Grammar, name: str, bound: int | None) -> str:
        """The reasoning field's text, ended by the next marker (a rule in ``g``)."""
        free, nxt = self._free(sig, name)
        return g.rule(name, f"/(.|\\n){_repeat(bound)}/{free}", attrs=f"suffix={_types.lark_literal(nxt)}")

    def _fields_lark(self, sig: type[Signature], g: _types.Grammar, bound: int | None, tail: bool = False) -> str:
        """The Lark expression of a fields-syntax reply (``tail``: only what follows the reasoning field)."""
        order = self._order(sig)
        parts = []
        for i, name in enumerate(order):
            head = ("" if i == 0 else "\n\n") + _marker(name) + "\n"
            if name in self.before:
                value = "" if tail else f"{_types.lark_literal(head)} {self._fields_free(sig, g, name, bound)} "
                parts.append(value + '"\\n"')
                continue
            if name in self.after:
                free, nxt = self._free(sig, name)
                value = g.rule(name, f"/(.|\\n){{0,{EXPLANATION_MAX}}}/{free}",
                               attrs=f"suffix={_types.lark_literal(nxt)}")
                parts.append(f"{_types.lark_literal(head)} {value}")
                continue
            value = _types.plain_value_rule(sig.output_fields[name].annotation, g, f"v_{name}")
            if i > 0 and order[i - 1] in self.before:
                head = ""  # the reasoning rule's suffix already wrote this marker; "\n" follows it
            parts.append(f"{_types.lark_literal(head)} {value}" if head else value)
        if not self.after:
            parts.append(_types.lark_literal("\n\n" + _marker("completed")))
        return " ".join(parts)

    # --- render / parse ---------------------------------------------------------------------------
    def _values(self, sig: type[Signature], outputs: dict[str, Any], reasoning: str | None,
                extras: dict[str, Any] | None) -> dict[str, Any]:
        extras = extras or {}
        values: dict[str, Any] = {}
        for name in self._order(sig):
            if name in self.before:
                values[name] = reasoning or ""
            elif name in self.after:
                values[name] = extras.get(name, "")
            else:
                values[name] = outputs[name]
        return values

    def render(self, sig: type[Signature], outputs: dict[str, Any], reasoning: str | None = None,
               extras: dict[str, Any] | None = None) -> str:
        values = self._values(sig, outputs, reasoning, extras)
        if self.syntax == "json":
            return _types.dumps(values)
        body = "\n\n".join(f"{_marker(n)}\n{v if n in self.own_fields else _types.to_plain(v)}"
                           for n, v in values.items())
        return f"{body}\n\n{_marker('completed')}"

    def parse(self, sig: type[Signature], text: str, reasoning: str | None = None) -> Parsed:
        values = self._parse_json(text) if self.syntax == "json" else self._parse_fields(sig, text)
        order = self._order(sig)
        unexpected = [k for k in values if k not in order]
        if unexpected:
            raise fail(f"unexpected field {unexpected[0]!r}", text)
        for name in self.before + self.after:
            if name not in values:
                raise fail(f"missing field {name!r} of layout {self.name!r}", text)
            if self.syntax == "json" and not isinstance(values[name], str):
                raise fail(f"field {name!r} must be a string", text)
        outputs = typed_outputs(sig, values, text, plain=self.syntax == "fields")
        seen = [k for k in values if k in order]
        answer_pos = [seen.index(n) for n in sig.output_fields]
        violated = any(seen.index(b) > min(answer_pos) for b in self.before) or \
            any(seen.index(a) < max(answer_pos) for a in self.after)
        own = values[self.before[0]].strip() if self.before else None
        return Parsed(outputs, join_reasoning(reasoning, own), {n: values[n].strip() for n in self.after},
                      violated)

    def _parse_json(self, text: str) -> dict[str, Any]:
        body = strip_fence(text)
        if not body:
            raise fail("empty reply", text)
        try:
            data = json.loads(body, object_pairs_hook=_no_duplicates)
        except ValueError as e:
            msg = f"invalid JSON ({e.msg} at line {e.lineno} column {e.colno})" if isinstance(
                e, json.JSONDecodeError) else f"invalid JSON ({e})"
            raise fail(msg, text) from None
        if not isinstance(data, dict):
            raise fail(f"expected a JSON object, got {type(data).__name__}", text)
        return data

    def _parse_fields(self, sig: type[Signature], text: str) -> dict[str, str]:
        names = [*self._order(sig), "completed"]
        pattern = re.compile(r"\[\[ ## (" + "|".join(map(re.escape, names)) + r") ## \]\]")
        hits = list(pattern.finditer(text))
        if not hits:
            raise fail("no [[ ## field ## ]] markers in the reply" if text.strip() else "empty reply", text)
        if text[: hits[0].start()].strip():
            raise fail("text before the first marker", text)
        values: dict[str, str] = {}
        for i, m in enumerate(hits):
            end = hits[i + 1].start() if i + 1 < len(hits) else len(text)
            name = m.group(1)
            if name in values:
                raise fail(f"marker {_marker(name)} appears twice", text)
            values[name] = text[m.end(): end].strip()
        if "completed" in values:
            if hits[-1].group(1) != "completed" or values.pop("completed"):
                raise fail(f"text after {_marker('completed')}", text)
        return values


class Direct(OrderedFieldsLayout):
    name = "direct"
    description = "answer fields only: the answer-first baseline"


class AnswerThenExplain(OrderedFieldsLayout):
    name = "answer_then_explain"
    description = "answer fields first, then an explanation field"
    after = ("explanation",)


class ThoughtsFirst(OrderedFieldsLayout):
    name = "thoughts_first"
    description = "a free `thoughts` field first, then the answer fields"
    before = ("thoughts",)


class ThoughtsLong(ThoughtsFirst):
    """Inside a JSON string a model tends to write the plan that its free text starts with, close the string
    and guess; free text goes on past the plan and computes. Here the string cannot close before ``least``
    characters (the prompt says so). Measured in docs/results.md (gsm8k-json-thoughts); no JSON Schema form
    (servers in a JSON mode hold it by prompt only; gbnf and lark carry the minimum)."""

    name = "thoughts_long"
    description = "a `thoughts` field of at least 600 characters first, then the answer fields"
    syntaxes = ("json",)
    least = 600
