"""Reports from a summary: Markdown (terminal, docs) and one self-contained HTML page.

Every piece of model text is escaped (``html.escape``); plots are PNGs embedded as data URIs; the page
has no scripts and loads nothing.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._text import html_safe
from ._probe import UNVERIFIED
from ._side_by_side import side_by_side
from ._store import Store


def pct(x: float) -> str:
    return f"{x * 100:.1f}%"


@dataclass(frozen=True)
class Column:
    """One column of the arms table, in Markdown and HTML alike: its title and its cell's text for an arm;
    ``when``: shown only for summaries it holds for. A new statistic is a value in ``_summary.ArmStats`` and a
    line here (``--json`` prints every ArmStats field already)."""

    title: str
    cell: Callable[[dict[str, Any]], str]
    when: Callable[[dict[str, Any]], bool] = lambda summary: True


ARM_COLUMNS = (
    Column("#", lambda a: str(a["number"])),  # the store's number of the arm: `--arm N` in show, predict, export
    Column("arm", lambda a: a["label"]),
    Column("n", lambda a: str(a["n"])),
    Column("accuracy (95% CI)", lambda a: f"{pct(a['accuracy'])} ({pct(a['ci_low'])}–{pct(a['ci_high'])})"),
    Column("parsed acc.", lambda a: pct(a["accuracy_parsed"])),
    Column("parse fail", lambda a: str(a["parse_failures"])),
    Column("backend err", lambda a: str(a["backend_errors"])),
    Column("reasoning tok", lambda a: f"{a['mean_reasoning_tokens']:.0f}"),
    Column("answer tok", lambda a: f"{a['mean_answer_tokens']:.0f}"),
    Column("budget-closed", lambda a: pct(a["budget_closed"]) if a.get("budget_closed") is not None else "–",
           when=lambda summary: any(a.get("budget_closed") is not None for a in summary["arms"])),
    Column("macro-F1 (95% CI)", lambda a: f"{a['macro_f1']:.3f} ({a['macro_f1_low']:.3f}–{a['macro_f1_high']:.3f})"
           if "macro_f1" in a else "–", when=lambda summary: bool(summary.get("labels"))),
    Column("balanced acc. (95% CI)", lambda a: f"{pct(a['balanced_accuracy'])} ({pct(a['balanced_low'])}–"
           f"{pct(a['balanced_high'])})" if "balanced_accuracy" in a else "–",
           when=lambda summary: bool(summary.get("labels"))),
    Column("vs majority (95% CI)", lambda a: "–" if a.get("vs_majority") is None else
           f"{a['vs_majority'] * 100:+.1f} ({a['vs_majority_low'] * 100:+.1f} to {a['vs_majority_high'] * 100:+.1f})"
           + ("" if a.get("above_majority") else " NOT ABOVE"), when=lambda summary: bool(summary.get("baseline"))),
)


def notes(summary: dict[str, Any]) -> list[str]:
    """The sentences under the arms table that keep it from misleading: the baseline, unverified arms."""
    out = []
    base = summary.get("baseline")
    if base:
        out.append(f"Baseline: always answering {base['majority_label']!r} (the majority label) scores "
                   f"{pct(base['majority_accuracy'])} on these {base['rows']} rows; balanced accuracy's chance level "
                   f"is {pct(base['chance_balanced'])}. \"vs majority\" is an arm's accuracy minus that answer's on "
                   "the rows it answered, in points (paired); NOT ABOVE: its interval does not lie above 0.")
    unverified = [a["label"] for a in summary["arms"] if a.get("enforced") == UNVERIFIED]
    if unverified:
        out.append(f"Unverified: the probe could not tell whether the constraint of {', '.join(unverified)} reached "
                   "the model (its reply was cut twice, or its request failed: see the probe's table); they are "
                   "compared as unconstrained, never as enforced.")
    return out


def arm_columns(summary: dict[str, Any]) -> list[Column]:
    return [c for c in ARM_COLUMNS if c.when(summary)]


def markdown(summary: dict[str, Any]) -> str:
    columns = arm_columns(summary)
    lines = [f"## {summary['task']}", "", "| " + " | ".join(c.title for c in columns) + " |",
             "|" + "---|" * len(columns)]
    for a in summary["arms"]:
        lines.append("| " + " | ".join(c.cell(a) for c in columns) + " |")
    for sentence in notes(summary):
        lines += ["", sentence]
    if any(a["tokens_estimated"] for a in summary["arms"]):
        lines += ["", "Token counts of some arms are estimates (not counted during generation)."]
    if summary["comparisons"]:
        lines += ["", "Paired differences (A − B, rows both answered; 95% paired-bootstrap CI; exact McNemar):", "",
                  "| A | B | differs in | n | A − B (95% CI) | only A right | only B right | p |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in summary["comparisons"]:
            lines.append(f"| {c['a_label']} | {c['b_label']} | {c['axis']} | {c['n']} | {c['diff'] * 100:+.1f} pts "
                         f"({c['ci_low'] * 100:+.1f} to {c['ci_high'] * 100:+.1f}) | {c['a_only']} | {c['b_only']} | "
                         f"{c['p_value']:.3g} |")
    for curve in summary.get("curves") or []:
        lines += ["", *curve_table(curve)]
    seq = summary.get("sequential")
    if seq:
        lines += ["", "The intervals above are fixed-n ones, for reading; under optional stopping they are not valid "
                  "for deciding. The decision below uses anytime-valid confidence sequences (empirical Bernstein, "
                  f"Waudby-Smith & Ramdas 2023; alpha {seq['alpha']:g}, split over the pairs: {seq['pair_alpha']:.3g} "
                  "each), valid however long the run went on:", "",
                  "| arm | rows | accuracy (confidence sequence) | completion tokens | stopped after |",
                  "|---|---|---|---|---|"]
        for a in seq["arms"]:
            stopped = "" if a["stopped_after"] is None else f"{a['stopped_after']} rows"
            lines.append(f"| {a['arm_label']} | {a['n']} | {pct(a['accuracy'])} ({pct(a['cs_low'])}–{pct(a['cs_high'])}) "
                         f"| {a['tokens']} | {stopped} |")
        for p in seq["pairs"]:
            lines.append(f"\n{p['a_label']} − {p['b_label']}: {p['diff'] * 100:+.1f} pts on {p['n']} paired rows, "
                         f"confidence sequence {p['cs_low'] * 100:+.1f} to {p['cs_high'] * 100:+.1f}")
        spent = f"{seq['rows']} rows, {seq['tokens']} completion tokens"
        fixed = (f"; a fixed-n design knowing the observed difference in advance would have planned about "
                 f"{seq['fixed_n']} rows (80% power)" if seq.get("fixed_n") else "")
        lines += ["", f"Spent: {spent}{fixed}."]
    for model, findings in (summary.get("probe") or {}).items():
        lines += ["", f"Probe of {model} (what it really enforced; arms are labelled as found):", "",
                  "| check | layout | outcome | detail |", "|---|---|---|---|"]
        lines += [f"| {f['check']} | {f['layout']} | {f['outcome']} | {f['detail']} |" for f in findings]
    rec = summary["recommendation"]
    verdict = {"recommended": f"**Recommendation: {rec.get('label')}.**", "single_arm": "**One arm only.**",
               "inconclusive": "**Recommendation: inconclusive.**"}[rec["status"]]
    lines += ["", f"{verdict} {rec['reason']}", ""]
    lines += [f"Knee of {k['sentence']}" for k in rec.get("knees") or []] + ([""] if rec.get("knees") else [])
    return "\n".join(lines)


CURVE_HEADER = ["budget", "reasoning tok used", "completion tok", "budget-closed", "accuracy (95% CI)",
                "vs best (CI)", ""]


def curve_rows(curve: dict[str, Any]) -> tuple[str, list[list[str]]]:
    """How much thinking one layout needs: a title, and each budget's accuracy against the reasoning tokens it
    really used (cells under ``CURVE_HEADER``), for Markdown and HTML alike."""
    title = (f"How much thinking, {curve['name']} ({curve['rows']} rows): accuracy against the reasoning tokens "
             f"actually used; each budget against the best (budget {curve['best']}), paired, family-wise 95%")
    rows = []
    for p in curve["points"]:
        marks = [m for m, on in (("knee", p["budget"] == curve["knee"]), ("best", p["budget"] == curve["best"]),
                                 ("undecided", p["budget"] in curve["undecided"])) if on]
        vs = "–" if p["budget"] == curve["best"] else \
            f"{p['diff_vs_best'] * 100:+.1f} ({p['vs_best_low'] * 100:+.1f} to {p['vs_best_high'] * 100:+.1f})"
        closed = pct(p["budget_closed"]) if p.get("budget_closed") is not None else "–"
        rows.append([str(p["budget"]), f"{p['mean_reasoning_tokens']:.0f}", f"{p['mean_completion_tokens']:.0f}",
                     closed, f"{pct(p['accuracy'])} ({pct(p['ci_low'])}–{pct(p['ci_high'])})", vs, ", ".join(marks)])
    return title, rows


def curve_table(curve: dict[str, Any]) -> list[str]:
    title, rows = curve_rows(curve)
    return [f"{title}:", "", "| " + " | ".join(CURVE_HEADER) + " |", "|" + "---|" * len(CURVE_HEADER),
            *("| " + " | ".join(r) + " |" for r in rows)]


def _figure_png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plots(summary: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = summary["arms"]
    out: dict[str, str] = {}
    if not arms:
        return out
    labels = [a["label"] for a in arms]
    acc = [a["accuracy"] for a in arms]
    err = [[max(0.0, a["accuracy"] - a["ci_low"]) for a in arms], [max(0.0, a["ci_high"] - a["accuracy"]) for a in arms]]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(arms) + 1))
    ax.barh(range(len(arms)), acc, xerr=err, color="#4c78a8", capsize=3)
    ax.set_yticks(range(len(arms)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (95% Wilson interval)")
    out["Accuracy per arm"] = _figure_png(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for a in arms:
        ax.errorbar(a["mean_completion_tokens"], a["accuracy"],
                    yerr=[[max(0.0, a["accuracy"] - a["ci_low"])], [max(0.0, a["ci_high"] - a["accuracy"])]],
                    fmt="o", capsize=3)
        ax.annotate(a["label"], (a["mean_completion_tokens"], a["accuracy"]), fontsize=7, xytext=(4, 2),
                    textcoords="offset points")
    ax.set_xlabel("mean completion tokens per row (the price of thinking)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    out["Accuracy against tokens"] = _figure_png(fig)

    if summary.get("curves"):
        fig, ax = plt.subplots(figsize=(7, 4))
        for curve in summary["curves"]:
            pts = curve["points"]
            xs, ys = [q["mean_reasoning_tokens"] for q in pts], [q["accuracy"] for q in pts]
            err = [[max(0.0, q["accuracy"] - q["ci_low"]) for q in pts],
                   [max(0.0, q["ci_high"] - q["accuracy"]) for q in pts]]
            line = ax.errorbar(xs, ys, yerr=err, fmt="o-", capsize=3, label=curve["name"])
            for q in pts:
                ax.annotate(f"b{q['budget']}", (q["mean_reasoning_tokens"], q["accuracy"]), fontsize=7,
                            xytext=(4, -10), textcoords="offset points")
            knee = next(q for q in pts if q["budget"] == curve["knee"])
            ax.plot([knee["mean_reasoning_tokens"]], [knee["accuracy"]], marker="*", markersize=16,
                    color=line[0].get_color(), markeredgecolor="black", linestyle="none")
        ax.set_xlabel("reasoning tokens actually used per row (budget bN; star: the knee)")
        ax.set_ylabel("accuracy (95% Wilson interval)")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
        out["How much thinking: accuracy against reasoning tokens used"] = _figure_png(fig)

    if summary.get("difficulty"):
        fig, ax = plt.subplots(figsize=(7, 4))
        by_id = {a["id"]: a["label"] for a in arms}
        for arm_id, cells in summary["difficulty"].items():
            xs = sorted(cells, key=float)
            ax.plot([float(x) for x in xs], [cells[x][0] / cells[x][1] for x in xs], "o-", label=by_id.get(arm_id))
        ax.set_xlabel("difficulty")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
        out["Accuracy against difficulty"] = _figure_png(fig)

    if summary["comparisons"]:
        idx = {a["id"]: i for i, a in enumerate(arms)}
        import numpy as np

        grid = np.full((len(arms), len(arms)), np.nan)
        for c in summary["comparisons"]:
            grid[idx[c["a"]], idx[c["b"]]] = c["diff"] * 100
            grid[idx[c["b"]], idx[c["a"]]] = -c["diff"] * 100
        fig, ax = plt.subplots(figsize=(0.5 * len(arms) + 3, 0.5 * len(arms) + 2))
        lim = max(1.0, float(np.nanmax(np.abs(grid))) if not np.all(np.isnan(grid)) else 1.0)
        im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim)
        ax.set_xticks(range(len(arms)), [str(a["number"]) for a in arms], fontsize=7)
        ax.set_yticks(range(len(arms)), [f"{a['number']} {a['label']}" for a in arms], fontsize=7)
        fig.colorbar(im, label="row − column, accuracy points (pairs differing in one axis)")
        out["Paired differences"] = _figure_png(fig)
    return out


def html_page(summaries: list[dict[str, Any]], store: Store, max_rows: int = 500) -> str:
    def e(value: object) -> str:  # escaped, and without the C0 controls HTML cannot carry
        return html.escape(html_safe(str(value)))

    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>firsttoken report</title><style>",
             "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}pre{white-space:pre-wrap;margin:0;"
             "max-height:12em;overflow:auto}.correct{background:#e8f5e9}.wrong{background:#fff3e0}"
             ".parse_failure{background:#fde7e9}.backend_error{background:#eee}table.side td{max-width:24em}"
             ".pairs label{margin-right:1em;font-size:13px}</style></head><body>",
             "<h1>firsttoken report</h1>", f"<p>Store: {e(str(store.path))}</p>"]
    for at, s in enumerate(summaries):
        columns = arm_columns(s)
        parts.append(f"<h2>Task {e(s['task'])}</h2><table><tr>" + "".join(f"<th>{e(c.title)}</th>" for c in columns)
                     + "</tr>")
        for a in s["arms"]:
            parts.append("<tr>" + "".join(f"<td>{e(c.cell(a))}</td>" for c in columns) + "</tr>")
        parts.append("</table>")
        parts += [f"<p>{e(sentence)}</p>" for sentence in notes(s)]
        for model, findings in (s.get("probe") or {}).items():
            parts.append(f"<h3>Probe of {e(model)}</h3><table><tr><th>check</th><th>layout</th><th>outcome</th>"
                         "<th>detail</th></tr>" + "".join(
                             f"<tr><td>{e(f['check'])}</td><td>{e(f['layout'])}</td><td>{e(f['outcome'])}</td>"
                             f"<td>{e(f['detail'])}</td></tr>" for f in findings) + "</table>")
        rec = s["recommendation"]
        parts.append(f"<p><b>Recommendation ({e(rec['status'])}):</b> {e(rec['reason'])}</p>")
        parts += [f"<p>Knee of {e(k['sentence'])}</p>" for k in rec.get("knees") or []]
        for curve in s.get("curves") or []:
            title, rows = curve_rows(curve)
            parts.append(f"<p>{e(title)}</p><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in CURVE_HEADER) + "</tr>"
                         + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
                         + "</table>")
        seq = s.get("sequential")
        if seq:
            parts.append("<p>The table's intervals are fixed-n (for reading). The decision used " + e(seq["kind"]) +
                         f", alpha {seq['alpha']:g}: " + "; ".join(
                             f"{e(a['arm_label'])} {pct(a['accuracy'])} ({pct(a['cs_low'])}–{pct(a['cs_high'])}) on "
                             f"{a['n']} rows, {a['tokens']} tokens" for a in seq["arms"]) + "</p>")
        if s["comparisons"]:
            parts.append("<h3>Paired differences</h3><table><tr><th>A</th><th>B</th><th>axis</th><th>n</th>"
                         "<th>A − B</th><th>95% CI</th><th>p (McNemar)</th></tr>")
            for c in s["comparisons"]:
                parts.append(f"<tr><td>{e(c['a_label'])}</td><td>{e(c['b_label'])}</td><td>{e(c['axis'])}</td>"
                             f"<td>{c['n']}</td><td>{c['diff'] * 100:+.1f}</td><td>{c['ci_low'] * 100:+.1f} to "
                             f"{c['ci_high'] * 100:+.1f}</td><td>{c['p_value']:.3g}</td></tr>")
            parts.append("</table>")
        for title, uri in plots(s).items():
            parts.append(f"<h3>{e(title)}</h3><img alt='{e(title)}' src='{uri}'>")
        parts.append(side_by_side(s, store, e, at, max_rows))
    parts.append("</body></html>")
    return "\n".join(parts)
