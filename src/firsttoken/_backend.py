"""The backend protocol, in the core: the one seam between a call and whatever model runs it.

    Backend
    ├── label: str                   how reports name the model (no secrets)
    ├── parallel: int                how many requests it runs at once
    ├── generate(request) -> Generation
    ├── generate_batch(requests)     yields (index, Generation | FirstTokenError) as each request finishes,
    │                                in whatever order they finish
    ├── count_tokens(text) -> int
    └── enforcement(constraint)      optional: what of the constraint the backend enforces, by name
                                     ("llguidance", a server's schema mode), or None: prompt-only

A backend built from a ``--model`` spec is a class with ``name`` (its spec prefix), ``Options`` (its typed
spec options, see ``_spec``), ``from_spec(spec)``, and, optionally, ``check_spec(spec)``,
``spec_enforcement(spec, constraint)`` and ``public_target(target)``; ``BackendBase`` has defaults for all.

``BackendBase`` gives the defaults: ``generate_batch`` runs the requests one at a time in order, or on a
pool of ``parallel`` threads (the one concurrency implementation every backend shares); ``count_tokens``
estimates. ``call`` is the failure boundary: anything a backend raises that is not a firsttoken error
becomes a ``BackendError``. A backend raises only firsttoken errors itself, never a library's own.
Async callers go through ``_async`` (``acall``, ``acompleted``), which reuses this: ``call``'s boundary,
``generate_batch`` in a worker thread, or a backend's own ``agenerate``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from ._errors import BackendError, FirstTokenError
from ._options import GenerateOptions
from ._spec import BackendOptions, ModelSpec
from ._text import redact

if TYPE_CHECKING:  # the protocol names the layouts' Constraint; it does not need their registry
    from .layouts import Constraint

Messages = list[dict[str, str]]
Outcome = tuple[int, "Generation | FirstTokenError"]


@dataclass(frozen=True)
class Request:
    """One call: the chat messages, the constraint (None: prompt only), the options, and where the reply's
    text goes as it is generated (``on_text``, for `firsttoken ask`)."""

    messages: Messages
    constraint: Constraint | None
    options: GenerateOptions
    on_text: Callable[[str], None] | None = None


@dataclass
class Generation:
    """One reply. Token counts are None where the backend could not count them."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None  # inside the constraint's region, delimiters excluded
    reasoning: str | None = None  # reasoning delivered apart from the text (thinking models on servers)
    seconds: float = 0.0
    estimated: bool = False
    closed_by: str | None = None  # "model" | "end_of_turn" | "budget"; None without a region
    finish_reason: str = "stop"  # "length": cut at the token limit, so not a complete reply
    retries: int = 0  # failed attempts before this reply (servers)
    call_hash: str | None = None  # set by the call cache: the call's identity
    cached: bool = False  # answered from a store, not by the model


@runtime_checkable
class Backend(Protocol):
    label: str
    options: BackendOptions  # its configuration; options.parallel: rows it runs at once

    def generate(self, request: Request) -> Generation: ...

    def generate_batch(self, requests: list[Request]) -> Iterator[Outcome]: ...

    def count_tokens(self, text: str) -> int: ...


class BackendBase:
    """Defaults for the protocol's optional parts; subclass it and implement ``generate``."""

    label = "backend"
    name: ClassVar[str] = "backend"  # the spec prefix it is registered under
    Options: ClassVar[type[BackendOptions]] = BackendOptions  # its spec options (none by default)
    options: BackendOptions = BackendOptions()  # the options it was built with (``from_spec``)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        legacy = cls.__dict__.get("parallel")
        if isinstance(legacy, int) and not isinstance(legacy, bool):  # the attribute options.parallel replaced
            import warnings

            warnings.warn(f"{cls.__name__}.parallel = {legacy}: say options = ft.BackendOptions(parallel={legacy}) "
                          f"(or a field of your Options); the attribute is read this once", DeprecationWarning,
                          stacklevel=2)
            cls.options = cls.options.model_copy(update={"parallel": legacy})

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> Any:
        """The backend a parsed spec names: ``cls(target)`` with ``options`` set, labelled with the spec's
        identity. Override it to pass options to a constructor."""
        backend = cls(spec.target)  # type: ignore[call-arg]
        backend.options, backend.label = spec.options, spec.key
        return backend

    @classmethod
    def check_spec(cls, spec: ModelSpec) -> None:
        """Fail now, with the fix, on a spec that cannot work; cheap (no model loaded, nothing sent)."""

    @classmethod
    def spec_enforcement(cls, spec: ModelSpec, constraint: Constraint) -> str | None:
        """What a backend built from ``spec`` would enforce of ``constraint``, without building it."""
        return None

    @classmethod
    def public_target(cls, target: str) -> str:
        """The target as identities and labels show it (without secrets)."""
        return target

    def generate(self, request: Request) -> Generation:
        raise NotImplementedError

    def generate_batch(self, requests: list[Request]) -> Iterator[Outcome]:
        return run_batch(self, requests)

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def enforcement(self, constraint: Constraint | None) -> str | None:
        """None: a backend that does not say what it enforces is taken to enforce nothing (prompt-only)."""
        return None


