"""What `firsttoken eval` adds on top of the model calls themselves, measured side by side.

    python bench/harness_overhead.py --model smollm2-135m [--rows 20] [--repeats 3] [--json]

The same calls (same messages, constraint and options, same order) are made through ``evaluate`` (fresh
store each time: hashing, SQLite writes, parsing, scoring, statistics) and straight to the backend, in
alternation. Target: the harness adds at most 5%. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import firsttoken as ft
from firsttoken.experiments import evaluate, file_task

LAYOUT = "thoughts_first"


def make_task(folder: Path, rows: int):
    path = folder / "sums.jsonl"
    path.write_text("".join(json.dumps({"question": f"What is {i} + {2 * i + 1}?", "answer": 3 * i + 1}) + "\n"
                            for i in range(rows)))
    return file_task(path, ["question"], "answer", metric="numeric")


def direct(backend, task, budget: int) -> float:
    predictor = ft.Predictor(task.signature, layout=LAYOUT, model=backend, max_thinking_tokens=budget)
    start = time.perf_counter()
    for row in task.rows():
        backend.generate(predictor.request(row.inputs))
    return time.perf_counter() - start


def harness(backend, task, budget: int, folder: Path, i: int) -> float:
    start = time.perf_counter()
    evaluate(task, [backend], layouts=[LAYOUT], budgets=[budget], store=folder / f"run{i}.db")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--budget", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    backend = ft.load(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        task = make_task(folder, args.rows)
        direct(backend, task, args.budget)  # warm-up
        plain, through = [], []
        for i in range(args.repeats):
            plain.append(direct(backend, task, args.budget))
            through.append(harness(backend, task, args.budget, folder, i))
    result = {"model": args.model, "rows": args.rows, "repeats": args.repeats,
              "direct_s": statistics.median(plain), "eval_s": statistics.median(through),
              "direct_runs": plain, "eval_runs": through}
    result["ratio"] = result["eval_s"] / result["direct_s"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"model {args.model}, {args.rows} rows x {args.repeats} alternating repeats (median seconds)")
        print(f"straight to the backend: {result['direct_s']:.2f} s  {['%.2f' % x for x in plain]}")
        print(f"through firsttoken eval: {result['eval_s']:.2f} s  {['%.2f' % x for x in through]}")
        print(f"eval / direct = {result['ratio']:.3f} (target <= 1.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
