"""Statistics against hand-worked values, and the bootstrap's coverage on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from firsttoken.experiments import _stats
from firsttoken.experiments._summary import recommend


def test_wilson_worked_example():
    # 8 of 20: p = 0.4, z = 1.96. centre = (0.4 + z²/40) / (1 + z²/20) = 0.41611;
    # half = z * sqrt(0.4 * 0.6 / 20 + z² / 1600) / (1 + z²/20) = 0.19731.
    low, high = _stats.wilson(8, 20)
    assert low == pytest.approx(0.21880, abs=1e-4) and high == pytest.approx(0.61342, abs=1e-4)
    assert _stats.wilson(0, 10)[0] == 0.0 and _stats.wilson(10, 10)[1] == pytest.approx(1.0)
    assert _stats.wilson(0, 0) == (0.0, 1.0)


def test_exact_mcnemar_worked_example():
    # 1 row only A got right, 6 only B: two-sided 2 * P(X <= 1), X ~ Bin(7, 1/2) = 2 * (1 + 7) / 128.
    assert _stats.mcnemar_exact(1, 6) == pytest.approx(0.125)
    assert _stats.mcnemar_exact(0, 5) == pytest.approx(0.0625)
    assert _stats.mcnemar_exact(3, 3) == 1.0 and _stats.mcnemar_exact(0, 0) == 1.0


def test_paired_bootstrap_covers_the_true_difference_about_95_percent():
    rng = np.random.default_rng(1234)
    true_a, true_b, hits, trials = 0.7, 0.6, 0, 300
    for t in range(trials):
        a = (rng.random(150) < true_a).astype(float)
        b = (rng.random(150) < true_b).astype(float)
        _, low, high = _stats.paired_bootstrap(a, b, seed=t, samples=1000)
        hits += low <= true_a - true_b <= high
    assert 0.91 <= hits / trials <= 0.98


def test_paired_bootstrap_is_deterministic_for_a_seed():
    a, b = [1, 0, 1, 1, 0], [0, 0, 1, 0, 0]
    assert _stats.paired_bootstrap(a, b, seed=3) == _stats.paired_bootstrap(a, b, seed=3)
    assert _stats.paired_bootstrap(a, b)[0] == pytest.approx(0.4)


def test_balanced_accuracy_worked_example():
    # 8 negatives, 2 positives; all answered negative: accuracy 80%, balanced (8/8 + 0/2) / 2 = 50%
    expected = ["neg"] * 8 + ["pos"] * 2
    assert _stats.balanced_accuracy(expected, ["neg"] * 10, ["neg", "pos"]) == pytest.approx(0.5)
    # one positive found, one negative missed (a parse failure, None): (7/8 + 1/2) / 2
    predicted = ["neg"] * 7 + [None, "pos", "neg"]
    assert _stats.balanced_accuracy(expected, predicted, ["neg", "pos"]) == pytest.approx((7 / 8 + 1 / 2) / 2)
    point, low, high = _stats.label_interval(_stats.balanced_accuracy, expected, predicted, ["neg", "pos"])
    assert low <= point <= high


def test_macro_f1_worked_example():
    expected = ["a", "a", "b", "b"]
    predicted = ["a", "b", "b", None]  # a: tp1 fp0 fn1 -> 2/3; b: tp1 fp1 fn1 -> 1/2
    assert _stats.macro_f1(expected, predicted, ["a", "b", "c"]) == pytest.approx((2 / 3 + 1 / 2) / 2)


def _results(pattern: str) -> list[dict]:
    return [{"row_key": str(i), "outcome": "correct" if c == "1" else "wrong"} for i, c in enumerate(pattern)]


def test_recommendation_is_inconclusive_on_ten_rows_differing_by_one_answer():
    stats = [{"id": "think", "label": "think", "n": 10, "accuracy": 0.6, "mean_completion_tokens": 200.0},
             {"id": "direct", "label": "direct", "n": 10, "accuracy": 0.5, "mean_completion_tokens": 5.0}]
    results = {"think": _results("1111110000"), "direct": _results("1111100000")}
    rec = recommend(stats, results, margin=0.02)
    assert rec["status"] == "inconclusive" and rec["arm"] is None
    assert "too few" in rec["reason"] and rec["more_rows"] >= 10


def test_recommendation_picks_the_cheap_arm_when_it_is_proven_as_good():
    pattern = "1" * 300 + "0" * 100
    stats = [{"id": "think", "label": "think", "n": 400, "accuracy": 0.75, "mean_completion_tokens": 200.0},
             {"id": "direct", "label": "direct", "n": 400, "accuracy": 0.75, "mean_completion_tokens": 5.0}]
    rec = recommend(stats, {"think": _results(pattern), "direct": _results(pattern)}, margin=0.02)
    assert rec["status"] == "recommended" and rec["arm"] == "direct"


def test_recommendation_keeps_the_expensive_arm_when_the_cheap_one_is_proven_worse():
    stats = [{"id": "think", "label": "think", "n": 400, "accuracy": 0.75, "mean_completion_tokens": 200.0},
             {"id": "direct", "label": "direct", "n": 400, "accuracy": 0.25, "mean_completion_tokens": 5.0}]
    results = {"think": _results("1" * 300 + "0" * 100), "direct": _results("1" * 100 + "0" * 300)}
    rec = recommend(stats, results, margin=0.02)
    assert rec["status"] == "recommended" and rec["arm"] == "think"
    assert "every cheaper arm is worse" in rec["reason"]


def test_recommendation_with_enough_rows_but_an_open_question_says_how_many_more():
    stats = [{"id": "think", "label": "think", "n": 40, "accuracy": 0.6, "mean_completion_tokens": 200.0},
             {"id": "direct", "label": "direct", "n": 40, "accuracy": 0.55, "mean_completion_tokens": 5.0}]
    results = {"think": _results("1" * 24 + "0" * 16), "direct": _results("1" * 22 + "0" * 18)}
    rec = recommend(stats, results, margin=0.02)
    assert rec["status"] == "inconclusive" and "more rows would likely decide it" in rec["reason"]
    assert rec["more_rows"] > 0
