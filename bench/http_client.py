"""The server backend's own cost: requests/s and overhead per request against a stub that answers at once.

    python bench/http_client.py [--requests 600] [--json]

The stub (bench/stub_openai_server.py) runs in its own process on loopback and returns a fixed completion
immediately, so every millisecond measured is the client's: building the request, the openai client,
HTTP, parsing the reply into a typed prediction. Concurrency 1, 8 and 32 through ``Predictor.batch``.
Target: at least 300 requests/s at concurrency 32, so the client is never what limits a fast cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import firsttoken as ft  # noqa: E402
from servers import start_stub  # noqa: E402


class Sum(ft.Signature):
    """Add the numbers."""

    question: str = ft.InputField()
    answer: int = ft.OutputField()


def run(url: str, concurrency: int, requests: int) -> dict:
    model = ft.OpenAICompatible(f"{url}/v1", "stub", parallel=concurrency)
    predictor = ft.Predictor(Sum, layout="direct", model=model)
    rows = [{"question": f"{i}+{i}"} for i in range(requests)]
    predictor.batch(rows[: min(50, requests)])  # warm-up: connections, imports
    start = time.perf_counter()
    results = predictor.batch(rows)
    seconds = time.perf_counter() - start
    ok = sum(isinstance(r, ft.Prediction) for r in results)
    return {"concurrency": concurrency, "requests": requests, "ok": ok, "seconds": seconds,
            "requests_per_s": requests / seconds, "ms_per_request": seconds * 1000 / requests * concurrency}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    proc, url = start_stub('{"answer": 4}')
    try:
        rows = [run(url, c, args.requests) for c in (1, 8, 32)]
    finally:
        proc.kill()
        proc.wait()
    if args.json:
        print(json.dumps({"rows": rows}, indent=2))
        return 0
    print(f"{'concurrency':>11}{'requests/s':>12}{'ms/request':>12}{'ok':>7}")
    for r in rows:
        print(f"{r['concurrency']:>11}{r['requests_per_s']:>12.0f}{r['ms_per_request']:>12.2f}{r['ok']:>7}")
    print("ms/request: wall time x concurrency / requests (the client's time per call; the stub answers at once)")
    print("target: >= 300 requests/s at concurrency 32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
