"""The one thread a store's blocking calls run on, in the order they were made.

The SQLite store runs every statement on one dedicated thread (its connection
is not shared across threads, and the event loop never blocks on the disk).
``loop.run_in_executor`` over a one-thread ``ThreadPoolExecutor`` did that at
a cost paid on every call, once per batch of messages under load: a
``concurrent.futures.Future`` chained to an asyncio one, the executor's
locks and its idle semaphore (each a ``threading.Condition`` in Python).
A :class:`StoreThread` hands each call over in a C queue and answers with
one ``call_soon_threadsafe``, and that is all.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class StoreThread:
    """Runs functions one at a time, in order, on a thread of its own (started on first use)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def run(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn()`` on the thread; the future gets its result or its exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._thread is None:
            # A daemon: a store never closed must not keep the process alive
            # (SQLite's commits are atomic whenever the process ends).
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        self._calls.put((fn, future, loop))
        return future

    def stop(self) -> None:
        """Let the calls made so far finish, then end the thread."""
        if self._thread is not None:
            self._calls.put(None)
            self._thread.join()
            self._thread = None

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            fn, future, loop = call
            if future.cancelled():  # its caller gave up before it started: skip it, as
                continue  # an executor does (a read of a flag set on the loop's thread)
            try:
                result = fn()
            except BaseException as exc:  # handed to the caller, as an executor does
                _answer(loop, future.set_exception, future, exc)
            else:
                _answer(loop, future.set_result, future, result)
            del call, fn, future  # keep no reference to the last call while waiting


def _answer(
    loop: asyncio.AbstractEventLoop,
    settle: Callable[[Any], None],
    future: asyncio.Future[Any],
    value: Any,
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_settle, settle, future, value)


def _settle(settle: Callable[[Any], None], future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():  # the caller may have been cancelled meanwhile
        settle(value)
