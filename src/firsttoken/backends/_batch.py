"""Many sequences decoded together in one llama.cpp context: one ``llama_decode`` per step for every live row.

Used by ``LlamaCpp(parallel=N)``. Its own context (llama-cpp-python's ``Llama`` decodes one sequence):
``n_seq_max = N + 1`` (N row slots and one sequence holding a shared prefix). Jobs come in groups (e.g.
the arms of an experiment): a group's shared prefix (system prompt, demos) is evaluated once and copied
into each of its rows' slots (``llama_memory_seq_cp``), at most ``Job.shared`` tokens of it (LlamaCpp: up to
where the last message's text starts, so a row's own part, and so its logits, never depend on the rows
beside it); groups are taken whole, those with the highest
token limit first (longest first: the tail of the batch, where slots empty, holds the shortest rows), so
while one group's last rows finish, the next group's rows already fill the freed slots. Continuous batching: a finished row frees its slot and the next row starts
there at once (its own prompt tokens in a llama_decode of their own, then it joins the shared steps).

Each row keeps the sequential semantics: its own ``Guide`` (llguidance matcher, reasoning budget,
end-of-turn close, ``closed_by``, reasoning-token count), its own token limit, the chat template's stop
text and end-of-generation tokens, and the same text decoding as llama-cpp-python. Greedy rows take the
argmax of the guided logits, as llama-cpp-python does at temperature 0; sampled rows draw from a numpy
generator seeded with the row's ``seed`` (so a sampled row is reproducible here, but not equal to the
one-at-a-time sampler's draw). A row whose constraint dead-ends fails alone.

Every budget from one trace: jobs of one family (``Job.family``: an experiment's budget arms of one row, the
same prompt and options but ``max_thinking_tokens``) are decoded once, as the member with the largest budget.
Where a guide with a smaller budget would start closing the region (token b, or later after a JSON escape or
before a minimum length), that member forks: its guide is the trace's copied with its budget, it takes the
closer's first token from the same logits, and it waits for a slot, where it starts from a copy of the
trace's cells cut back to the fork (``Streams``). A finished sequence that forks still copy from is handed to
the one that forked last. A member whose budget the trace never spends (the model closed the region first)
ends with the trace's reply, or cut where its own, smaller token limit falls. Decisions, sampling (the rng
is copied at the fork) and cells are those of a run with that budget alone, so under ``batch_invariant``
the replies are equal (tests/test_budget_traces.py).

A row's prompt plus its token limit must fit its stream (else ContextOverflowError for that row); with a
unified cache, cells are reserved at admission instead.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._backend import Generation
from .._errors import BackendError, ContextOverflowError, FirstTokenError
from .._options import GenerateOptions
from ._streams import Streams


@dataclass
class Job:
    """One row to decode: its prompt tokens and everything that decides its reply."""

    prompt: list[int]
    max_tokens: int
    options: GenerateOptions
    stop: list[str]
    guide: Any = None  # a Guide (constrained) or None
    ignore_eos: bool = False  # run to max_tokens (benchmarks of the decode rate)
    group: Any = None  # jobs of one group share a prompt prefix (e.g. an arm's system prompt and demos)
    shared: int | None = None  # at most this many prompt tokens may be the group's shared prefix
    family: Any = None  # jobs of one family differ only in their reasoning budget: one trace decodes them all

    @property
    def budget(self) -> int:
        return self.options.max_thinking_tokens


@dataclass
class _Seq:
    index: int
    job: Job
    slot: int
    pos: int  # position of the next token evaluated for this sequence
    reserved: int
    started: float
    ids: list[int] = field(default_factory=list)  # prompt + generated, as the Guide sees them
    generated: list[int] = field(default_factory=list)
    rng: np.random.Generator | None = None
    guide: Any = None  # the job's Guide, or for a fork the trace's, copied with the fork's budget
    followers: list[int] = field(default_factory=list)  # a trace: its family's other jobs not yet forked or ended
    waited: dict[int, int] = field(default_factory=dict)  # follower -> steps it has waited to close (an escape)
    source: _Seq | None = None  # a fork waiting for a slot: the sequence whose cells it copies (up to ``pos``)


class BatchDecoder(Streams):
    # --- the loop ---------------------------------------------------------------------------------
    def run(self, jobs: list[Job]) -> Iterator[tuple[int, Generation | FirstTokenError]]:
        """Decode every job, up to ``parallel`` at once; yield (index, Generation or error) as each ends.

        Jobs of one family (``Job.family``: the same prompt and options but the reasoning budget) are decoded
        as one trace, the job with the largest budget; each other member (a follower) forks from the trace at
        the step where a guide with its budget starts closing the region (``Guide.due`` / ``Guide.fork``), and
        one the trace never reaches (the model closed the region first) ends with the trace's own reply."""
        if not jobs:
            return
        self._jobs, self._done, self._waiting = jobs, [], []
        fits = []
        for i, j in enumerate(jobs):
            if len(j.prompt) + j.max_tokens > self.per_row:
                yield i, self._overflow(j)
            else:
                fits.append(i)
        traces = _traces(jobs, fits)  # trace -> its followers
        first: dict[Any, int] = {}  # group -> its first job, so groups are taken in order, each as a whole
        for i in traces:
            first.setdefault(jobs[i].group, i)
        prefixes: dict[Any, list[int]] = {}
        for g in first:
            members = [jobs[i] for i in traces if jobs[i].group == g]
            most = min(len(j.prompt) if j.shared is None else j.shared for j in members)
            prompts = [j.prompt for j in members]
            prefixes[g] = common_prefix(prompts)[: max(0, min(most, min(map(len, prompts)) - 1))]  # >= 1 own token
        queue = []
        for i in traces:
            if len(jobs[i].prompt) - len(prefixes[jobs[i].group]) > self.n_batch:
                for k in (i, *traces[i]):
                    yield k, self._overflow(jobs[k])
            else:
                queue.append(i)
        # pooled cells (unified cache only): live rows may still hold any group's prefix
        capacity = self.n_ctx - sum(map(len, prefixes.values())) if self.unified else None
        # Groups whose rows may run longest first (their token limit: a reasoning arm's is its budget plus the
        # answer's), so that the batch's tail, where slots empty, is filled with the shortest rows.
        longest: dict[Any, int] = {}
        for i in queue:
            longest[jobs[i].group] = max(longest.get(jobs[i].group, 0), jobs[i].max_tokens)
        queue.sort(key=lambda i: (-longest[jobs[i].group], first[jobs[i].group], i))
        if not queue:
            return
        free = list(range(self.parallel))
        live: dict[int, _Seq] = {}
        self._reserved = 0
        while queue or live or self._waiting:
            # Fill free slots: waiting forks first (each is short, and frees the trace's cells it keeps held),
            # then waiting rows. A new row's own prompt tokens are decoded in a call of their own: mixed into the
            # step, llama.cpp's equal split over sequences (one KV stream each) would evaluate them one token
            # per ubatch.
            while free:
                if self._waiting and self._fits(capacity, self._waiting[0].reserved):
                    self._admit_fork(self._waiting.pop(0), live, free)
                    continue
                if not queue or not self._fits(capacity, _need(jobs[queue[0]], prefixes[jobs[queue[0]].group])):
                    break
                i = queue.pop(0)
                seq, first_logits = self._admit(i, traces[i], prefixes[jobs[i].group], live, free)
                outcome = self._step(seq, first_logits)
                if outcome is not None:  # ended on its first token
                    self._release(seq, live, free)
                    yield i, outcome
                yield from self._drain()
            self._compact(live, free)
            if not live:
                if queue or self._waiting:  # only a unified cache can refuse a row whose need was checked above
                    raise BackendError("the batch could not admit a row", hint="this is a bug; please report it")
                continue
            # One step: the last token of every live row, one llama_decode. In slot order: with one KV stream
            # per sequence llama.cpp puts only increasing, consecutive sequence ids in one ubatch, and any
            # other order splits the step into several (8 rows out of order cost 8 x one row's step).
            seqs = [live[slot] for slot in sorted(live)]
            self._fill([(seq.generated[-1], seq.pos, seq.slot, True) for seq in seqs])
            self._decode()
            self.stats["steps"] += 1
            self.stats["tokens"] += len(seqs)
            for at, seq in enumerate(seqs):
                seq.pos += 1
                outcome = self._step(seq, self._logits(at))
                if outcome is not None:
                    self._release(seq, live, free)
                    yield seq.index, outcome
                yield from self._drain()

    def _fits(self, capacity: int | None, need: int) -> bool:
        return capacity is None or self._reserved + need <= capacity

    def _admit(self, i: int, followers: list[int], prefix: list[int], live: dict[int, _Seq],
               free: list[int]) -> tuple[_Seq, np.ndarray]:
        """Start job ``i`` in the lowest free slot (the live slots stay contiguous, see the step): its group's
        prefix copied in, its own prompt tokens decoded; returns the sequence and its first logits."""
        job = self._jobs[i]
        slot = min(free)
        free.remove(slot)
        if prefix != self.prefix:  # the next group's rows: its prefix, evaluated once for them all
            self._set_prefix(prefix)
        self._clear(slot)
        if prefix:  # the whole prefix sequence (a separate KV stream can only be copied whole)
            self._copy(self.prefix_seq, slot)
        need = _need(job, prefix)
        seq = _Seq(i, job, slot, len(prefix), need, time.perf_counter(), list(job.prompt), guide=job.guide,
                   followers=sorted(followers, key=lambda k: (self._jobs[k].budget, k)))
        if job.options.temperature > 0:
            seq.rng = np.random.default_rng(job.options.seed)
        own = job.prompt[len(prefix):]
        self._fill([(t, seq.pos + k, slot, k == len(own) - 1) for k, t in enumerate(own)])
        self._decode(prompt=True)
        seq.pos += len(own)
        self._reserved += need
        live[slot] = seq
        return seq, self._logits(len(own) - 1)

    def _admit_fork(self, fork: _Seq, live: dict[int, _Seq], free: list[int]) -> None:
        """A waiting fork into the lowest free slot: its trace's cells copied, and cut back to the fork."""
        fork.slot = slot = min(free)
        free.remove(slot)
        self._clear(slot)
        self._copy(fork.source.slot, slot)
        self._trim(slot, fork.pos)
        fork.source = None
        live[slot] = fork
        self._reserved += fork.reserved

    def _drain(self) -> Iterator[tuple[int, Generation | FirstTokenError]]:
        """The outcomes of followers ended during the last step (cut, errors, or the trace's own reply)."""
        done, self._done = self._done, []
        yield from done

    def _release(self, seq: _Seq, live: dict[int, _Seq], free: list[int]) -> None:
        """A sequence has ended: its slot is freed, or, where waiting forks copy its cells, handed to the one
        that forked last (its cells cut back to the fork), which the others then copy from."""
        sourced = [w for w in self._waiting if w.source is seq]
        self._reserved -= seq.reserved
        if not sourced:
            del live[seq.slot]
            self._clear(seq.slot)
            free.append(seq.slot)
            return
        heir = max(sourced, key=lambda w: w.pos)
        self._waiting.remove(heir)
        self._trim(seq.slot, heir.pos)
        heir.slot, heir.source = seq.slot, None
        live[seq.slot] = heir
        self._reserved += heir.reserved
        for w in sourced:
            w.source = heir if w is not heir else None  # positions below heir.pos: the same cells

    def _compact(self, live: dict[int, _Seq], free: list[int]) -> None:
        """Move rows from the highest slots into free lower ones (a whole-stream copy each), so the live slots
        are 0..k-1 and the step stays one ubatch while the last rows finish."""
        while free and live and min(free) < max(live):
            src, dst = max(live), min(free)
            self._copy(src, dst)
            self._clear(src)
            seq = live.pop(src)
            seq.slot = dst
            live[dst] = seq
            free.remove(dst)
            free.append(src)

    def _step(self, seq: _Seq, logits: np.ndarray) -> Generation | FirstTokenError | None:
        """Choose the sequence's next token; its Generation (or error) when it ends, else None. A trace first
        forks the followers whose budget closes the region here."""
        try:
            if seq.guide is not None:
                start = time.perf_counter()
                seq.guide.catch_up(seq.ids)
                if seq.followers:
                    self._fork(seq, logits)
                logits = seq.guide.next_scores(logits)
                self.stats["guide_s"] += time.perf_counter() - start
            token = self._choose(seq, logits)
        except FirstTokenError as e:
            self._end_followers(seq, e)  # they would have met the same error
            return e
        return self._advance(seq, token)

    def _advance(self, seq: _Seq, token: int) -> Generation | None:
        """Append the chosen token; the sequence's Generation if that ends it (end of generation, a stop text,
        its token limit); a follower whose smaller token limit this reaches ends here, cut."""
        job = seq.job
        if self.L.llama_vocab_is_eog(self.vocab, token) and not job.ignore_eos:
            return self._finish(seq, "stop")
        seq.generated.append(token)
        seq.ids.append(token)
        if job.stop and any(s in self._tail(seq) for s in job.stop):  # the last tokens, not the whole text
            text = self._text(seq)
            stop = next((s for s in job.stop if s in text), None)
            if stop is not None:
                return self._finish(seq, "stop", text[: text.index(stop)])
        if len(seq.generated) >= job.max_tokens:
            return self._finish(seq, "length")
        for k in [k for k in seq.followers if len(seq.generated) >= self._jobs[k].max_tokens]:
            seq.followers.remove(k)
            self._done.append((k, self._generation(seq, "length")))
        return None

    def _fork(self, trace: _Seq, logits: np.ndarray) -> None:
        """Each follower whose budget is spent at this step (smallest first): the trace's guide copied with
        that budget decides on these logits as a run with that budget would. If it closes the region, the
        follower becomes a sequence of its own from here (waiting for a slot, with the trace's cells up to
        here); if it must wait (inside an escape, or short of a minimum length) it stays with the trace,
        whose next token is then the same."""
        for k in list(trace.followers):
            job = self._jobs[k]
            if not trace.guide.due(job.budget):
                break  # larger budgets are not spent either
            guide = trace.guide.fork(job.budget, trace.waited.get(k, 0))
            try:
                scores = guide.next_scores(logits.copy())
            except FirstTokenError as e:
                trace.followers.remove(k)
                self._done.append((k, e))
                continue
            if not guide.closing:
                trace.waited[k] = guide.waited
                continue
            trace.followers.remove(k)
            fork = _Seq(k, job, -1, trace.pos, trace.reserved - trace.job.max_tokens + job.max_tokens,
                        trace.started, list(trace.ids), list(trace.generated), copy.deepcopy(trace.rng),
                        guide=guide, source=trace)
            outcome = self._advance(fork, self._choose(fork, scores))
            if outcome is None:
                self._waiting.append(fork)
            else:  # ended on the closer's first token: no cells needed
                self._done.append((k, outcome))

    def _end_followers(self, trace: _Seq, outcome: Generation | FirstTokenError) -> None:
        """The trace ended with its followers still on it: theirs is the same reply (or error)."""
        for k in trace.followers:
            self._done.append((k, replace(outcome) if isinstance(outcome, Generation) else outcome))
        trace.followers = []

    def _choose(self, seq: _Seq, logits: np.ndarray) -> int:
        if seq.rng is None:
            return int(np.argmax(logits))
        o = seq.job.options
        z = logits.astype(np.float64) / o.temperature
        z -= z.max()
        p = np.exp(z)
        p /= p.sum()
        if o.top_p < 1.0:
            order = np.argsort(-p)
            keep = order[: int(np.searchsorted(np.cumsum(p[order]), o.top_p)) + 1]
            q = np.zeros_like(p)
            q[keep] = p[keep]
            p = q / q.sum()
        return int(seq.rng.choice(len(p), p=p))

    def _tail(self, seq: _Seq) -> str:
        """The text of the last tokens: where a stop text that just completed must be."""
        return self.llm.detokenize(seq.generated[-_TAIL:], prev_tokens=None).decode("utf-8", errors="ignore")

    def _text(self, seq: _Seq) -> str:
        return self.llm.detokenize(seq.generated, prev_tokens=seq.job.prompt).decode("utf-8", errors="ignore")

    def _finish(self, seq: _Seq, reason: str, text: str | None = None) -> Generation:
        gen = self._generation(seq, reason, text)
        self._end_followers(seq, gen)
        return gen

    def _generation(self, seq: _Seq, reason: str, text: str | None = None) -> Generation:
        guide = seq.guide
        cut = reason == "length" and not (guide is not None and guide.matcher.is_accepting())
        return Generation(text=self._text(seq) if text is None else text, prompt_tokens=len(seq.job.prompt),
                          completion_tokens=len(seq.generated),
                          reasoning_tokens=guide.reasoning_tokens if guide is not None else None,
                          seconds=time.perf_counter() - seq.started,
                          closed_by=guide.closed_by if guide is not None else None,
                          finish_reason="length" if cut else "stop")

    def _overflow(self, job: Job) -> ContextOverflowError:
        return ContextOverflowError(f"the prompt ({len(job.prompt)} tokens) and the token limit ({job.max_tokens}) "
                                    f"need more than the {self.per_row} cells a row has",
                                    hint="shorten the prompt, lower the token limits, or raise n_ctx")


_TAIL = 16  # tokens; a stop text longer than this would be missed


def common_prefix(prompts: list[list[int]]) -> list[int]:
    first = prompts[0]
    n = len(first)
    for p in prompts[1:]:
        n = min(n, len(p))
        for k in range(n):
            if p[k] != first[k]:
                n = k
                break
    return first[:n]


def _need(job: Job, prefix: list[int]) -> int:
    """Cells a row takes beyond its group's shared prefix: its own prompt and its token limit."""
    return len(job.prompt) - len(prefix) + job.max_tokens


def _traces(jobs: list[Job], indices: list[int]) -> dict[int, list[int]]:
    """Each job that is decoded itself (a trace) -> the jobs of its family that follow it: a family's trace is
    its member with the largest budget (the first such); a job without a family is a trace of its own."""
    families: dict[Any, list[int]] = {}
    out: dict[int, list[int]] = {}
    for i in indices:
        if jobs[i].family is None:
            out[i] = []
        else:
            families.setdefault(jobs[i].family, []).append(i)
    for members in families.values():
        trace = max(members, key=lambda i: (jobs[i].budget, -i))
        out[trace] = [i for i in members if i != trace]
    return dict(sorted(out.items()))
