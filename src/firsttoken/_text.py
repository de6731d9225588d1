"""Text on its way out of firsttoken: to a terminal, into HTML, or into a store or an error message.

* ``terminal_safe``: control characters (ANSI escape sequences start with one) become visible symbols of
  the same length, so data and model text cannot move the cursor, recolour or clear a terminal, and rich
  spans over the text stay aligned. ``markup`` also escapes rich markup (``[bold]``) in text that is
  interpolated into a markup string.
* ``html_safe``: C0 control characters other than tab and newlines are dropped (HTML cannot carry them).
* ``redact``: ``Authorization`` / ``Bearer`` / ``Basic`` / API-key values and any given secret become ``***``.
Does not handle: secrets in other shapes than these (a key pasted into a prompt is the caller's).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_PICTURES = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)}
_PICTURES.update({0x7F: 0x2421, **{c: 0xFFFD for c in range(0x80, 0xA0)}})
_HTML_DROP = {c: None for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)}
_CREDENTIAL = re.compile(
    r"""(?ix)
    (\b(?:bearer|basic)\s+)[^\s"',;}\]]+                                              # Bearer sk-..., Basic dXNl...
    | (\b(?:proxy-)?authorization\b["']?\s*[:=]\s*["']?)(?!(?:bearer|basic)\s)[^\s"',;}\]]+  # Authorization: sk-...
    | (\b(?:x-)?api[-_]?key\b["']?\s*[:=]\s*["']?)[^\s"',;}\]]+                        # api_key=..., "x-api-key": ...
    """)


def terminal_safe(text: str) -> str:
    return text.translate(_PICTURES)


def markup(text: object) -> str:
    """``text`` made safe to interpolate into a rich markup string."""
    from rich.markup import escape

    return escape(terminal_safe(str(text)))


def html_safe(text: str) -> str:
    return text.translate(_HTML_DROP)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _CREDENTIAL.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***", text)
