"""GBNF: the grammar dialect of llama.cpp's ``llama-server`` (and, unchanged, xgrammar's EBNF on vLLM and SGLang).

Layouts write their GBNF with these pieces, from the same definitions as their Lark (field order, markers,
types); it is not a conversion of the Lark text, which uses llguidance-only lazy lexemes. Two pieces matter:

* ``json_value`` / ``plain_value``: the same values as ``_types.json_value_rule`` / ``plain_value_rule``.
* ``until(marker, n, forbidden)``: free text that ends at the first ``marker`` (which it includes) and holds
  none of ``forbidden``. Without lazy lexemes, "text that does not contain the markers" is spelled out as
  their matching automaton (Aho-Corasick). On a server nothing else can close the region, so the grammar
  bounds it: ``name-nK`` is text that costs at most K, a character costing 1 and a *run* (text that enters
  a marker's start and comes back out, ``\nT`` or ``</t</x``) costing 2 when two characters long, else the
  longest marker's length, which is also the longest a run may be. So the cost is at least the length in
  characters, and a model cannot wander in partial markers (``[[ ## explanation ## ] ]``) past the bound.
  The price: the text cannot end in a partial marker just before the marker (``<</think>``), a run longer
  than the longest marker is refused, and near the bound only plain characters fit. ``n`` None: free text of
  any length (a client that closes the region itself bounds it in tokens), one rule per automaton state.

Does not handle: ``.`` (xgrammar lacks it; negated classes are used instead).
"""

from __future__ import annotations

import json
from typing import Any, get_args, get_origin

from .. import _types

# 2: free text is charged per character, a run of partial markers as the longest marker (1 counted chunks, a
# run of any length as one, so near-copies of a marker outran the bound). 3: the model's own thinking before a
# layout's reply (engines.after_thinking) has no character bound. Part of a server arm's identity.
VERSION = 3

_INT = '"-"? ("0" | [1-9] [0-9]{0,14})'
# One JSON string character, as _types.JSON_CHAR: no quote, backslash or control character, or an escape.
_JCHAR = '[^"\\\\\\x00-\\x1F] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4})'


