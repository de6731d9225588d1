"""``work_then_answer``: free-form working, then a final ``Answer:`` line.

One output: ``Answer: 42``. Several: ``Answer:`` then one ``name: value`` line each. Values are plain
(a bare number or label; lists and objects as JSON). The first line that starts with ``Answer:`` ends the
working, in the parser as in the grammar.
Does not handle: multi-line answer values.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from .. import _types
from .._signature import Signature
from . import _gbnf
from ._base import Constraint, Layout, Parsed, Region, fail, join_reasoning, typed_outputs
from ._ordered import _repeat

MARK = "Answer:"


class WorkThenAnswer(Layout):
    name = "work_then_answer"
    description = "free-form working, then a final `Answer: …` line"
    syntaxes = ("lines",)

    @property
    def has_reasoning(self) -> bool:
        return True

    def format_instructions(self, sig: type[Signature]) -> str:
        names = list(sig.output_fields)
        if len(names) == 1:
            last = f"{MARK} <{names[0]}>"
        else:
            last = MARK + "".join(f"\n{n}: <{n}>" for n in names)
        return ("Show your work first: think step by step and work the task out in full. "
                f"Then end your reply with the final answer, exactly like this:\n{last}")

    def constraint(self, sig: type[Signature]) -> Constraint:
        return Constraint(self._lark(sig, None), None, Region(open="", end="\n" + MARK, close="\n" + MARK),
                          grammar=partial(self.server_grammar, sig), split=partial(self.server_split, sig))

    def _lark(self, sig: type[Signature], bound: int | None) -> str:
        g = _types.Grammar()
        tail = self._tail_lark(sig, g)
        g.rule("work", f"/(.|\\n){_repeat(bound)}/", attrs=f"suffix={_types.lark_literal(chr(10) + MARK)}")
        return g.render(f"work {tail}")

    @staticmethod
    def _tail_lark(sig: type[Signature], g: _types.Grammar) -> str:
        fields = list(sig.output_fields.items())
        if len(fields) == 1:
            return '" " ' + _types.plain_value_rule(fields[0][1].annotation, g, f"v_{fields[0][0]}")
        return " ".join(f'{_types.lark_literal(chr(10) + n + ": ")} '
                        f'{_types.plain_value_rule(f.annotation, g, f"v_{n}")}' for n, f in fields)

    @staticmethod
    def _tail_gbnf(sig: type[Signature], g: _gbnf.Gbnf) -> str:
        fields = list(sig.output_fields.items())
        if len(fields) == 1:
            return f'" " {_gbnf.plain_value(fields[0][1].annotation, g, f"v-{fields[0][0]}")}'
        return " ".join(f'{_gbnf.literal(chr(10) + n + ": ")} {_gbnf.plain_value(f.annotation, g, f"v-{n}")}'
                        for n, f in fields)

    def server_grammar(self, sig: type[Signature], dialect: str, bound: int) -> str:
        if dialect == "lark":
            return self._lark(sig, bound)
        g = _gbnf.Gbnf()
        work = _gbnf.until(g, "work", "\n" + MARK, bound)
        return g.render(f"{work} {self._tail_gbnf(sig, g)}")

    def split_parts(self, sig: type[Signature], dialect: str, g: Any, owed: int, region: bool) -> tuple[str, str]:
        if dialect == "lark":
            tail = self._tail_lark(sig, g)
            work = g.rule("work", "/(.|\\n)*/", attrs=f"suffix={_types.lark_literal(chr(10) + MARK)}") if region else ""
            return work, tail
        return _gbnf.until(g, "work", "\n" + MARK, None) if region else "", self._tail_gbnf(sig, g)

    def render(self, sig: type[Signature], outputs: dict[str, Any], reasoning: str | None = None,
               extras: dict[str, Any] | None = None) -> str:
        if len(outputs) == 1:
            (value,) = outputs.values()
            return f"{reasoning or ''}\n{MARK} {_types.to_plain(value)}"
        lines = "".join(f"\n{n}: {_types.to_plain(outputs[n])}" for n in sig.output_fields)
        return f"{reasoning or ''}\n{MARK}{lines}"

    def parse(self, sig: type[Signature], text: str, reasoning: str | None = None) -> Parsed:
        m = re.search(rf"(?:^|\n)[ \t]*{MARK}", text)
        if not m:
            raise fail(f"no line starting with {MARK!r}" if text.strip() else "empty reply", text)
        written, rest = text[: m.start()].strip(), text[m.end():].strip()
        names = list(sig.output_fields)
        if len(names) == 1:
            if "\n" in rest:
                raise fail(f"text after the {MARK} line", text, written)
            values = {names[0]: rest}
        else:
            values = {}
            for line in rest.splitlines():
                if not line.strip():
                    continue
                key, sep, value = line.partition(":")
                key = key.strip()
                if not sep or key not in sig.output_fields:
                    raise fail(f"unexpected line after {MARK}: {line[:60]!r}", text, written)
                if key in values:
                    raise fail(f"answer line {key!r} appears twice", text, written)
                values[key] = value
        return Parsed(typed_outputs(sig, values, text, plain=True), join_reasoning(reasoning, written))
