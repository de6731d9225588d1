"""Each test tier's wall time, measured in one run: the yardstick for `make test` (issue 47: at most 15 minutes).

    python bench/tiers.py [--alone] [--json]

Run it from the checkout with the venv's Python on an idle machine, after `make test` has built llama-server and
the vLLM tier once (their paths come from FIRSTTOKEN_LLAMA_SERVER / FIRSTTOKEN_VLLM, or the build scripts, which
print the cached builds' paths at once).

It runs the two sessions `make test` runs, as it runs them: the fast tier on every core (pytest-xdist), then the
real-engine tiers in one process (vLLM, in-process llama.cpp, llama-server; tests/conftest.py orders them and
launches the vLLM servers as soon as their tier is collected). Printed: each session's wall seconds and tests, the
wall time of each tier inside it (the session's own summary), and the total against the 900-second budget.
With --alone each real tier is also run alone (`pytest -m TIER`, its servers started by its own fixtures), so a
tier can be compared with itself across changes whatever runs beside it.

A change that adds tests reports this table before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 900.0  # seconds of pytest wall time `make test` may take on the project's 2-core machine
FAST = "not (model or llama_server or vllm)"  # the Makefile's FAST
SESSIONS = {"fast": ["-n", "auto", "-m", FAST], "real": ["-m", f"not ({FAST})"]}
TIERS = ("model", "llama_server", "vllm")


def built(script: str, variable: str) -> str:
    """A real engine's build, from the environment or its (cached) build script's last line."""
    if os.environ.get(variable):
        return os.environ[variable]
    out = subprocess.run(["bash", str(ROOT / "scripts" / script), sys.executable], capture_output=True, text=True)
    return (out.stdout.strip().splitlines() or [""])[-1]


def run(args: list[str], env: dict) -> dict:
    """One pytest session: its wall seconds, its counts (passed, failed, ...) and its per-tier wall times."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = out.stdout.strip().splitlines()
    closing = lines[-1] if lines else ""
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", closing)}
    tiers = {}  # the session's own summary (tests/conftest.py): "TIER  N tests  S s"
    for line in lines:
        if m := re.match(r"(\w+)\s+\d+ tests\s+([\d.]+) s$", line):
            tiers[m.group(1)] = float(m.group(2))
    return {"seconds": round(seconds, 1), **counts, "tiers": tiers, "exit": out.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alone", action="store_true", help="also run each real tier alone")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    env = {**os.environ, "FIRSTTOKEN_LLAMA_SERVER": built("build_llama_server.sh", "FIRSTTOKEN_LLAMA_SERVER"),
           "FIRSTTOKEN_VLLM": built("build_vllm.sh", "FIRSTTOKEN_VLLM")}
    result: dict = {"sessions": {}, "budget_seconds": BUDGET}
    for name, session in SESSIONS.items():
        result["sessions"][name] = run(session, env)
        if not args.json:
            r = result["sessions"][name]
            print(f"session {name:<5} {r.get('passed', 0):>4} passed {r.get('failed', 0):>3} failed "
                  f"{r['seconds']:>8.1f} s   " + ", ".join(f"{t} {s:.1f} s" for t, s in r["tiers"].items()),
                  flush=True)
    total = sum(r["seconds"] for r in result["sessions"].values())
    result["total_seconds"] = round(total, 1)
    if args.alone:
        result["alone"] = {t: run(["-m", t], env) for t in TIERS}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"make test's pytest time: {total:.1f} s, {total / BUDGET:.0%} of {BUDGET:.0f} s")
    for name, r in result.get("alone", {}).items():
        print(f"alone {name:<13} {r.get('passed', 0):>4} passed {r.get('failed', 0):>3} failed {r['seconds']:>8.1f} s")


if __name__ == "__main__":
    main()
