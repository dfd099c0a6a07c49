"""``--workers N``: a supervisor and N worker processes on one port, one chat through Redis.

One papo process uses one core (one asyncio thread). With ``--workers N`` the
process started becomes a supervisor that serves nothing itself: it checks
that the port is free (as a lone server finds out when it binds), starts N
workers, each a whole papo server of its own (``python -m papo.workers INDEX
ARGS``: the same flags, the same port), and watches them. Every worker
listens with ``SO_REUSEPORT``, so the kernel spreads new connections over
them; each is a distinct instance for the Redis store (its own instance id,
presence hash, heartbeat and reader), so they share the chat exactly as
instances on different machines do, and a client that drops from one resumes
on another. Per-process limits (``--max-connections``, the per-address caps,
the rate limits) are therefore per worker.

The supervisor:

- starts a worker that died again: at once if it had run for a while
  (``STABLE_AFTER``), else after a delay that doubles with each death in a row
  (``restart_delay``), so a worker that keeps dying at start does not spin.
  A worker that never came up at all the first time means papo cannot run as
  configured (Redis unreachable, a bad certificate): every worker is stopped and
  the supervisor exits 1, its reason in the worker's log above.
- on SIGINT or SIGTERM sends SIGTERM to every worker, which closes its
  connections with 1001 and shuts down as a lone server does; it exits 0 once
  they are all gone (those still there after ``STOP_TIMEOUT`` are killed).
- forwards SIGHUP (reload the TLS certificate) to every worker.

Two pipes tie each worker to the supervisor: the worker writes ``READY`` to
its stdout once it listens (the supervisor logs it and learns that the
configuration works), and it reads its stdin, which only the supervisor
holds: end of file means the supervisor is gone (even killed with SIGKILL),
and the worker shuts down instead of living on as an orphan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from papo.config import Settings

log = logging.getLogger(__name__)

#: A worker that ran this long had started fine: its death is not a failure to start.
STABLE_AFTER = 10.0
#: The first delay before starting again a worker that died soon after it started.
FIRST_BACKOFF = 0.5
#: The longest delay between two starts of a worker that keeps dying.
MAX_BACKOFF = 30.0
#: Seconds the workers get to shut down cleanly before they are killed.
STOP_TIMEOUT = 30.0
#: Where this papo lives: the workers import it, wherever the supervisor was started from.
ROOT = str(Path(__file__).resolve().parent.parent)
#: What a worker writes to its stdout once it listens.
READY = b"ready\n"

Command = Callable[[int, Sequence[str]], list[str]]


def worker_count(asked: int) -> int:
    """How many workers ``--workers asked`` means: ``0`` is one per core this process may use."""
    if asked > 0:
        return asked
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def restart_delay(fast_deaths: int) -> float:
    """Seconds to wait before starting again a worker that died ``fast_deaths`` times in a
    row soon after starting (0: it had run for a while; start it at once)."""
    if fast_deaths <= 0:
        return 0.0
    return float(min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (fast_deaths - 1)))


def describe_exit(returncode: int) -> str:
    """``killed by SIGKILL`` or ``exit status 1``, for the log."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def worker_command(index: int, argv: Sequence[str]) -> list[str]:
    """The command line of worker ``index``: this Python, this papo, the same flags."""
    return [sys.executable, "-m", "papo.workers", str(index), *argv]


