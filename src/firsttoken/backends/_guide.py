"""``Guide``: one constrained generation, step by step, as a logits processor.

At each step it feeds the token just sampled to the llguidance matcher, then either forces the next token
of the region's closer or masks the logits to what the grammar allows. While the model is inside the
layout's reasoning region it watches two things and closes the region itself (the grammar still decides
everything after):

* the thinking budget is spent (``closed_by="budget"``; a region with a minimum length, ``Region.least``,
  is closed once the grammar lets it end);
* the model's own unmasked choice is end-of-turn (``closed_by="end_of_turn"``): without this, the mask
  hides end-of-turn and a model that has finished thinking rambles until the budget runs out.

Knows nothing of llama.cpp beyond the processor signature ``(input_ids, scores) -> scores``.
``fork(budget)`` copies a guide mid-reply as one with another budget would be (every budget from one trace,
``_batch``). Does not handle: batches (one sequence at a time).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import llguidance
import numpy as np
from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

from .._errors import ConstraintError
from ..layouts import Region

_MAX_CLOSE_RETRIES = 8  # steps to wait for a point where the closer is grammatical (e.g. after an escape)


class Guide:
    def __init__(self, matcher: llguidance.LLMatcher, tokenizer: llguidance.LLTokenizer, n_vocab: int,
                 region: Region | None, budget: int, end_of_turn: set[int],
                 decode: Callable[[int], bytes]):
        self.matcher = matcher
        self.tokenizer = tokenizer
        self.region = region
        self.budget = budget
        self.end_of_turn = end_of_turn
        self.decode = decode
        self.n_vocab = n_vocab
        self._bitmask = allocate_token_bitmask(1, tokenizer.vocab_size)
        self._close = tokenizer.tokenize_str(region.close) if region else []
        self._seen: int | None = None
        self._forced: list[int] = []  # closer tokens still to force
        self._pending = 0  # forced tokens not yet seen back in input_ids
        self.waited = 0  # steps spent waiting for a point where the closer is grammatical
        self.text = b""
        self._state = "after" if region is None else ("inside" if region.open == "" else "before")
        self._start = 0  # character offset (in the decoded text) where the region begins
        self.reasoning_tokens = 0
        self.closed_by: str | None = None

    def _region_state(self) -> str:
        if self._state == "after" or self.region is None:
            return "after"
        text = self.text.decode("utf-8", errors="replace")
        if self._state == "before":
            i = text.find(self.region.open)
            if i < 0:
                return "before"
            self._start = i + len(self.region.open)
        end = self.region.find_end(text[self._start:])
        return "inside" if end is None else "after"

    def _consume(self, token: int, forced: bool) -> None:
        if not self.matcher.consume_token(token):
            raise ConstraintError(f"the grammar refused token {token}: {self.matcher.get_error()}",
                                  hint="this is a bug in the layout's grammar or region; please report it")
        self.text += self.decode(token)
        if forced:  # part of the closer: a delimiter, not reasoning
            if not self._forced and not self._pending:
                self._state = self._region_state()
            return
        was_inside = self._state == "inside"
        self._state = self._region_state()
        if was_inside and self._state == "inside":
            self.reasoning_tokens += 1
        elif was_inside:
            self.closed_by = "model"

    def __call__(self, input_ids: Sequence[int], scores: np.ndarray) -> np.ndarray:
        self.catch_up(input_ids)
        return self.next_scores(scores)

    def catch_up(self, input_ids: Sequence[int]) -> None:
        """Feed the matcher the tokens chosen since the last call (the first call only marks the prompt)."""
        if self._seen is not None:
            for token in input_ids[self._seen:]:
                forced = self._pending > 0
                self._pending -= forced
                self._consume(int(token), forced)
        self._seen = len(input_ids)

    def due(self, budget: int) -> bool:
        """Whether a guide with ``budget`` would try to close the region at this step (after ``catch_up``)."""
        return self._state == "inside" and not self._forced and self.reasoning_tokens >= budget

    @property
    def closing(self) -> bool:
        """Writing the closer (its first token chosen at the last step)."""
        return bool(self._forced or self._pending)

    def fork(self, budget: int, waited: int = 0) -> Guide:
        """This guide as one with another ``budget`` would be now, having waited ``waited`` steps to close:
        a matcher of its own (``LLMatcher.deep_copy``), the same text, region state and counts."""
        other = copy.copy(self)
        other.matcher = self.matcher.deep_copy()
        other._bitmask = allocate_token_bitmask(1, self.tokenizer.vocab_size)
        other._forced = list(self._forced)
        other.budget, other.waited = budget, waited
        return other

    def next_scores(self, scores: np.ndarray) -> np.ndarray:
        """The step's decision on ``scores`` (after ``catch_up``): start or go on closing the region, or mask."""
        if self._state == "inside" and not self._forced:
            why = ("budget" if self.reasoning_tokens >= self.budget
                   else "end_of_turn" if int(np.argmax(scores)) in self.end_of_turn else None)
            if why:
                self._start_closing(why)
        if self._forced:
            token = self._forced.pop(0)
            self._pending += 1
            scores[:] = -np.inf
            scores[token] = 0.0
            return scores
        return self._mask(scores)

    def _closer_ends_region(self) -> bool:
        """True when writing the closer now ends the region (not so right after a JSON backslash)."""
        body = self.text.decode("utf-8", errors="replace")[self._start:]
        end = self.region.find_end(body + self.region.close)
        return end is not None and end >= len(body) and \
            self.matcher.validate_tokens(self._close) == len(self._close)

    def _start_closing(self, why: str) -> None:
        if self._closer_ends_region():
            self._forced = list(self._close)
            self.closed_by = why
        elif self.waited >= _MAX_CLOSE_RETRIES + self.region.least:  # each step writes >= 1 of the least
            raise ConstraintError(f"the reasoning region cannot be closed with {self.region.close!r}",
                                  hint="the layout's Region.close must be grammatical inside the region")
        else:
            self.waited += 1  # e.g. inside a JSON escape: let the grammar finish it first

    def _mask(self, scores: np.ndarray) -> np.ndarray:
        fill_next_token_bitmask(self.matcher, self._bitmask, 0)
        allowed = np.unpackbits(self._bitmask.view(np.uint8), bitorder="little")[: self.n_vocab]
        if not allowed.any() or self.matcher.is_error():
            raise ConstraintError(f"the constraint allows no next token ({self.matcher.get_error() or 'dead end'})",
                                  hint="the grammar cannot be satisfied; check the layout's constraint")
        scores[: len(allowed)][allowed == 0] = -np.inf
        scores[len(allowed):] = -np.inf
        return scores
