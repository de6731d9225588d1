"""The published experiment: run its slices into committed stores, and render docs/results.md from them.

    python scripts/results.py run [--model qwen2.5-coder-1.5b] [--slice NAME ...]   # hours; resumable
    python scripts/results.py render                                                 # `make results`
    python scripts/results.py list                                                   # slices, commands
    python scripts/results.py verify --slice NAME [--limit N]   # rerun into a fresh store, compare row by row

Each slice is one `firsttoken eval` command (printed by `list` and in the document), stored in
results/<model>/<slice>.db. A killed run resumes where it stopped; a rerun of a finished slice makes no
model call. `render` reads only the stores, so every number in docs/results.md comes from committed data.
Run slices only on an idle machine: two llama.cpp processes at once run ~30x slower.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
DATA = "../shared/data"
MODELS = ["qwen2.5-coder-1.5b", "smollm2-135m"]
# "a op b = c", a unit word allowed after each number ("18 coins ÷ 3 = 6"), LaTeX's \times too.
CALC = re.compile(r"\d[\d.,]*(?:\s+[a-zA-Z]+)?\s*(?:[-+*/×÷]|\\times)\s*\$?\d[\d.,]*(?:\s+[a-zA-Z]+)?\s*=")
ALL = "direct,answer_then_explain,thoughts_first,think_then_answer,work_then_answer"

FIVE = ALL.split(",")
GSM8K = {"task": "gsm8k", "data": f"{DATA}/gsm8k/test.jsonl", "store": "gsm8k"}

# Each slice: what it measures, and its eval settings. Slices of one data set share a store, so that a
# call two slices both need is made once.
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
}


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
    from firsttoken.experiments._tasks import sample_rows

    s = SLICES[name]
    task = s["task"].split(":")[0]
    grid = build_grid(task, [model], s["layouts"], ["json"], s.get("constrained", [True]), s.get("budgets", [512]))
    rows = db.row_keys(task)
    if "sample" in s:
        rows = sample_rows(rows, s["sample"], s.get("seed", 0))
    return task, [a.id for a in grid], set(rows[:s.get("limit")])


def run(models: list[str], names: list[str]) -> int:
    for model in models:
        for name in names:
            store(model, name).parent.mkdir(parents=True, exist_ok=True)
            cmd = command(model, name)
            print("$", shlex.join(cmd), flush=True)
            res = _eval(cmd)
            if res.returncode:
                return res.returncode
            compact(store(model, name))
    return 0


def _eval(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run a `firsttoken eval` command line with this interpreter's firsttoken, from the project root."""
    return subprocess.run([str(Path(sys.executable).parent / "firsttoken"), *cmd[1:]], cwd=ROOT)


def verify(model: str, name: str, limit: int | None) -> int:
    """Rerun one slice's command into a fresh store (its first `limit` rows) and compare it with the committed one."""
    import tempfile

    from firsttoken.experiments import Store, arm_label

    with tempfile.TemporaryDirectory() as tmp:
        fresh_path = Path(tmp) / "fresh.db"
        cmd = command(model, name)
        cmd[cmd.index("--store") + 1] = str(fresh_path)
        if limit is not None:
            if "--limit" in cmd:
                at = cmd.index("--limit") + 1
                cmd[at] = str(min(limit, int(cmd[at])))
            else:
                cmd[cmd.index("--layouts"):cmd.index("--layouts")] = ["--limit", str(limit)]
        print("$", shlex.join(cmd), flush=True)
        res = _eval(cmd)
        if res.returncode:
            return res.returncode
        fresh, kept = Store(fresh_path), Store(store(model, name), readonly=True)
        try:
            same = 0
            mismatches, differ_text = [], []
            for arm in fresh.arms():
                committed = {r["row_key"]: r for r in kept.results(arm["id"])}
                for r in fresh.results(arm["id"]):
                    old = committed.get(r["row_key"])
                    if old is None:
                        mismatches.append(f"{arm_label(arm)} row {r['row_id']}: not in the committed store")
                    elif (old["outcome"], old["outputs"]) != (r["outcome"], r["outputs"]):
                        mismatches.append(f"{arm_label(arm)} row {r['row_id']}: committed {old['outcome']} "
                                          f"{old['outputs']}, rerun {r['outcome']} {r['outputs']}")
                    elif old["raw"] != r["raw"]:
                        at = next((i for i, (a, b) in enumerate(zip(old["raw"], r["raw"])) if a != b),
                                  min(len(old["raw"]), len(r["raw"])))
                        differ_text.append(f"{arm_label(arm)} row {r['row_id']}: same outcome and answer, "
                                           f"reply text first differs at character {at}")
                    else:
                        same += 1
        finally:
            fresh.close()
            kept.close()
    total = same + len(differ_text) + len(mismatches)
    print(f"{same} of {total} rows reproduced exactly (same reply text); {len(differ_text)} with the same outcome "
          f"and answer but different text; {len(mismatches)} differ in outcome or answer.")
    for line in differ_text + mismatches:
        print("  " + line)
    return 0 if not mismatches else 1


