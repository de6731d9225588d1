"""``eval --until-decided``: rows in a seeded random order, in rounds, until the recommendation is decided.

Every live arm runs the same rows (paired). After each round: an anytime-valid confidence sequence
(``_confseq``) for each paired difference, alpha split over the k(k-1)/2 pairs; an arm proven worse than
another by more than the margin stops being run (its rows stay in the store and the report); the run
stops when ``_confseq.decide`` picks an arm, or when the rows, ``max_rows`` or ``max_tokens`` run out
("inconclusive after N rows", with the current intervals). A round is as many rows as the backend runs at
once (its ``parallel``), for every live arm. Resumable: the order and the looks are the same on a
rerun, so stored rows replay the same decisions without a call and the run continues where it stopped.
An open-ended task (``arithmetic`` without a count) draws its rows as they are used and records them in
the store's current data. Does not handle: several processes running one sequence at once.
"""

from __future__ import annotations

import random
from itertools import combinations
from typing import Any

import numpy as np

from . import _confseq
from ._config import EvalConfig
from ._store import Store
from ._summary import arm_label
from ..tasks import Row, Task


def run_until_decided(runner: Any, arms: list[Any], task: Task, db: Store, config: EvalConfig) -> dict[str, Any]:
    """Run the sequence; returns the ``sequential`` block of the summary (and the row keys used). ``runner(arms,
    rows)`` runs and records rows, returning their results; ``runner.parallel(model)`` is a model's round."""
    margin, alpha, max_rows, max_tokens = config.margin, config.alpha, config.max_rows, config.max_tokens
    seed, limit, sample = config.seed, config.limit, config.sample
    order: list[Row] = []
    if not task.open_ended:
        order = list(task.rows(limit=limit, sample=sample, seed=seed))  # a copy: the task's rows keep their order
        random.Random(seed).shuffle(order)
        db.set_rows(task.name, order)
    else:
        db.set_rows(task.name, [])
    cap = min(x for x in (max_rows, limit, None if task.open_ended else len(order), 10 ** 9) if x is not None)
    # arm id -> row key -> (score, tokens, the row content they were scored for); stored ones first
    state: dict[str, dict[str, Any]] = {a.id: {} for a in arms}
    for a in arms:
        for r in db.outcomes(a.id):
            state[a.id][r["row_key"]] = (float(r["outcome"] == "correct"), _tokens(r), r["row_hash"])
    stopped: dict[str, int] = {}  # arm id -> rows used when it stopped
    used = 0
    while True:
        look = _look(arms, order[:used], state, stopped, margin, alpha)
        spent = look["tokens"]
        why = ("decided" if look["pick"] is not None else
               "rows" if used >= cap else
               "tokens" if max_tokens is not None and spent >= max_tokens else None)
        if why:
            return _block(look, arms, used, why, margin, alpha, stopped, max_rows, max_tokens, order[:used])
        for arm_id in look["stopped"]:  # proven worse by more than the margin: no more rows (one arm runs on)
            if arm_id in stopped or len(stopped) < len(arms) - 1:
                stopped.setdefault(arm_id, used)
        live = [a for a in arms if a.id not in stopped]
        # a round: as many rows as the backend runs at once, for every live arm: a batching backend's slots
        # stay full while one arm's rows finish (rounds are barriers: a smaller round idles the slots)
        step = min(runner.parallel(a.model) for a in live)
        take = min(step, cap - used)
        if task.open_ended:
            fresh = task.draw(used + take)[used:]
            db.add_rows(task.name, fresh, used)
            order += fresh
        rows = order[used: used + take]
        if not rows:
            return _block(look, arms, used, "rows", margin, alpha, stopped, max_rows, max_tokens, order[:used])
        for model in dict.fromkeys(a.model for a in live):
            for result in runner([a for a in live if a.model == model], rows):  # noqa: B023 (used now)
                if result["outcome"] != "backend_error":
                    state[result["arm_id"]][result["row_key"]] = (float(result["outcome"] == "correct"),
                                                                  _tokens(result), result["row_hash"])
        used += len(rows)


def _tokens(r: dict) -> int:
    return (r.get("reasoning_tokens") or 0) + (r.get("answer_tokens") or 0)


