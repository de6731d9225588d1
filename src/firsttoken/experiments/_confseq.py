"""Anytime-valid confidence sequences for bounded means, and the sequential decision made on them.

A confidence sequence (CS) at level alpha is a sequence of intervals that holds the true mean at *every*
sample size at once with probability >= 1 - alpha, so an experiment may look after every row and stop
whenever it likes. A fixed-n interval looked at repeatedly does not: its error rate grows with the looks.

``eb_cs``: the predictable plug-in empirical-Bernstein CS (PrPl-EB) of Waudby-Smith & Ramdas (2023),
"Estimating means of bounded random variables by betting", JRSS-B 86(1), Theorem 2 (eq. 13-15), for
observations in [0, 1]; two one-sided bounds at alpha/2 each, and the running intersection. The bets
lambda_t = min(c, sqrt(2 log(2/alpha) / (sigma2_{t-1} t log(1 + t)))) use the regularised mean and
variance (1/2 and 1/4 as one prior observation); the variance increments use the running mean of the
rows before (0 before any), as the authors' reference code (``confseq.predmix``) does.
``diff_cs``: the same for the mean of paired differences a - b in [-1, 1] (mapped to (d + 1) / 2).

``decide``: the recommendation rule users know, on such bounds, vectorised over experiments (the
simulation in tests/test_sequential.py and bench/sequential.py run thousands at once; the runner one).
Does not handle: observations outside [0, 1] (partial-credit scores must be scaled first).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

TRUNCATION = 0.5  # the paper's suggested c


def eb_cs(x: np.ndarray, alpha: float, truncation: float = TRUNCATION,
          intersect: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper confidence sequences for the mean of ``x`` (values in [0, 1], time on the last axis),
    valid at every time at once with probability >= 1 - alpha; running intersections (unless ``intersect``
    is False), clipped to [0, 1]."""
    x = np.asarray(x, dtype=float)
    low = _lower(x, alpha / 2, truncation)
    high = 1 - _lower(1 - x, alpha / 2, truncation)
    if intersect:
        low, high = np.maximum.accumulate(low, axis=-1), np.minimum.accumulate(high, axis=-1)
    return np.clip(low, 0, 1), np.clip(high, 0, 1)


def _lower(x: np.ndarray, alpha: float, c: float) -> np.ndarray:
    n = x.shape[-1]
    if n == 0:
        return x.copy()
    t = np.arange(1, n + 1, dtype=float)
    csum = np.cumsum(x, axis=-1)
    mu_reg = (0.5 + csum) / (t + 1)  # regularised mean after t rows
    sigma2 = (0.25 + np.cumsum((x - mu_reg) ** 2, axis=-1)) / (t + 1)
    sigma2_prev = _shift(sigma2, 0.25)
    lam = np.minimum(c, np.sqrt(2 * math.log(1 / alpha) / (sigma2_prev * t * np.log1p(t))))
    mu_prev = _shift(csum / t, 0.0)  # the plain running mean of the rows before (0 before any)
    v = (x - mu_prev) ** 2
    psi = -np.log1p(-lam) - lam
    sum_lam = np.cumsum(lam, axis=-1)
    centre = np.cumsum(lam * x, axis=-1) / sum_lam
    width = (math.log(1 / alpha) + np.cumsum(v * psi, axis=-1)) / sum_lam
    return centre - width


def _shift(a: np.ndarray, first: float) -> np.ndarray:
    """``a`` one step later along the last axis: position t holds a[t-1], position 0 holds ``first``."""
    out = np.empty_like(a)
    out[..., 0] = first
    out[..., 1:] = a[..., :-1]
    return out