def parallel_of(backend: Backend) -> int:
    """How many requests ``backend`` runs at once: its ``options.parallel`` (an object that implements the
    protocol without options runs one at a time)."""
    options = getattr(backend, "options", None)
    return options.parallel if isinstance(options, BackendOptions) else 1


def enforcement(backend: Backend, constraint: Constraint | None) -> str | None:
    """What ``backend`` enforces of ``constraint``: a name, or None (nothing is enforced: prompt-only)."""
    method = getattr(backend, "enforcement", None)
    return method(constraint) if constraint is not None and method is not None else None


def call(backend: Backend, request: Request) -> Generation:
    """One request through the failure boundary."""
    try:
        return backend.generate(request)
    except FirstTokenError:
        raise
    except Exception as e:
        raise foreign(backend, e, "call") from e


def foreign(backend: Backend, e: Exception, what: str) -> BackendError:
    """A backend's own exception (a plugin's bug, a library's error) as a redacted BackendError."""
    label = getattr(backend, "label", None) or type(backend).__name__
    return BackendError(redact(f"{label}: {type(e).__name__}: {e}"),
                        hint=f"the backend failed on this {what}; rerun to retry it")


def run_batch(backend: Backend, requests: list[Request]) -> Iterator[Outcome]:
    """``requests`` through ``backend.generate``: in order when its ``parallel`` is 1, otherwise on a thread
    pool, yielding each as it finishes. A consumer that stops early (Ctrl-C, a run-stopping error) leaves
    the calls in flight behind: the pool is not waited for."""

    yield from run_jobs(parallel_of(backend), [partial(one_call, backend, requests, i) for i in range(len(requests))])


def one_call(backend: Backend, requests: list[Request], i: int) -> list[Outcome]:
    """Request ``i`` through ``call``, as a job: its outcome, the reply or the error that ended it."""
    try:
        return [(i, call(backend, requests[i]))]
    except FirstTokenError as e:
        return [(i, e)]


def run_jobs(workers: int, jobs: list[Callable[[], list[Outcome]]]) -> Iterator[Outcome]:
    """Each job (a few requests answered together, such as a family's trace and its continuations) in order at
    ``workers`` 1, otherwise ``workers`` at once on a thread pool; their outcomes as each job finishes."""
    if workers == 1:
        for job in jobs:
            yield from job()
        return
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        pending: set[Future[list[Outcome]]] = {pool.submit(job) for job in jobs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield from future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def budget_families(requests: list[Request]) -> list[str | None]:
    """Each request's family: requests that differ only in their reasoning budget, where a family holds two
    budgets or more and its layout a region to budget (None otherwise). A family's budgets can be answered from
    one trace (every budget's reasoning is a prefix of the largest's, greedy or seeded alike)."""
    keys: list[str | None] = []
    budgets: dict[str, set[int]] = {}
    for r in requests:
        key = None
        if r.constraint is None or r.constraint.region is not None:
            key = json.dumps([r.messages, r.constraint.lark if r.constraint else None,
                              r.options.model_dump(exclude={"max_thinking_tokens"})])
            budgets.setdefault(key, set()).add(r.options.max_thinking_tokens)
        keys.append(key)
    return [k if k is not None and len(budgets[k]) > 1 else None for k in keys]


def guarded_batch(backend: Backend, requests: list[Request]) -> Iterator[Outcome]:
    """``backend.generate_batch`` through the failure boundary: if a plugin's own batch raises, every request
    it had not answered gets that error."""
    answered: set[int] = set()
    try:
        for i, out in backend.generate_batch(requests):
            answered.add(i)
            yield i, out
    except FirstTokenError as e:
        error: FirstTokenError = e
    except Exception as e:
        error = foreign(backend, e, "batch")
    else:
        return
    for i in range(len(requests)):
        if i not in answered:
            yield i, error


def estimate_tokens(text: str) -> int:
    """About four characters a token: the fallback where no tokenizer is at hand (marked estimated)."""
    return (len(text) + 3) // 4

