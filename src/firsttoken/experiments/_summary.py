"""From stored results to the numbers a user decides on: per arm, per pair, and a recommendation.

``n`` counts rows with a model reply (backend errors are excluded and reported on their own);
``accuracy`` = correct / n, parse failures counting as not correct; ``accuracy_parsed`` = correct / parsed.
Pairs are compared only where they differ in exactly one axis, on the rows both answered.
"""

from __future__ import annotations

import json
from itertools import combinations
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..tasks._files import default_instructions
from . import _baseline, _stats
from ._curves import curves, knee_sentence
from ._probe import UNVERIFIED
from ._store import Store

AXES = ("model", "layout", "syntax", "constrained", "budget")
MIN_ROWS = 20  # fewer paired rows than this and the recommendation is "inconclusive", whatever the intervals say


def enforcement(arm: dict) -> str:
    """What an arm's replies were held to: ``unconstrained`` (asked for none), ``prompt-only`` (a constraint
    was asked for, but the backend could not send it, or the probe saw it broken), ``unverified`` (the probe could
    not tell whether it held), ``unknown`` (stored before this was recorded), or what enforced it: ``llguidance``
    (in-process) or a server's schema mode (``gbnf``, ``lark``, ...)."""
    if not arm["constrained"]:
        return "unconstrained"
    if arm.get("enforced"):
        return arm["enforced"]
    config = arm.get("config") or {}
    if isinstance(config, str):
        config = json.loads(config or "{}")
    return "unknown" if "enforced" in config or "enforced" not in arm else "prompt-only"


def arm_label(arm: dict) -> str:
    """Model, layout, syntax, then what held the reply where it is not in-process llguidance: ``[gbnf]``,
    ``prompt-only``, ``unconstrained``; then the budget and demos."""
    budget = "" if arm["budget"] is None else f" b{arm['budget']}"
    held = enforcement(arm)
    mode = "" if held in ("llguidance", "unknown") else f" [{held}]" if _held(arm) else f" {held}"
    syntax = f"/{arm['syntax']}" if arm["syntax"] not in ("json", "lines") else ""
    demos = f" {arm['demos']}-shot" if arm.get("demos") else ""
    return f"{arm.get('name') or arm['model']} {arm['layout']}{syntax}{mode}{budget}{demos}"


class ArmStats(BaseModel):
    """One arm's numbers: the summary's ``arms`` (``--json`` prints every field; the report's tables choose
    theirs in ``_report.ARM_COLUMNS``). Fractions, not percentages; token counts are means per answered row."""

    model_config = ConfigDict(extra="forbid")

    id: str
    number: int  # the arm's place among the store's arms, all tasks (``--arm N``)
    label: str
    model: str  # the model's identity
    name: str | None = None  # what the run called it (--model SHORT=SPEC)
    layout: str
    syntax: str
    constrained: bool  # a constraint really held the replies (prompt-only arms are False)
    budget: int | None
    demos: int
    enforced: str  # see ``enforcement``
    n: int  # rows with a model reply
    correct: int
    accuracy: float
    ci_low: float  # Wilson 95%
    ci_high: float
    accuracy_parsed: float
    parse_failures: int
    backend_errors: int
    order_violations: int
    mean_prompt_tokens: float
    mean_reasoning_tokens: float
    mean_answer_tokens: float
    mean_completion_tokens: float
    seconds: float
    tokens_estimated: bool
    budget_closed: float | None = None  # arms with a budget: the share of answered rows whose reasoning the
    # budget closed rather than the model (censored: the model would have gone on thinking)
    macro_f1: float | None = None  # label tasks only (absent otherwise)
    macro_f1_low: float | None = None
    macro_f1_high: float | None = None
    balanced_accuracy: float | None = None  # label tasks only: the mean of the labels' recalls
    balanced_low: float | None = None
    balanced_high: float | None = None
    vs_majority: float | None = None  # label tasks: accuracy minus always answering the majority label (same rows)
    vs_majority_low: float | None = None  # its paired bootstrap 95% interval
    vs_majority_high: float | None = None
    above_majority: bool | None = None  # the interval lies above 0 (``_baseline``)