def compact(path: Path) -> None:
    """Fold the WAL into the file so that the committed store is one self-contained file."""
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("PRAGMA journal_mode=DELETE")


def render() -> str:
    from firsttoken.experiments import Store, summarize
    from firsttoken.experiments._report import markdown

    out = ["# Results: the first-token experiment", "",
           "Generated by `make results` (`python scripts/results.py render`) from the stores committed under",
           "`results/`; every number below is read from them. Each slice names the command that produced it;",
           "rerunning a slice's command reproduces its rows (greedy decoding) and makes no model call where",
           "the store already holds them; `python scripts/results.py verify --slice NAME [--model M] [--limit N]`",
           "reruns a slice into a fresh store and compares it with the committed one row by row. It counts a",
           "row whose outcome and answer match but whose reply text does not as its own case and names it:",
           "llama.cpp's logits depend slightly on how a prompt is split into batches, and prefix reuse makes the",
           "split depend on the call before, so the first row of an arm in a `--limit` rerun (a new predecessor)",
           "can be worded differently (or, rarely, answered differently: a difference); the same calls in the",
           "same order reproduce the text exactly.",
           "Constrained unless a row says `unconstrained`.", ""]
    header = len(out)
    missing: list[str] = []
    findings: list[str] = []
    glance: list[str] = []
    for model in MODELS:
        out += [f"## {model}", ""]
        for name, spec in SLICES.items():
            path = store(model, name)
            if not path.exists():
                missing.append(f"{model} / {name}")
                continue
            db = Store(path, readonly=True)
            try:
                task, arm_ids, row_ids = slice_scope(db, model, name)
                summary = summarize(db, task, arm_ids, row_ids)
                out += [f"### {name}: {spec['what']}", "", f"`{shlex.join(command(model, name))}`", ""]
                short = [a for a in summary["arms"] if a["n"] + a["backend_errors"] < len(row_ids)]
                absent = len(arm_ids) - len(summary["arms"])
                if short or absent:
                    out += [f"**Incomplete:** {len(short) + absent} of {len(arm_ids)} arms have fewer than the "
                            f"{len(row_ids)} planned rows (the run is resumable; the numbers cover the rows done).", ""]
                if summary["arms"]:
                    out += [markdown(summary).split("\n", 2)[2], _by_difficulty(summary), _analysis(db, summary),
                            _plots(summary, model, name), ""]
                    findings.append(_finding(model, name, summary))
                    if set(spec["layouts"]) == set(FIVE) and "budgets" not in spec and "constrained" not in spec:
                        glance.append(_glance_row(model, name, summary, len(row_ids)))
            finally:
                db.close()
    head, body = out[:header], out[header:]
    out = head + ["## At a glance", "",
                  "Accuracy per layout (constrained, thinking budget 512), rows done of planned; the best in bold. "
                  "The intervals and paired tests are below.", "",
                  "| model | slice | rows | " + " | ".join(FIVE) + " | recommendation |",
                  "|---|---|---|" + "---|" * len(FIVE) + "---|", *glance, "",
                  "## Answers, slice by slice", "",
                  "Read from the tables below: each thinking layout against answering first (`direct`) on the "
                  "same rows, with its paired 95% interval, McNemar p and token price (\"helps\" / \"hurts\" only "
                  "where the interval excludes 0; \"not shown to differ\" says plainly that thinking first was "
                  "not shown to help), and what the recommendation (the cheapest arm proven within 2 points of "
                  "the best) picks, and why.", "",
                  *findings, ""] + body
    if missing:
        out += ["## Not yet run", "", "These slices have no store yet (run `python scripts/results.py run`):", ""]
        out += [f"- {m}" for m in missing] + [""]
    return "\n".join(out)


