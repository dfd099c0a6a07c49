"""A lean WebSocket connection: ``websockets``' sans-I/O protocol under a small asyncio Protocol.

Why not ``websockets.asyncio``: its connection object keeps, for every idle
connection, a handler task and a keepalive task with their coroutine chains,
two deques, a message assembler, several futures and weak references: about
9 KiB of Python objects per connection, most of papo's memory at 10 000 idle
clients. Here one :class:`WsConnection` per socket is at the same time the
asyncio protocol and the hub's :class:`papo.directory.Link`; it runs
``websockets.server.ServerProtocol`` (the library's own parser, handshake and
closing handshake, so the wire behaviour is the library's: the one frame papo
reads itself, a chat line alone in a read, it reads exactly as the library
would, see :func:`papo.wsframe.client_text`) and keeps no task
while idle: a message is handed to the application as it arrives; what the
application leaves under way (a commit, waited for without a task, or a
coroutine, run in a short-lived task) holds the messages behind it, which are
then fed to it in order by a task that ends when none is left.
Keepalive pings come from one shared timer (:class:`papo.wsloop.Keepalive`).

This module and :mod:`papo.wsloop` are papo's only users of ``websockets``'
protocol objects; ``tests/test_wsconn.py`` checks every attribute they rely on,
so a library upgrade that changes one fails there, loudly, first.

The fan-out path is :meth:`WsConnection.write`: it appends a frame built once
for all recipients to the connection's buffer and the :class:`papo.wsloop.Outbox`
writes each buffer in one call per flush (valid because a server never masks
and, with no extension negotiated, a text frame depends only on its payload;
with an extension the library frames it). Past ``max_pending`` bytes of unsent
output a connection is closed with 1013.
"""

from __future__ import annotations

import asyncio
import codecs
import http
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any
from typing import Protocol as Interface

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from papo import SUBPROTOCOL
from papo.metrics import TransportStats
from papo.protocol import Mode, Outgoing, OutgoingRun
from papo.wsframe import client_text
from papo.wsloop import Keepalive, Outbox

if TYPE_CHECKING:
    from papo.config import Settings

log = logging.getLogger(__name__)

#: Messages queued for the application before the connection stops reading.
INBOX_HIGH = 32
#: ... and how few before it reads again.
INBOX_LOW = 8
#: Futures (messages in the store's queue) one connection may have under way at
#: once: past that, its next message waits until one is done. Waiting for each
#: would hold a sender to one message per commit (with Redis, a round trip to
#: it and one back), whatever the server could do.
PIPELINE = 64

OPEN = State.OPEN
CONNECTING = State.CONNECTING
TEXT, BINARY, CONT, PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG

Message = str | bytes
RouteResult = Response | None | Awaitable[Response]


class App(Interface):
    """What a server built on :class:`WsConnection` provides (papo's transport, or the echo)."""

    def route(self, conn: WsConnection, request: Request) -> RouteResult:
        """The HTTP answer to a request (None: accept the WebSocket upgrade)."""

    def opened(self, conn: WsConnection, request: Request) -> Awaitable[None] | None:
        """The connection is open; what it returns runs before its first message."""

    def received(self, conn: WsConnection, message: Message) -> Awaitable[object] | None:
        """One whole message (str: text, bytes: binary), in arrival order.

        Called as it arrives when nothing of the connection's holds it. What it
        returns: an awaitable holds the next message until it is done (it is run
        in a task, once every future under way is done, so it sees their effects);
        an ``asyncio.Future`` is under way (a message queued for the store, say)
        and does not hold the next message, up to :data:`PIPELINE` of them at
        once (its outcome is the app's own: the connection does not look at it).
        None: handled already.
        """

    def closed(self, conn: WsConnection) -> None:
        """The connection is gone and its last message was handled (also one never opened)."""


