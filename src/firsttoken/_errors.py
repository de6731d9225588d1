"""Every error firsttoken raises, each carrying a one-line ``hint`` that says how to fix it.

    FirstTokenError
    ├── ConfigError            a signature, layout name, option or input the caller got wrong
    ├── DataError              a data file that cannot be read as the task needs (names file and line)
    ├── ParseError             a model reply that is not a valid answer (carries ``raw``)
    ├── ModelNotFoundError     a model name, file or package that is missing, partial or corrupt
    └── BackendError           a model call that failed
        ├── ContextOverflowError   the prompt does not fit the model's context window
        ├── ConstraintError        the constraint cannot be compiled or cannot be satisfied
        └── UnreachableError       a server stayed unreachable past its bound: a run stops here

The CLI prints ``str(error)`` (message and hint on one line) and exits non-zero.
"""

from __future__ import annotations


class FirstTokenError(Exception):
    """Base of all firsttoken errors."""

    default_hint = ""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ConfigError(FirstTokenError):
    default_hint = "check the signature, layout and options you passed"


class DataError(FirstTokenError):
    default_hint = "fix the file, or pass --skip-bad-rows to count bad rows and go on"


class ParseError(FirstTokenError):
    """The reply is not a valid answer for the layout and signature. ``raw`` is the reply text."""

    default_hint = "run constrained (constrained=True) so the reply is forced into the layout's format"

    def __init__(self, message: str, *, raw: str, reasoning: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.raw = raw
        self.reasoning = reasoning
        self.usage = None  # filled in by the Predictor when it knows the token counts
        self.generation = None  # and the backend's Generation the reply came in


class ModelNotFoundError(FirstTokenError):
    default_hint = "run `firsttoken models` to see the known models and how to install them"


class BackendError(FirstTokenError):
    default_hint = "the model call failed; check the backend's settings and retry"


class ContextOverflowError(BackendError):
    default_hint = "use a larger context (n_ctx=...), fewer few-shot demos, or a shorter input"


class ConstraintError(BackendError):
    default_hint = "the layout's grammar cannot be used with this signature and model"


class UnreachableError(BackendError):
    default_hint = "start the server, or check the URL in --model openai:MODEL@URL"
