"""The preflight: a few tiny requests that show what a backend really enforces, whatever it claims.

Engines fail silently (a removed field ignored with HTTP 200, a grammar applied only after the reasoning or not
at all while thinking, a format ignored, a budget processor that does nothing), so ``probe(backend)`` checks:

* **constraint**, per layout: a request whose free reply breaks the layout (the user asks for a sentence
  instead of the format; asked alone, the answer is one of two made-up words). The reply parses: ``held``; it does not:
  ``broken`` (the arm is prompt-only, whatever the engine claims); nothing was sent: ``not sent``. A reply that
  hits the probe's token limit tells nothing: it is asked again with four times the limit, and cut again it is
  ``unverified`` (the arm is labelled so: never as enforced). Where the region closes by continuation, a first
  step that ends the model's turn inside the region is ``broken``: its grammar forbids that, so it was not applied.
  A region is free text, so a model free of step 1's grammar may write what that grammar allows of its own accord;
  so each of the two grammars is also sent once with a word it must start with put in front (``_unreached``): a
  reply without the word is ``broken``, whatever the model would have written.
  Run by ``evaluate``, the request is the arm's: the task's own output fields (a grammar of the same size as the
  rows'), and on a path where the grammar bounds the region, the arm's largest budget.
* **reasoning apart**: where the reply came back in two parts, the answer must be in the content, not in the
  reasoning (``in reasoning`` otherwise: the grammar was applied to the wrong part).
* **model thinking tokens**: with the model's own thinking on (``model_thinking=on``) and
  ``model_thinking_tokens=B``, the reasoning holds at most B + SLACK tokens.
* **continuation**: asked to go on from a partial assistant message (``1, 2, 3, 4,``), does the server continue it
  (``continues``) or answer a new turn (``new turn``)? An engine that cannot is ``not offered``. The finding says
  which path a reasoning region takes (``region_path``); a run whose arms close regions by continuation stops
  where the server did not continue (``refuse_continuation``).
* **model thinking off**: asked to think off, the reply has no reasoning (where the spec switches thinking at all).
A misconfigured or unreachable server (``ConfigError``, ``UnreachableError``) is raised, not recorded.

Findings are data (``Finding``); ``observed(findings, layout, syntax, declared)`` is what an arm was held to.
Does not handle: a backend that enforces some requests and not others (one request per layout is a sample).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .. import _types
from .._backend import Backend, call, enforcement
from .._errors import ConfigError, FirstTokenError, ParseError, UnreachableError
from .._predictor import Predictor
from .._signature import InputField, OutputField, Signature
from ..layouts import get_layout, layout_classes

TOKENS = "model thinking tokens"  # the finding on the model's own thinking budget
SLACK = 8  # tokens over the budget a closing tag and its newline may take
ANSWER_TOKENS = 160  # the probe's replies are a word or two; a reply cut here tells nothing
UNVERIFIED = "unverified"  # what an arm is labelled where the probe could not tell whether its constraint held
RETRY_TOKENS = 4 * ANSWER_TOKENS  # the second try of a reply cut at ANSWER_TOKENS
MARK = "zebulon"  # the word a marked grammar must start with (``_unreached``)
MARK_TOKENS = 8  # enough for MARK and a space in any tokenizer
BREAK = ("Do not use any format, tags or JSON. Reply with exactly this sentence and nothing else: "
         "I will not answer.")
COUNT = "Count from 1 to 10, separated by commas. Reply with the numbers only."
PARTIAL = "1, 2, 3, 4,"  # the assistant message the continuation check asks the server to go on from
LONG = "Think it through at length, step by step, before you answer: which word comes first in the alphabet?"


class Probe(Signature):
    """Pick the word that answers the question."""

    question: str = InputField()
    answer: Literal["zebulon", "quillet"] = OutputField(desc="zebulon or quillet")


@dataclass
class Finding:
    check: str  # constraint, reasoning apart, model thinking tokens, model thinking off, continuation
    layout: str  # "layout/syntax", or "-" for checks of the model's own thinking
    outcome: str  # held, broken, not sent, unverified, in reasoning, exceeded, still thinking, off, continues,
    # new turn, not offered, unclear, error
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def probe_layouts() -> list[tuple[str, str]]:
    return [(c.name, s) for c in layout_classes() for s in c.syntaxes]


def probe_signature(sig: type[Signature]) -> type[Signature]:
    """The probe's question asked of a task's outputs: the task's output fields (so its constraint is the size of
    the rows'), one input."""
    outputs = sig.output_fields
    name = next(n for n in ("question", "probe_question", "probe_question_") if n not in outputs)
    return Signature.make("Probe", Probe.instructions, {name: str}, {n: f.annotation for n, f in outputs.items()},
                          {n: f.desc for n, f in outputs.items()},
                          {n: f.labels for n, f in outputs.items() if f.labels})