class Endpoint:
    """What all connections of one listening socket share: limits, timers, the app."""

    @classmethod
    def configured(cls, app: App, stats: TransportStats, settings: Settings) -> Endpoint:
        """An endpoint with the connection limits and timeouts of ``settings``."""
        return cls(
            app,
            stats,
            subprotocol=SUBPROTOCOL,
            max_size=settings.max_size or None,
            max_pending=settings.max_pending,
            open_timeout=settings.open_timeout or None,
            ping_interval=settings.ping_interval or None,
            ping_timeout=settings.ping_timeout or None,
            compression=settings.compression,
        )

    def __init__(
        self,
        app: App,
        stats: TransportStats,
        *,
        subprotocol: str,
        max_size: int | None,
        max_pending: int,
        open_timeout: float | None,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float = 10.0,
        compression: bool = False,
    ) -> None:
        self.app = app
        self.stats = stats
        self.loop = asyncio.get_running_loop()
        self.subprotocol = Subprotocol(subprotocol)
        self.subprotocols = [self.subprotocol]  # one list for every connection's protocol
        self.max_size = max_size
        self.max_pending = max_pending
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.extensions = enable_server_permessage_deflate(None) if compression else None
        self.outbox = Outbox(self.loop)
        self.keepalive = Keepalive(self.loop, ping_interval, ping_timeout)
        #: Every connection not finished yet (handshake, open or closing).
        self.connections: set[WsConnection] = set()
        self.serving = True
        self._idle = asyncio.Event()
        self._idle.set()
        #: Handshake answers being computed (e.g. /healthz asks the store).
        self._answers: set[asyncio.Task[None]] = set()

    def __call__(self) -> WsConnection:
        """The protocol factory for ``loop.create_server``."""
        return WsConnection(self)

    def started(self, conn: WsConnection) -> None:
        self.connections.add(conn)
        self._idle.clear()

    def finished(self, conn: WsConnection) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self._idle.set()

    def answer_later(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    def close_all(self, code: int = 1001, reason: str = "") -> None:
        """Stop accepting upgrades; close every open connection, drop the others."""
        self.serving = False
        for conn in list(self.connections):
            if conn.state is OPEN:
                conn.close(code, reason)
            elif conn.state is CONNECTING and conn.transport is not None:
                conn.transport.abort()
        self.keepalive.stop()

    async def wait_finished(self, grace: float) -> None:
        """Until every connection is finished, or ``grace`` seconds (then the rest are aborted)."""
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            for conn in list(self.connections):
                if conn.transport is not None:
                    conn.transport.abort()


class _ServerProtocol(ServerProtocol):
    def select_subprotocol(self, subprotocols: Sequence[Subprotocol]) -> Subprotocol | None:
        """``papo.v1`` when offered; otherwise none (plain-text mode), never a refusal."""
        wanted: Subprotocol = self.available_subprotocols[0]  # type: ignore[index]
        return wanted if wanted in subprotocols else None


class WsConnection(asyncio.Protocol):
    """One WebSocket connection: the asyncio protocol and the hub's Link at once."""

    __slots__ = (
        "_buf",
        "_calm",
        "_closing",
        "_flying",
        "_inbox",
        "_lost",
        "_parts",
        "_paused",
        "_timer",
        "_unwritable",
        "_worker",
        "address",
        "counted",
        "endpoint",
        "lang",
        "mode",
        "peer",
        "ping_at",
        "protocol",
        "raw",
        "session",
        "transport",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.protocol = _ServerProtocol(
            subprotocols=endpoint.subprotocols,
            extensions=endpoint.extensions,
            max_size=endpoint.max_size,
        )
        self.peer: object = None
        self.address = ""
        self.mode: Mode = "plain"
        self.lang = ""
        self.raw = True
        #: set by the app: its view of this connection, and whether a per-address limit counts it
        self.session: object = None
        self.counted = False
        #: when the keepalive ping now unanswered was sent (None: none is)
        self.ping_at: float | None = None
        self._buf: list[bytes] | None = None
        self._closing = False
        self._lost = False
        self._paused = False
        self._unwritable: asyncio.Future[None] | None = None  # drain() waits on it
        self._inbox: list[Message] | None = None
        #: what holds the next message: the task of the app's answer to the last
        #: one, or a future done once fewer than PIPELINE are under way
        self._worker: asyncio.Future[Any] | None = None
        self._flying = 0  # the app's futures under way (see App.received)
        #: (threshold, future): done once fewer than threshold futures are under way
        self._calm: tuple[int, asyncio.Future[None]] | None = None
        self._parts: _Fragments | None = None
        self._timer: asyncio.TimerHandle | None = None  # open or close deadline

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.peer = transport.get_extra_info("peername")
        peer = self.peer
        self.address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        self.endpoint.started(self)
        timeout = self.endpoint.open_timeout
        if timeout:
            self._timer = self.endpoint.loop.call_later(timeout, self._abort)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        # A chat line alone in a read, on an open connection whose parser waits
        # for the start of a frame: read without the library (it would read it
        # the same way and change nothing of its state but that buffer).
        if (
            self.raw
            and protocol.state is OPEN
            and not protocol.reader.buffer
            and protocol.current_size is None
            and (payload := client_text(data, self.endpoint.max_size)) is not None
        ):
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                pass  # the library fails the connection (1007), as for any frame
            else:
                self._deliver(text)
                return
        protocol.receive_data(data)
        events = protocol.events_received()
        self._send_data()  # the library's own answers: pongs, the close echo, EOF
        for event in events:
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Request):
                self._request(event)
        if protocol.close_expected():
            self._expect_close()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._send_data()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()  # idempotent; the state becomes CLOSED
        self._lost = True
        self._buf = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter = self._unwritable
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.endpoint.keepalive.remove(self)
        if self._worker is None and not self._flying:
            self._finish()

    def pause_writing(self) -> None:
        self._unwritable = self.endpoint.loop.create_future()

    def resume_writing(self) -> None:
        waiter, self._unwritable = self._unwritable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------ the Link

    @property
    def state(self) -> State:
        return self.protocol.state

    @property
    def closed(self) -> bool:
        return self._closing or self.protocol.state is not OPEN

    @property
    def close_code(self) -> int | None:
        return self.protocol.close_code

    @property
    def close_reason(self) -> str | None:
        return self.protocol.close_reason

    def write(self, out: Outgoing) -> None:
        """Queue ``out``; the fan-out hot path (see the module's docstring)."""
        if self._closing:
            return
        if not self.raw:
            payload = out.payload(self.mode, self.lang)
            if payload is not None and self.protocol.state is OPEN:
                self.protocol.send_text(payload)
                self._send_data()
                self._check_pending()
            return
        # A chat message's frame is under the mode alone (Outgoing.frames): one lookup.
        frame = out.frames.get(self.mode) or out.frame(self.mode, self.lang)
        if frame is not None:  # write_frame, inlined: once per recipient
            buf = self._buf
            if buf is None:
                self._buf = [frame]
                self.endpoint.outbox.owe(self)
            else:
                buf.append(frame)

    def write_run(self, run: OutgoingRun) -> None:
        """Queue a run of events: one append of their frames, joined once for all recipients."""
        if self._closing:
            return
        if not self.raw:
            for out in run.outs:
                self.write(out)
            return
        data = run.joined(self.mode, self.lang)
        if data:
            self.write_frame(data)

    def write_frame(self, frame: bytes) -> None:
        """Queue a whole pre-built server frame, written at the next flush."""
        buf = self._buf
        if buf is None:
            self._buf = [frame]
            self.endpoint.outbox.owe(self)
        else:
            buf.append(frame)

    def send_binary(self, data: bytes) -> None:
        """A binary message, framed by the library (the conformance echo's use)."""
        if self.protocol.state is OPEN and not self._closing:
            self.flush()
            self.protocol.send_binary(data)
            self._send_data()
            self._check_pending()

    def flush(self) -> None:
        buf, self._buf = self._buf, None
        # Once the closing handshake started, no data frame may follow the close frame.
        if buf is None or self.protocol.state is not OPEN or self.transport is None:
            return
        self.transport.write(buf[0] if len(buf) == 1 else b"".join(buf))
        self._check_pending()

    async def drain(self) -> None:
        if self._buf is not None:
            self.flush()
        if self._unwritable is not None:
            await asyncio.shield(self._unwritable)

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (what was owed goes first); never raises."""
        if self._closing:
            return
        if self._buf is not None:
            self.flush()
        self._closing = True
        if self.protocol.state is OPEN:
            self.protocol.send_close(code, reason)
            self._send_data()
            self._expect_close()

    # ------------------------------------------------------------ keepalive (from Keepalive)

    def ping(self, now: float) -> None:
        if self.protocol.state is OPEN:
            self.ping_at = now
            self.protocol.send_ping(b"")
            self._send_data()

    def ping_unanswered(self) -> None:
        if self.protocol.state is OPEN:
            self.protocol.fail(1011, "keepalive ping timeout")
            self._send_data()
            self._expect_close()

    # ------------------------------------------------------------ inside

    def _send_data(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():  # half-close; TLS cannot, so close
                try:
                    transport.write_eof()
                except (OSError, RuntimeError):  # uvloop raises RuntimeError when closing
                    transport.close()
            else:
                transport.close()

    def _check_pending(self) -> None:
        """Close with 1013 a connection whose unsent output passed ``max_pending``."""
        assert self.transport is not None
        pending = self.transport.get_write_buffer_size()
        limit = self.endpoint.max_pending
        if pending <= limit:
            return
        log.warning(
            "conn from %s: %d bytes pending (limit %d); closing slow consumer",
            _peer(self.peer),
            pending,
            limit,
        )
        self.endpoint.stats.slow_consumer_closes += 1
        self.close(1013, "too slow: output limit reached, reconnect and resume")

    def _expect_close(self) -> None:
        """The peer should now close the TCP connection; if it does not in time, drop it."""
        if self._timer is not None:
            self._timer.cancel()
        if not self._lost:
            self._timer = self.endpoint.loop.call_later(self.endpoint.close_timeout, self._abort)

    def _abort(self) -> None:
        self._timer = None
        if self.transport is not None:
            self.transport.abort()

    def _request(self, request: Request) -> None:
        endpoint = self.endpoint
        try:
            answer = endpoint.app.route(self, request)
        except Exception:
            log.exception("routing %s failed", request.path)
            answer = self.protocol.reject(http.HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")
        if answer is None or isinstance(answer, Response):
            self._respond(request, answer)
        else:
            endpoint.answer_later(self._respond_later(request, answer))

    async def _respond_later(self, request: Request, answer: Awaitable[Response]) -> None:
        try:
            response = await answer
        except Exception:
            log.exception("answering %s failed", request.path)
            response = self.protocol.reject(http.HTTPStatus.INTERNAL_SERVER_ERROR, "error\n")
        self._respond(request, response)

    def _respond(self, request: Request, response: Response | None) -> None:
        protocol = self.protocol
        if protocol.state is not CONNECTING or self._lost:
            return  # the client left meanwhile
        if response is None:
            response = protocol.accept(request)
            if response.status_code == 101 and not self.endpoint.serving:
                response = protocol.reject(
                    http.HTTPStatus.SERVICE_UNAVAILABLE, "Server is shutting down.\n"
                )
        protocol.send_response(response)
        self._send_data()
        if response.status_code != 101:
            if isinstance(protocol.handshake_exc, InvalidHandshake):
                log.info(
                    "refused a handshake from %s: %s", _peer(self.peer), protocol.handshake_exc
                )
            self._expect_close()
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.raw = not protocol.extensions
        first = self.endpoint.app.opened(self, request)
        _forget_headers(request)
        self.endpoint.keepalive.add(self)
        if first is not None:
            self._worker = self.endpoint.loop.create_task(self._work(first))

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is TEXT or opcode is BINARY:
            if frame.fin:
                if opcode is BINARY:
                    self._deliver(bytes(frame.data))
                    return
                try:
                    self._deliver(bytes(frame.data).decode())
                except UnicodeDecodeError as exc:
                    self._invalid_utf8(exc)
                return
            self._parts = _Fragments(opcode is TEXT)
            self._more(frame)
        elif opcode is CONT:
            self._more(frame)
        elif opcode is PONG:
            self.ping_at = None
            self.endpoint.keepalive.answered(self)

    def _more(self, frame: Frame) -> None:
        parts = self._parts
        if parts is None:  # the library refuses a stray continuation before this
            return
        try:
            message = parts.add(frame.data, frame.fin)
        except UnicodeDecodeError as exc:
            self._parts = None
            self._invalid_utf8(exc)
            return
        if message is not None:
            self._parts = None
            self._deliver(message)

    def _invalid_utf8(self, exc: UnicodeDecodeError) -> None:
        if self.protocol.state is OPEN:
            self.protocol.fail(1007, f"{exc.reason} at position {exc.start}")
            self._send_data()

    def _deliver(self, message: Message) -> None:
        if self._worker is None:  # nothing holds it: the app takes it now
            self._receive(message)
            return
        # Like the library's own connection: what arrived before a close is still read.
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = []
        inbox.append(message)
        if len(inbox) >= INBOX_HIGH and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def _receive(self, message: Message) -> None:
        """Hand ``message`` to the app now; an awaitable it returns holds the next ones,
        and so does the PIPELINE-th future under way (see :meth:`App.received`)."""
        try:
            pending = self.endpoint.app.received(self, message)
        except Exception:
            log.exception("connection from %s failed", _peer(self.peer))
            self.close(1011, "internal error")
            return
        if isinstance(pending, asyncio.Future):  # e.g. a commit: no task to wait for it
            if self._fly(pending):
                gate = self._quieter(PIPELINE)
                self._worker = gate
                gate.add_done_callback(self._resume)
        elif pending is not None:
            self._worker = self.endpoint.loop.create_task(self._work(pending))

    def _fly(self, pending: asyncio.Future[object]) -> bool:
        """Count ``pending`` under way until it is done; True once PIPELINE are."""
        if pending.done():
            return False
        self._flying += 1
        pending.add_done_callback(self._landed)
        return self._flying >= PIPELINE

    def _landed(self, done: asyncio.Future[object]) -> None:
        self._flying -= 1
        calm = self._calm
        if calm is not None and self._flying < calm[0]:
            self._calm = None
            if not calm[1].done():
                calm[1].set_result(None)
        if not self._flying and self._lost and self._worker is None:
            self._finish()

    def _quieter(self, threshold: int) -> asyncio.Future[None]:
        """A future done once fewer than ``threshold`` futures are under way (one at a time:
        only this connection's one worker waits)."""
        calm: asyncio.Future[None] = self.endpoint.loop.create_future()
        if self._flying < threshold:
            calm.set_result(None)
        else:
            self._calm = (threshold, calm)
        return calm

    def _resume(self, done: asyncio.Future[Any]) -> None:
        """What held the next message is done: go on with it."""
        self._worker = None
        if self._inbox:
            self._worker = self.endpoint.loop.create_task(self._work(None))
            return
        self._inbox = None
        if self._lost and not self._flying:
            self._finish()

    async def _work(self, first: Awaitable[object] | None) -> None:
        """Feed queued messages to the app one by one; end when there are none."""
        app = self.endpoint.app
        try:
            if first is not None:
                await self._quieter(1)
                await first
            while self._inbox:
                message = self._inbox.pop(0)
                if self._paused and len(self._inbox) <= INBOX_LOW:
                    self._paused = False
                    if self.transport is not None and not self._lost:
                        self.transport.resume_reading()
                pending = app.received(self, message)
                if isinstance(pending, asyncio.Future):
                    if self._fly(pending):  # its outcome is the app's own
                        await self._quieter(PIPELINE)
                elif pending is not None:
                    await self._quieter(1)  # what it does comes after what is under way
                    await pending
        except Exception:
            log.exception("connection from %s failed", _peer(self.peer))
            self._inbox = None
            self.close(1011, "internal error")
        finally:
            self._worker = None
            if not self._inbox:
                self._inbox = None
            if self._lost and not self._flying:
                self._finish()

    def _finish(self) -> None:
        """Gone and nothing left to handle: tell the app (once), forget everything."""
        self._inbox = None
        self.endpoint.app.closed(self)
        self.session = None  # no cycle between the connection and its session
        self.endpoint.finished(self)


class _Fragments:
    """A fragmented message being received; text is checked as UTF-8 fragment by fragment."""

    __slots__ = ("chunks", "decoder")

    def __init__(self, text: bool) -> None:
        self.chunks: list[bytes | str] = []
        self.decoder: codecs.IncrementalDecoder | None = (
            codecs.getincrementaldecoder("utf-8")() if text else None
        )

    def add(self, data: bytes | bytearray | memoryview, fin: bool) -> Message | None:
        if self.decoder is not None:
            self.chunks.append(self.decoder.decode(data, fin))
            return "".join(self.chunks) if fin else None  # type: ignore[arg-type]
        self.chunks.append(bytes(data))
        return b"".join(self.chunks) if fin else None  # type: ignore[arg-type]


_NO_HEADERS = Headers()


def _forget_headers(request: Request) -> None:
    """Drop an open connection's request headers: nothing reads them after the upgrade.

    The library's parser keeps the request it parsed (a local of its generator)
    for the connection's whole life, and its headers are about 1.5 KiB of small
    strings and lists per connection. The request stays; its headers become one
    shared empty set (never written to: papo only reads requests).
    """
    request.headers = _NO_HEADERS


def _peer(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


Factory = Callable[[], WsConnection]