def _look(arms: list[Any], rows: list[Row], state: dict, stopped: dict[str, int], margin: float,
          alpha: float) -> dict[str, Any]:
    """The confidence sequences and the decision on the rows so far."""
    k = len(arms)
    a_pair = _confseq.pair_alpha(alpha, k)
    low, high = np.full((k, k), -1.0), np.full((k, k), 1.0)
    np.fill_diagonal(low, 0.0)
    np.fill_diagonal(high, 0.0)
    pairs = []
    current = {r.key: r.hash for r in rows}
    state = {arm_id: {key: v for key, v in per.items() if current.get(key) == v[2]} for arm_id, per in state.items()}
    for i, j in combinations(range(k), 2):
        si, sj = state[arms[i].id], state[arms[j].id]
        both = [r.key for r in rows if r.key in si and r.key in sj]
        if not both:
            continue
        xa = np.array([si[key][0] for key in both])
        xb = np.array([sj[key][0] for key in both])
        lo, hi = _confseq.diff_cs(xa, xb, a_pair)
        low[i, j], high[i, j] = lo[-1], hi[-1]
        low[j, i], high[j, i] = -hi[-1], -lo[-1]
        d = xa - xb
        pairs.append({"a": arms[i].id, "b": arms[j].id, "n": len(both), "diff": float(d.mean()),
                      "cs_low": float(lo[-1]), "cs_high": float(hi[-1]), "sd": float(d.std(ddof=1)) if len(d) > 1 else 0.0})
    cost = np.array([np.mean([v[1] for v in state[a.id].values()] or [0.0]) for a in arms])
    was = np.array([a.id in stopped for a in arms])
    stop, pick = _confseq.decide(low, high, cost, margin)
    stop = stop | was
    arm_rows = []
    for i, a in enumerate(arms):
        scores = np.array([state[a.id][r.key][0] for r in rows if r.key in state[a.id]])
        lo, hi = _confseq.eb_cs(scores, alpha / k) if len(scores) else (np.array([0.0]), np.array([1.0]))
        arm_rows.append({"arm": a.id, "n": len(scores), "accuracy": float(scores.mean()) if len(scores) else 0.0,
                         "cs_low": float(lo[-1]), "cs_high": float(hi[-1]), "mean_completion_tokens": float(cost[i]),
                         "tokens": int(sum(v[1] for v in state[a.id].values()))})
    chosen = int(pick) if int(pick) >= 0 and not stop[int(pick)] else None
    return {"rows": len(rows), "pairs": pairs, "arms": arm_rows, "pick": chosen,
            "tokens": sum(a["tokens"] for a in arm_rows),
            "stopped": [a.id for i, a in enumerate(arms) if stop[i]]}


def _block(look: dict, arms: list[Any], used: int, why: str, margin: float, alpha: float, stopped: dict[str, int],
           max_rows: int | None, max_tokens: int | None, rows: list[Row]) -> dict[str, Any]:
    """The summary's ``sequential`` block: the decision (or why there is none), the intervals, the spend."""
    for a in look["arms"]:
        a["stopped_after"] = stopped.get(a["arm"], look["rows"] if a["arm"] in look["stopped"] else None)
    a_pair = _confseq.pair_alpha(alpha, len(arms))
    fixed = []
    cost = {a["arm"]: a["mean_completion_tokens"] for a in look["arms"]}
    for p in look["pairs"]:  # what a fixed-n design, knowing this difference in advance, would have planned
        fixed.append(_confseq.pair_fixed_n(p["diff"], p["sd"], cost[p["a"]], cost[p["b"]], margin, a_pair))
    pick = look["pick"]
    if why == "decided":
        status = "recommended"
        reason = (f"decided after {used} rows: {arm_label(arms[pick].record())} is the cheapest arm proven within {margin:.0%} of "
                  "every arm still running; the arms it was compared with are either proven worse by more than "
                  "the margin or no more than the margin better")
    else:
        limit = {"rows": f"the rows ran out ({used})" if max_rows is None or used < max_rows
                 else f"--max-rows {max_rows} was reached",
                 "tokens": f"--max-tokens {max_tokens} was reached"}[why]
        status = "inconclusive"
        reason = f"inconclusive after {used} rows: {limit} before the intervals decided"
    return {"kind": "anytime-valid confidence sequences (empirical Bernstein, Waudby-Smith & Ramdas 2023)",
            "alpha": alpha, "pair_alpha": a_pair, "margin": margin, "rows": used, "status": status,
            "arm": arms[pick].id if pick is not None else None, "reason": reason, "arms": look["arms"],
            "pairs": look["pairs"], "tokens": look["tokens"],
            "fixed_n": max((f for f in fixed if f is not None), default=None),
            "row_keys": [r.key for r in rows]}
