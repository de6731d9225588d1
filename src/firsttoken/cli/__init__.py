"""The `firsttoken` command: a thin layer over the library. Errors print one line and exit 1
(set FIRSTTOKEN_DEBUG=1 to see the traceback)."""

from __future__ import annotations

import os
import sys

from ._app import app
from . import _core, _experiments  # noqa: F401  (register the commands)
from .._errors import FirstTokenError

__all__ = ["app", "main"]


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
