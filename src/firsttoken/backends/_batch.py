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

KV cache: by default one stream per sequence (``kv_unified`` off): in a unified cache every token attends
over every row's cells, and on CPU that made 8 or 16 rows of 512 tokens slower than one row (bench/
eval_throughput.py measures both). A row's prompt plus its token limit must fit its stream (else
ContextOverflowError for that row); with a unified cache, cells are reserved at admission instead.
Does not handle: logits from several steps in flight at once, or GPU-specific settings.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._backend import Generation
from .._errors import BackendError, ContextOverflowError, FirstTokenError
from .._options import GenerateOptions


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


class BatchDecoder:
    def __init__(self, llm: Any, parallel: int, n_ctx: int, n_threads: int, n_batch: int = 2048,
                 unified: bool = False):
        import llama_cpp

        self.L, self.llm, self.parallel = llama_cpp, llm, parallel
        params = llama_cpp.llama_context_params()
        ctypes.pointer(params)[0] = llm.context_params  # the model's own settings (flash attention off, ...)
        params.n_ctx = n_ctx
        params.n_batch = n_batch  # the model's own n_ubatch: the same kernels as one-at-a-time decoding
        params.n_seq_max = parallel + 1
        params.kv_unified = unified
        params.n_threads = params.n_threads_batch = n_threads
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not self.ctx:
            raise BackendError(f"llama.cpp could not make a context for {parallel} sequences of {n_ctx} cells",
                               hint="lower parallel=, or free memory")
        self.n_ctx, self.n_batch, self.unified = n_ctx, n_batch, unified
        # cells a row may use: the whole (shared) cache, or its own stream of n_ctx / n_seq_max cells
        self.per_row = n_ctx if unified else n_ctx // (parallel + 1)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = llm._model.vocab
        self.n_vocab = llm.n_vocab()
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, parallel + 1)
        self.prefix_seq = parallel
        self.prefix: list[int] = []  # tokens held by the prefix sequence
        # for bench/eval_throughput.py: decode steps, rows stepped, seconds in llama_decode (all of it, and that
        # of prompt tokens: prefixes and each row's own), seconds filling grammar masks
        self.stats = {"steps": 0, "tokens": 0, "decode_s": 0.0, "prompt_s": 0.0, "guide_s": 0.0}

    def close(self) -> None:
        if self.ctx:
            self.L.llama_batch_free(self.batch)
            self.L.llama_free(self.ctx)
            self.ctx = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # --- the shared prefix ------------------------------------------------------------------------
    def _set_prefix(self, tokens: list[int]) -> None:
        """Hold ``tokens`` in the prefix sequence (reusing what it already holds)."""
        keep = 0
        while keep < min(len(tokens), len(self.prefix)) and tokens[keep] == self.prefix[keep]:
            keep += 1
        self.L.llama_memory_seq_rm(self.memory, self.prefix_seq, keep, -1)
        for start in range(keep, len(tokens), self.n_batch):
            chunk = tokens[start: start + self.n_batch]
            self._fill([(t, start + i, self.prefix_seq, False) for i, t in enumerate(chunk)])
            self._decode(prompt=True)
        self.prefix = list(tokens)

    # --- low level --------------------------------------------------------------------------------
    def _fill(self, entries: list[tuple[int, int, int, bool]]) -> None:
        b = self.batch
        for i, (token, pos, seq, logits) in enumerate(entries):
            b.token[i] = token
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = logits
        b.n_tokens = len(entries)

    def _decode(self, prompt: bool = False) -> None:
        start = time.perf_counter()
        code = self.L.llama_decode(self.ctx, self.batch)
        seconds = time.perf_counter() - start
        self.stats["decode_s"] += seconds
        if prompt:
            self.stats["prompt_s"] += seconds
        if code != 0:
            raise BackendError(f"llama_decode failed with code {code}", hint="lower parallel=, or the prompts' length")

    def _logits(self, i: int) -> np.ndarray:
        ptr = self.L.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    # --- the loop ---------------------------------------------------------------------------------
    def run(self, jobs: list[Job]) -> Iterator[tuple[int, Generation | FirstTokenError]]:
        """Decode every job, up to ``parallel`` at once; yield (index, Generation or error) as each ends."""
        if not jobs:
            return
        first: dict[Any, int] = {}  # group -> its first job, so groups are taken in order, each as a whole
        for i, j in enumerate(jobs):
            first.setdefault(j.group, i)
        prefixes: dict[Any, list[int]] = {}
        for g in first:
            prompts = [j.prompt for j in jobs if j.group == g]
            most = min(len(j.prompt) if j.shared is None else j.shared for j in jobs if j.group == g)
            prefixes[g] = common_prefix(prompts)[: max(0, min(most, min(map(len, prompts)) - 1))]  # >= 1 own token
        # pooled cells (unified cache only): live rows may still hold any group's prefix
        capacity = self.n_ctx - sum(map(len, prefixes.values())) if self.unified else None
        # Groups whose rows may run longest first (their token limit: a reasoning arm's is its budget plus the
        # answer's), so that the batch's tail, where slots empty, is filled with the shortest rows.
        longest: dict[Any, int] = {}
        for j in jobs:
            longest[j.group] = max(longest.get(j.group, 0), j.max_tokens)
        queue = sorted(range(len(jobs)), key=lambda i: (-longest[jobs[i].group], first[jobs[i].group], i))
        for i in list(queue):
            need = len(jobs[i].prompt) + jobs[i].max_tokens
            if need > self.per_row or len(jobs[i].prompt) - len(prefixes[jobs[i].group]) > self.n_batch:
                queue.remove(i)
                yield i, ContextOverflowError(
                    f"the prompt ({len(jobs[i].prompt)} tokens) and the token limit ({jobs[i].max_tokens}) need "
                    f"more than the {self.per_row} cells a row has", hint="shorten the prompt, lower the token "
                                                                          "limits, or raise n_ctx")
        if not queue:
            return
        free = list(range(self.parallel))
        live: dict[int, _Seq] = {}
        reserved = 0
        while queue or live:
            # Admit waiting rows into free slots. A new row's own prompt tokens are decoded in a call of their
            # own: mixed into the step, llama.cpp's equal split over sequences (one KV stream each) would
            # evaluate them one token per ubatch.
            while queue and free:
                job = jobs[queue[0]]
                prefix = prefixes[job.group]
                need = len(job.prompt) - len(prefix) + job.max_tokens
                if capacity is not None and reserved + need > capacity:
                    break
                i = queue.pop(0)
                slot = min(free)  # the live slots stay contiguous (see the step below)
                free.remove(slot)
                if prefix != self.prefix:  # the next group's rows: its prefix, evaluated once for them all
                    self._set_prefix(prefix)
                self.L.llama_memory_seq_rm(self.memory, slot, -1, -1)
                if prefix:  # the whole prefix sequence (a separate KV stream can only be copied whole)
                    self.L.llama_memory_seq_cp(self.memory, self.prefix_seq, slot, -1, -1)
                seq = _Seq(i, job, slot, len(prefix), need, time.perf_counter(), list(job.prompt))
                if job.options.temperature > 0:
                    seq.rng = np.random.default_rng(job.options.seed)
                own = job.prompt[len(prefix):]
                self._fill([(t, seq.pos + k, slot, k == len(own) - 1) for k, t in enumerate(own)])
                self._decode(prompt=True)
                seq.pos += len(own)
                reserved += need
                outcome = self._step(seq, self._logits(len(own) - 1))
                if outcome is None:
                    live[slot] = seq
                else:  # ended on its first token
                    self.L.llama_memory_seq_rm(self.memory, slot, -1, -1)
                    free.append(slot)
                    reserved -= need
                    yield i, outcome
            self._compact(live, free)
            if not live:
                if queue:  # only a unified cache can refuse a row whose need was checked above
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
                    del live[seq.slot]
                    self.L.llama_memory_seq_rm(self.memory, seq.slot, -1, -1)
                    free.append(seq.slot)
                    reserved -= seq.reserved
                    yield seq.index, outcome

    def _compact(self, live: dict[int, _Seq], free: list[int]) -> None:
        """Move rows from the highest slots into free lower ones (a whole-stream copy each), so the live slots
        are 0..k-1 and the step stays one ubatch while the last rows finish."""
        while free and live and min(free) < max(live):
            src, dst = max(live), min(free)
            self.L.llama_memory_seq_cp(self.memory, src, dst, -1, -1)
            self.L.llama_memory_seq_rm(self.memory, src, -1, -1)
            seq = live.pop(src)
            seq.slot = dst
            live[dst] = seq
            free.remove(dst)
            free.append(src)

    def _step(self, seq: _Seq, logits: np.ndarray) -> Generation | FirstTokenError | None:
        """Choose the sequence's next token; its Generation (or error) when it ends, else None."""
        job = seq.job
        try:
            if job.guide is not None:
                start = time.perf_counter()
                logits = job.guide(seq.ids, logits)
                self.stats["guide_s"] += time.perf_counter() - start
            token = self._choose(seq, logits)
        except FirstTokenError as e:
            return e
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
        return None

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
        guide = seq.job.guide
        cut = reason == "length" and not (guide is not None and guide.matcher.is_accepting())
        return Generation(text=self._text(seq) if text is None else text, prompt_tokens=len(seq.job.prompt),
                          completion_tokens=len(seq.generated),
                          reasoning_tokens=guide.reasoning_tokens if guide is not None else None,
                          seconds=time.perf_counter() - seq.started,
                          closed_by=guide.closed_by if guide is not None else None,
                          finish_reason="length" if cut else "stop")


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