def _finding(model: str, name: str, summary: dict) -> str:
    from firsttoken.experiments import versus

    arms = summary["arms"]
    if any(not a["constrained"] for a in arms):  # the format tax: forced vs asked by prompt alone
        parts = []
        for c in summary["comparisons"]:
            if c["axis"] != "constrained":
                continue
            on, off = (c["a"], c["b"]) if next(a for a in arms if a["id"] == c["a"])["constrained"] else (c["b"], c["a"])
            a_on = next(a for a in arms if a["id"] == on)
            a_off = next(a for a in arms if a["id"] == off)
            parts.append(f"{a_on['layout']}: forced {a_on['accuracy']:.1%} ({a_on['parse_failures']} parse failures) "
                         f"vs prompt alone {a_off['accuracy']:.1%} ({a_off['parse_failures']} parse failures of "
                         f"{a_off['n']}), McNemar p = {c['p_value']:.2g}")
        return f"- **{model} / {name}**: " + "; ".join(parts) + "."
    budgets = sorted({a["budget"] for a in arms if a["budget"] is not None})
    if len(budgets) > 1:  # accuracy against the thinking budget
        parts = []
        for layout in dict.fromkeys(a["layout"] for a in arms):
            row = sorted((a["budget"], a["accuracy"], a["mean_reasoning_tokens"]) for a in arms if a["layout"] == layout)
            parts.append(f"{layout}: " + ", ".join(f"budget {b}: {acc:.1%} ({tok:.0f} reasoning tokens)"
                                                   for b, acc, tok in row))
        return f"- **{model} / {name}**: " + "; ".join(parts) + "."
    direct = next((a for a in arms if a["layout"] == "direct" and a["constrained"]), None)
    thinking = [a for a in arms if _thinks(a)]
    rec = summary["recommendation"]
    verdict = (f"Recommendation: **{rec['label']}**, because {rec['reason']}." if rec.get("label")
               else f"Recommendation: inconclusive: {rec['reason'].rstrip('.')}.")
    lines = [f"- **{model} / {name}**:"]
    for arm in thinking if direct else []:
        vs = versus(summary, arm["id"], direct["id"])
        if vs is None:
            continue
        diff, lo, hi, p, n = vs["diff"], vs["ci_low"], vs["ci_high"], vs["p_value"], vs["n"]
        word = "helps" if lo > 0 else "hurts" if hi < 0 else "not shown to differ"
        extra = arm["mean_completion_tokens"] - direct["mean_completion_tokens"]
        line = (f"  - {arm['layout']} {arm['accuracy']:.1%} vs direct {direct['accuracy']:.1%}: {word}, "
                f"{diff * 100:+.1f} points (95% CI {lo * 100:+.1f} to {hi * 100:+.1f}, McNemar p = {p:.2g}, "
                f"n = {n}), for {extra:+.0f} completion tokens per row.")
        if arm["layout"] == "thoughts_first":
            line += " " + _plus_one(n, lo, hi)
        lines.append(line)
    trend = _difficulty_trend(summary)
    if trend:
        lines.append(f"  - By difficulty (lowest → highest level): {trend}.")
    lines.append(f"  - {verdict}")
    return "\n".join(lines)


def _thinks(arm: dict) -> bool:
    """Whether the arm's layout has a reasoning region: only those arms carry a thinking budget."""
    return arm["budget"] is not None


def _glance_row(model: str, name: str, summary: dict, planned: int) -> str:
    by_layout = {a["layout"]: a for a in summary["arms"] if a["constrained"]}
    top = max((a["accuracy"] for a in by_layout.values()), default=None)
    cells = []
    for layout in FIVE:
        a = by_layout.get(layout)
        cell = "" if a is None else f"{a['accuracy']:.1%}"
        cells.append(f"**{cell}**" if a is not None and a["accuracy"] == top else cell)
    done = min((by_layout[x]["n"] + by_layout[x]["backend_errors"] if x in by_layout else 0) for x in FIVE)
    rec = summary["recommendation"]
    pick = rec["label"].removeprefix(model).strip() if rec.get("label") else "inconclusive"
    return f"| {model} | {name} | {done}/{planned} | " + " | ".join(cells) + f" | {pick} |"


def _plus_one(n: int, lo: float, hi: float) -> str:
    """The founding claim is "a thoughts field adds about +1 point": what this interval says of it."""
    half = (hi - lo) / 2
    if half == 0:
        return "No row's outcome differed, so the data say nothing about a +1-point effect."
    need = (f"an estimate of +1 excludes 0 only once the interval is narrower than ±1 point: about "
            f"{math.ceil(n * (half / 0.01) ** 2):,} rows at this disagreement rate")
    if hi < 0.01:
        return f"The founding +1-point gain lies above this interval: not found here ({need})."
    if lo > 0.01:
        return "The gain here is larger than the founding +1 point."
    return f"A +1-point effect cannot be resolved at this n: the interval is ±{half * 100:.1f} points wide ({need})."


def _difficulty_trend(summary: dict) -> str:
    cells = summary.get("difficulty") or {}
    labels = {a["id"]: a["layout"] for a in summary["arms"]}
    parts = []
    for arm_id, by in cells.items():
        levels = sorted(by, key=float)
        if len(levels) < 2:
            continue
        first, last = by[levels[0]], by[levels[-1]]
        parts.append(f"{labels[arm_id]} {first[0]}/{first[1]} → {last[0]}/{last[1]}")
    return "; ".join(parts)