def probe(backend: Backend, layouts: list[tuple[str, str]] | None = None, budget: int = 16,
          signature: type[Signature] | None = None, budgets: dict[tuple[str, str], int] | None = None) -> list[Finding]:
    """``signature``: the task's (its outputs asked); ``budgets``: a layout's largest budget in the run, sent where
    a grammar bounds the region (its size grows with the budget); elsewhere ``budget``."""
    findings: list[Finding] = []
    sig = Probe if signature is None else probe_signature(signature)
    for name, syntax in (probe_layouts() if layouts is None else layouts):
        findings += _constraint(backend, name, syntax, (budgets or {}).get((name, syntax), budget), sig, budget)
    options = getattr(backend, "options", None)  # a server's switch for the model's own thinking, if it has one
    thinking = getattr(options, "model_thinking", None)
    if thinking == "on" and getattr(options, "model_thinking_tokens", None) is not None:
        findings.append(_budget(backend))
    if thinking in ("on", "off"):  # the user switches thinking: check that off really is off
        findings.append(_thinking_off(backend))
    if callable(getattr(backend, "continue_message", None)):
        findings.append(_continuation(backend))
    return findings


def _continuation(backend: Any) -> Finding:
    """Does the server continue a final assistant message (``1, 2, 3, 4,`` -> `` 5, 6``) or start a new turn?"""
    path = backend.region_path()
    if backend.engine.continuation is None:
        return Finding("continuation", "-", "not offered",
                       f"engine {backend.options.engine} answers a new turn; it is not asked to continue a message; "
                       f"{path}")
    try:
        # 3 tokens: too few to write the partial message again from the start, so a reply that holds it whole
        # and goes on is the server returning the message with its continuation (llama-server), not a new turn
        gen = backend.continue_message([{"role": "user", "content": COUNT}], PARTIAL, max_tokens=3)
    except (ConfigError, UnreachableError):
        raise
    except FirstTokenError as e:
        return Finding("continuation", "-", "error", _short(str(e)))
    text, echo = gen.text.lstrip(), ""
    if text.startswith(PARTIAL) and text[len(PARTIAL):].lstrip().startswith("5"):  # the message, then its sequel
        text, echo = text[len(PARTIAL):].lstrip(), " (the reply repeats the partial message first)"
    if text.startswith("5"):
        return Finding("continuation", "-", "continues",
                       f"the partial message went on: {_short(text, 40)!r}{echo}; {path}")
    if text.startswith("1"):
        return Finding("continuation", "-", "new turn", f"the reply started over: {_short(text, 40)!r}")
    return Finding("continuation", "-", "unclear", f"neither went on nor started over: {_short(text, 40)!r}")


def refuse_continuation(model: str, findings: list[dict[str, str]]) -> None:
    """Stop a run whose arms close their reasoning by continuation on a server the probe did not see continue a
    message (their replies would be new turns glued to the region): ``ConfigError`` naming the fix."""
    bad = next((f for f in findings if f["check"] == "continuation" and f["outcome"] != "continues"), None)
    if bad is not None:
        raise ConfigError(f"{model}: its reasoning arms close the region by continuation, but the probe's "
                          f"continuation check found {bad['outcome']!r} ({bad['detail']})",
                          hint="add ?close_by=grammar to the model: one request a reply, the region bounded by a grammar")


def _constraint(backend: Backend, name: str, syntax: str, largest: int, sig: type[Signature],
                small: int) -> list[Finding]:
    where = f"{name}/{syntax}"
    layout = get_layout(name, syntax)
    constraint = layout.constraint(sig)
    declared = enforcement(backend, constraint)
    if declared is None:
        return [Finding("constraint", where, "not sent", "the backend sends no constraint for this layout")]
    continues = getattr(backend, "closes_by_continuation", lambda c: False)(constraint)
    budget = min(largest, small) if continues else largest  # a split grammar's size does not grow with the budget
    question = next(iter(sig.input_fields))
    try:
        for limit in (ANSWER_TOKENS, RETRY_TOKENS):
            predictor = Predictor(sig, layout=name, syntax=syntax, model=backend, max_thinking_tokens=budget,
                                  max_answer_tokens=limit)
            try:
                pred = predictor(**{question: BREAK})
                break
            except ParseError as e:
                gen = getattr(e, "generation", None)
                if gen is None or gen.finish_reason != "length":
                    return _broken(layout, sig, e, where, declared)
        else:  # a grammar can hold a reply cut short: not told, twice
            return [Finding("constraint", where, "unverified",
                            f"{declared} sent; the reply reached the probe's limit ({ANSWER_TOKENS}, then "
                            f"{RETRY_TOKENS} tokens) before it was complete: whether the constraint held is not known")]
    except (ConfigError, UnreachableError):
        raise  # a misconfigured or unreachable server: the run would stop on its first row with the same line
    except FirstTokenError as e:
        return [Finding("constraint", where, "error", _short(str(e)))]
    if continues and pred.closed_by == "end_of_turn":  # step 1's grammar allows no end inside the region
        return [Finding("constraint", where, "broken", f"{declared} sent; the first step ended the model's turn "
                                                       "inside the reasoning region: its grammar was not applied")]
    step = _unreached(backend, predictor, constraint, question) if continues else None
    if step is not None:
        return [Finding("constraint", where, "broken", f"{declared} sent; step {step}'s grammar, sent with a word "
                                                       f"to start with ({MARK!r}), came back without it: not applied")]
    answer = {k: _types.to_json(v) for k, v in pred.outputs.items()}
    found = [Finding("constraint", where, "held", f"{declared}: the reply parsed ({_short(json.dumps(answer))})")]
    if pred.generation.reasoning is not None:
        found.append(Finding("reasoning apart", where, "held", "the answer is in the content"))
    return found


