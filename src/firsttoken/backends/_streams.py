"""``Streams``: a llama.cpp context holding several sequences, as the few operations the batch decoder needs.

``n_seq_max = parallel + 1``: ``parallel`` row slots and one sequence holding a shared prompt prefix. By default
one KV stream per sequence (``kv_unified`` off): in a unified cache every token attends over every row's cells,
and on CPU that made 8 or 16 rows of 512 tokens slower than one row (bench/eval_throughput.py measures both).
A stream is copied whole (``_copy``) and cut back to a position (``_trim``): a sequence's cells below a position
do not change as it goes on, so a copy taken later and cut back is the sequence as it was there.
Does not handle: logits from several steps in flight at once, or GPU-specific settings.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

import numpy as np

from .._errors import BackendError


class Streams:
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

    def _clear(self, seq: int) -> None:
        self.L.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def _copy(self, src: int, dst: int) -> None:
        """Sequence ``src``'s cells into ``dst`` (a separate KV stream can only be copied whole)."""
        self.L.llama_memory_seq_cp(self.memory, src, dst, -1, -1)

    def _trim(self, seq: int, pos: int) -> None:
        """Drop the sequence's cells from ``pos`` on."""
        self.L.llama_memory_seq_rm(self.memory, seq, pos, -1)
