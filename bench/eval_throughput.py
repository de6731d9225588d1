"""Batched local decoding against one row at a time, measured side by side in one run (an idle machine!).

    python bench/eval_throughput.py --model smollm2-135m [--parallel 4] [--rows 24] [--peer LLAMA_SERVER]
                                    [--batch-invariant] [--json]

GGML_CPU_TILED_MM=1 in the environment measures with ggml's tiled K-quant kernel on (firsttoken turns it off).

(a) The ceiling: the decode rate of N sequences stepping together (one token each per llama_decode, greedy,
    no grammar, a shared prompt copied into each, run to a fixed length; the seconds of the steps, not of the
    prompt) against one sequence, for N = 1, 4, 8, 16, 32, each N the fastest of --repeats runs; with one KV
    stream per row (what LlamaCpp(parallel=N) uses) and, for contrast, one unified cache.
(b) The same grid (generated arithmetic, 3-5 steps, direct / thoughts_first / work_then_answer, constrained;
    every layout's rows in one batch, as `eval` runs a model's arms) run one row at a time and with
    parallel=N: rows per minute each, their ratio, the ratio as a share of the ceiling at N and of the
    ceiling at the grid's own shape (its prompt, its mean reply length: each step's attention spans the
    rows' cells, so longer rows gain less from batching), the grammar's share of the batched decode time,
    and how many rows' outcomes agree (the rows that differ are listed: greedy logits differ slightly
    across batch splits). And the bound: the seconds one row at a time spent on prompt tokens (llama.cpp's
    own count) do not shrink when rows batch (a prompt is already many tokens per call), so with the rest
    sped up by the ceiling the grid can gain at most seconds / (prompt + rest / ceiling).
    With --peer LLAMA_SERVER, the same grid through llama.cpp's own server (-np 1 and -np N, the openai backend
    with N requests at once, schema_mode=gbnf), beside the in-process numbers.
(c) Peak memory (VmHWM, the RSS high-water mark) per parallel = 1, 4, 8, 16, each in its own subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

STORY = [{"role": "user", "content": "Write a long, detailed story about a robot who learns to paint."}]


def ceiling(model: str, ns: list[int], steps: int, unified: bool, messages: list | None = None, repeats: int = 2,
            **load: object) -> dict[int, float]:
    """Aggregate decode rate of N sequences stepping together: generated tokens per second of the steps (the
    prompt's evaluation, once for N = 1 and shared by the N rows otherwise, is not decoding). After an untimed
    warm-up, every N is run ``repeats`` times, interleaved, and its fastest run counts (one slow run of N = 1
    once inflated every ratio: SmolLM2's rate at N = 1 read 81.6, 106.2 and 125.9 tokens/s in three bench runs)."""
    import firsttoken as ft
    from firsttoken.backends._batch import BatchDecoder, Job

    backend = ft.load(model, **load)
    prompt, _ = backend.prompt_tokens(messages or STORY)

    def rate(n: int, tokens: int) -> float:
        cells = n * (len(prompt) + tokens + 16) + 256 if unified else (n + 1) * (len(prompt) + tokens + 16)
        decoder = BatchDecoder(backend.llm, n, cells, backend.n_threads, unified=unified)
        jobs = [Job(prompt, tokens, ft.GenerateOptions(), [], ignore_eos=True) for _ in range(n)]
        start = time.perf_counter()
        outs = list(decoder.run(jobs))
        seconds = time.perf_counter() - start - decoder.stats["prompt_s"]
        decoder.close()
        return sum(g.completion_tokens for _, g in outs) / seconds

    rate(1, 16)  # warm-up
    rates: dict[int, float] = {}
    for _ in range(repeats):
        for n in ns:
            rates[n] = max(rates.get(n, 0.0), rate(n, steps))
    return rates


def grid(model: str, parallel: int, rows: int, peer: str | None = None, **load: object) -> dict:
    """The grid one row at a time and with ``parallel``: seconds, outcomes, the grammar's share; with ``peer``
    (a llama-server binary), also through llama.cpp's own server with 1 and ``parallel`` slots."""
    import firsttoken as ft
    from firsttoken.tasks import get_task

    task = get_task(f"arithmetic:3-5:{max(1, rows // 3)}")
    inputs = [r.inputs for r in task.all_rows[:rows]]
    out: dict = {"rows": len(inputs), "layouts": ["direct", "thoughts_first", "work_then_answer"]}
    results = {}
    for mode, backend in (("sequential", ft.load(model, **load)), ("batched", ft.load(model, parallel=parallel, **load))):
        before = _prompt_seconds(backend.llm) if mode == "sequential" else 0.0
        preds, seconds, predictors = _run_grid(backend, task, inputs, out["layouts"])
        if mode == "sequential":  # llama.cpp's own count: seconds of decode calls carrying more than one token
            out["sequential_prompt_s"] = _prompt_seconds(backend.llm) - before
        per_layout = _per_layout(preds, task, inputs, out["layouts"])
        results[mode] = per_layout
        done = [p.generation.completion_tokens for p in preds if getattr(p, "generation", None)]
        out["mean_completion_tokens"] = sum(done) / max(1, len(done))
        out["prompt_messages"] = predictors["thoughts_first"].messages(**inputs[0])
        out[mode] = _speed(preds, seconds, per_layout)
        if mode == "batched":
            stats = backend.decoder().stats
            out["grammar_share"] = stats["guide_s"] / stats["decode_s"] if stats["decode_s"] else 0.0
            out["batched_steps"], out["batched_tokens"] = stats["steps"], stats["tokens"]
            out["batched_prompt_s"], out["batched_decode_s"] = stats["prompt_s"], stats["decode_s"]
        del backend
    differ = [f"{layout} row {i}: {a} vs {b}" for layout in out["layouts"]
              for i, (a, b) in enumerate(zip(results["sequential"][layout], results["batched"][layout])) if a != b]
    out["agree"] = 3 * len(inputs) - len(differ)  # the same outcome and answer
    out["outcomes_agree"] = sum(a[0] == b[0] and (a[1] or ("",))[0] == (b[1] or ("",))[0]
                                for layout in out["layouts"]
                                for a, b in zip(results["sequential"][layout], results["batched"][layout]))
    out["differ"] = differ
    out["ratio"] = out["batched"]["rows_per_minute"] / out["sequential"]["rows_per_minute"]
    if peer:
        out["llama_server"] = {}
        local = ft.load(model)
        path, threads = local.llm.model_path, local.n_threads
        del local
        for slots in sorted({1, parallel}):
            proc, url = _start_server(peer, path, slots, threads)
            try:
                backend = ft.OpenAICompatible(f"{url}/v1", "m", schema_mode="gbnf", parallel=slots)
                preds, seconds, _ = _run_grid(backend, task, inputs, out["layouts"])
                out["llama_server"][slots] = _speed(preds, seconds, _per_layout(preds, task, inputs, out["layouts"]))
            finally:
                proc.kill()
                proc.wait()
    return out


def _prompt_seconds(llm) -> float:
    """Seconds llama.cpp has spent in this context on decode calls of more than one token (prompt tokens)."""
    import llama_cpp

    return llama_cpp.llama_perf_context(llm._ctx.ctx).t_p_eval_ms / 1000


def bound(seconds: float, prompt_s: float, x: float) -> float:
    """The most a batched run can gain over one row at a time when its prompt seconds stay as they are (a
    prompt is already evaluated many tokens per call) and everything else runs ``x`` times faster (Amdahl)."""
    return seconds / (prompt_s + (seconds - prompt_s) / x)


def _run_grid(backend, task, inputs, layouts) -> tuple[list, float, dict]:
    """Every layout's rows in one batch, layout after layout, as `eval` runs a model's arms."""
    import firsttoken as ft
    from firsttoken._predictor import completed_many

    predictors = {name: ft.Predictor(task.signature, layout=name, model=backend, max_thinking_tokens=256)
                  for name in layouts}
    work = [(predictors[name], row) for name in layouts for row in inputs]
    start = time.perf_counter()
    preds: list = [None] * len(work)
    for i, p in completed_many(work):
        preds[i] = p
    return preds, time.perf_counter() - start, predictors


def _per_layout(preds, task, inputs, layouts) -> dict:
    return {name: [_outcome(p, r.expected) for p, r in zip(preds[k * len(inputs):], task.all_rows)]
            for k, name in enumerate(layouts)}


def _speed(preds, seconds, per_layout) -> dict:
    return {"seconds": seconds, "rows_per_minute": len(preds) / seconds * 60,
            "invalid": sum(o[0] != "valid" for v in per_layout.values() for o in v),
            "right": sum(o[1] is not None and o[1][0] == "right" for v in per_layout.values() for o in v)}


def _start_server(binary: str, model_path: str, slots: int, threads: int):
    """llama.cpp's llama-server on loopback with ``slots`` parallel slots and the in-process runs' threads."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "-m", model_path, "--host", "127.0.0.1", "--port", str(port), "-c",
                             str(4096 * slots), "-np", str(slots), "-t", str(threads), "--no-webui", "--seed", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("llama-server did not start")


def _outcome(pred, expected) -> tuple[str, object]:
    import firsttoken as ft

    if isinstance(pred, ft.FirstTokenError):
        return type(pred).__name__, None
    return "valid", ("right" if pred.answer == expected else "wrong", pred.answer)


def peak_memory(model: str, parallel: int, **load: object) -> float:
    """GB of peak RSS of a subprocess that loads the model and decodes a batch with ``parallel``. Read from
    VmHWM, the high-water mark of the subprocess's own memory: ``ru_maxrss`` keeps the parent's resident size
    across fork and exec, so it read this bench's own size (the same 6.50 GB at every parallel)."""
    code = (f"import firsttoken as ft; from firsttoken.tasks import get_task; "
            f"t = get_task('arithmetic:3-5:{max(parallel, 4)}'); "
            f"b = ft.load({model!r}, parallel={parallel}, **{load!r}); "
            f"ft.Predictor(t.signature, layout='thoughts_first', model=b, max_thinking_tokens=64)"
            f".batch([r.inputs for r in t.all_rows[:{max(parallel, 4)}]]); "
            f"print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(res.stdout.strip().splitlines()[-1]) / 1024 / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--parallel", type=int, default=4, help="the parallel of the grid run")
    ap.add_argument("--rows", type=int, default=24)
    ap.add_argument("--steps", type=int, default=128, help="tokens per sequence in the ceiling")
    ap.add_argument("--ns", default="1,4,8,16,32")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each N in the ceiling (the fastest counts)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: unified, grid, memory")
    ap.add_argument("--peer", metavar="LLAMA_SERVER", help="also run the grid through this llama-server binary "
                    "(scripts/build_llama_server.sh builds it) with 1 and --parallel slots, schema_mode=gbnf")
    ap.add_argument("--batch-invariant", action="store_true", help="load the model with batch_invariant=True "
                    "(kernels whose sums do not depend on the batch: see the README)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ns = [int(x) for x in args.ns.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    load = {"batch_invariant": True} if args.batch_invariant else {}
    report: dict = {"model": args.model, "parallel": args.parallel, **load,
                    "GGML_CPU_TILED_MM": os.environ.get("GGML_CPU_TILED_MM", "0 (firsttoken's default)")}
    rates = ceiling(args.model, ns, args.steps, unified=False, repeats=args.repeats, **load)
    report["ceiling"] = {n: {"tokens_per_s": r, "x": r / rates[ns[0]]} for n, r in rates.items()}
    if "unified" not in skip:
        u = ceiling(args.model, ns, args.steps, unified=True, repeats=args.repeats, **load)
        report["ceiling_unified"] = {n: {"tokens_per_s": r, "x": r / rates[ns[0]]} for n, r in u.items()}
    if "grid" not in skip:
        g = grid(args.model, args.parallel, args.rows, args.peer, **load)
        g["ceiling_x"] = report["ceiling"].get(args.parallel, {"x": float("nan")})["x"]  # nan: N not in --ns
        g["share_of_ceiling"] = g["ratio"] / g["ceiling_x"]
        # the ceiling at the grid's own shape: its prompt, its mean reply length (attention spans longer rows)
        steps = max(1, round(g["mean_completion_tokens"]))
        shaped = ceiling(args.model, [1, args.parallel], steps, unified=False, messages=g.pop("prompt_messages"),
                         repeats=args.repeats, **load)
        g["ceiling_shaped"] = {"steps": steps, "x": shaped[args.parallel] / shaped[1],
                               "tokens_per_s": {n: r for n, r in shaped.items()}}
        g["share_of_shaped"] = g["ratio"] / g["ceiling_shaped"]["x"]
        seq_s, prompt_s = g["sequential"]["seconds"], g["sequential_prompt_s"]
        g["bound"] = bound(seq_s, prompt_s, g["ceiling_x"])
        g["bound_shaped"] = bound(seq_s, prompt_s, g["ceiling_shaped"]["x"])
        report["grid"] = g
    if "memory" not in skip:
        report["peak_memory_gb"] = {p: peak_memory(args.model, p, **load) for p in (1, 4, 8, 16)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"model {args.model}{' (batch_invariant)' if load else ''}, GGML_CPU_TILED_MM={report['GGML_CPU_TILED_MM']}; "
          f"ceiling: the decode rate of N sequences stepping together, {args.steps} tokens each, vs one")
    for key in ("ceiling", "ceiling_unified"):
        if key in report:
            print(f"  {'one KV stream per row' if key == 'ceiling' else 'unified KV cache    '}: " +
                  "  ".join(f"N={n} {v['tokens_per_s']:.1f} tok/s x{v['x']:.2f}" for n, v in report[key].items()))
    if "grid" in report:
        g = report["grid"]
        print(f"grid: {g['rows']} arithmetic rows x {', '.join(g['layouts'])}, constrained")
        for mode in ("sequential", "batched"):
            print(f"  {mode:10s} {g[mode]['seconds']:7.1f} s  {g[mode]['rows_per_minute']:6.1f} rows/min  "
                  f"invalid replies {g[mode]['invalid']}  right {g[mode]['right']}")
        print(f"  batched: {g['batched_tokens'] / max(1, g['batched_steps']):.1f} rows per decode step on average; "
              f"{g['batched_decode_s']:.1f} s in llama_decode, of which {g['batched_prompt_s']:.1f} s on prompt "
              "tokens (one row's own at a time, as one-at-a-time decoding does)")
        c = g["ceiling_shaped"]
        print(f"  ceiling at the grid's shape (a thoughts_first prompt, {c['steps']} tokens a row): "
              f"x{c['x']:.2f} at N={args.parallel}")
        print(f"  batched/sequential x{g['ratio']:.2f} = {g['share_of_ceiling']:.0%} of the ceiling at N={args.parallel}, "
              f"{g['share_of_shaped']:.0%} of the ceiling at the grid's shape; "
              f"grammar {g['grammar_share']:.1%} of the batched decode time; outcomes (right / wrong / error) agree on "
              f"{g['outcomes_agree']} of {3 * g['rows']} rows, outcome and answer on {g['agree']}")
        print(f"  one at a time: {g['sequential_prompt_s']:.1f} of {g['sequential']['seconds']:.1f} s on prompt "
              "tokens; "
              f"with those seconds fixed, batching can reach at most x{g['bound']:.2f} "
              f"({g['bound'] / g['ceiling_x']:.0%} of the ceiling at N={args.parallel}; "
              f"x{g['bound_shaped']:.2f} at the grid's shape); the grid reached {g['ratio'] / g['bound']:.0%} "
              f"and {g['ratio'] / g['bound_shaped']:.0%} of those")
        for line in g["differ"]:
            print(f"    differs: {line}")
        for slots, r in g.get("llama_server", {}).items():
            print(f"  llama-server -np {slots:<2d} {r['seconds']:7.1f} s  {r['rows_per_minute']:6.1f} rows/min  "
                  f"invalid replies {r['invalid']}  right {r['right']} (schema_mode=gbnf: the reasoning bounded by "
                  "the grammar, not closed at the budget)")
    if "peak_memory_gb" in report:
        print("peak memory: " + "  ".join(f"parallel={p} {gb:.2f} GB" for p, gb in report["peak_memory_gb"].items()))


if __name__ == "__main__":
    main()
