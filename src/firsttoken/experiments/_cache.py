"""``Cached(backend, store, model)``: the call cache as a backend.

A request whose call hash (model identity, messages, constraint, options: see ``_identity``) is stored is
answered from the store (``Generation.cached``); identical requests in one batch are sent once and the
copies answered from the first. Everything else goes to the wrapped backend. Every generation leaves with
its ``call_hash``; ``call_record`` gives what the store keeps of a fresh one. The store is read on the
consuming thread only, and never written here: the runner writes a call with its row's outcome, in one
transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from .._backend import (Backend, BackendBase, Generation, Outcome, Request, call, enforcement, guarded_batch,
                        parallel_of)
from .._spec import BackendOptions
from . import _identity
from ._store import Store


class Cached(BackendBase):
    def __init__(self, backend: Backend, store: Store, model: str):
        self.inner, self.store, self.model = backend, store, model
        self.label = getattr(backend, "label", model)
        self.options = BackendOptions(parallel=parallel_of(backend))  # the inner backend's, as fetched
        self._sent: dict[str, Request] = {}  # call hash -> request, for fresh generations not yet recorded

    def count_tokens(self, text: str) -> int:
        count = getattr(self.inner, "count_tokens", None)
        return count(text) if count else super().count_tokens(text)

    @property
    def counts_exactly(self) -> bool:
        return bool(getattr(self.inner, "counts_exactly", False))

    def _hash(self, request: Request) -> str:
        lark = request.constraint.lark if request.constraint else None
        grammar = _identity.grammar_version(enforcement(self.inner, request.constraint))
        return _identity.call_hash(self.model, request.messages, lark, request.options, grammar)

    def _stored(self, h: str) -> Generation | None:
        row = self.store.call(h)
        if row is None:
            return None
        return Generation(text=row["text"], prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
                          reasoning_tokens=row["reasoning_tokens"], reasoning=row["reasoning"], seconds=row["seconds"],
                          estimated=bool(row["estimated"]), closed_by=row["closed_by"],
                          finish_reason=row["finish_reason"] or "stop", retries=row["retries"] or 0, call_hash=h,
                          cached=True)

    def generate(self, request: Request) -> Generation:
        h = self._hash(request)
        stored = self._stored(h)
        if stored is not None:
            return stored
        gen = replace(call(self.inner, request), call_hash=h)
        self._sent[h] = request
        return gen

    def generate_batch(self, requests: list[Request]) -> Iterator[Outcome]:
        hashes = [self._hash(r) for r in requests]
        first: dict[str, int] = {}  # call hash -> the request sent for it
        copies: dict[str, list[int]] = {}
        for i, h in enumerate(hashes):
            stored = self._stored(h)
            if stored is not None:
                yield i, stored
            elif h in first:
                copies.setdefault(h, []).append(i)
            else:
                first[h] = i
        sent = list(first.values())
        for j, out in guarded_batch(self.inner, [requests[i] for i in sent]):
            i = sent[j]
            h = hashes[i]
            if isinstance(out, Generation):
                out = replace(out, call_hash=h)
                self._sent[h] = requests[i]
            yield i, out
            for k in copies.pop(h, []):
                yield k, replace(out, cached=True) if isinstance(out, Generation) else out

    def call_record(self, gen: Generation) -> tuple[str, dict[str, Any]] | None:
        """(hash, the calls-table row) of a generation the model made now; None for one from the store."""
        if gen.cached or gen.call_hash is None or gen.call_hash not in self._sent:
            return None
        request = self._sent.pop(gen.call_hash)
        return gen.call_hash, {
            "model": self.model, "messages": json.dumps(request.messages), "options": request.options.model_dump_json(),
            "constraint_lark": request.constraint.lark if request.constraint else None, "text": gen.text,
            "reasoning": gen.reasoning, "prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
            "reasoning_tokens": gen.reasoning_tokens, "seconds": gen.seconds, "estimated": int(gen.estimated),
            "closed_by": gen.closed_by, "retries": gen.retries, "finish_reason": gen.finish_reason}