def arm_stats(arm: dict, results: list[dict], labels: list[str] | None, output: str | None,
              majority_label: str | None = None, seed: int = 0) -> dict:
    answered = [r for r in results if r["outcome"] != "backend_error"]
    n = len(answered)
    correct = sum(r["outcome"] == "correct" for r in answered)
    parsed = sum(r["outcome"] in ("correct", "wrong") for r in answered)
    low, high = _stats.wilson(correct, n)

    def mean(key: str) -> float:
        return sum(r[key] or 0 for r in answered) / n if n else 0.0

    row = {
        "id": arm["id"], "number": arm.get("number", 0), "label": arm_label(arm), **{k: arm[k] for k in AXES},
        "name": arm.get("name"),
        "demos": arm.get("demos") or 0,
        "enforced": enforcement(arm), "constrained": _held(arm),
        "n": n, "correct": correct, "accuracy": correct / n if n else 0.0, "ci_low": low, "ci_high": high,
        "accuracy_parsed": correct / parsed if parsed else 0.0, "parse_failures": n - parsed,
        "backend_errors": len(results) - n, "order_violations": sum(bool(r["order_violated"]) for r in answered),
        "mean_prompt_tokens": mean("prompt_tokens"), "mean_reasoning_tokens": mean("reasoning_tokens"),
        "mean_answer_tokens": mean("answer_tokens"), "seconds": sum(r["seconds"] or 0 for r in results),
        "tokens_estimated": any(r["estimated"] for r in answered),
    }
    row["mean_completion_tokens"] = row["mean_reasoning_tokens"] + row["mean_answer_tokens"]
    if arm["budget"] is not None:
        row["budget_closed"] = sum(r.get("closed_by") == "budget" for r in answered) / n if n else 0.0
    if labels and output:
        expected = [str(json.loads(r["expected"])) for r in answered]
        if majority_label is not None:
            row.update(_baseline.versus_majority(answered, expected, majority_label, seed))
        predicted = [_predicted(r, output) for r in answered]
        f1, f1_low, f1_high = _stats.label_interval(_stats.macro_f1, expected, predicted, labels)
        bal, bal_low, bal_high = _stats.label_interval(_stats.balanced_accuracy, expected, predicted, labels)
        row.update(macro_f1=f1, macro_f1_low=f1_low, macro_f1_high=f1_high, balanced_accuracy=bal,
                   balanced_low=bal_low, balanced_high=bal_high)
    return ArmStats(**row).model_dump(exclude_unset=True)


def _held(arm: dict) -> bool:
    """Whether a constraint really held the replies: a prompt-only arm is compared as what it is."""
    return bool(arm["constrained"]) and enforcement(arm) not in ("prompt-only", UNVERIFIED)


def _predicted(result: dict, output: str) -> str | None:
    if result["outcome"] not in ("correct", "wrong") or not result["outputs"]:
        return None
    value = json.loads(result["outputs"]).get(output)
    return None if value is None else str(value)


def compare(a: dict, b: dict, res_a: list[dict], res_b: list[dict], seed: int = 0) -> dict | None:
    """Paired difference a - b on the rows both answered, if the arms differ in exactly one axis."""
    a, b = {**a, "constrained": _held(a)}, {**b, "constrained": _held(b)}  # prompt-only is not constrained
    differing = [k for k in AXES if a[k] != b[k]
                 and not (k == "budget" and (a[k] is None or b[k] is None))  # no region: no budget
                 and not (k == "syntax" and a["layout"] != b["layout"])]  # each layout has its own syntaxes
    if len(differing) != 1 or a.get("demos", 0) != b.get("demos", 0):
        return None
    return {"a": a["id"], "b": b["id"], "a_label": arm_label(a), "b_label": arm_label(b), "axis": differing[0],
            **paired(res_a, res_b, seed)}


def paired(res_a: list[dict], res_b: list[dict], seed: int = 0) -> dict[str, Any]:
    """Accuracy a - b on the rows both answered, whatever else differs between the arms: n, diff, its paired
    bootstrap interval (ci_low, ci_high), the rows only a or only b got right, and the exact McNemar p."""
    xa, xb = _stats.paired_scores(res_a, res_b)
    diff, low, high = _stats.paired_bootstrap(xa, xb, seed=seed)
    a_only = sum(1 for x, y in zip(xa, xb) if x and not y)
    b_only = sum(1 for x, y in zip(xa, xb) if y and not x)
    return {"n": len(xa), "diff": diff, "ci_low": low, "ci_high": high, "a_only": a_only, "b_only": b_only,
            "p_value": _stats.mcnemar_exact(a_only, b_only)}


