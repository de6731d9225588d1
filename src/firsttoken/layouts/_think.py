"""``think_then_answer``: free text inside ``<think>…</think>``, then the answer fields as one JSON object.

Reasoning a server delivers separately (``reasoning_content``) stands in for the ``<think>`` block.
Does not handle: nested ``<think>`` blocks (the first ``</think>`` ends the block, as in the grammar).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from .. import _types
from .._errors import ParseError
from .._signature import Signature
from . import _gbnf
from ._base import Constraint, Layout, Parsed, Region, fail, join_reasoning
from ._ordered import Direct, _repeat

OPEN, CLOSE = "<think>", "</think>"


class ThinkThenAnswer(Layout):
    name = "think_then_answer"
    description = "free reasoning inside <think>…</think>, then the answer fields as JSON"
    syntaxes = ("json",)

    def __init__(self, syntax: str | None = None):
        super().__init__(syntax)
        self._answer = Direct("json")

    @property
    def has_reasoning(self) -> bool:
        return True

    def format_instructions(self, sig: type[Signature]) -> str:
        return (f"First think step by step inside {OPEN} ... {CLOSE}: work the task out in full. "
                f"Then, after {CLOSE}, give the answer. "
                + self._answer.format_instructions(sig, lead="The answer is"))

    def constraint(self, sig: type[Signature]) -> Constraint:
        return Constraint(self._lark(sig, None), None, Region(open=OPEN, end=CLOSE, close="\n" + CLOSE),
                          grammar=partial(self.server_grammar, sig), split=partial(self.server_split, sig))

    def _lark(self, sig: type[Signature], bound: int | None) -> str:
        answer = _types.Grammar()
        body, _ = self._answer.json_grammar(sig, answer)
        g = _types.Grammar()
        think = g.rule("think", f"/(.|\\n){_repeat(bound)}/", attrs=f"suffix={_types.lark_literal(CLOSE)}")
        g.rule("answer", body)
        g.include(answer)
        return g.render(f'{_types.lark_literal(OPEN)} {think} "\\n" answer')

    def server_grammar(self, sig: type[Signature], dialect: str, bound: int) -> str:
        if dialect == "lark":
            return self._lark(sig, bound)
        g = _gbnf.Gbnf()
        think = _gbnf.until(g, "think", CLOSE, bound)
        answer = g.rule("answer", self._answer.json_gbnf(sig, g, bound))
        return g.render(f"{_gbnf.literal(OPEN)} {think} {_gbnf.literal(chr(10))} {answer}")

    def split_parts(self, sig: type[Signature], dialect: str, g: Any, owed: int, region: bool) -> tuple[str, str]:
        if dialect == "lark":
            think = g.rule("think", "/(.|\\n)*/", attrs=f"suffix={_types.lark_literal(CLOSE)}") if region else ""
            body, _ = self._answer.json_grammar(sig, g)
            return think, f'"\\n" {g.rule("answer", body)}'
        think = _gbnf.until(g, "think", CLOSE, None) if region else ""
        return think, f'{_gbnf.literal(chr(10))} {g.rule("answer", self._answer.json_gbnf(sig, g, 0))}'

    def render(self, sig: type[Signature], outputs: dict[str, Any], reasoning: str | None = None,
               extras: dict[str, Any] | None = None) -> str:
        return f"{OPEN}\n{reasoning or ''}\n{CLOSE}\n{self._answer.render(sig, outputs)}"

    def parse(self, sig: type[Signature], text: str, reasoning: str | None = None) -> Parsed:
        body = text.lstrip()
        written = None
        if body.startswith(OPEN):
            end = body.find(CLOSE)
            if end < 0:
                raise fail(f"{OPEN} block is never closed with {CLOSE}", text)
            written = body[len(OPEN): end].strip()
            body = body[end + len(CLOSE):]
        elif reasoning is None:
            raise fail(f"reply does not start with {OPEN}", text)
        try:
            answer = self._answer.parse(sig, body)
        except ParseError as e:  # re-raise with the whole reply as raw text
            raise fail(e.message, text, written) from None
        return Parsed(answer.outputs, join_reasoning(reasoning, written))
