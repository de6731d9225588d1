"""`firsttoken demo`: the first token problem on this machine, as evidence.

1. One arithmetic question answered two ways: answer first (``direct``) and ``work_then_answer``.
2. A grid sized so that the difference is a finding, not an anecdote: generated arithmetic at 3-5 steps
   (where answering first fails) under ``direct``, ``thoughts_first`` and ``work_then_answer``, and a
   products slice (the founding example) under ``direct`` and ``thoughts_first``; all constrained.
3. The tables with intervals and paired tests, the recommendation, and an HTML report.
Results go to ``runs/demo.db`` (``runs/demo-quick.db``), so a rerun finishes at once from the store.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import _models
from ._predictor import Predictor
from ._text import markup, terminal_safe
from .backends import parse_spec, resolve
from .experiments import Store, evaluate, html_page, markdown, versus
from .tasks import arithmetic_task, products_task
from .tasks._arithmetic import Arithmetic, problem

FULL = {"per_difficulty": 8, "products": 20, "budget": 256, "products_budget": 128}
QUICK = {"per_difficulty": 3, "products": 6, "budget": 192, "products_budget": 96}


def side_by_side(backend: Any, console: Console, budget: int) -> None:
    question, answer = problem(random.Random(7), 4)
    console.print(Text("One question, two layouts", style="bold"))
    console.print(Text(question), Text(f"(correct answer: {answer})", style="dim"))  # generated: no controls
    table = Table(show_lines=True, expand=True)
    cells = []
    for layout in ("direct", "work_then_answer"):
        table.add_column(layout, ratio=1)
        pred = Predictor(Arithmetic, layout=layout, model=backend, max_thinking_tokens=budget)(question=question)
        right = pred.answer == answer
        u = pred.usage
        cells.append(Text.assemble((terminal_safe(f"{pred.thoughts}\n\n") if pred.thoughts else "", "dim"), "answer = ",
                                   (str(pred.answer), "bold"), " (", ("right", "green") if right else ("wrong", "red"),
                                   ")\n", (f"{u.reasoning_tokens} reasoning + {u.answer_tokens} answer tokens, "
                                            f"{u.seconds:.1f} s", "dim")))
    table.add_row(*cells)
    console.print(table)


def run_demo(model: str = _models.DEFAULT_MODEL, quick: bool = False, runs: Path = Path("runs"),
             console: Console | None = None, progress: Any = None) -> dict[str, Any]:
    console = console or Console()
    size = QUICK if quick else FULL
    if quick:
        console.print("[yellow]--quick: a sample this small cannot decide anything; it shows the workflow only."
                      "[/yellow]")
    spec = parse_spec(model)  # any --model spec: a packaged model, a .gguf, a server
    info = _models.CATALOGUE.get(spec.target)
    backend = resolve(spec.set("parallel", info.parallel if info else 1))  # rows decoded together: the grid's
    # arms run ~1.4x faster than one row at a time (bench/eval_throughput.py); the one question stays single
    side_by_side(backend, console, size["budget"])
    store = runs / ("demo-quick.db" if quick else "demo.db")
    arithmetic = arithmetic_task(difficulties=range(3, 6), per_difficulty=size["per_difficulty"], seed=1)
    console.print(f"\n[bold]Arithmetic[/bold], {len(arithmetic.all_rows)} problems of 3-5 steps, "
                  f"thinking budget {size['budget']} tokens:")
    summaries = [evaluate(arithmetic, [backend], ["direct", "thoughts_first", "work_then_answer"],
                          budgets=[size["budget"]], store=store, progress=progress)]
    console.print(terminal_safe(markdown(summaries[0])), markup=False)
    _say_direct_vs_thinking(summaries[0], console)
    try:
        products = products_task()
    except Exception as e:  # the products file is optional for the demo
        console.print(f"[dim]products slice skipped: {markup(e)}[/dim]")
    else:
        console.print(f"\n[bold]Products[/bold] (the founding example), {size['products']} items:")
        summaries.append(evaluate(products, [backend], ["direct", "thoughts_first"], budgets=[size["products_budget"]],
                                  store=store, sample=size["products"], seed=0, progress=progress))
        console.print(terminal_safe(markdown(summaries[-1])), markup=False)
    report = runs / ("demo-quick.html" if quick else "demo.html")
    db = Store(store)
    try:
        report.write_text(html_page(summaries, db))
    finally:
        db.close()
    console.print(terminal_safe(f"\nHTML report: {report.resolve()}"), markup=False)
    if quick:
        console.print("[yellow]Quick sample: too small to decide anything. Run `firsttoken demo` for evidence.[/yellow]")
    return {"summaries": summaries, "report": str(report), "store": str(store)}


def _say_direct_vs_thinking(summary: dict[str, Any], console: Console) -> None:
    arms = {a["id"]: a for a in summary["arms"]}
    direct = next((a for a in summary["arms"] if a["layout"] == "direct"), None)
    thinking = [a for a in summary["arms"] if a["layout"] != "direct"]
    if not direct or not thinking:
        return
    best = max(thinking, key=lambda a: a["accuracy"])
    c = versus(summary, best["id"], direct["id"])
    if c is not None:
        verdict = "evidence" if c["p_value"] < 0.05 else "not yet evidence"
        console.print(f"[bold]{arms[best['id']]['layout']} vs direct: {c['diff'] * 100:+.1f} points "
                      f"(95% CI {c['ci_low'] * 100:+.1f} to {c['ci_high'] * 100:+.1f}), McNemar p = "
                      f"{c['p_value']:.2g} — {verdict} (p < 0.05 needed).[/bold]")