def _by_difficulty(summary: dict) -> str:
    cells = summary.get("difficulty") or {}
    if not cells:
        return ""
    labels = {a["id"]: a["label"] for a in summary["arms"]}
    levels = sorted({d for arm in cells.values() for d in arm}, key=float)
    lines = ["Accuracy by difficulty (number of operations), correct / answered:", "",
             "| arm | " + " | ".join(levels) + " |", "|---|" + "---|" * len(levels)]
    for arm_id, by in cells.items():
        lines.append(f"| {labels[arm_id]} | " + " | ".join(
            f"{by[d][0]}/{by[d][1]}" if d in by else "" for d in levels) + " |")
    return "\n".join(lines) + "\n"


def _plots(summary: dict, model: str, name: str) -> str:
    import base64

    from firsttoken.experiments._report import plots

    folder = ROOT / "docs" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    links = []
    for i, (title, uri) in enumerate(plots(summary).items()):
        if title == "Paired differences":
            continue  # the table above says the same, with intervals
        path = folder / f"{model}-{name}-{i}.png"
        path.write_bytes(base64.b64decode(uri.split(",", 1)[1]))
        links.append(f"![{title}](results/{path.name})")
    return "\n".join(links) + "\n" if links else ""


def _analysis(db, summary) -> str:
    """Facts read from the stored replies: where reasoning was arithmetic and where it was a plan."""
    if summary.get("labels"):
        return _label_analysis(db, summary)
    lines = []
    for arm in summary["arms"]:
        if not _thinks(arm):
            continue
        rows = db.results(arm["id"])
        texts = [r["thoughts"] or "" for r in rows if r["outcome"] in ("correct", "wrong")]
        if not texts:
            continue
        worked = sum(bool(CALC.search(t)) for t in texts)
        lines.append(f"- {arm['label']}: {worked} of {len(texts)} parsed replies show a worked calculation "
                     f"(matching `a op b = c`, a unit word allowed) in their reasoning; mean reasoning {arm['mean_reasoning_tokens']:.0f} tokens.")
        example = next((r for r in rows if r["outcome"] == "wrong" and r["thoughts"]
                        and not CALC.search(r["thoughts"])), None)
        if example is not None:
            quote = " ".join(example["thoughts"].split())[:240].replace("`", "'")
            lines.append(f"  A wrong reply with no calculation in it (row {example['row_id']}): `{quote}`")
    return ("Reasoning, read from the stored replies:\n\n" + "\n".join(lines) + "\n") if lines else ""


def _label_analysis(db, summary) -> str:
    """For a label task: which labels each arm confuses, and whether wrong reasonings named the right label."""
    lines = []
    for arm in summary["arms"]:
        wrong = [r for r in db.results(arm["id"]) if r["outcome"] == "wrong"]
        if not wrong:
            continue
        pairs = Counter((json.loads(r["expected"]), json.loads(r["outputs"]).get(summary["output"])) for r in wrong)
        common = ", ".join(f"{e} → {p} ({k})" for (e, p), k in pairs.most_common(3))
        line = f"- {arm['label']}: {len(wrong)} wrong; most common (expected → answered): {common}."
        if _thinks(arm):
            named = sum(_names(r["thoughts"] or "", json.loads(r["expected"])) for r in wrong)
            line += (f" In {named} of the {len(wrong)} wrong replies the reasoning names the expected label and the "
                     f"answer still picks another.")
        lines.append(line)
    return ("Errors, read from the stored replies:\n\n" + "\n".join(lines) + "\n") if lines else ""


def _names(text: str, label: str) -> bool:
    words = re.escape(label.lower()).replace(r"\-", "[- ]").replace(r"\ ", "[- ]").replace("_", "[_ ]")
    return re.search(rf"\b{words}\b", text.lower()) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", action="append", choices=MODELS)
    r.add_argument("--slice", action="append", choices=list(SLICES))
    v = sub.add_parser("verify", help="rerun one slice into a fresh store and compare it row by row")
    v.add_argument("--model", choices=MODELS, default=MODELS[0])
    v.add_argument("--slice", choices=list(SLICES), required=True)
    v.add_argument("--limit", type=int, help="only the first N rows (the whole slice is hours on 2 cores)")
    sub.add_parser("render")
    sub.add_parser("list")
    args = parser.parse_args(argv)
    from firsttoken import FirstTokenError

    try:
        return _main(args)
    except FirstTokenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    os.chdir(ROOT)  # the slices name their data relative to the project root
    if args.cmd == "run":
        return run(args.model or MODELS, args.slice or list(SLICES))
    if args.cmd == "verify":
        return verify(args.model, args.slice, args.limit)
    if args.cmd == "list":
        for model in MODELS:
            for name in SLICES:
                print(shlex.join(command(model, name)))
        return 0
    text = render()
    (ROOT / "docs" / "results.md").write_text(text)
    print(f"wrote docs/results.md ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
