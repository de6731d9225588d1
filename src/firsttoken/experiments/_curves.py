"""How much room to think: accuracy against the reasoning a budget really bought, and the curve's knee.

A curve is the arms that differ only in their thinking budget (same model, layout, syntax, constraint and
demos), two budgets or more, in budget order. Each point keeps its arm's accuracy and Wilson interval, the
reasoning tokens the rows actually used (a budget the model rarely reaches buys no more), the completion
tokens per row, and the share of rows the budget cut short (``budget_closed``).

The knee is the smallest budget whose accuracy is within ``margin`` of the curve's best budget: each
budget's paired difference from the best (rows both answered, percentile bootstrap) with the interval
widened family-wise over the curve's comparisons (Bonferroni: 95% for the curve as a whole), and the knee's
lower end above ``-margin``. A smaller budget whose interval spans ``-margin`` is ``undecided``: more rows
might move the knee down. The curve's comparisons are fixed-n; an ``--until-decided`` run's decision stays
the one its confidence sequences made.
Does not handle: budgets of different layouts on one curve (each layout is its own curve).
"""

from __future__ import annotations

from typing import Any

from . import _stats

CURVE_AXES = ("model", "layout", "syntax", "constrained", "demos")


def curves(stats: list[dict], results: dict[str, list[dict]], margin: float, seed: int = 0) -> list[dict[str, Any]]:
    """The summary's ``curves``: one per group of arms that differ only in their budget (two or more)."""
    groups: dict[tuple, list[dict]] = {}
    for s in stats:
        if s["budget"] is not None and s["n"] > 0:
            groups.setdefault(tuple(s[k] for k in CURVE_AXES), []).append(s)
    out = []
    for key, arms in groups.items():
        if len({a["budget"] for a in arms}) < 2:
            continue
        arms = sorted(arms, key=lambda a: a["budget"])
        out.append(_curve(dict(zip(CURVE_AXES, key)), arms, results, margin, seed))
    return out


def _curve(axes: dict, arms: list[dict], results: dict[str, list[dict]], margin: float, seed: int) -> dict:
    best = max(arms, key=lambda a: (a["accuracy"], -a["mean_completion_tokens"]))
    alpha = 0.05 / max(1, len(arms) - 1)  # family-wise over the curve's comparisons with its best
    points = []
    for a in arms:
        point = {"arm": a["id"], "label": a["label"], "budget": a["budget"], "n": a["n"], "accuracy": a["accuracy"],
                 "ci_low": a["ci_low"], "ci_high": a["ci_high"], "mean_reasoning_tokens": a["mean_reasoning_tokens"],
                 "mean_completion_tokens": a["mean_completion_tokens"], "budget_closed": a.get("budget_closed")}
        if a is best:
            point.update(diff_vs_best=0.0, vs_best_low=0.0, vs_best_high=0.0, non_inferior=True, inferior=False)
        else:
            vs = _stats.against_best(results[a["id"]], results[best["id"]], margin, seed, alpha)
            point.update(diff_vs_best=vs["diff"], vs_best_low=vs["low"], vs_best_high=vs["high"],
                         non_inferior=vs["non_inferior"], inferior=vs["inferior"])
        points.append(point)
    knee = next(p for p in points if p["non_inferior"])
    undecided = [p["budget"] for p in points if p["budget"] < knee["budget"] and not p["inferior"]]
    name = best["label"].rsplit(f" b{best['budget']}", 1)[0]  # the arm's label without its budget
    return {**axes, "name": name, "points": points, "best": best["budget"], "knee": knee["budget"],
            "knee_arm": knee["arm"], "undecided": undecided, "margin": margin, "family_alpha": 0.05,
            "rows": min(p["n"] for p in points)}


def knee_sentence(curve: dict[str, Any]) -> str:
    """One sentence: the knee of a curve, what it costs against the best budget, and whether it is settled."""
    points = {p["budget"]: p for p in curve["points"]}
    knee, best = points[curve["knee"]], points[curve["best"]]
    used = f"{knee['accuracy']:.1%}, {knee['mean_reasoning_tokens']:.0f} reasoning tokens a row"
    if knee is best:
        text = f"{curve['name']}: the knee is the best budget, {knee['budget']} ({used})"
    else:
        text = (f"{curve['name']}: the knee is budget {knee['budget']} ({used}), the smallest budget within "
                f"{curve['margin']:.0%} of the best, budget {best['budget']} ({best['accuracy']:.1%}, "
                f"{best['mean_reasoning_tokens']:.0f} reasoning tokens): {knee['diff_vs_best'] * 100:+.1f} points "
                f"({knee['vs_best_low'] * 100:+.1f} to {knee['vs_best_high'] * 100:+.1f}, family-wise 95%)")
    if curve["undecided"]:
        text += (f"; smaller budgets {', '.join(map(str, curve['undecided']))} are neither within the margin nor "
                 "shown worse: more rows could move the knee down")
    elif knee["budget"] == curve["points"][0]["budget"]:
        text += "; no budget is smaller"
    if best["budget"] == curve["points"][0]["budget"]:
        text += f"; no budget above {best['budget']} did better: more room to think bought nothing here"
    else:
        text += f"; every smaller budget is worse than the best by more than {curve['margin']:.0%}"
    return text + "."
