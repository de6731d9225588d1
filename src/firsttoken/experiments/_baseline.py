"""The floor a label task's accuracy must clear: always answering its most common label (the majority class).

On spam data where 87% of the rows are "ham", an arm at 16.7% has not learned that spam is rare, and one at 87% may
have learned nothing else. So every label task's summary carries ``baseline``: the majority label and its accuracy
on the rows evaluated (the rows any arm answered), and the chance level of balanced accuracy (1 / the number of
labels). Each arm is compared with the majority answer on its own answered rows, paired (the same rows, a paired
bootstrap interval of the difference): ``above_majority`` only where that interval lies above 0. The
recommendation says so where its arm is not above, and ``note`` is the one line the CLI prints.

Does not handle: tasks without labels (no baseline: a number or free text has no majority class), weighted rows.
The majority label is chosen on the same rows it is scored on, which can only flatter the baseline.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from . import _stats


def majority(results: dict[str, list[dict]], labels: list[str]) -> dict[str, Any] | None:
    """The majority label of the rows any arm answered (ties: the first in ``labels``), its accuracy there, and
    balanced accuracy's chance level; None where no row was answered."""
    expected = {r["row_key"]: str(json.loads(r["expected"])) for rs in results.values() for r in rs
                if r["outcome"] != "backend_error"}
    if not expected:
        return None
    counts = Counter(expected.values())
    order = {label: i for i, label in enumerate(labels)}
    label = max(counts, key=lambda x: (counts[x], -order.get(x, len(order))))
    return {"majority_label": label, "majority_accuracy": counts[label] / len(expected), "rows": len(expected),
            "chance_balanced": 1 / len(labels) if labels else None}


def versus_majority(answered: list[dict], expected: list[str], label: str, seed: int = 0) -> dict[str, Any]:
    """An arm's accuracy minus the majority answer's, on the arm's answered rows (``expected``: their labels): the
    difference, its paired 95% bootstrap interval, and whether the arm is above (the interval's low end above 0)."""
    ours = [float(r["outcome"] == "correct") for r in answered]
    theirs = [float(e == label) for e in expected]
    diff, low, high = _stats.paired_bootstrap(ours, theirs, seed=seed)
    return {"vs_majority": diff, "vs_majority_low": low, "vs_majority_high": high,
            "above_majority": bool(answered) and low > 0}


def flag(summary: dict[str, Any], instructed: bool, described: bool) -> None:
    """Put the task's baseline findings in the summary: which arms are not above it, whether the prompt says what
    the labels mean, and the recommendation's reason where its arm (or every arm) is not above."""
    base = summary.get("baseline")
    if not base:
        return
    answered = [a for a in summary["arms"] if a["n"]]
    base["not_above"] = [a["id"] for a in answered if not a.get("above_majority")]
    base["instructed"], base["labels_described"] = instructed, described
    rec = summary["recommendation"]
    words = f"the majority baseline (always {base['majority_label']!r}: {base['majority_accuracy']:.1%})"
    if rec.get("arm") in base["not_above"]:
        rec["above_majority"] = False
        rec["reason"] += f". But {rec.get('label') or rec['arm']} is not above {words}"
    elif not rec.get("arm") and base["not_above"] and len(base["not_above"]) == len(answered):
        rec["reason"] += f". No arm is above {words}"


def note(summary: dict[str, Any]) -> str | None:
    """One line for the CLI where arms are not above the majority baseline (None otherwise); it suggests saying
    what the labels mean where the prompt does not."""
    base = summary.get("baseline")
    if not base or not base.get("not_above"):
        return None
    answered = sum(1 for a in summary["arms"] if a["n"])
    if base["majority_accuracy"] == 1:
        return (f"{summary['task']}: every one of the {base['rows']} rows has the label {base['majority_label']!r}: "
                "no arm can be above always answering it; add rows of the other labels to tell the arms apart")
    line = (f"{summary['task']}: {len(base['not_above'])} of {answered} arms are not above the majority baseline: "
            f"always answering {base['majority_label']!r} scores {base['majority_accuracy']:.1%} on these "
            f"{base['rows']} rows")
    if not base.get("labels_described") and not base.get("instructed"):
        line += ("; the prompt says only the labels' names: describe each label with --labels-file and the task "
                 "with --instructions")
    return line
