"""The sequential design (`eval --until-decided`) in simulation, no model: per scenario, the wrong-decision
rate of the anytime-valid confidence sequences against naive repeated fixed-n testing, and the median rows
to a decision against the rows a fixed-n design would plan.

    python bench/sequential.py [--sims 5000] [--max-rows 3000] [--round 10] [--margin 2] [--rho 0.5] [--json]

A wrong decision: recommending an arm more than the margin below the best, or stopping an arm within the
margin of the best. The fixed-n figure: rows for a paired two-sided test at the same per-pair alpha with 80%
power, for every pair the question the run settles (is the cheaper arm within the margin of the dearer?),
knowing in advance the difference and the spread of the paired differences (exact under the simulation's
model), i.e. the best a fixed design could plan; the run's report states the same figure from its data.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from firsttoken.experiments import pair_alpha, pair_fixed_n, simulate  # noqa: E402

SCENARIOS = {
    "equal arms": ([0.6, 0.6], [100, 10]),
    "a true difference of 5 points": ([0.55, 0.60], [10, 100]),
    "a cheap arm within the margin": ([0.59, 0.60], [10, 100]),
    "one clearly worse arm": ([0.3, 0.6, 0.6], [5, 10, 100]),
    "five arms": ([0.5, 0.55, 0.58, 0.6, 0.6], [5, 10, 20, 50, 100]),
    "thinking vs answer-first (+20 points)": ([0.45, 0.65], [10, 200]),
}


def planned(acc: list[float], cost: list[float], margin: float, alpha: float, rho: float) -> int | None:
    """The rows a fixed-n paired design would plan to settle every pair the run settles, as the run reports it
    (``_sequential``): whether the pair's cheaper arm is within the margin of the dearer one. From the exact
    mean and spread of the paired differences under the simulation's model (both arms take the row's shared
    draw with probability rho^2, so P(both right) = rho^2 min(p, q) + (1 - rho^2) p q)."""
    needs = []
    for i, j in combinations(range(len(acc)), 2):
        p, q = acc[i], acc[j]
        both = rho ** 2 * min(p, q) + (1 - rho ** 2) * p * q
        diff = p - q
        sd = math.sqrt(max(p + q - 2 * both - diff ** 2, 0.0))
        needs.append(pair_fixed_n(diff, sd, cost[i], cost[j], margin, pair_alpha(alpha, len(acc))))
    return None if any(v is None for v in needs) else max(needs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sims", type=int, default=5000)
    ap.add_argument("--max-rows", type=int, default=3000)
    ap.add_argument("--round", type=int, default=10)
    ap.add_argument("--margin", type=float, default=2.0, help="points")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--rho", type=float, default=0.5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    margin = args.margin / 100
    report = {}
    for name, (acc, cost) in SCENARIOS.items():
        kw = dict(margin=margin, alpha=args.alpha, rho=args.rho, sims=args.sims, max_rows=args.max_rows,
                  round_rows=args.round, seed=1)
        cs, naive = simulate(acc, cost, **kw), simulate(acc, cost, method="naive", **kw)
        report[name] = {"cs": cs, "naive": naive, "fixed_n": planned(acc, cost, margin, args.alpha, args.rho)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.sims} simulated experiments per scenario; margin {args.margin:g} points, alpha {args.alpha:g}, "
          f"a look every {args.round} rows, at most {args.max_rows} rows, row correlation {args.rho:g}")
    print(f"{'scenario':40s} {'wrong (CS)':>12s} {'wrong (naive)':>14s} {'decided':>8s} {'median rows':>12s} {'fixed-n plan':>13s}")
    for name, r in report.items():
        cs, naive = r["cs"], r["naive"]
        med = "-" if cs["median_rows"] is None else f"{cs['median_rows']:.0f}"
        print(f"{name:40s} {cs['wrong']:7.2%} ±{cs['mc_error']:.1%} {naive['wrong']:9.2%} ±{naive['mc_error']:.1%} "
              f"{cs['decided']:8.0%} {med:>12s} {str(r['fixed_n'] or '-'):>13s}")


if __name__ == "__main__":
    main()
