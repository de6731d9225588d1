"""Live progress of a run: a bar per arm (its rows done, its accuracy so far) and one bar for the arms running
together, a model's (``all arms``: rows, elapsed time, completion tokens a second, time left).

A model's arms are decoded together (batched locally, in parallel on a server), so a row's own ``seconds`` span
the other rows decoded beside it: a rate or a clock per arm would count the same wall time once per arm (the
demo's bars once read "1 tok/s"). Time and rate are therefore the grid's, measured on the wall clock, shown once.
Quiet (CI logs): one line per arm when it ends, and one for the grid.

Does not handle: several runs in one process at once (one ``BarProgress`` a run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from .._text import markup, terminal_safe
from ..experiments import Arm, arm_label

GRID = "all arms"


def clock_text(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class BarProgress:
    """The ``Progress`` a run reports to (``arm_started``, ``row_done``, ``arm_finished``). Use it in a ``with``
    block; ``clock`` is the wall clock (a test's own, to check the arithmetic)."""

    def __init__(self, quiet: bool, console: Console | None = None, clock: Callable[[], float] = time.perf_counter):
        from ._app import err

        self.quiet, self.console, self.clock = quiet, console or err, clock
        self.bar: Progress | None = None
        self.arms: dict[str, dict[str, Any]] = {}  # arm id -> its counts and bar task id
        self.grid: dict[str, Any] = {}  # the arms running together: their rows, tokens, start, bar task id

    def __enter__(self) -> BarProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()  # the bars stay on screen
            self.bar = None

    def arm_started(self, arm: Arm, total: int, done: int) -> None:
        if not any(a["open"] for a in self.arms.values()):  # arms that run together (a model's): a grid of their own
            self.grid = {"total": 0, "done": 0, "new": 0, "tokens": 0, "start": self.clock(), "task": None}
        g = self.grid
        g["total"] += total
        g["done"] += done
        self.arms[arm.id] = {"correct": 0, "answered": 0, "new": 0, "open": True}
        if self.quiet:
            return
        if self.bar is None:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                _Stats(self), console=self.console)
            self.bar.start()
        if g["task"] is None:
            g["task"] = self.bar.add_task(f"[bold]{GRID}[/bold]", total=0, stats="")
        self.arms[arm.id]["task"] = self.bar.add_task(markup(arm_label(arm.record())), total=total, completed=done,
                                                      stats="")
        self.bar.update(g["task"], total=g["total"], completed=g["done"])

    def row_done(self, arm: Arm, result: dict) -> None:
        c, g = self.arms[arm.id], self.grid
        c["new"] += 1
        g["new"] += 1
        g["done"] += 1
        if result["outcome"] != "backend_error":
            c["answered"] += 1
            c["correct"] += result["outcome"] == "correct"
            g["tokens"] += (result["reasoning_tokens"] or 0) + (result["answer_tokens"] or 0)
        if self.bar is not None:
            self.bar.update(c["task"], advance=1, stats=self.arm_stats(c))
            self.bar.update(g["task"], completed=g["done"])

    def arm_finished(self, arm: Arm) -> None:
        c = self.arms[arm.id]
        c["open"] = False
        if self.quiet:
            self.console.print(f"{terminal_safe(arm_label(arm.record()))}: {c['new']} new rows"
                               f"{', ' + self.arm_stats(c) if c['answered'] else ''}", markup=False)
        if any(a["open"] for a in self.arms.values()):
            return
        if self.quiet:
            self.console.print(f"{GRID}: {self.grid_stats()}", markup=False)
        else:
            self._stop()

    @staticmethod
    def arm_stats(c: dict[str, Any]) -> str:
        return f"acc {c['correct'] / c['answered']:.0%} of {c['answered']}" if c["answered"] else ""

    def grid_stats(self) -> str:
        """The grid's new rows, elapsed time, completion tokens a second and time left, on the wall clock."""
        g = self.grid
        elapsed = self.clock() - g["start"]
        text = f"{g['new']} new rows in {clock_text(elapsed)}"
        if elapsed > 0 and g["new"]:
            left = (g["total"] - g["done"]) * elapsed / g["new"]
            text += f", {g['tokens'] / elapsed:.1f} completion tok/s, ~{clock_text(left)} left"
        return text


class _Stats(ProgressColumn):
    """An arm's row: its accuracy so far; the grid's row: its clock and rate, read afresh at each refresh."""

    def __init__(self, owner: BarProgress):
        super().__init__()
        self.owner = owner

    def render(self, task: Task) -> Text:
        if task.id == self.owner.grid["task"]:
            return Text(self.owner.grid_stats())
        return Text(task.fields.get("stats", ""))
