"""The HTML report's rows side by side: each data row once, every arm's reply beside the others.

Rows where the arms disagree (one right, another not) come first. A filter per compared pair of arms (the
summary's comparisons: arms that differ in one axis, such as two budgets of one layout) shows only the rows
where one of the two was right and the other was not: "where did thinking help, and where did it hurt?".
The filter is CSS alone (a radio button per choice and a rule hiding the other rows), so the page keeps no
scripts. Every piece of model text is escaped by the caller's ``e``.
Does not handle: more than ``MAX_PAIRS`` pairs (the first ones are offered).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import combinations
from typing import Any

from ._store import Store

MAX_PAIRS = 40


def side_by_side(summary: dict[str, Any], store: Store, e: Callable[[object], str], at: int,
                 max_rows: int = 500) -> str:
    """The section for one task's summary (``at``: its place on the page, so that ids stay unique)."""
    arms = summary["arms"]
    if not arms:
        return ""
    rows: dict[str, dict[str, Any]] = {}
    for a in arms:
        for r in store.results(a["id"]):
            row = rows.setdefault(r["row_key"], {"id": r["row_id"], "expected": r["expected"], "inputs": r["inputs"],
                                                 "arms": {}})
            row["arms"][a["id"]] = r
    short = _short_labels(arms)
    pairs = [(c["a"], c["b"]) for c in summary["comparisons"]]
    if not pairs:
        pairs = [(x["id"], y["id"]) for x, y in combinations(arms[:8], 2)]
    pairs = pairs[:MAX_PAIRS]

    def right(row: dict, arm: str) -> bool | None:
        r = row["arms"].get(arm)
        return None if r is None or r["outcome"] == "backend_error" else r["outcome"] == "correct"

    def classes(row: dict) -> list[str]:
        out = []
        for k, (a, b) in enumerate(pairs):
            ra, rb = right(row, a), right(row, b)
            if ra is not None and rb is not None and ra != rb:
                out.append(f"p{k}{'a' if ra else 'b'}")
        return out

    ordered = sorted(rows.values(), key=lambda row: not _disagree(row))  # stable: data order within each part
    shown = ordered[:max_rows]
    tagged = [(row, classes(row)) for row in shown]
    prefix = f"t{at}"
    css = "".join(f"#{prefix}p{k}{side}:checked~table tr.row:not(.p{k}{side}){{display:none}}"
                  for k in range(len(pairs)) for side in "ab")
    disagree = sum(_disagree(row) for row in rows.values())
    parts = [f"<h3>Rows side by side</h3><p>{len(rows)} rows, {disagree} where the arms disagree (one right, "
             f"another not), shown first{'' if len(shown) == len(rows) else f'; the first {len(shown)} shown'}. "
             "Show only the rows where one arm of a pair was right and the other was not:</p>",
             f"<style>{css}</style><div class='pairs'>",
             f"<input type='radio' name='{prefix}' id='{prefix}all' checked><label for='{prefix}all'>all rows</label>"]
    for k, (a, b) in enumerate(pairs):
        count_a = sum(f"p{k}a" in c for _, c in tagged)
        count_b = sum(f"p{k}b" in c for _, c in tagged)
        parts.append(f"<br><b>{e(short[a])}</b> vs <b>{e(short[b])}</b>: "
                     f"<input type='radio' name='{prefix}' id='{prefix}p{k}a'><label for='{prefix}p{k}a'>"
                     f"only the first right ({count_a})</label> "
                     f"<input type='radio' name='{prefix}' id='{prefix}p{k}b'><label for='{prefix}p{k}b'>"
                     f"only the second right ({count_b})</label>")
    parts.append("<table class='side'><tr><th>row</th><th>input</th><th>expected</th>"
                 + "".join(f"<th>{e(short[a['id']])}</th>" for a in arms) + "</tr>")
    for row, tags in tagged:
        cells = "".join(_cell(row["arms"].get(a["id"]), e) for a in arms)
        parts.append(f"<tr class='row {' '.join(tags)}'><td>{e(row['id'])}</td><td>{e(_inputs(row['inputs']))}</td>"
                     f"<td>{e(_value(row['expected']))}</td>{cells}</tr>")
    parts.append("</table></div>")
    return "\n".join(parts)


def _short_labels(arms: list[dict]) -> dict[str, str]:
    """Arm labels without the model where every arm has the same one (the page names it above)."""
    models = {a.get("name") or a["model"] for a in arms}
    if len(models) != 1:
        return {a["id"]: a["label"] for a in arms}
    head = f"{models.pop()} "
    return {a["id"]: a["label"][len(head):] if a["label"].startswith(head) else a["label"] for a in arms}


def _disagree(row: dict) -> bool:
    outcomes = {r["outcome"] == "correct" for r in row["arms"].values() if r["outcome"] != "backend_error"}
    return len(outcomes) > 1


def _cell(r: dict | None, e: Callable[[object], str]) -> str:
    if r is None:
        return "<td>–</td>"
    if r["outcome"] == "backend_error":
        return f"<td class='backend_error'>backend error<pre>{e(r['error'] or '')}</pre></td>"
    answer = r["outputs"] or ""
    if r["outcome"] == "parse_failure":
        answer = "parse failure"
    tokens = f"{r['reasoning_tokens'] or 0} + {r['answer_tokens'] or 0} tok"
    closed = " (budget-closed)" if r.get("closed_by") == "budget" else ""
    reasoning = r["thoughts"] or ""
    detail = reasoning if r["outcome"] != "parse_failure" else (r["raw"] or r["error"] or "")
    return (f"<td class='{e(r['outcome'])}'><b>{e(answer)}</b><br><small>{e(r['outcome'])}, {tokens}{closed}</small>"
            f"<details><summary>{'reasoning' if r['outcome'] != 'parse_failure' else 'raw reply'}</summary>"
            f"<pre>{e(detail)}</pre></details></td>")


def _inputs(inputs_json: str | None) -> str:
    if not inputs_json:
        return ""
    try:
        values = json.loads(inputs_json)
    except ValueError:
        return inputs_json[:200]
    text = " | ".join(str(v) for v in values.values()) if isinstance(values, dict) else str(values)
    return text if len(text) <= 200 else text[:199] + "…"


def _value(expected_json: str | None) -> str:
    if expected_json is None:
        return ""
    value = json.loads(expected_json)
    return value if isinstance(value, str) else json.dumps(value)
