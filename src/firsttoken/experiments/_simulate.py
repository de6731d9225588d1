"""The sequential design simulated, no model: how often it decides wrongly, and after how many rows.

Arms have known accuracies and costs; a row is hard or easy for all arms at once (with probability
``rho`` an arm's outcome on a row uses the row's shared draw, else its own, so each arm keeps its
accuracy and outcomes correlate across arms as real layouts on one model do). Thousands of experiments
run at once (numpy, one array per pair of arms), each looking after every ``round`` rows as
``eval --until-decided`` does, with ``_confseq.decide`` on either the confidence sequences (``method``
"cs") or fixed-n normal intervals re-computed at every look ("naive", the common mistake).

A wrong decision: recommending an arm more than the margin below the best, or stopping an arm within
the margin of the best. Used by tests/test_sequential.py and bench/sequential.py.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np

from ._confseq import decide, diff_cs, pair_alpha, z_interval


def outcomes(rng: np.random.Generator, acc: list[float], rho: float, sims: int, rows: int) -> np.ndarray:
    """0/1 outcomes [sims, rows, arms]: arm a right with probability acc[a]; with probability ``rho`` an arm's
    outcome on a row comes from the row's shared draw, so outcomes correlate across arms."""
    shared = rng.random((sims, rows, 1))
    own = rng.random((sims, rows, len(acc)))
    use_shared = rng.random((sims, rows, len(acc))) < rho
    return (np.where(use_shared, shared, own) < np.asarray(acc, dtype=float)).astype(np.float32)


def simulate(acc: list[float], cost: list[float], margin: float = 0.02, alpha: float = 0.05, rho: float = 0.5,
             sims: int = 2000, max_rows: int = 2000, round_rows: int = 10, seed: int = 0,
             method: str = "cs") -> dict[str, Any]:
    k = len(acc)
    p = np.asarray(acc, dtype=float)
    x = outcomes(np.random.default_rng(seed), acc, rho, sims, max_rows)
    looks = np.arange(round_rows, max_rows + 1, round_rows) - 1  # the row index at each look
    a_pair = pair_alpha(alpha, k)
    pairs = list(combinations(range(k), 2))
    low_at, high_at = {}, {}
    for i, j in pairs:  # bounds on acc_i - acc_j at every look
        bounds = diff_cs(x[:, :, i], x[:, :, j], a_pair) if method == "cs" else z_interval(x[:, :, i], x[:, :, j], a_pair)
        low_at[i, j], high_at[i, j] = bounds[0][:, looks], bounds[1][:, looks]
    never = len(looks)
    stop_look = np.full((sims, k), never)  # the look at which each arm stopped (its pairs freeze there)
    decided_at = np.full(sims, never)
    pick = np.full(sims, -1)
    wrong = np.zeros(sims, dtype=bool)
    best = p.max()
    within = p >= best - margin - 1e-12  # arms it would be wrong to stop
    costs = np.broadcast_to(np.asarray(cost, dtype=float), (sims, k))
    everyone = np.arange(sims)
    for r in range(len(looks)):
        live = decided_at == never
        if not live.any():
            break
        low = np.full((sims, k, k), -1.0)
        high = np.full((sims, k, k), 1.0)
        for i, j in pairs:
            at = np.minimum(r, np.minimum(stop_look[:, i], stop_look[:, j]))
            lo, hi = low_at[i, j][everyone, at], high_at[i, j][everyone, at]
            low[:, i, j], high[:, i, j] = lo, hi
            low[:, j, i], high[:, j, i] = -hi, -lo
        stopped, chosen = decide(low, high, costs, margin)
        newly = stopped & (stop_look == never) & live[:, None]
        wrong |= (newly & within).any(axis=1)
        stop_look[newly] = r
        done = live & (chosen >= 0)
        decided_at[done] = r
        pick[done] = chosen[done]
    wrong |= (pick >= 0) & (p[np.maximum(pick, 0)] < best - margin - 1e-12)
    rows = np.where(decided_at < never, looks[np.minimum(decided_at, never - 1)] + 1, max_rows)
    rate = float(wrong.mean())
    decided = decided_at < never
    return {"method": method, "sims": sims, "wrong": rate, "mc_error": math.sqrt(max(rate * (1 - rate), 1e-12) / sims),
            "decided": float(decided.mean()),
            "median_rows": float(np.median(rows[decided])) if decided.any() else None,
            "picks": {int(a): int((pick == a).sum()) for a in range(k)}}
