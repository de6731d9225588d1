"""The `firsttoken` command: a thin layer over the library.

Exit codes: 0 done; 1 an error (one line with its hint; FIRSTTOKEN_DEBUG=1 shows the traceback), or a
run that left rows in a backend error; 2 a usage error (typer's usage text); 130 interrupted (Ctrl-C:
calls in flight are abandoned, every finished row is already stored, the same command resumes).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import warnings

from ._app import app
from . import _core, _experiments  # noqa: F401  (register the commands)
from .._errors import FirstTokenError
from .._spec import DeprecatedSpelling
from .._text import redact, terminal_safe

__all__ = ["app", "main"]

INTERRUPTED = 130


def _fail(message: str) -> None:
    print(terminal_safe(" ".join(redact(message).split())), file=sys.stderr)  # one line, whatever a server said
    sys.exit(1)


def _interrupted() -> None:
    """Leave at once: worker threads still waiting on a server are abandoned, not joined."""
    print("\ninterrupted; rerun the same command to resume", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED)


def _notes() -> None:
    """An option given by its old name is one ``note:`` line on stderr; other warnings as Python shows them."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 (warnings' signature)
        if issubclass(category, DeprecatedSpelling):
            print(f"note: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main() -> None:
    debug = bool(os.environ.get("FIRSTTOKEN_DEBUG"))
    _notes()
    try:
        code = app(standalone_mode=False)  # returns the code of a typer.Exit (130 after Ctrl-C)
    except KeyboardInterrupt:
        _interrupted()
    except FirstTokenError as e:
        if debug:
            raise
        _fail(f"error: {e}")
    except (sqlite3.Error, OSError) as e:  # a store or a file the system refused
        if debug:
            raise
        name = getattr(e, "filename", None)
        _fail(f"error: {name + ': ' if name else ''}{e.strerror if isinstance(e, OSError) and e.strerror else e} "
              "(hint: check the path, its permissions and free space)")
    except Exception as e:
        if callable(getattr(e, "show", None)) and isinstance(getattr(e, "exit_code", None), int):
            e.show()  # a usage error: typer's usage text (typer vendors click: no `import click` here)
            sys.exit(e.exit_code)
        if type(e).__name__ == "Abort":
            _interrupted()
        raise
    if code == INTERRUPTED:
        _interrupted()
    sys.exit(code if isinstance(code, int) else 0)