def diff_cs(a: np.ndarray, b: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Confidence sequences for mean(a - b), a and b paired scores in [0, 1]."""
    low, high = eb_cs((np.asarray(a, dtype=float) - np.asarray(b, dtype=float) + 1) / 2, alpha)
    return 2 * low - 1, 2 * high - 1


def pair_alpha(alpha: float, arms: int) -> float:
    """Each pair's share of alpha: Bonferroni over the k(k-1)/2 pairs, so every decision made on any pair
    holds together with probability >= 1 - alpha."""
    return alpha / max(1, arms * (arms - 1) // 2)


def decide(low: np.ndarray, high: np.ndarray, cost: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The state of a sequential comparison of k arms, for each of any number of experiments.

    ``low[..., i, j]``, ``high[..., i, j]``: bounds on accuracy_i - accuracy_j (``high[i, j] = -low[j, i]``);
    ``cost[..., k]``: each arm's mean tokens per row. Returns
    - ``stopped[..., k]``: arms proven worse than another arm by more than ``margin`` (low[i, j] > margin);
    - ``pick[...]``: the recommended arm, or -1 while undecided: the cheapest arm proven within ``margin`` of
      every arm not stopped (high[i, c] <= margin for all of them, so within the margin of the best), once
      every cheaper arm is stopped (else a cheaper arm might still prove good enough).
    """
    k = low.shape[-1]
    eye = np.eye(k, dtype=bool)
    beats = (low > margin) & ~eye  # [..., i, j]: i proven better than j by more than the margin
    stopped = beats.any(axis=-2)
    close = (high <= margin) | eye | stopped[..., :, None]  # [..., i, c]: i is no more than margin above c
    good = close.all(axis=-2) & ~stopped  # [..., c]
    order = np.argsort(cost, axis=-1, kind="stable")
    pick = np.full(low.shape[:-2], -1)
    blocked = np.zeros(low.shape[:-2], dtype=bool)  # a cheaper arm neither stopped nor good: undecided
    for r in range(k):  # arms from the cheapest
        arm = np.take_along_axis(order, np.full(order.shape[:-1] + (1,), r), axis=-1)[..., 0]
        is_good = np.take_along_axis(good, arm[..., None], axis=-1)[..., 0]
        is_stopped = np.take_along_axis(stopped, arm[..., None], axis=-1)[..., 0]
        take = (pick < 0) & ~blocked & is_good
        pick = np.where(take, arm, pick)
        blocked |= (pick < 0) & ~is_good & ~is_stopped
    return stopped, pick


def z_interval(a: np.ndarray, b: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The fixed-n normal interval for mean(a - b) at each time (valid at one planned n, not under repeated
    looks): for the simulation's contrast only."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    t = np.arange(1, d.shape[-1] + 1)
    mean = np.cumsum(d, axis=-1) / t
    var = np.maximum(np.cumsum(d * d, axis=-1) / t - mean ** 2, 0)
    half = _z(1 - alpha / 2) * np.sqrt(var / np.maximum(t - 1, 1))
    return mean - half, mean + half


def _z(p: float) -> float:
    return NormalDist().inv_cdf(p)


def fixed_n(diff: float, sd: float, gap_to: float, alpha: float, power: float = 0.8) -> int | None:
    """Rows a fixed-n paired design would plan to show ``diff`` clear of ``gap_to`` (two-sided ``alpha``, the
    given power), had it known the difference and its spread in advance; None if it never would."""
    gap = abs(diff - gap_to)
    if gap < 1e-9 or sd <= 0:
        return None
    n = ((_z(1 - alpha / 2) + _z(power)) * sd / gap) ** 2
    return math.ceil(n) if n < 1e7 else None


def pair_fixed_n(diff: float, sd: float, cost_a: float, cost_b: float, margin: float, alpha: float) -> int | None:
    """``fixed_n`` for what a pair of an --until-decided run settles: whether its cheaper arm is within the
    margin of the dearer one (``diff`` = a - b above -margin when a is the cheaper), or the dearer better by
    more than the margin."""
    return fixed_n(diff, sd, -margin if cost_a <= cost_b else margin, alpha)
