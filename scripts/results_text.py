"""Facts read from the stored replies of a slice: worked calculations against plans (numeric tasks), and
confusions and whether the reasoning named the right label (label tasks)."""

from __future__ import annotations

import json
import re
from collections import Counter

# "a op b = c", a unit word allowed after each number ("18 coins ÷ 3 = 6"), LaTeX's \times too.
CALC = re.compile(r"\d[\d.,]*(?:\s+[a-zA-Z]+)?\s*(?:[-+*/×÷]|\\times)\s*\$?\d[\d.,]*(?:\s+[a-zA-Z]+)?\s*=")


def thinks(arm: dict) -> bool:
    """Whether the arm's layout has a reasoning region: only those arms carry a thinking budget."""
    return arm["budget"] is not None


def analysis(db, summary) -> str:
    """Facts read from the stored replies: where reasoning was arithmetic and where it was a plan."""
    if summary.get("labels"):
        return _label_analysis(db, summary)
    lines = []
    for arm in summary["arms"]:  # arms that reasoned: a region, or reasoning in another form (a list of steps)
        rows = db.results(arm["id"])
        texts = [r["thoughts"] or "" for r in rows if r["outcome"] in ("correct", "wrong")]
        if not any(texts):
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
        if thinks(arm):
            named = sum(_names(r["thoughts"] or "", json.loads(r["expected"])) for r in wrong)
            line += (f" In {named} of the {len(wrong)} wrong replies the reasoning names the expected label and the "
                     f"answer still picks another.")
        lines.append(line)
    return ("Errors, read from the stored replies:\n\n" + "\n".join(lines) + "\n") if lines else ""


def _names(text: str, label: str) -> bool:
    words = re.escape(label.lower()).replace(r"\-", "[- ]").replace(r"\ ", "[- ]").replace("_", "[_ ]")
    return re.search(rf"\b{words}\b", text.lower()) is not None
