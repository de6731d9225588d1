"""A layout's version is part of every arm's identity, so a store never answers for an older prompt, grammar
or parser. This pins what each built-in layout sends (messages, Lark grammar, JSON Schema) for two
signatures: changing it fails here until the layout's ``version`` is raised and the pin updated
(`python -m tests.test_layout_versions` prints the pins). A parser change cannot be pinned this way: raise
the version by hand (stored calls are reused, and their replies parsed anew under the new arm)."""

from __future__ import annotations

import hashlib
import json

import firsttoken as ft

from .signatures import Arithmetic, Products

PINS = {
    'direct/json': (1, 'd0e395cceeb4841b'),
    'direct/fields': (1, 'a70e2ffe613060f5'),
    'answer_then_explain/json': (1, '8f8aa4daddc916fb'),
    'answer_then_explain/fields': (2, '44ea8367f074c629'),
    'thoughts_first/json': (1, '368ac016dcc3a6de'),
    'thoughts_first/fields': (2, 'b7ddba44c086ab85'),
    'think_then_answer/json': (1, '633be009817ad9ce'),
    'work_then_answer/lines': (1, '87e008656fb679dd'),
    'thoughts_long/json': (1, '76ebe6358c00e807'),
}


def sent(name: str, syntax: str) -> str:
    layout = ft.get_layout(name, syntax)
    parts = []
    for sig in (Arithmetic, Products):
        inputs = {n: f"<{n}>" for n in sig.input_fields}
        constraint = layout.constraint(sig)
        parts.append([layout.messages(sig, inputs), constraint.lark, constraint.json_schema])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def current() -> dict[str, tuple[int, str]]:
    return {f"{name}/{syntax}": (ft.get_layout(name, syntax).version, sent(name, syntax))
            for name in ft.layout_names() for syntax in ft.get_layout(name).syntaxes
            if ft.get_layout(name).__module__.startswith("firsttoken.")}


def test_a_changed_prompt_or_grammar_comes_with_a_new_layout_version():
    now = current()
    changed = {k: v for k, v in now.items() if PINS.get(k) != v}
    assert not changed, (f"layouts changed without a version bump (or new): {changed}; raise the layout's "
                         f"`version` where its prompt, grammar or parser changed, then update PINS")


if __name__ == "__main__":
    for key, value in current().items():
        print(f"    {key!r}: {value!r},")