def reserve_port(host: str, port: int) -> int:
    """Check that nothing listens on ``host:port`` and return the port (with ``0``: a free
    one, chosen once for every worker).

    The workers bind with ``SO_REUSEPORT``, which would let them share the port
    silently with another papo started with ``--workers`` on it: this probe binds
    without it, so a port in use fails here with the error a lone server gets.
    Raises :class:`OSError` (``EADDRINUSE``, ``EACCES``, an unknown host).
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    probes: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            probe = socket.socket(family, kind, proto)
            probes.append(probe)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind((address[0], port, *address[2:]))
            port = probe.getsockname()[1]
    finally:
        for probe in probes:
            probe.close()
    return port


@dataclass(slots=True)
class Worker:
    """One worker slot: its process of the moment and how its last starts went."""

    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    ready: bool = False  # the current process listens
    came_up: bool = False  # some process of this slot ever listened
    fast_deaths: int = 0  # deaths in a row soon after starting

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None


class Supervisor:
    """Starts ``count`` workers with ``argv``, keeps them running, stops them on a signal."""

    def __init__(
        self,
        settings: Settings,
        argv: Sequence[str],
        count: int,
        *,
        command: Command = worker_command,
    ) -> None:
        self.settings = settings
        self.argv = list(argv)
        self.command = command
        self.workers = [Worker(index) for index in range(1, count + 1)]
        self.failure: str | None = None
        self._stopping = asyncio.Event()
        self._watchers: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        """Stop every worker and return from :meth:`run` (what SIGINT and SIGTERM do)."""
        self._stopping.set()

    async def run(self) -> int:
        """Supervise until SIGINT or SIGTERM (0) or until the workers cannot start (1)."""
        s = self.settings
        port = reserve_port(s.host, s.port)
        argv = [*self.argv, "--port", str(port)]  # the last --port wins: the one reserved
        loop = asyncio.get_running_loop()
        handled = [signal.SIGINT, signal.SIGTERM]
        for signum in handled:
            loop.add_signal_handler(signum, self.stop)
        if s.tls_cert is not None:
            handled.append(signal.SIGHUP)
            loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        try:
            return await self._supervise(port, argv)
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)

    async def _supervise(self, port: int, argv: Sequence[str]) -> int:
        s = self.settings
        loop = asyncio.get_running_loop()
        scheme = "ws" if s.tls_cert is None else "wss"
        log.info(
            "%d workers for %s://%s:%d/, sharing the chat through Redis",
            len(self.workers),
            scheme,
            s.host,
            port,
        )
        keepers = [loop.create_task(self._keep(worker, argv)) for worker in self.workers]
        await self._stopping.wait()
        alive = [w for w in self.workers if w.alive]
        log.info("stopping %d workers (SIGTERM)", len(alive))
        self._forward(signal.SIGTERM)
        _, late = await asyncio.wait(keepers, timeout=STOP_TIMEOUT)
        for worker in self.workers:
            if worker.alive and worker.process is not None:
                log.warning(
                    "worker %d did not stop in %.0f s; killing it", worker.index, STOP_TIMEOUT
                )
                worker.process.kill()
        if late:
            await asyncio.wait(late)
        if self.failure is not None:
            return 1
        log.info("every worker stopped")
        return 0

    def _forward(self, signum: int) -> None:
        for worker in self.workers:
            if worker.alive and worker.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signum)

    async def _keep(self, worker: Worker, argv: Sequence[str]) -> None:
        """Run ``worker`` until the supervisor stops, starting it again each time it dies."""
        while not self._stopping.is_set():
            process = await self._start(worker, argv)
            if self._stopping.is_set():  # told to stop while it was being started
                process.terminate()
            returncode = await process.wait()
            lived = time.monotonic() - worker.started
            how = describe_exit(returncode)
            if self._stopping.is_set():
                log.info("worker %d (pid %d) stopped: %s", worker.index, process.pid, how)
                return
            if not worker.came_up:
                self.failure = (
                    f"worker {worker.index} could not start ({how}); its log above says why: "
                    "stopping every worker"
                )
                log.error("%s", self.failure)
                self._stopping.set()
                return
            worker.fast_deaths = worker.fast_deaths + 1 if lived < STABLE_AFTER else 0
            delay = restart_delay(worker.fast_deaths)
            log.warning(
                "worker %d (pid %d) %s (%s) after %.1f s; starting it again%s",
                worker.index,
                process.pid,
                "exited" if returncode == 0 else "died",
                how,
                lived,
                f" in {delay:.1f} s" if delay else "",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _start(self, worker: Worker, argv: Sequence[str]) -> asyncio.subprocess.Process:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        process = await asyncio.create_subprocess_exec(
            *self.command(worker.index, argv),
            stdin=asyncio.subprocess.PIPE,  # the lifeline: only the supervisor holds it
            stdout=asyncio.subprocess.PIPE,  # READY, then whatever a worker prints
            env=env,
        )
        worker.process = process
        worker.started = time.monotonic()
        worker.ready = False
        log.info("worker %d started (pid %d)", worker.index, process.pid)
        watcher = asyncio.get_running_loop().create_task(self._watch(worker, process))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return process

    async def _watch(self, worker: Worker, process: asyncio.subprocess.Process) -> None:
        """Read the worker's stdout: its READY line, then pass anything else on."""
        assert process.stdout is not None
        async for line in process.stdout:
            if line == READY and not worker.ready and worker.process is process:
                worker.ready = worker.came_up = True
                log.info("worker %d ready (pid %d)", worker.index, process.pid)
                continue
            sys.stdout.buffer.write(line)
            sys.stdout.flush()


def supervise(settings: Settings, argv: Sequence[str]) -> int:
    """``server.py --workers N``: run the supervisor until it is told to stop."""
    assert settings.workers is not None
    supervisor = Supervisor(settings, argv, worker_count(settings.workers))
    return asyncio.run(supervisor.run())


if __name__ == "__main__":  # a worker, started by the supervisor: worker_command
    from papo.app import main

    sys.exit(main(sys.argv[2:], worker=int(sys.argv[1])))
