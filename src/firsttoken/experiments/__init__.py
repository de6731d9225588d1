"""Experiments: grids of arms over a task's rows, a resumable store, statistics, reports."""

from ._runner import Arm, build_grid, default_store, evaluate
from ._store import Store
from ._summary import arm_label, summarize, versus
from ._tasks import Row, Task, file_task, load_demos

__all__ = ["Arm", "Row", "Store", "Task", "arm_label", "build_grid", "default_store", "evaluate", "file_task",
           "load_demos", "summarize", "versus"]
