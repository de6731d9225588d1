"""What makes two arms and two calls the same (rows and task definitions: ``tasks._identity``).

* An **arm** is what changes its replies or their parsing: the model (without options that cannot change a
  reply, such as ``parallel`` or retries), the layout and its version (a user's layout: the text of its
  module too), the syntax, the constraint, the
  thinking budget, the demos (their content) and the sampling options; on a server enforcing our GBNF
  (``gbnf``, ``ebnf``), that grammar's version too (``grammar_version``).
* A **call** is the model, the messages as sent, the constraint (with that GBNF version) and the options:
  its hash is the cache key.

Does not handle: a model file replaced under the same name or path (the name is the identity).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .._options import GenerateOptions
from ..layouts import _gbnf
from ..tasks import digest


def arm_options(constrained: bool, budget: int | None) -> GenerateOptions:
    """The generation options an arm runs with."""
    values: dict[str, Any] = {"constrained": constrained}
    if budget is not None:
        values["max_thinking_tokens"] = budget
    return GenerateOptions(**values)


def arm_fingerprint(task: str, model: str, layout: str, layout_version: int, syntax: str,
                    options: GenerateOptions, demos: list[dict[str, Any]], server_grammar: str | None = None,
                    layout_source: str | None = None) -> str:
    """``server_grammar``: the version of the GBNF a server enforces (``server_grammar``), where it does;
    ``layout_source``: a user's layout's module text, digested (``layouts.layout_source``)."""
    parts = {"task": task, "model": model, "layout": layout, "version": layout_version, "syntax": syntax,
             "options": options.model_dump(), "demos": demos}
    if server_grammar:  # absent elsewhere, so that every other arm's fingerprint stays as it was
        parts["server_grammar"] = server_grammar
    if layout_source:  # as server_grammar
        parts["layout_source"] = layout_source
    return digest(parts)[:10]


CONTINUATION_VERSION = 1  # the two-step path's (backends/_continue.py): raise it when its requests change


def grammar_version(enforced: str | None) -> str | None:
    """What of a server's enforcement joins an arm's identity: ``gbnf-N`` for our GBNF (``gbnf``, ``ebnf``; N is
    ``_gbnf.VERSION``, so that arms and calls enforced by an earlier GBNF are not taken for this one's), and
    ``continuation-N`` where the reasoning region is closed by continuation (``lark+continuation``: two requests,
    not one bounded by a grammar); None for anything else."""
    if not enforced:
        return None
    mode, _, path = enforced.partition("+")
    parts = [f"gbnf-{_gbnf.VERSION}"] if mode in ("gbnf", "ebnf") else []
    if path == "continuation":
        parts.append(f"continuation-{CONTINUATION_VERSION}")
    return "+".join(parts) or None


def arm_id(task: str, model: str, layout: str, syntax: str, constrained: bool, budget: int | None, n_demos: int,
           fingerprint: str) -> str:
    """Readable axes (for people and ``--arm`` matching), then the fingerprint (for identity)."""
    return "|".join([task, model, layout, syntax, "on" if constrained else "off",
                     "-" if budget is None else str(budget), f"{n_demos}shot"]) + f"#{fingerprint}"


def call_hash(model: str, messages: list[dict], lark: str | None, options: GenerateOptions,
              server_grammar: str | None = None) -> str:
    parts = {"model": model, "messages": messages, "constraint": lark, "options": options.model_dump()}
    if server_grammar:  # as in arm_fingerprint
        parts["server_grammar"] = server_grammar
    payload = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()
