"""The published experiment's slices: what each measures and the `firsttoken eval` command that runs it.

Each slice is stored in results/<model>/<store>.db (slices of one data set share a store, so that a call
two slices both need is made once). ``slice_scope`` reads a slice's arms and rows back from its store.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
DATA = "../shared/data"
MODELS = ["qwen2.5-coder-1.5b", "smollm2-135m"]
ALL = "direct,answer_then_explain,thoughts_first,think_then_answer,work_then_answer"

FIVE = ALL.split(",")
GSM8K = {"task": "gsm8k", "data": f"{DATA}/gsm8k/test.jsonl", "store": "gsm8k"}
# Candidate JSON reasoning fields (part 3 of the second edition), run by reference: scripts/json_thoughts.py;
# thoughts_long began as one (a minimum length for the string) and earned a place in the library.
CANDIDATES = [*(f"scripts/json_thoughts.py:{c}" for c in ("ThoughtsCalc", "StepsFirst", "ThoughtsLines")),
              "thoughts_long"]
WORKED_DEMOS = "scripts/json_thoughts_demos.jsonl"
CURVE = [0, 16, 32, 64, 128, 256, 512]  # the budgets of a curve (issue 37)

# Each slice: what it measures, and its eval settings. Slices of one data set share a store, so that a
# call two slices both need is made once. "until_decided": an --until-decided run (its flags: margin in points,
# max_rows, max_tokens), in a store of its own; "models": the models it is run for (default: MODELS);
# "demos": a demos file (its first "n_demos", default 3, for every arm); "versus": the layout each arm is
# compared with (its 0-shot arm in the same store, on the same rows; default: direct).
SLICES: dict[str, dict] = {
    "arithmetic": {"what": "generated arithmetic, 15 problems per difficulty 1-6, all five layouts",
                   "task": "arithmetic:1-6:15", "store": "arithmetic", "layouts": FIVE},
    "gsm8k": {"what": "GSM8K, first 50 problems, all five layouts", **GSM8K, "limit": 50, "layouts": FIVE},
    "gsm8k-unconstrained": {"what": "GSM8K, first 30: forced format vs asked by prompt alone", **GSM8K,
                            "limit": 30, "layouts": ["thoughts_first", "work_then_answer"],
                            "constrained": [True, False]},
    "gsm8k-budget": {"what": "GSM8K, first 30: thinking budget 0 / 64 / 256 / 512", **GSM8K, "limit": 30,
                     "layouts": ["thoughts_first", "work_then_answer"], "budgets": [0, 64, 256, 512]},
    "products": {"what": "products, all 194, all five layouts (the founding example)", "task": "products",
                 "data": f"{DATA}/products/products.json", "store": "products", "layouts": FIVE},
    "banking77": {"what": "Banking77, 100 rows drawn with seed 0, all five layouts", "task": "banking77",
                  "data": f"{DATA}/banking77", "store": "banking77", "sample": 100, "seed": 0, "layouts": FIVE},
    # The founding claim (+1 point from a thoughts field) is about an already accurate classifier: these
    # pilots say whether the model is one (>= 85% answering directly) on each binary sentiment set.
    "arithmetic-until-decided": {"what": "generated arithmetic 1-6, rows drawn until decided: the two best "
                                         "thinking layouts", "task": "arithmetic:1-6",
                                 "store": "arithmetic-until-decided", "layouts": ["think_then_answer", "work_then_answer"],
                                 "until_decided": {"max_tokens": 120000}, "parallel": 16,
                                 "models": ["qwen2.5-coder-1.5b"]},
    # Part 2 of the second edition, under a budget of no new model time: the fixed-n slices' inconclusive
    # decisions rerun with --until-decided (2-point margin) in a copy of their store, so that every row is
    # answered from the calls already made there; the rows run out before more model time would be spent.
    "products-until-decided": {"what": "products, all 194, rows drawn until decided: direct vs answer_then_explain "
                                       "vs thoughts_first (run in a copy of the products store: no new calls)",
                               "task": "products", "data": f"{DATA}/products/products.json",
                               "store": "products-until-decided", "until_decided": {},
                               "layouts": ["direct", "answer_then_explain", "thoughts_first"],
                               "models": ["qwen2.5-coder-1.5b"]},
    "banking77-until-decided": {"what": "Banking77, the 100 rows drawn with seed 0, until decided: direct vs "
                                        "answer_then_explain vs thoughts_first (in a copy of the Banking77 store: "
                                        "no new calls)", "task": "banking77", "data": f"{DATA}/banking77",
                                "store": "banking77-until-decided", "sample": 100, "seed": 0, "until_decided": {},
                                "layouts": ["direct", "answer_then_explain", "thoughts_first"],
                                "models": ["qwen2.5-coder-1.5b"]},
    "gsm8k-until-decided": {"what": "GSM8K, first 200, until decided: the two best thinking layouts and direct (in "
                                    "a copy of the GSM8K store: no new calls)", **GSM8K, "limit": 200,
                            "store": "gsm8k-until-decided", "until_decided": {}, "parallel": 16,
                            "layouts": ["direct", "think_then_answer", "work_then_answer"],
                            "models": ["qwen2.5-coder-1.5b"]},
    "sst2-pilot": {"what": "SST-2 test, 100 rows drawn with seed 0, direct only: accurate enough (>= 85%) for "
                           "the +1-point claim?", "task": "sst2", "data": f"{DATA}/sst2", "store": "sst2",
                   "sample": 100, "seed": 0, "layouts": ["direct"], "models": ["qwen2.5-coder-1.5b"]},
    "sst2-thoughts": {"what": "SST-2 test, the founding claim: thoughts_first vs direct until decided with a 1-point "
                              "margin, the whole split (1,821 rows) the limit", "task": "sst2", "data": f"{DATA}/sst2",
                      "store": "sst2-until-decided", "layouts": ["direct", "thoughts_first"],
                      "until_decided": {"margin": 1}, "models": ["qwen2.5-coder-1.5b"]},
    "airline-pilot": {"what": "Airline sentiment test (80/20 negative/positive), 100 rows drawn with seed 0, direct "
                              "only: accurate enough (>= 85%) for the +1-point claim?", "task": "airline",
                      "data": f"{DATA}/airline", "store": "airline", "sample": 100, "seed": 0,
                      "layouts": ["direct"], "models": ["qwen2.5-coder-1.5b"]},
    "airline-thoughts": {"what": "Airline sentiment test (80/20), the founding claim: thoughts_first vs direct until "
                                 "decided with a 1-point margin, the whole split (2,277 rows) the limit; balanced "
                                 "accuracy in its table", "task": "airline", "data": f"{DATA}/airline",
                         "store": "airline-until-decided", "layouts": ["direct", "thoughts_first"],
                         "until_decided": {"margin": 1}, "models": ["qwen2.5-coder-1.5b"]},
    # A JSON reasoning field that works: candidates against the best free-text layouts, on the rows above.
    "gsm8k-json-thoughts": {"what": "GSM8K, first 50: JSON reasoning fields made to hold the working (the "
                                    "candidates of scripts/json_thoughts.py, and thoughts_long, which earned a "
                                    "place in the library) against work_then_answer", **GSM8K,
                            "limit": 50, "layouts": ["work_then_answer", "think_then_answer", "thoughts_first",
                                                     *CANDIDATES], "parallel": 16, "versus": "work_then_answer",
                            "models": ["qwen2.5-coder-1.5b"]},
    "gsm8k-worked-demos": {"what": "GSM8K, first 200: thoughts_first with three worked demos (every calculation "
                                   "written out in the thoughts field) against work_then_answer (0-shot)", **GSM8K,
                           "limit": 200, "layouts": ["thoughts_first"], "demos": WORKED_DEMOS, "parallel": 16,
                           "versus": "work_then_answer", "models": ["qwen2.5-coder-1.5b"]},
    # The two JSON fields that came within 5 points on the first 50 (thoughts_long, worked demos), measured on
    # 200 rows against the free-text layouts; the candidates that failed by more stopped at 50.
    "gsm8k-200": {"what": "GSM8K, first 200: thoughts_long against the free-text thinking layouts, thoughts_first "
                          "and direct", **GSM8K, "limit": 200,
                  "layouts": ["work_then_answer", "thoughts_long", "think_then_answer", "thoughts_first", "direct"],
                  "parallel": 16, "versus": "work_then_answer", "models": ["qwen2.5-coder-1.5b"]},
    "arithmetic-json-thoughts": {"what": "generated arithmetic (the arithmetic slice's 90 rows): thoughts_long against "
                                         "work_then_answer", "task": "arithmetic:1-6:15", "store": "arithmetic",
                                 "layouts": ["thoughts_long"], "parallel": 16, "versus": "work_then_answer",
                                 "models": ["qwen2.5-coder-1.5b"]},
    "arithmetic-worked-demos": {"what": "generated arithmetic (the arithmetic slice's 90 rows): thoughts_first with "
                                        "the three worked GSM8K demos against work_then_answer (0-shot)",
                                "task": "arithmetic:1-6:15", "store": "arithmetic", "layouts": ["thoughts_first"],
                                "demos": WORKED_DEMOS, "parallel": 16, "versus": "work_then_answer",
                                "models": ["qwen2.5-coder-1.5b"]},
    # How much room to think: every budget from one trace (one decode per row and layout, a fork per budget).
    "arithmetic-curve": {"what": "generated arithmetic (the arithmetic slice's 90 rows): how much thinking, "
                                 "think_then_answer and work_then_answer at budgets 0 to 512 (budget 512 answered "
                                 "from the arithmetic slice's calls, made one row at a time; the other budgets "
                                 "from one trace per row at 256, 16 rows at once, so 256 against 512 also holds "
                                 "llama.cpp's batch-split differences)",
                         "task": "arithmetic:1-6:15", "store": "arithmetic",
                         "layouts": ["think_then_answer", "work_then_answer"], "budgets": CURVE, "parallel": 16,
                         "models": ["qwen2.5-coder-1.5b"]},
    "gsm8k-curve": {"what": "GSM8K, first 200: how much thinking, think_then_answer and work_then_answer at budgets "
                            "0 to 512 (budget 512 answered from the gsm8k-200 slice's calls; budgets 0, 64 and 256 "
                            "of work_then_answer on the first 30 from gsm8k-budget's)", **GSM8K, "limit": 200,
                    "layouts": ["think_then_answer", "work_then_answer"], "budgets": CURVE, "parallel": 16,
                    "models": ["qwen2.5-coder-1.5b"]},
    "sst2-curve": {"what": "SST-2 test (the founding claim's split), 200 rows drawn with seed 0: does any amount of "
                           "thinking help? thoughts_first at budgets 0 to 256, and direct", "task": "sst2",
                   "data": f"{DATA}/sst2", "store": "sst2", "sample": 200, "seed": 0,
                   "layouts": ["direct", "thoughts_first"], "budgets": CURVE[:-1], "parallel": 16,
                   "models": ["qwen2.5-coder-1.5b"]},
}


def runs_for(model: str, name: str) -> bool:
    return model in SLICES[name].get("models", MODELS)


def store(model: str, name: str) -> Path:
    return RESULTS / model / f"{SLICES[name]['store']}.db"


def command(model: str, name: str) -> list[str]:
    s = SLICES[name]
    cmd = ["firsttoken", "eval", "--model", model, "--store", str(store(model, name).relative_to(ROOT)), "--quiet",
           "--task", s["task"]]
    if "data" in s:
        cmd += ["--data", s["data"]]
    for key, flag in (("limit", "--limit"), ("sample", "--sample"), ("seed", "--seed")):
        if key in s:
            cmd += [flag, str(s[key])]
    cmd += ["--layouts", ",".join(s["layouts"])]
    if "until_decided" in s:
        cmd.append("--until-decided")
        for key, value in s["until_decided"].items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    if "demos" in s:
        cmd += ["--demos", s["demos"], "--n-demos", str(s.get("n_demos", 3))]
    if "parallel" in s:
        cmd += ["--parallel", str(s["parallel"])]
    if "constrained" in s:
        cmd += ["--constrained", ",".join("on" if c else "off" for c in s["constrained"])]
    if "budgets" in s:
        cmd += ["--thinking-budgets", ",".join(map(str, s["budgets"]))]
    return cmd


def slice_scope(db, model: str, name: str) -> tuple[str, list[str], set[str]]:
    """The task name, arm ids and row keys one slice covers in its open store (several slices may share one).

    Read from the store, not the data files, so that `render` needs only what is committed: the arms of the
    slice's grid, and the rows its limit or sample takes from the task's current data (the rows `eval` was
    last given, in order)."""
    from firsttoken.experiments import build_grid
    from firsttoken.tasks import sample_rows

    s = SLICES[name]
    task = s["task"].split(":")[0]
    demos = stored_demos(db, s)
    if "demos" in s and demos is None:  # not run yet with these demos
        return task, [], set()
    grid = build_grid(task, [model], s["layouts"], ["json"], s.get("constrained", [True]), s.get("budgets", [512]),
                      demos)
    if "until_decided" in s:  # the rows the run used: those its decision was made on, or (running) all so far
        seq = sequential(db, task)
        rows = seq["row_keys"] if seq else sorted({r["row_key"] for a in grid for r in db.results(a.id)})
        return task, [a.id for a in grid], set(rows)
    rows = db.row_keys(task)
    if "sample" in s:
        rows = sample_rows(rows, s["sample"], s.get("seed", 0))
    return task, [a.id for a in grid], set(rows[:s.get("limit")])


def stored_demos(db, s: dict) -> list[dict] | None:
    """The demos a slice's arms were run with, as the store keeps them (the arm whose demos are the file's
    questions, in order), so that rendering needs no data file; None without demos."""
    import json

    if "demos" not in s:
        return None
    lines = (ROOT / s["demos"]).read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines if line.strip()][: s.get("n_demos", 3)]
    for arm in db.arms():
        rows = json.loads(arm["config"] or "{}").get("demo_rows") or []
        if [r.get("question") for r in rows] == questions:
            return rows
    return None


def sequential(db, task: str) -> dict | None:
    """An --until-decided run's decision as its store keeps it (None while the run has not ended)."""
    import json

    run = db.last_run(task)
    return json.loads(run["config"]).get("sequential") if run else None
