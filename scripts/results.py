"""The published experiment: run its slices into committed stores, and render docs/results.md from them.

    python scripts/results.py run [--model qwen2.5-coder-1.5b] [--slice NAME ...]   # hours; resumable
    python scripts/results.py render                                                 # `make results`
    python scripts/results.py list                                                   # slices, commands
    python scripts/results.py verify --slice NAME [--limit N]   # rerun into a fresh store, compare row by row

Each slice is one `firsttoken eval` command (printed by `list` and in the document), stored in
results/<model>/<slice>.db. A killed run resumes where it stopped; a rerun of a finished slice makes no
model call. `render` reads only the stores, so every number in docs/results.md comes from committed data.
Run slices only on an idle machine: two llama.cpp processes at once run ~30x slower.
The slice table is in results_slices.py, the document in results_render.py, the reading of replies in
results_text.py.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below

import results_slices as slices  # noqa: E402
from results_render import render  # noqa: E402

from firsttoken.experiments import Store  # noqa: E402


def run(models: list[str], names: list[str]) -> int:
    for model in models:
        for name in names:
            if not slices.runs_for(model, name):
                continue
            slices.store(model, name).parent.mkdir(parents=True, exist_ok=True)
            cmd = slices.command(model, name)
            print("$", shlex.join(cmd), flush=True)
            res = _eval(cmd)
            if res.returncode:
                return res.returncode
            db = Store(slices.store(model, name))
            try:
                db.compact()  # one self-contained file to commit
            finally:
                db.close()
    return 0


def _eval(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run a `firsttoken eval` command line with this interpreter's firsttoken, from the project root."""
    return subprocess.run([str(Path(sys.executable).parent / "firsttoken"), *cmd[1:]], cwd=slices.ROOT)


def verify(model: str, name: str, limit: int | None) -> int:
    """Rerun one slice's command into a fresh store (its first `limit` rows) and compare it with the committed one."""
    import tempfile

    from firsttoken.experiments import arm_label

    with tempfile.TemporaryDirectory() as tmp:
        fresh_path = Path(tmp) / "fresh.db"
        cmd = slices.command(model, name)
        cmd[cmd.index("--store") + 1] = str(fresh_path)
        if limit is not None:
            if "--limit" in cmd:
                at = cmd.index("--limit") + 1
                cmd[at] = str(min(limit, int(cmd[at])))
            else:
                cmd[cmd.index("--layouts"):cmd.index("--layouts")] = ["--limit", str(limit)]
        print("$", shlex.join(cmd), flush=True)
        res = _eval(cmd)
        if res.returncode:
            return res.returncode
        fresh, kept = Store(fresh_path), Store(slices.store(model, name), readonly=True)
        try:
            same = 0
            mismatches, differ_text = [], []
            for arm in fresh.arms():
                committed = {r["row_key"]: r for r in kept.results(arm["id"])}
                for r in fresh.results(arm["id"]):
                    old = committed.get(r["row_key"])
                    if old is None:
                        mismatches.append(f"{arm_label(arm)} row {r['row_id']}: not in the committed store")
                    elif (old["outcome"], old["outputs"]) != (r["outcome"], r["outputs"]):
                        mismatches.append(f"{arm_label(arm)} row {r['row_id']}: committed {old['outcome']} "
                                          f"{old['outputs']}, rerun {r['outcome']} {r['outputs']}")
                    elif old["raw"] != r["raw"]:
                        at = next((i for i, (a, b) in enumerate(zip(old["raw"], r["raw"])) if a != b),
                                  min(len(old["raw"]), len(r["raw"])))
                        differ_text.append(f"{arm_label(arm)} row {r['row_id']}: same outcome and answer, "
                                           f"reply text first differs at character {at}")
                    else:
                        same += 1
        finally:
            fresh.close()
            kept.close()
    total = same + len(differ_text) + len(mismatches)
    print(f"{same} of {total} rows reproduced exactly (same reply text); {len(differ_text)} with the same outcome "
          f"and answer but different text; {len(mismatches)} differ in outcome or answer.")
    for line in differ_text + mismatches:
        print("  " + line)
    return 0 if not mismatches else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", action="append", choices=slices.MODELS)
    r.add_argument("--slice", action="append", choices=list(slices.SLICES))
    v = sub.add_parser("verify", help="rerun one slice into a fresh store and compare it row by row")
    v.add_argument("--model", choices=slices.MODELS, default=slices.MODELS[0])
    v.add_argument("--slice", choices=list(slices.SLICES), required=True)
    v.add_argument("--limit", type=int, help="only the first N rows (the whole slice is hours on 2 cores)")
    sub.add_parser("render")
    sub.add_parser("list")
    args = parser.parse_args(argv)
    from firsttoken import FirstTokenError

    try:
        return _main(args)
    except FirstTokenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    os.chdir(slices.ROOT)  # the slices name their data relative to the project root
    if args.cmd == "run":
        return run(args.model or slices.MODELS, args.slice or list(slices.SLICES))
    if args.cmd == "verify":
        return verify(args.model, args.slice, args.limit)
    if args.cmd == "list":
        for model in slices.MODELS:
            for name in slices.SLICES:
                if slices.runs_for(model, name):
                    print(shlex.join(slices.command(model, name)))
        return 0
    text = render()
    (slices.ROOT / "docs" / "results.md").write_text(text)
    print(f"wrote docs/results.md ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
