"""Check a Lark grammar against text with llguidance's byte-level tokenizer: no model needed."""

from __future__ import annotations

import llguidance

_TOK = llguidance.LLTokenizer("byte")


def accepts(lark: str, text: str) -> bool:
    grammar = llguidance.LLMatcher.grammar_from_lark(lark)
    err = llguidance.LLMatcher.validate_grammar(grammar, _TOK)
    assert not err, err
    matcher = llguidance.LLMatcher(_TOK, grammar, log_level=0)
    tokens = _TOK.tokenize_str(text)
    return matcher.try_consume_tokens(tokens) == len(tokens) and matcher.is_accepting()
