"""GBNF: the grammar dialect of llama.cpp's ``llama-server`` (and, unchanged, xgrammar's EBNF on vLLM and SGLang).

Layouts write their GBNF with these pieces, from the same definitions as their Lark (field order, markers,
types); it is not a conversion of the Lark text, which uses llguidance-only lazy lexemes. Two pieces matter:

* ``json_value`` / ``plain_value``: the same values as ``_types.json_value_rule`` / ``plain_value_rule``.
* ``until(marker, n, forbidden)``: free text that ends at the first ``marker`` (which it includes) and holds
  none of ``forbidden``. Without lazy lexemes, "text that does not contain the markers" is spelled out as
  their matching automaton (Aho-Corasick):
  a *chunk* is text that leaves the automaton's start state and returns to it; the marker follows as a
  literal. ``chunk{0,n} marker`` bounds the region on a server, where nothing else can close it. The bound
  counts chunks: one character each, except that a run of partial markers and the character that breaks
  it (``<<a`` before ``</think>``; blank lines and the next letter before ``\\nAnswer:``) is one chunk.
  Once the bound is reached only the marker is allowed, so a model cannot wander in partial markers there.
  The price: the text cannot end in a partial marker just before the marker (``<</think>``).

Does not handle: ``.`` (xgrammar lacks it; negated classes are used instead).
"""

from __future__ import annotations

import json
from typing import Any, get_args, get_origin

from .. import _types

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


def json_string(g: Gbnf, name: str, most: int) -> str:
    """A JSON string of at most ``most`` characters (an escape counts as one)."""
    jchar = g.rule("jchar", _JCHAR)
    return g.rule(name, f'"\\"" {jchar}{{0,{most}}} "\\""')


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


def until(g: Gbnf, name: str, marker: str, most: int, forbidden: tuple[str, ...] = ()) -> str:
    """Free text ending at the first ``marker`` (included), holding none of ``forbidden`` either, at most
    ``most`` chunks before the marker."""
    delta, done, alphabet = _automaton([marker, *forbidden])
    for s in sorted(delta):  # back-S: from state S to the first return to state 0, completing no marker
        if s == 0 or s in done:
            continue
        alts = [not_in({c for c in alphabet if delta[s][c] != 0})]
        alts += [f"{literal(c)} {name}-back-{delta[s][c]}" for c in sorted(alphabet)
                 if delta[s][c] != 0 and delta[s][c] not in done]
        g.rules[f"{name}-back-{s}"] = " | ".join(alts)
    starts = {c: delta[0][c] for c in alphabet if delta[0][c] != 0}
    chunk = [not_in(set(starts))] + [f"{literal(c)} {name}-back-{t}" for c, t in sorted(starts.items())
                                      if t not in done]
    g.rules[f"{name}-chunk"] = " | ".join(chunk)
    # The marker one character at a time: the same in GBNF, and a lexer-based reader of GBNF (llguidance,
    # which a vLLM "auto" backend may pick) cannot take "</" as the start of one multi-character token.
    return g.rule(name, f"{name}-chunk{{0,{most}}} " + " ".join(literal(c) for c in marker))


def chunks(text: str, marker: str, forbidden: tuple[str, ...] = ()) -> int:
    """How many chunks ``until(marker, n, forbidden)`` reads in ``text`` (free text, without the marker):
    what its bound ``n`` counts."""
    delta, _, _ = _automaton([marker, *forbidden])
    state, count = 0, 0
    for c in text:
        state = delta[state].get(c, 0)
        count += state == 0
    return count + (state != 0)
