"""Every thinking budget from one trace against a separate run per budget, measured side by side in one run.

    python bench/budget_traces.py [--model qwen2.5-coder-1.5b] [--rows 60] [--parallel 16]
                                  [--budgets 0,16,32,64,128,256,512] [--layouts think_then_answer,work_then_answer]
                                  [--batch-invariant] [--json]

Generated arithmetic (difficulties 3 to 5, --rows in all), each layout at every budget, greedy, constrained, on
one loaded model (an idle machine: nothing else decoding):

* shared: every request in one ``generate_batch``, as ``firsttoken eval --thinking-budgets ...`` sends a model's
  arms: each row's budgets are one family, decoded as one trace with a fork per budget;
* separate: one ``generate_batch`` per budget (both layouts' rows), as one run per budget would be.

Printed: the tokens each decoded (llama_decode steps, one token per row per step), their ratio against the ideal
(what the separate runs decode, their completion tokens, over what one trace must: the longest budget's reply
plus, for each budget that closed the region, its closer and answer, counted from the separate runs' own
replies), the wall-time ratio, and how many replies differ between the two (text, reasoning, closing; with
--batch-invariant none should: tests/test_budget_traces.py holds SmolLM2 to it).
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--budgets", default="0,16,32,64,128,256,512")
    parser.add_argument("--layouts", default="think_then_answer,work_then_answer")
    parser.add_argument("--batch-invariant", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import firsttoken as ft

    budgets = [int(b) for b in args.budgets.split(",")]
    layouts = args.layouts.split(",")
    per = -(-args.rows // 3)
    task = ft.Task.builtin(f"arithmetic:3-5:{per}")
    rows = task.rows(limit=args.rows)
    backend = ft.load(args.model, parallel=args.parallel, batch_invariant=args.batch_invariant)
    requests, family, closes = [], [], []  # family: (layout, row) of each request
    for layout in layouts:
        for b in budgets:
            p = ft.Predictor(task.signature, layout=layout, model=backend, max_thinking_tokens=b)
            requests += [p.request(r.inputs) for r in rows]
            family += [(layout, r.key) for r in rows]
        region = ft.get_layout(layout).constraint(p.layout_signature).region
        closes.append(backend.count_tokens(region.open) if region and region.open else 0)
    opener = dict(zip(layouts, closes))

    warm = ft.Predictor(task.signature, layout=layouts[0], model=backend, max_thinking_tokens=8)
    list(backend.generate_batch([warm.request(r.inputs) for r in rows[:2]]))  # untimed: load, first context

    def decoded() -> int:
        return backend.decoder().stats["tokens"] if backend._decoder is not None else 0

    before, start = decoded(), time.perf_counter()
    shared = dict(backend.generate_batch(requests))
    shared_s, shared_tokens = time.perf_counter() - start, decoded() - before

    before, start = decoded(), time.perf_counter()
    alone: dict[int, object] = {}
    for b in budgets:
        idx = [i for i, r in enumerate(requests) if r.options.max_thinking_tokens == b]
        for j, out in backend.generate_batch([requests[i] for i in idx]):
            alone[idx[j]] = out
    alone_s, alone_tokens = time.perf_counter() - start, decoded() - before

    # the ideal, from the separate runs' replies: theirs, against a trace per family plus each fork's tail
    ideal_alone = sum(g.completion_tokens for g in alone.values() if isinstance(g, ft.Generation))
    ideal_shared = 0
    for key in dict.fromkeys(family):
        members = [i for i, f in enumerate(family) if f == key and isinstance(alone[i], ft.Generation)]
        if not members:
            continue
        top = max(members, key=lambda i: requests[i].options.max_thinking_tokens)
        ideal_shared += alone[top].completion_tokens
        for i in members:
            g = alone[i]
            if i != top and g.closed_by == "budget":
                ideal_shared += g.completion_tokens - g.reasoning_tokens - opener[key[0]]

    def reply(g: object) -> tuple:
        if isinstance(g, ft.Generation):
            return g.text, g.closed_by, g.reasoning_tokens, g.finish_reason
        return (type(g).__name__,)

    differ = [i for i in range(len(requests)) if reply(shared[i]) != reply(alone[i])]
    out = {"model": args.model, "rows": len(rows), "layouts": layouts, "budgets": budgets, "parallel": args.parallel,
           "batch_invariant": args.batch_invariant, "requests": len(requests),
           "shared": {"decoded_tokens": shared_tokens, "seconds": round(shared_s, 1)},
           "separate": {"decoded_tokens": alone_tokens, "seconds": round(alone_s, 1)},
           "ideal_token_ratio": round(ideal_alone / ideal_shared, 3),
           "token_ratio": round(alone_tokens / shared_tokens, 3),
           "token_ratio_share_of_ideal": round((alone_tokens / shared_tokens) / (ideal_alone / ideal_shared), 3),
           "wall_ratio": round(alone_s / shared_s, 3),
           "budget_closed": {b: sum(isinstance(alone[i], ft.Generation) and alone[i].closed_by == "budget"
                                    for i, r in enumerate(requests) if r.options.max_thinking_tokens == b)
                             for b in budgets},
           "replies_differing": len(differ),
           "differing": [{"layout": family[i][0], "row": family[i][1][:12],
                          "budget": requests[i].options.max_thinking_tokens} for i in differ[:20]]}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.model}, {len(rows)} rows x {len(layouts)} layouts x budgets {args.budgets}, parallel {args.parallel}"
          f"{', batch_invariant' if args.batch_invariant else ''}: {len(requests)} replies")
    print(f"  shared trace : {shared_tokens:>7} decoded tokens, {shared_s:7.1f} s")
    print(f"  separate runs: {alone_tokens:>7} decoded tokens, {alone_s:7.1f} s")
    print(f"  ideal token ratio {out['ideal_token_ratio']:.2f}x; measured {out['token_ratio']:.2f}x "
          f"({out['token_ratio_share_of_ideal']:.0%} of the ideal; target >= 90%)")
    print(f"  wall-time ratio {out['wall_ratio']:.2f}x (target >= 2x)")
    print(f"  closed by the budget (separate runs), per budget: {out['budget_closed']}")
    print(f"  replies differing between the two: {len(differ)} of {len(requests)}")
    for d in out["differing"]:
        print(f"    {d}")


if __name__ == "__main__":
    main()
