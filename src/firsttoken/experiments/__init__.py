"""Experiments: grids of arms over a task's rows, a resumable store, statistics, reports.

The command line, the demo, scripts/ and bench/ use only what ``__all__`` names (pinned by
tests/test_imports.py); the modules behind it are free to change.
"""

from ..tasks import Row, Task, file_task
from ._apply import show_arm
from ._arm import Arm, build_grid, with_options
from ._baseline import note as baseline_note
from ._config import EvalConfig, make_config
from ._confseq import fixed_n, pair_alpha, pair_fixed_n
from ._curves import knee_sentence
from ._demos import load_demos
from ._export import dspy_program
from ._predict import predict_file, same_file
from ._probe import probe
from ._report import html_page, markdown, plots
from ._runner import default_store, evaluate
from ._simulate import simulate
from ._store import Store
from ._summary import arm_label, paired, summarize, versus

__all__ = ["Arm", "EvalConfig", "Row", "Store", "Task", "arm_label", "baseline_note", "build_grid", "default_store", "dspy_program",
           "evaluate", "file_task", "fixed_n", "html_page", "knee_sentence", "load_demos", "make_config",
           "markdown", "pair_alpha", "pair_fixed_n", "paired", "plots", "predict_file", "probe", "same_file",
           "show_arm", "simulate", "summarize", "versus", "with_options"]
