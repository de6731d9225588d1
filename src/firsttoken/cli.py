"""The `firsttoken` command: a thin layer over the library. Errors print one line and exit 1
(set FIRSTTOKEN_DEBUG=1 to see the traceback)."""

from __future__ import annotations

import json
import os
import sys

import typer
from rich.console import Console

from . import _samples
from ._errors import FirstTokenError
from .layouts import get_layout, layout_classes

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Let models think before they answer; force the answer's type; measure which layout wins.")
out = Console(highlight=False)


@app.callback()
def _root() -> None:
    """firsttoken: the first token problem, solved and measured."""


@app.command()
def layouts(as_json: bool = typer.Option(False, "--json", help="print a JSON list")) -> None:
    """List the response layouts, each with an example reply."""
    if as_json:
        rows = [{"name": c.name, "description": c.description, "syntaxes": list(c.syntaxes)}
                for c in layout_classes()]
        print(json.dumps(rows, indent=2))
        return
    sig = _samples.SampleClassify
    for cls in layout_classes():
        out.print(f"[bold]{cls.name}[/bold] — {cls.description}  (syntaxes: {', '.join(cls.syntaxes)})")
        for syntax in cls.syntaxes:
            layout = get_layout(cls.name, syntax)
            reply = layout.render(sig, _samples.SAMPLE_OUTPUTS, _samples.SAMPLE_REASONING, _samples.SAMPLE_EXTRAS)
            out.print(f"  [dim]{syntax}:[/dim]")
            for line in reply.splitlines():
                out.print(f"    {line}", markup=False)
        out.print()


def main() -> None:
    try:
        app(standalone_mode=False)
    except FirstTokenError as e:
        if os.environ.get("FIRSTTOKEN_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # click's usage errors and aborts
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(130)
        raise
