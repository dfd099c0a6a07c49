"""``main()``: build the settings, the store, the hub and the transport; serve until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from papo import __version__, tls, workers
from papo.accounts import Accounts, Tokens
from papo.config import Settings, parse_settings
from papo.hub import Hub
from papo.limits import AttemptLimiter
from papo.metrics import Metrics, TransportStats
from papo.names import room_key
from papo.presence import RESTART_GRACE
from papo.store import Store, StoreError
from papo.store_cluster import ClusterStore
from papo.store_memory import MemoryStore
from papo.store_records import RoomRecord
from papo.store_redis import RedisStore
from papo.store_sqlite import SqliteStore
from papo.transport import Transport

log = logging.getLogger("papo")

GC_GEN0_THRESHOLD = 50_000


def setup_logging(level: str, label: str = "") -> None:
    """Log lines to stderr; ``label`` (``worker 2 pid 4242``) says which process wrote them."""
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s %(levelname)-7s {label + ' ' if label else ''}%(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The library logs every handshake at INFO; papo logs connections itself.
    logging.getLogger("websockets").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)


class StartupError(Exception):
    """papo cannot start as configured; the message says why and what to do."""


def check_data_dir(path: Path) -> None:
    """Make sure ``path`` (``--data``) is a directory papo can create and write, or say why not.

    SQLite's own error for these ("unable to open database file") names
    neither the path nor the cause.
    """
    if path.exists() and not path.is_dir():
        raise StartupError(
            f"--data {path} is a file, not a directory: give papo a directory of its own "
            "(it is created if missing)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(
            f"cannot create the data directory {path} (--data): {exc.strerror or exc}"
        ) from None
    probe = path / ".papo-write-check"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"cannot write in the data directory {path} (--data): {exc.strerror or exc}; "
            "choose one papo can write with --data DIR"
        ) from None


def make_store(settings: Settings) -> Store:
    """The store the settings ask for (not yet open)."""
    home = RoomRecord(room_key(settings.default_room), settings.default_room)
    if settings.redis_url and settings.redis_url.startswith("redis+cluster://"):
        # --redis-wait not given: 0 on a cluster (see the README's cluster section)
        return ClusterStore(
            settings.redis_url, settings.retention, default_room=home, wait=settings.redis_wait or 0
        )
    if settings.redis_url:
        return RedisStore(
            settings.redis_url, settings.retention, default_room=home, wait=settings.redis_wait
        )
    if settings.memory:
        return MemoryStore(settings.retention)
    check_data_dir(settings.data_dir)
    return SqliteStore(settings.data_dir, settings.retention, home)


async def serve(settings: Settings, worker: int | None = None) -> int:
    """Run the server until SIGINT or SIGTERM; returns the exit status.

    ``worker``: this process is that worker of a ``--workers`` supervisor
    (see :mod:`papo.workers`): it says when it listens, and stops when the
    supervisor is gone.
    """
    started = time.monotonic()
    context = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        context = tls.server_context(settings.tls_cert, settings.tls_key)
    store = make_store(settings)
    await store.open()
    try:
        accounts = Accounts(
            store,
            Tokens(await store.secret(), settings.token_ttl_days * 86400),
            AttemptLimiter(settings.login_attempts, 60.0),
            require_password=settings.require_password,
        )
        hub = Hub(
            store,
            accounts,
            presence_grace=settings.presence_grace,
            guests=not settings.require_password,
            rate=settings.rate_limit,
            burst=settings.rate_burst,
            default_room=settings.default_room,
            max_rooms_per_user=settings.max_rooms_per_user,
            room_creations=AttemptLimiter(settings.room_creations, 60.0),
            joins_per_address=settings.joins_per_address,
            admins=settings.admins,
        )
        await hub.moderation.open()  # bans and roles hold from the first connection on
        # A restart is not a leave (with no grace at all, those users are gone at once).
        grace = settings.presence_grace
        await hub.presence.restore(max(RESTART_GRACE, grace) if grace > 0 else 0.0)
        metrics = Metrics(hub, TransportStats())
        hub.observe_fanout = metrics.fanout.observe
        if isinstance(store, SqliteStore | RedisStore):  # (a ClusterStore is one)
            store.observe_commit = metrics.history_write.observe
        transport = Transport(settings, hub, metrics, tls=context)
        server = await transport.start()
        scheme = "ws" if context is None else "wss"
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            log.info("papo %s listening on %s://%s:%d/", __version__, scheme, _host(host), port)

        # The hot path allocates many short-lived, acyclic objects (events,
        # frames); collecting cycles less often keeps pauses out of the latency
        # tail, and freezing what start-up built keeps it out of every scan.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if worker is not None:
            _tie_to_supervisor(loop, stop)
        if context is not None:
            loop.add_signal_handler(signal.SIGHUP, _reload, context, settings)
        await stop.wait()

        log.info("shutting down: closing %d connections with 1001 (going away)", len(hub.pool))
        hub.stop()
        server.close(close_connections=True)
        await server.wait_closed()
        stats = hub.stats
        log.info(
            "stopped after %.0f s: %d connections served (peak %d), %d messages stored, "
            "%d deliveries",
            time.monotonic() - started,
            stats.connections_total,
            stats.connections_peak,
            stats.stored,
            stats.deliveries,
        )
    finally:
        await store.close()
    return 0


def _tie_to_supervisor(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Tell the supervisor this worker listens; stop when its end of stdin closes."""

    def readable() -> None:
        try:
            data = os.read(0, 512)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(0)
            log.warning("the supervisor is gone; shutting down")
            stop.set()

    loop.add_reader(0, readable)
    with contextlib.suppress(OSError):
        os.write(1, workers.READY)


def _reload(context: ssl.SSLContext, settings: Settings) -> None:
    """SIGHUP: load the certificate and key again (a renewed certificate); new
    handshakes get it, open connections keep theirs."""
    assert settings.tls_cert is not None and settings.tls_key is not None
    try:
        tls.reload(context, settings.tls_cert, settings.tls_key)
    except tls.TlsError as exc:
        log.error("SIGHUP: %s; still serving the certificate loaded before", exc)
        return
    log.info("SIGHUP: certificate %s reloaded", settings.tls_cert)


def _run(main: Coroutine[Any, Any, int], fast: bool) -> int:
    """Run ``main`` on uvloop when asked for and installed, else on asyncio's loop."""
    if fast:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def main(argv: Sequence[str] | None = None, worker: int | None = None) -> int:
    """``server.py``: serve (or, with ``--workers``, supervise workers) until told to stop.

    ``worker`` is set in a worker process only (``python -m papo.workers``).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    settings = parse_settings(args)
    supervising = settings.workers is not None and worker is None
    label = "supervisor" if supervising else f"worker {worker}" if worker is not None else ""
    setup_logging(settings.log_level, f"{label} pid {os.getpid()}" if label else "")
    if settings.echo_for_conformance:  # tests only: see docs/autobahn/README.md
        from papo.echo import serve_echo

        try:
            return _run(serve_echo(settings), settings.uvloop)
        except KeyboardInterrupt:
            return 0
    try:
        if supervising:
            return workers.supervise(settings, args)
        return _run(serve(settings, worker), settings.uvloop)
    except (StoreError, StartupError, tls.TlsError) as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:  # address in use, permission denied, ...
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = (
                "; another server (papo?) already uses that port: stop it, or choose another "
                "with --port (or PAPO_PORT)"
            )
        elif exc.errno == errno.EACCES:
            hint = "; ports under 1024 need privileges: choose another with --port"
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
        log.error("cannot listen on %s:%d: %s%s", settings.host, settings.port, reason, hint)
        return 1
