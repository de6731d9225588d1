"""The async API: ``Predictor.acall``/``acompleted``/``abatch`` on a server (the async client, real HTTP on
loopback) and on local backends (a worker thread), with the sync path's limits, retries and errors."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import firsttoken as ft
from firsttoken._options import GenerateOptions
from firsttoken.experiments._probe import Probe

from .engines import EngineStub
from .servers import FaultProxy
from .signatures import Arithmetic

QUESTIONS = [f"question {i}" for i in range(50)]


def predictor(url: str, parallel: int) -> ft.Predictor:
    backend = ft.OpenAICompatible(f"{url}/v1", "m", schema_mode="lark", parallel=parallel, backoff=0.05)
    return ft.Predictor(Probe, layout="direct", model=backend)


def test_fifty_concurrent_acalls_keep_to_the_concurrency_limit_and_each_is_sent_once():
    stub = EngineStub("vllm", delay=0.15)
    with stub:
        p = predictor(stub.url, parallel=4)

        async def main():
            return await asyncio.gather(*[p.acall(question=q) for q in QUESTIONS])

        start = time.perf_counter()
        preds = asyncio.run(main())
        seconds = time.perf_counter() - start
    assert [x.answer for x in preds] == ["zebulon"] * 50  # the constraint was sent: every reply is the layout's
    assert stub.most_in_flight == 4  # the limit was reached and never passed
    sent = [b["messages"][-1]["content"] for b in stub.bodies]
    assert len(sent) == 50 and len(set(sent)) == 50  # each call sent once: no duplicate, none lost
    assert seconds < 50 * 0.15  # they overlapped (50 one after another would take 7.5 s)


def test_cancelling_the_task_closes_the_requests_in_flight_and_sends_no_more():
    stub = EngineStub("vllm", delay=5.0)
    with stub:
        p = predictor(stub.url, parallel=3)

        async def main():
            task = asyncio.ensure_future(p.abatch([{"question": q} for q in QUESTIONS[:9]]))
            while stub.in_flight < 3:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.5)  # the server notices the closed connections

        asyncio.run(main())
        time.sleep(0.3)
        assert stub.dropped == 3 and stub.in_flight == 0  # every request in flight was closed by the client
        assert len(stub.bodies) == 3  # and the six waiting their turn were never sent


def test_async_retries_follow_the_sync_policy(stub):
    proxy = FaultProxy(stub, plan=["429", "500", "reset"], retry_after="0.1")
    backend = ft.OpenAICompatible(f"{proxy.url}/v1", "stub", backoff=0.05)
    request = ft.Request([{"role": "user", "content": "q"}], None, GenerateOptions())
    gen = asyncio.run(backend.agenerate(request))
    assert gen.text == '{"answer": 4}' and gen.retries == 3


def test_async_gives_up_as_the_sync_path_does(stub):
    proxy = FaultProxy(stub, plan=["500"] * 10)
    backend = ft.OpenAICompatible(f"{proxy.url}/v1", "stub", backoff=0.01, max_retries=2)
    p = ft.Predictor(Arithmetic, layout="direct", model=backend)
    with pytest.raises(ft.BackendError, match="gave up after 3 attempts"):
        asyncio.run(p.acall(question="q"))


def test_abatch_and_batch_give_the_same_predictions_in_input_order():
    stub = EngineStub("vllm")
    with stub:
        p = predictor(stub.url, parallel=4)
        rows = [{"question": q} for q in QUESTIONS[:12]] + [{"wrong_input": 1}]
        sync = p.batch(rows)
        async_ = asyncio.run(p.abatch(rows))
    assert [getattr(x, "answer", None) for x in sync] == [getattr(x, "answer", None) for x in async_]
    assert isinstance(async_[-1], ft.ConfigError)  # a row refused before any call keeps its place


def test_a_local_backend_runs_in_a_worker_thread_without_blocking_the_loop():
    backend = ft.Scripted(['{"answer": 4}'] * 3, delay=0.3)
    p = ft.Predictor(Arithmetic, layout="direct", model=backend)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def main():
        tick = asyncio.ensure_future(ticker())
        out = [await p.acall(question="q"), *[o async for _, o in p.acompleted([{"question": "q"}] * 2)]]
        tick.cancel()
        return out

    preds = asyncio.run(main())
    assert [x.answer for x in preds] == [4, 4, 4]
    assert ticks > 30  # the loop kept running through 0.9 s of "decoding"


@pytest.mark.model
def test_concurrent_acalls_never_decode_two_rows_at_once_on_llama_cpp(smol, monkeypatch):
    inside, most = 0, 0
    lock = threading.Lock()
    complete = smol.complete

    def watched(*args, **kwargs):
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        try:
            time.sleep(0.05)  # widen the window two overlapping decodes would need
            return complete(*args, **kwargs)
        finally:
            with lock:
                inside -= 1

    monkeypatch.setattr(smol, "complete", watched)
    p = ft.Predictor(Arithmetic, layout="direct", model=smol, max_answer_tokens=16)

    async def main():
        return await asyncio.gather(*[p.acall(question=f"What is {i} + 1?") for i in range(4)],
                                    asyncio.to_thread(p, question="What is 9 + 1?"))  # and a sync caller

    preds = asyncio.run(main())
    assert all(isinstance(x.answer, int) for x in preds)
    assert most == 1