def versus(summary: dict[str, Any], arm_id: str, base_id: str) -> dict[str, Any] | None:
    """The summary's paired comparison of two arms, oriented as arm − base (None if they were not compared)."""
    c = next((c for c in summary["comparisons"] if {c["a"], c["b"]} == {arm_id, base_id}), None)
    if c is None:
        return None
    sign = 1 if c["a"] == arm_id else -1
    low, high = sorted((sign * c["ci_low"] + 0.0, sign * c["ci_high"] + 0.0))  # + 0.0: no "-0.0"
    return {**c, "diff": sign * c["diff"] + 0.0, "ci_low": low, "ci_high": high}


def recommend(stats: list[dict], results: dict[str, list[dict]], margin: float, seed: int = 0) -> dict:
    """The cheapest arm proven within ``margin`` of the most accurate one, or "inconclusive"."""
    live = [s for s in stats if s["n"] > 0]
    if not live:
        return {"status": "inconclusive", "arm": None, "reason": "no arm has any answered row"}
    best = max(live, key=lambda s: (s["accuracy"], -s["mean_completion_tokens"]))
    evidence = []
    for s in live:
        vs = _stats.against_best(results[s["id"]], results[best["id"]], margin, seed)
        evidence.append({"arm": s["id"], "label": s["label"], "n": vs["n"], "diff_vs_best": vs["diff"],
                         "ci_low": vs["low"], "ci_high": vs["high"],
                         "mean_completion_tokens": s["mean_completion_tokens"],
                         "non_inferior": s is best or vs["non_inferior"], "inferior": vs["inferior"]})
    base = {"best": best["id"], "best_label": best["label"], "margin": margin, "evidence": evidence}
    fewest = min(e["n"] for e in evidence)
    if len(live) > 1 and fewest < MIN_ROWS:
        return {**base, "status": "inconclusive", "arm": None, "label": None, "more_rows": MIN_ROWS - fewest,
                "reason": f"only {fewest} rows: too few to decide anything (at least {MIN_ROWS} needed); "
                          f"so far {best['label']} leads with {best['accuracy']:.1%}"}
    candidates = [e for e in evidence if e["non_inferior"]]
    pick = min(candidates, key=lambda e: e["mean_completion_tokens"])
    undecided = [e for e in evidence if e["mean_completion_tokens"] < pick["mean_completion_tokens"]
                 and not e["non_inferior"] and not e["inferior"]]
    if len(live) == 1:
        return {**base, "status": "single_arm", "arm": best["id"], "label": best["label"],
                "reason": "only one arm: nothing to compare"}
    if undecided:
        needs = [_stats.rows_to_decide(e["n"], e["diff_vs_best"], e["ci_low"], e["ci_high"], margin)
                 for e in undecided]
        more = None if any(x is None for x in needs) else max(needs) - min(e["n"] for e in undecided)
        cheaper = ", ".join(e["label"] for e in undecided)
        reason = (f"the data cannot tell whether the cheaper {cheaper} is within {margin:.0%} of "
                  f"{best['label']}: " + "; ".join(f"{e['diff_vs_best']:+.1%} [{e['ci_low']:+.1%}, {e['ci_high']:+.1%}]"
                                                      for e in undecided))
        reason += (f". About {max(more, 1)} more rows would likely decide it." if more is not None
                   else ". The difference sits on the margin: many more rows would be needed.")
        return {**base, "status": "inconclusive", "arm": None, "label": None, "more_rows": more, "reason": reason}
    chosen = next(e for e in evidence if e is pick)
    reason = (f"{chosen['label']} is the cheapest arm ({chosen['mean_completion_tokens']:.0f} completion tokens per row) "
              f"whose accuracy is proven within {margin:.0%} of the best ({best['label']}, {best['accuracy']:.1%})")
    if chosen["arm"] != best["id"]:
        reason += f": difference {chosen['diff_vs_best']:+.1%} [{chosen['ci_low']:+.1%}, {chosen['ci_high']:+.1%}]"
    cheaper_worse = [e for e in evidence if e["mean_completion_tokens"] < chosen["mean_completion_tokens"]]
    if cheaper_worse:
        reason += "; every cheaper arm is worse by more than the margin"
    return {**base, "status": "recommended", "arm": chosen["arm"], "label": chosen["label"], "reason": reason}


