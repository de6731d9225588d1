"""Statistics for comparing arms: Wilson intervals, exact McNemar, paired bootstrap, macro-F1.

All functions are pure and deterministic (bootstrap takes a seed). Scores are 0/1 per row.
Does not handle: weighted rows, clustered rows, multiple-comparison correction (p-values are raw; an
interval's ``alpha`` is the caller's to split).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Z95 = 1.959963984540054
BOOTSTRAP_SAMPLES = 2000


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for a proportion; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (A right & B wrong, A wrong & B right)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_scores(res_a: list[dict], res_b: list[dict]) -> tuple[list[float], list[float]]:
    """0/1 correctness of two arms on the rows both answered (backend errors left out), in A's row order."""
    sa = {r["row_key"]: float(r["outcome"] == "correct") for r in res_a if r["outcome"] != "backend_error"}
    sb = {r["row_key"]: float(r["outcome"] == "correct") for r in res_b if r["outcome"] != "backend_error"}
    common = [k for k in sa if k in sb]
    return [sa[k] for k in common], [sb[k] for k in common]


def paired_bootstrap(a: Sequence[float], b: Sequence[float], seed: int = 0,
                     samples: int = BOOTSTRAP_SAMPLES, alpha: float = 0.05) -> tuple[float, float, float]:
    """Mean of a - b over paired rows, with a 1 - alpha (95%) percentile bootstrap interval (rows resampled)."""
    x = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(x) == 0:
        return 0.0, -1.0, 1.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(samples, len(x)))
    means = x[idx].mean(axis=1)
    low, high = np.percentile(means, [50 * alpha, 100 - 50 * alpha])
    return float(x.mean()), float(low), float(high)


def against_best(res: list[dict], res_best: list[dict], margin: float, seed: int = 0,
                 alpha: float = 0.05) -> dict[str, Any]:
    """An arm's paired difference from the best arm (rows both answered) with its bootstrap interval, and
    whether that interval puts it within ``margin`` of the best (low end above -margin) or below it by more
    (high end below -margin): the rule the recommendation and a curve's knee both judge arms by."""
    xa, xb = paired_scores(res, res_best)
    diff, low, high = paired_bootstrap(xa, xb, seed=seed, alpha=alpha)
    return {"n": len(xa), "diff": diff, "low": low, "high": high, "non_inferior": low > -margin,
            "inferior": high < -margin}


def macro_f1(expected: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str]) -> float:
    """Macro-averaged F1 over ``labels``; a missing prediction (None) is wrong for every label."""
    scores = []
    for label in labels:
        tp = sum(1 for e, p in zip(expected, predicted) if e == label and p == label)
        fp = sum(1 for e, p in zip(expected, predicted) if e != label and p == label)
        fn = sum(1 for e, p in zip(expected, predicted) if e == label and p != label)
        if tp + fp + fn == 0:
            continue  # label absent from both: it says nothing about this sample
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def balanced_accuracy(expected: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str]) -> float:
    """The mean over ``labels`` of each one's recall (right / expected), labels absent from ``expected`` left out:
    accuracy that a majority label cannot inflate (80/20 data answered all-majority scores 0.5)."""
    recalls = []
    for label in labels:
        total = sum(1 for e in expected if e == label)
        if total:
            recalls.append(sum(1 for e, p in zip(expected, predicted) if e == label and p == label) / total)
    return float(np.mean(recalls)) if recalls else 0.0


def label_interval(metric: Callable[..., float], expected: Sequence[str], predicted: Sequence[str | None],
                   labels: Sequence[str], seed: int = 0, samples: int = 500) -> tuple[float, float, float]:
    """A label metric (``macro_f1``, ``balanced_accuracy``) with a 95% bootstrap interval over rows."""
    point = metric(expected, predicted, labels)
    if not expected:
        return point, 0.0, 1.0
    rng = np.random.default_rng(seed)
    n = len(expected)
    values = []
    for _ in range(samples):
        idx = rng.integers(0, n, size=n)
        values.append(metric([expected[i] for i in idx], [predicted[i] for i in idx], labels))
    low, high = np.percentile(values, [2.5, 97.5])
    return point, float(low), float(high)


def rows_to_decide(n: int, diff: float, low: float, high: float, margin: float) -> int | None:
    """About how many rows in total would put the interval clear of -margin (None: effectively never).

    The interval's half-width shrinks like 1/sqrt(n); the difference is assumed to stay where it is.
    """
    half = (high - low) / 2
    gap = abs(diff + margin)
    if n == 0 or gap < 1e-9:
        return None
    needed = math.ceil(n * (half / gap) ** 2)
    return needed if needed < 10 ** 7 else None
