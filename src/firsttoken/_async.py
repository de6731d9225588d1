"""The async path: any backend awaited without blocking the event loop, through the sync path's own code.

    acall(backend, request)            one request through the failure boundary (``_backend.call``'s)
    acompleted(backend, requests)      (index, Generation | error) as each request finishes

A backend with ``agenerate`` (``OpenAICompatible``: the async client, the same retry policy as ``generate``) is
awaited, at most ``parallel`` requests at once per event loop. Any other backend runs in a worker thread:
``acall`` one ``generate`` per call (at most ``parallel`` at once), ``acompleted`` the backend's own
``generate_batch`` (so a local model still decodes rows together); ``LlamaCpp`` holds a lock around decoding,
so no two threads ever decode at once.

Cancelling the awaiting task cancels what it awaits: in-flight HTTP requests are closed; a worker thread
stops before its next row (the call it is in finishes: llama.cpp cannot be interrupted inside a decode).
Does not handle: streaming (``on_text``) on the async client; such a request runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator
from contextlib import closing
from typing import Any

from ._backend import Backend, Generation, Outcome, Request, call, foreign, guarded_batch, parallel_of
from ._errors import FirstTokenError

# backend -> event loop -> its limit of requests at once (a semaphore belongs to one loop)
_limits: weakref.WeakKeyDictionary[Any, weakref.WeakKeyDictionary[Any, asyncio.Semaphore]] = \
    weakref.WeakKeyDictionary()
_limits_lock = threading.Lock()


def _limit(backend: Backend) -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    size = parallel_of(backend)
    with _limits_lock:
        try:
            per_loop = _limits.setdefault(backend, weakref.WeakKeyDictionary())
        except TypeError:  # a backend that cannot be weakly referenced: a limit for this call alone
            return asyncio.Semaphore(size)
        if loop not in per_loop:
            per_loop[loop] = asyncio.Semaphore(size)
        return per_loop[loop]


def _native(backend: Backend, request: Request) -> bool:
    return callable(getattr(backend, "agenerate", None)) and request.on_text is None


async def acall(backend: Backend, request: Request) -> Generation:
    """One request, awaited: a ``BackendError`` for anything the backend raises that is not firsttoken's."""
    async with _limit(backend):
        if not _native(backend, request):
            return await asyncio.to_thread(call, backend, request)
        try:
            return await backend.agenerate(request)  # type: ignore[attr-defined]
        except FirstTokenError:
            raise
        except Exception as e:
            raise foreign(backend, e, "call") from e


async def acompleted(backend: Backend, requests: list[Request]) -> AsyncIterator[Outcome]:
    """``(index, Generation or the error that ended it)`` as each request finishes. Leaving the loop early (or
    the task being cancelled) cancels the requests still in flight."""
    if requests and all(_native(backend, r) for r in requests):
        async for out in _awaited(backend, requests):
            yield out
    else:
        async for out in _threaded(backend, requests):
            yield out


async def _awaited(backend: Backend, requests: list[Request]) -> AsyncIterator[Outcome]:
    async def one(i: int) -> Outcome:
        try:
            return i, await acall(backend, requests[i])
        except FirstTokenError as e:
            return i, e

    pending = {asyncio.ensure_future(one(i)) for i in range(len(requests))}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                yield task.result()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def _threaded(backend: Backend, requests: list[Request]) -> AsyncIterator[Outcome]:
    """The backend's own ``generate_batch`` in a worker thread, its outcomes handed to the loop."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Outcome | None] = asyncio.Queue()
    stop = threading.Event()

    def hand(item: Outcome | None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is gone: nobody is waiting
            stop.set()

    def work() -> None:
        try:
            with closing(guarded_batch(backend, requests)) as outcomes:
                for out in outcomes:
                    hand(out)
                    if stop.is_set():
                        break
        finally:
            hand(None)

    worker = loop.run_in_executor(None, work)
    try:
        while (out := await queue.get()) is not None:
            yield out
    finally:
        stop.set()
        if not worker.done():
            worker.add_done_callback(lambda f: f.exception())  # a late failure is not left unretrieved
