"""The typer app and the console every command prints to."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Let models think before they answer; force the answer's type; measure which layout wins.")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@app.callback()
def _root() -> None:
    """firsttoken: the first token problem, solved and measured."""