class Gbnf:
    """Collects named rules; ``rule`` returns the name to reference (a second, different body gets a suffix)."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}

    def rule(self, name: str, body: str) -> str:
        name = "".join(c if c.isalnum() else "-" for c in name.lower())
        base, i = name, 1
        while name in self.rules and self.rules[name] != body:
            i += 1
            name = f"{base}-{i}"
        self.rules[name] = body
        return name

    def render(self, root: str) -> str:
        return "\n".join([f"root ::= {root}"] + [f"{n} ::= {b}" for n, b in self.rules.items()]) + "\n"


def _escape(ch: str, in_class: bool) -> str:
    special = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if in_class:
        special.update({"]": "\\]", "[": "\\[", "^": "\\^", "-": "\\-"})
    if ch in special:
        return special[ch]
    return f"\\x{ord(ch):02X}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch


def literal(text: str) -> str:
    """A GBNF string literal matching ``text`` exactly."""
    return '"' + "".join(_escape(c, False) for c in text) + '"'


def not_in(chars: set[str]) -> str:
    """A class of every character but ``chars``."""
    return "[^" + "".join(_escape(c, True) for c in sorted(chars)) + "]"


def json_string(g: Gbnf, name: str, most: int, least: int = 0) -> str:
    """A JSON string of ``least`` to ``most`` characters (an escape counts as one)."""
    jchar = g.rule("jchar", _JCHAR)
    return g.rule(name, f'"\\"" {jchar}{{{least},{max(most, least)}}} "\\""')


def json_value(tp: Any, g: Gbnf, name: str) -> str:
    """A JSON value of type ``tp``, spaced exactly as json.dumps writes it (as ``_types.json_value_rule``)."""
    opts = _types.choices(tp)
    if opts is not None:
        return "(" + " | ".join(literal(json.dumps(o, ensure_ascii=False)) for o in opts) + ")"
    if tp is str:
        return json_string(g, f"{name}-str", _types.STR_MAX)
    if tp is bool:
        return '("true" | "false")'
    if tp is int:
        return g.rule("int", _INT)
    if tp is float:
        return g.rule("float", f'{_INT} ("." [0-9]{{1,10}})? ([eE] [+-]? [0-9]{{1,3}})?')
    if get_origin(tp) is list:
        item = json_value(get_args(tp)[0], g, f"{name}-item")
        return g.rule(f"{name}-list", f'"[" ("]" | {item} (", " {item}){{0,{_types.LIST_MAX - 1}}} "]")')
    parts = []
    for i, (fname, field) in enumerate(tp.model_fields.items()):
        key = ("{" if i == 0 else ", ") + json.dumps(fname) + ": "
        parts.append(f"{literal(key)} {json_value(field.annotation, g, f'{name}-{fname}')}")
    return g.rule(f"{name}-obj", " ".join(parts) + ' "}"')


def plain_value(tp: Any, g: Gbnf, name: str) -> str:
    """A plain single-line value, as in ``Answer: 42`` (as ``_types.plain_value_rule``)."""
    opts = _types.choices(tp)
    if opts is not None:
        return "(" + " | ".join(literal(str(o).lower() if isinstance(o, bool) else str(o)) for o in opts) + ")"
    if tp is str:
        return g.rule(f"{name}-line", f"[^\\n]{{0,{_types.STR_MAX}}}")
    return json_value(tp, g, name)


def _automaton(markers: list[str]) -> tuple[dict[int, dict[str, int]], set[int], set[str]]:
    """Aho-Corasick over ``markers``: state 0 is the start; (transitions over the markers' characters,
    the states that complete a marker, that alphabet). A character outside the alphabet goes to 0."""
    alphabet = set("".join(markers))
    trie: list[dict[str, int]] = [{}]
    done: set[int] = set()
    for marker in markers:
        node = 0
        for c in marker:
            if c not in trie[node]:
                trie.append({})
                trie[node][c] = len(trie) - 1
            node = trie[node][c]
        done.add(node)
    fail = [0] * len(trie)
    delta: dict[int, dict[str, int]] = {0: {c: trie[0].get(c, 0) for c in alphabet}}
    queue = list(trie[0].values())
    while queue:  # breadth first: a state's fallback is settled before its children
        node = queue.pop(0)
        if fail[node] in done:
            done.add(node)  # a marker ends here as a suffix
        delta[node] = {}
        for c in alphabet:
            if c in trie[node]:
                child = trie[node][c]
                fail[child] = delta[fail[node]][c] if node else 0
                delta[node][c] = child
                queue.append(child)
            else:
                delta[node][c] = delta[fail[node]][c]
    return delta, done, alphabet


def _runs(markers: list[str]) -> tuple[dict[int, dict[str, int]], set[int], set[str], int]:
    """The automaton of ``markers`` and the longest run it allows: one attempt at the longest marker and the
    character that breaks it."""
    delta, done, alphabet = _automaton(markers)
    return delta, done, alphabet, max(len(m) for m in markers)


def until(g: Gbnf, name: str, marker: str, most: int | None, forbidden: tuple[str, ...] = ()) -> str:
    """Free text ending at the first ``marker`` (included), holding none of ``forbidden`` either, that costs
    at most ``most`` before the marker (see ``cost``: at least its length in characters); ``most`` None: any
    length (a client that closes the region itself bounds it in tokens), a few rules whatever the length."""
    delta, done, alphabet, cap = _runs([marker, *forbidden])

    def breaks(s: int) -> str:  # the characters that end a run in state s (back to the start state)
        return not_in({c for c in alphabet if delta[s][c] != 0})

    def back(s: int, d: int) -> str:  # in state s after d characters of a run, at most cap in all
        rule = f"{name}-b{s}-{d}"
        if rule not in g.rules:  # d grows along a run: no rule refers back to itself
            alts = [breaks(s)] + [f"{literal(c)} {back(t, d + 1)}" for c in sorted(alphabet)
                                  if (t := delta[s][c]) != 0 and t not in done and d + 2 <= cap]
            g.rules[rule] = " | ".join(alts)
        return rule

    if most is None:  # no cost to count: a run is the automaton itself, a rule per state, of any length
        def state(s: int) -> str:
            rule = f"{name}-s{s}"
            if rule not in g.rules:
                g.rules[rule] = ""  # named before its body: a run may come back to a state it passed
                g.rules[rule] = " | ".join([breaks(s)] + [f"{literal(c)} {state(t)}" for c in sorted(alphabet)
                                                          if (t := delta[s][c]) != 0 and t not in done])
            return rule

        runs = [f"{literal(c)} {state(t)}" for c in sorted(alphabet) if (t := delta[0][c]) != 0 and t not in done]
        plain0 = not_in({c for c in alphabet if delta[0][c] != 0})
        free = g.rule(f"{name}-free", "(" + " | ".join([plain0] + runs) + ")*")
        return g.rule(name, f"{free} " + " ".join(literal(c) for c in marker))
    starts = {c: t for c in alphabet if (t := delta[0][c]) != 0 and t not in done}
    plain = not_in({c for c in alphabet if delta[0][c] != 0})
    short = " | ".join(f"{literal(c)} {breaks(t)}" for c, t in sorted(starts.items()))
    long = " | ".join(f"{literal(c)} {literal(c2)} {back(t2, 2)}" for c, t in sorted(starts.items())
                      for c2 in sorted(alphabet) if (t2 := delta[t][c2]) != 0 and t2 not in done and cap >= 3)
    units = [(plain, 1)] + [(g.rule(f"{name}-short", short), 2)] * bool(short) + \
        [(g.rule(f"{name}-long", long), cap)] * bool(long)
    for k in range(1, most + 1):  # name-nK: text that costs at most K
        alts = [f"{unit} {name}-n{k - c}" if k > c else unit for unit, c in units if c <= k]
        g.rules[f"{name}-n{k}"] = "(" + " | ".join(alts) + ")?"
    # The marker one character at a time: the same in GBNF, and a lexer-based reader of GBNF (llguidance,
    # which a vLLM "auto" backend may pick) cannot take "</" as the start of one multi-character token.
    head = f"{name}-n{most} " if most else ""
    return g.rule(name, head + " ".join(literal(c) for c in marker))


def cost(text: str, marker: str, forbidden: tuple[str, ...] = ()) -> int | None:
    """What ``until(marker, n, forbidden)`` charges for ``text`` (free text, without the marker), which its
    bound ``n`` limits; None where it refuses the text whatever the bound. A character costs 1; a *run* (text
    that enters a marker's start and comes back out, its last character included) costs 2 if it is two
    characters long (``\nT`` before ``\nAnswer:``), else the longest marker's length, the most it may be."""
    delta, done, _, cap = _runs([marker, *forbidden])
    state, total, run = 0, 0, 0
    for c in text:
        state = delta[state].get(c, 0)
        if state in done:
            return None
        run += 1
        if state == 0:
            total += 1 if run == 1 else 2 if run == 2 else cap
            run = 0
        elif run >= cap:
            return None
    return None if state else total
