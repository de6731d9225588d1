"""Check a Lark grammar (or a GBNF one) against text with llguidance's byte-level tokenizer: no model needed."""

from __future__ import annotations

from collections.abc import Callable

import llguidance

_TOK = llguidance.LLTokenizer("byte")


def accepts(lark: str, text: str) -> bool:
    grammar = llguidance.LLMatcher.grammar_from_lark(lark)
    err = llguidance.LLMatcher.validate_grammar(grammar, _TOK)
    assert not err, err
    matcher = llguidance.LLMatcher(_TOK, grammar, log_level=0)
    tokens = _TOK.tokenize_str(text)
    return matcher.try_consume_tokens(tokens) == len(tokens) and matcher.is_accepting()


def gbnf_reader(gbnf: str) -> Callable[[str], bool]:
    """llguidance reading the GBNF, byte by byte (a second engine besides llama-server's own): compiled once,
    a function of the text."""
    grammar = llguidance.grammar_from("gbnf", gbnf)
    assert not llguidance.LLMatcher.validate_grammar(grammar, _TOK)
    matcher = llguidance.LLMatcher(_TOK, grammar, log_level=0)

    def accepts(text: str) -> bool:
        matcher.reset()
        tokens = _TOK.tokenize_str(text)
        return matcher.try_consume_tokens(tokens) == len(tokens) and matcher.is_accepting()
    return accepts


def gbnf_accepts(gbnf: str, text: str) -> bool:
    return gbnf_reader(gbnf)(text)
