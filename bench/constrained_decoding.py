"""What forcing the format costs per token, and what prefix reuse saves, measured side by side.

    python bench/constrained_decoding.py --model smollm2-135m [--tokens 128] [--repeats 5] [--json]

Modes, interleaved (A B C A B C ...) on the same prompt and the same token limit:
  A  unconstrained
  B  firsttoken's constraint (llguidance mask through a llama-cpp-python logits processor)
  C  llama.cpp's own grammar (LlamaGrammar.from_json_schema) for the same JSON Schema
and the mask alone: B's tokens replayed through a fresh Guide with no model, timed.
Prefix reuse: the prompt time of a call after a cold start against the next call that shares a
~1,000-token prefix (cold call: cache reset; warm call: only the differing suffix is evaluated).
Run it on an idle machine: two llama.cpp processes at once slow each other ~30x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Literal

import numpy as np

import firsttoken as ft
from firsttoken._options import GenerateOptions


class Essay(ft.Signature):
    """Think at length about the topic, then rate how interesting it is."""

    topic: str = ft.InputField()
    rating: Literal["low", "medium", "high"] = ft.OutputField()


TOPIC = "the history of bridges, from rope bridges to suspension bridges; write several long paragraphs"


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> float:
    return (max(xs) - min(xs)) if len(xs) > 1 else 0.0


def decode_modes(backend: ft.LlamaCpp, tokens: int, repeats: int) -> dict:
    import llama_cpp

    layout = ft.get_layout("thoughts_first")
    constraint = layout.constraint(Essay)
    messages = layout.messages(Essay, {"topic": TOPIC})
    options = GenerateOptions(max_thinking_tokens=tokens + 1)  # never closed early by the budget
    grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(constraint.json_schema), verbose=False)
    runs: dict[str, list[tuple[float, int]]] = {"unconstrained": [], "firsttoken": [], "llama_grammar": []}
    sequences: list[list[int]] = []
    backend.complete(messages, 8, options)  # warm-up: the prompt is evaluated once and then reused
    for _ in range(repeats):
        for mode in runs:
            extra, procs = {}, []
            if mode == "firsttoken":
                procs = [backend.guide(constraint, options)]
            elif mode == "llama_grammar":
                extra = {"grammar": grammar}
            result, seconds = backend.complete(messages, tokens, options, procs, **extra)
            n = result["usage"]["completion_tokens"]
            runs[mode].append((seconds * 1000 / n, n))
            if mode == "firsttoken":
                sequences.append(backend.llm.tokenize(result["choices"][0]["message"]["content"].encode(),
                                                      add_bos=False, special=False))
    # The mask alone: replay B's tokens through a fresh guide, no model in the loop.
    mask_ms = []
    scores = np.zeros(backend.llm.n_vocab(), dtype=np.float32)
    for seq in sequences:
        guide = backend.guide(constraint, options)
        start = time.perf_counter()
        ids: list[int] = []
        for tok in seq:
            guide(ids, scores.copy())
            ids.append(tok)
        mask_ms.append((time.perf_counter() - start) * 1000 / max(1, len(seq)))
    base = med([ms for ms, _ in runs["unconstrained"]])
    out = {}
    for mode, rows in runs.items():
        ms = [r[0] for r in rows]
        out[mode] = {"ms_per_token": med(ms), "spread_ms": spread(ms), "ratio": med(ms) / base,
                     "tokens": [r[1] for r in rows]}
    out["mask_only"] = {"ms_per_token": med(mask_ms), "spread_ms": spread(mask_ms), "ratio": None,
                        "tokens": [len(s) for s in sequences]}
    return out


def prefix_reuse(backend: ft.LlamaCpp, repeats: int) -> dict:
    layout = ft.get_layout("direct")
    demos_text = " ".join(f"Fact {i}: bridge number {i} spans a river of width {i * 7} metres." for i in range(60))
    sig = ft.Signature.make("Reuse", f"Answer from the facts. {demos_text}", {"question": str}, {"answer": int})
    options = GenerateOptions()
    cold, warm, shared = [], [], 0
    for i in range(repeats):
        backend.llm.reset()  # forget the evaluated prefix
        first = layout.messages(sig, {"question": f"Width of bridge {i}?"})
        second = layout.messages(sig, {"question": f"Width of bridge {i + 1}?"})
        r1, t1 = backend.complete(first, 1, options)
        r2, t2 = backend.complete(second, 1, options)
        cold.append(t1)
        warm.append(t2)
        shared = r1["usage"]["prompt_tokens"]
    return {"prompt_tokens": shared, "cold_ms": med(cold) * 1000, "warm_ms": med(warm) * 1000,
            "ratio": med(warm) / med(cold)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    backend = ft.load(args.model)
    result = {"model": args.model, "decode": decode_modes(backend, args.tokens, args.repeats),
              "prefix_reuse": prefix_reuse(backend, args.repeats)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"model {args.model}: {args.tokens} tokens max, {args.repeats} interleaved repeats (median, spread)")
    print(f"{'mode':<16}{'ms/token':>10}{'spread':>9}{'x unconstr.':>13}  tokens")
    for mode, row in result["decode"].items():
        ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "-"
        print(f"{mode:<16}{row['ms_per_token']:>10.2f}{row['spread_ms']:>9.2f}{ratio:>13}  {row['tokens']}")
    p = result["prefix_reuse"]
    print(f"prefix reuse: {p['prompt_tokens']} prompt tokens; cold {p['cold_ms']:.0f} ms, warm {p['warm_ms']:.0f} ms,"
          f" warm/cold = {p['ratio']:.3f} (target < 0.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
