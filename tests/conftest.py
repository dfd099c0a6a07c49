from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pexpect
import pytest

from tests.chromium import chromium_missing, launched
from tests.helpers import RedisServer, ServerProcess, need, redis_missing

if TYPE_CHECKING:
    from playwright.async_api import Browser

StartServer = Callable[..., ServerProcess]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """``start_server(*flags)`` runs a real server on a free port; all are killed after the test.

    Every server of one test shares one data directory, so a second one sees
    what the first stored (a restart).
    """
    started: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        proc = ServerProcess(tmp_path / "data", *flags).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def server(start_server: StartServer) -> ServerProcess:
    """A real server with a short presence grace (0.3 s) and no rate limit, for fast tests."""
    return start_server("--presence-grace", "0.3", "--rate-limit", "0")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of this test's own (fails in CI when missing, skips elsewhere)."""
    need(redis_missing(), "the several-instances tests")
    redis = RedisServer(tmp_path / "redis").start()
    yield redis
    redis.stop(signal.SIGKILL)


@pytest.fixture
def children() -> Iterator[list[pexpect.spawn]]:
    """Terminal clients (``client.py`` in a pty) a test started; all closed after it."""
    started: list[pexpect.spawn] = []
    yield started
    for child in started:
        child.close(force=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless Chromium (fails in CI when missing, skips elsewhere)."""
    need(chromium_missing(), "browser tests")
    async with launched() as chromium:
        yield chromium
