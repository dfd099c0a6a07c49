"""The store's thread runs calls one at a time, in order, off the event loop."""

from __future__ import annotations

import asyncio
import threading
from functools import partial

import pytest

from papo.store_thread import StoreThread


async def test_calls_run_in_order_on_one_thread_of_their_own() -> None:
    worker = StoreThread("papo-test")
    seen: list[tuple[int, str]] = []

    def call(n: int) -> int:
        seen.append((n, threading.current_thread().name))
        return n * n

    results = await asyncio.gather(*(worker.run(partial(call, n)) for n in range(50)))
    assert results == [n * n for n in range(50)]
    assert seen == [(n, "papo-test") for n in range(50)]
    worker.stop()


async def test_an_exception_reaches_the_caller_and_the_thread_goes_on() -> None:
    worker = StoreThread("papo-test")

    def fail() -> None:
        raise ValueError("disk full")

    with pytest.raises(ValueError, match="disk full"):
        await worker.run(fail)
    assert await worker.run(lambda: "still here") == "still here"
    worker.stop()


async def test_a_call_whose_caller_gave_up_before_it_started_is_skipped() -> None:
    worker = StoreThread("papo-test")
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def block() -> None:
        started.set()
        release.wait()

    busy = worker.run(block)
    await asyncio.to_thread(started.wait)
    skipped = worker.run(lambda: ran.append("skipped"))
    skipped.cancel()
    release.set()
    await busy
    assert await worker.run(lambda: "after") == "after"
    assert ran == []
    worker.stop()


async def test_stop_lets_the_calls_made_so_far_finish() -> None:
    worker = StoreThread("papo-test")
    ran: list[int] = []
    for n in range(5):
        worker.run(partial(ran.append, n))
    worker.stop()
    assert ran == [0, 1, 2, 3, 4]
    await asyncio.sleep(0)  # the answers, posted to the loop, arrive without harm