def summarize(store: Store, task: str, arm_ids: list[str] | None = None, row_keys: set[str] | None = None,
              margin: float = 0.02, seed: int = 0) -> dict[str, Any]:
    """The numbers for the task's arms (``arm_ids``: these only) on the rows of its current data
    (``row_keys``: these only); results for rows no longer in the data, or for an earlier version of a row,
    are left out (see ``Store.results``)."""
    run = store.last_run(task) or {"config": "{}"}
    config = json.loads(run["config"])
    labels, output = config.get("labels"), config.get("output")
    seq = config.get("sequential")  # the last run was `--until-decided`: its rows, its decision
    if seq is not None and row_keys is None:
        row_keys = set(seq["row_keys"])
    names = config.get("model_names") or {}  # SHORT=SPEC: what the last run called its models
    arms = [{**a, "name": names.get(a["model"])} for a in store.arms(task) if arm_ids is None or a["id"] in arm_ids]
    results = {a["id"]: [r for r in store.results(a["id"]) if row_keys is None or r["row_key"] in row_keys]
               for a in arms}
    base = _baseline.majority(results, labels) if labels and output else None
    numbers = {a["id"]: n for n, a in enumerate(store.arms(), 1)}
    stats = [arm_stats({**a, "number": numbers[a["id"]]}, results[a["id"]], labels, output,
                       base and base["majority_label"], seed) for a in arms]
    comparisons = [c for a, b in combinations(arms, 2)
                   if (c := compare(a, b, results[a["id"]], results[b["id"]], seed)) is not None]
    summary = {"task": task, "store": str(store.path), "margin": margin, "arms": stats, "comparisons": comparisons,
               "recommendation": recommend(stats, results, margin, seed), "labels": labels, "output": output,
               "difficulty": _by_difficulty(arms, results)}
    if config.get("probe"):  # what the last run's probe found of each server model
        summary["probe"] = config["probe"]
    if seq is not None and row_keys == set(seq["row_keys"]):
        _sequential_decision(summary, seq)
    if base is not None:
        summary["baseline"] = base
        _baseline.flag(summary, *_prompt_says(config))
    summary["curves"] = curves(stats, results, summary["margin"], seed)
    summary["recommendation"]["knees"] = [{"name": c["name"], "budget": c["knee"], "arm": c["knee_arm"],
                                           "sentence": knee_sentence(c)} for c in summary["curves"]]
    return summary


def _prompt_says(config: dict[str, Any]) -> tuple[bool, bool]:
    """Whether the run's prompt had instructions of the user's (not the fields' names alone) and label
    descriptions."""
    spec = config.get("signature") or {}
    given = spec.get("instructions") or ""
    default = default_instructions(list(spec.get("inputs") or []), config.get("output") or "")
    instructed = bool(given) and given != default
    return instructed, any((config.get("label_descriptions") or {}).values())


def _sequential_decision(summary: dict[str, Any], seq: dict[str, Any]) -> None:
    """Put an ``--until-decided`` run's decision (made on confidence sequences) in the summary, labelled."""
    labels = {a["id"]: a["label"] for a in summary["arms"]}
    block = {k: v for k, v in seq.items() if k != "row_keys"}
    block["arms"] = [{**a, "arm_label": labels.get(a["arm"], a["arm"])} for a in seq["arms"]]
    block["pairs"] = [{**p, "a_label": labels.get(p["a"], p["a"]), "b_label": labels.get(p["b"], p["b"])}
                      for p in seq["pairs"]]
    summary["sequential"] = block
    summary["margin"] = seq["margin"]
    summary["recommendation"] = {"status": seq["status"], "arm": seq["arm"], "label": labels.get(seq["arm"] or ""),
                                 "reason": seq["reason"], "margin": seq["margin"], "kind": seq["kind"]}


def _by_difficulty(arms: list[dict], results: dict[str, list[dict]]) -> dict[str, dict[str, list[float]]]:
    """Per arm: difficulty -> [correct, answered], where rows carry a difficulty."""
    out: dict[str, dict[str, list[float]]] = {}
    for a in arms:
        for r in results[a["id"]]:
            if r.get("difficulty") is None or r["outcome"] == "backend_error":
                continue
            cell = out.setdefault(a["id"], {}).setdefault(f"{r['difficulty']:g}", [0, 0])
            cell[0] += r["outcome"] == "correct"
            cell[1] += 1
    return out