def _unreached(backend: Any, predictor: Predictor, constraint: Any, question: str) -> int | None:
    """Where the region closes by continuation, whether each of its two grammars reaches the model, whatever the
    model would write of its own accord: each is sent with a word it must start with (MARK) put in front of it, and a
    reply that does not start with that word is one the grammar was not applied to. The step (1 or 2) whose grammar
    did not reach the model, or None."""
    request = predictor.request({question: BREAK})
    for step, grammar in enumerate(constraint.split(backend.split_dialect(), 0), start=1):
        marked = _marked(grammar)
        if marked is None:
            continue  # not a grammar this check can mark
        gen = backend.run_step(backend.step(request.messages, "", marked, MARK_TOKENS, request))
        if not gen.text.lstrip().startswith(MARK):
            return step
    return None


def _marked(grammar: str) -> str | None:
    """``grammar`` (GBNF ``root ::= ...`` or Lark ``start: ...``, its start rule on the first line) with MARK
    before everything it allows."""
    first, sep, rest = grammar.partition("\n")
    for head in ("root ::= ", "start: "):
        if first.startswith(head):
            return f'{head}"{MARK} " ({first[len(head):]}){sep}{rest}'
    return None


def _broken(layout: Any, sig: type[Signature], e: ParseError, where: str, declared: str) -> list[Finding]:
    """A reply that did not parse: where it went, when the content was empty."""
    gen = getattr(e, "generation", None)
    apart = (gen.reasoning if gen is not None else None) or e.reasoning or ""
    if not (e.raw or "").strip():  # say where the reply went, not "reply: " and nothing
        if apart and _parses(layout, sig, apart):
            return [Finding("constraint", where, "broken", f"{declared} sent; the content was empty"),
                    Finding("reasoning apart", where, "in reasoning", "the answer came back in the reasoning")]
        went = f"; {len(apart)} characters came back as reasoning" if apart else " and no reasoning came back"
        return [Finding("constraint", where, "broken", f"{declared} sent; the content was empty{went}")]
    return [Finding("constraint", where, "broken", f"{declared} sent; reply: {_short(e.raw)}")]


def _parses(layout: Any, sig: type[Signature], text: str) -> bool:
    """Whether a reply of the layout's format is in ``text``, whole or from the start of a line on (the reasoning,
    where a grammar was applied to the wrong part, or the model thought first)."""
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    for start in starts[:1] + starts[1:][-50:]:
        try:
            layout.parse(sig, text[start:])
            return True
        except ParseError:
            continue
    return False


def _budget(backend: Any) -> Finding:
    limit = backend.options.model_thinking_tokens
    if not getattr(backend, "takes_budget", True):
        return Finding(TOKENS, "-", "not sent", f"engine {backend.options.engine} takes no model_thinking_tokens")
    gen = _raw(backend, LONG)
    if isinstance(gen, FirstTokenError):
        return Finding(TOKENS, "-", "error", _short(str(gen)))
    used = _reasoning_tokens(backend, gen)
    if used <= limit + SLACK:
        return Finding(TOKENS, "-", "held", f"{used} reasoning tokens for model_thinking_tokens={limit}")
    return Finding(TOKENS, "-", "exceeded",
                   f"{used} reasoning tokens for model_thinking_tokens={limit} (+{SLACK} allowed)")


def _thinking_off(backend: Any) -> Finding:
    off = copy.copy(backend)
    off.options = backend.options.model_copy(update={"model_thinking": "off"})
    gen = _raw(off, LONG)
    if isinstance(gen, FirstTokenError):
        return Finding("model thinking off", "-", "error", _short(str(gen)))
    used = _reasoning_tokens(off, gen) if gen.reasoning else 0
    if used == 0:
        return Finding("model thinking off", "-", "off", "no reasoning came back")
    return Finding("model thinking off", "-", "still thinking", f"{used} reasoning tokens with thinking off")


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
    """What an arm was held to after the probe: ``declared`` where the probe saw its constraint held (or nothing
    was sent); None (prompt-only) where it saw it broken or the answer in the reasoning; ``"unverified"`` where it
    could not tell (a reply cut twice, an error, no finding): never an unknown taken for enforced."""
    where = f"{layout}/{syntax}"
    mine = [f for f in findings if f["layout"] == where]
    if declared is None or any(f["outcome"] in ("broken", "in reasoning") for f in mine):
        return None
    held = any(f["check"] == "constraint" and f["outcome"] == "held" for f in mine)
    return declared if held else UNVERIFIED
