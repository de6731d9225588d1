"""The preflight: a few tiny requests that show what a backend really enforces, whatever it claims.

Engines fail silently (a removed field ignored with HTTP 200, a grammar applied only after the reasoning or not
at all while thinking, a format ignored, a budget processor that does nothing), so ``probe(backend)`` checks:

* **constraint**, per layout: a request whose free reply breaks the layout (the user asks for a sentence
  instead of the format, the answer is one of two made-up words). The reply parses: ``held``; it does not:
  ``broken`` (the arm is prompt-only, whatever the engine claims); nothing was sent: ``not sent``; the reply
  hit the probe's token limit first: ``cut`` (not told: the arm keeps what the engine declared).
* **reasoning apart**: where the reply came back in two parts, the answer must be in the content, not in the
  reasoning (``in reasoning`` otherwise: the grammar was applied to the wrong part).
* **budget**: with the model's own thinking on and a budget B, the reasoning holds at most B + SLACK tokens.
* **thinking off**: asked to think off, the reply has no reasoning (where the spec switches thinking at all).
A misconfigured or unreachable server (``ConfigError``, ``UnreachableError``) is raised, not recorded.

Findings are data (``Finding``); ``observed(findings, layout, syntax, declared)`` is what an arm was held to.
Does not handle: a backend that enforces some requests and not others (one request per layout is a sample).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .._backend import Backend, call, enforcement
from .._errors import ConfigError, FirstTokenError, ParseError, UnreachableError
from .._predictor import Predictor
from .._signature import InputField, OutputField, Signature
from ..layouts import get_layout, layout_classes

SLACK = 8  # tokens over the budget a closing tag and its newline may take
ANSWER_TOKENS = 160  # the probe's replies are a word or two; a reply cut here tells nothing
BREAK = ("Do not use any format, tags or JSON. Reply with exactly this sentence and nothing else: "
         "I will not answer.")
LONG = "Think it through at length, step by step, before you answer: which word comes first in the alphabet?"


class Probe(Signature):
    """Pick the word that answers the question."""

    question: str = InputField()
    answer: Literal["zebulon", "quillet"] = OutputField(desc="zebulon or quillet")


@dataclass
class Finding:
    check: str  # constraint, reasoning apart, budget, thinking off
    layout: str  # "layout/syntax", or "-" for checks of the model's own thinking
    outcome: str  # held, broken, not sent, in reasoning, exceeded, still thinking, off, error
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def probe_layouts() -> list[tuple[str, str]]:
    return [(c.name, s) for c in layout_classes() for s in c.syntaxes]


def probe(backend: Backend, layouts: list[tuple[str, str]] | None = None, budget: int = 16) -> list[Finding]:
    findings: list[Finding] = []
    for name, syntax in (probe_layouts() if layouts is None else layouts):
        findings += _constraint(backend, name, syntax, budget)
    thinking = getattr(backend, "thinking", None)
    if thinking == "on" and getattr(backend, "thinking_budget", None) is not None:
        findings.append(_budget(backend))
    if thinking in ("on", "off"):  # the user switches thinking: check that off really is off
        findings.append(_thinking_off(backend))
    return findings


def _constraint(backend: Backend, name: str, syntax: str, budget: int) -> list[Finding]:
    where = f"{name}/{syntax}"
    layout = get_layout(name, syntax)
    declared = enforcement(backend, layout.constraint(Probe))
    if declared is None:
        return [Finding("constraint", where, "not sent", "the backend sends no constraint for this layout")]
    predictor = Predictor(Probe, layout=name, syntax=syntax, model=backend, max_thinking_tokens=budget,
                          max_answer_tokens=ANSWER_TOKENS)
    try:
        pred = predictor(question=BREAK)
    except ParseError as e:
        gen = getattr(e, "generation", None)
        if gen is not None and gen.finish_reason == "length":  # a grammar can hold a reply cut short: not told
            return [Finding("constraint", where, "cut", f"{declared} sent; the reply reached the probe's "
                                                        f"{ANSWER_TOKENS}-token limit before it was complete")]
        apart = (gen.reasoning if gen is not None else None) or e.reasoning or ""
        if apart and ("zebulon" in apart or "quillet" in apart) and not (e.raw or "").strip():
            return [Finding("constraint", where, "broken", f"{declared} sent; the content was empty"),
                    Finding("reasoning apart", where, "in reasoning", "the answer came back in the reasoning")]
        if not (e.raw or "").strip():  # say where the reply went, not "reply: " and nothing
            went = f"; {len(apart)} characters came back as reasoning" if apart else " and no reasoning came back"
            return [Finding("constraint", where, "broken", f"{declared} sent; the content was empty{went}")]
        return [Finding("constraint", where, "broken", f"{declared} sent; reply: {_short(e.raw)}")]
    except (ConfigError, UnreachableError):
        raise  # a misconfigured or unreachable server: the run would stop on its first row with the same line
    except FirstTokenError as e:
        return [Finding("constraint", where, "error", _short(str(e)))]
    found = [Finding("constraint", where, "held", f"{declared}: the reply parsed ({pred.answer!r})")]
    if pred.generation.reasoning is not None:
        found.append(Finding("reasoning apart", where, "held", "the answer is in the content"))
    return found


def _budget(backend: Any) -> Finding:
    limit = backend.thinking_budget
    takes = getattr(backend, "takes_budget", True)
    if not takes:
        return Finding("budget", "-", "not sent", f"engine {getattr(backend, 'engine', '?')} takes no thinking budget")
    gen = _raw(backend, LONG)
    if isinstance(gen, FirstTokenError):
        return Finding("budget", "-", "error", _short(str(gen)))
    used = _reasoning_tokens(backend, gen)
    if used <= limit + SLACK:
        return Finding("budget", "-", "held", f"{used} reasoning tokens for a budget of {limit}")
    return Finding("budget", "-", "exceeded", f"{used} reasoning tokens for a budget of {limit} (+{SLACK} allowed)")


def _thinking_off(backend: Any) -> Finding:
    off = copy.copy(backend)
    off.thinking = "off"
    gen = _raw(off, LONG)
    if isinstance(gen, FirstTokenError):
        return Finding("thinking off", "-", "error", _short(str(gen)))
    used = _reasoning_tokens(off, gen) if gen.reasoning else 0
    if used == 0:
        return Finding("thinking off", "-", "off", "no reasoning came back")
    return Finding("thinking off", "-", "still thinking", f"{used} reasoning tokens with thinking off")


def _raw(backend: Any, question: str) -> Any:
    """One unconstrained request through the backend (the reply's text and reasoning, not parsed)."""
    predictor = Predictor(Probe, layout="direct", model=backend, constrained=False, max_answer_tokens=64)
    try:
        return call(backend, predictor.request({"question": question}))
    except FirstTokenError as e:
        return e


def _reasoning_tokens(backend: Any, gen: Any) -> int:
    if gen.reasoning_tokens is not None:
        return int(gen.reasoning_tokens)
    return backend.count_tokens(gen.reasoning or "") if gen.reasoning else 0


def _short(text: str | None, n: int = 80) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def observed(findings: list[dict[str, str]], layout: str, syntax: str, declared: str | None) -> str | None:
    """What an arm was held to after the probe: ``declared``, unless the probe saw its constraint broken (or the
    answer in the reasoning): then None (prompt-only)."""
    where = f"{layout}/{syntax}"
    bad = any(f["layout"] == where and f["outcome"] in ("broken", "in reasoning") for f in findings)
    return None if bad else declared
