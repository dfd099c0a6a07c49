"""The WebSocket glue: HTTP routes, the handshake, one loop per connection.

This is the only module that knows about ``websockets``. On one port it
answers plain HTTP (the web page, ``/healthz``, ``/metrics``, a text note at
``/ws``), checks the Origin and the connection limits (in all, and per
address), accepts the upgrade at ``/`` and ``/ws``, picks the mode from the
subprotocol (``papo.v1`` → JSON, none → plain text), and turns frames into hub
calls. With a TLS context the same port speaks ``wss://`` and ``https://``.

:class:`WsLink` is the hub's view of a connection. Its :meth:`WsLink.write`
is the fan-out hot path: it appends a frame that was built once for all
recipients to the connection's buffer, and the :class:`Outbox` writes each
buffer to its socket in one call per flush. Pre-built frames are valid
because a server never masks and, with no extension negotiated, a text frame
depends only on its payload; a connection with an extension goes through the
library's own framing instead. Nothing is written after the closing handshake
began. Past ``max_pending`` bytes of unsent output a connection is closed with
1013, so a client that stops reading cannot grow the server's memory nor slow
anybody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import ssl
import time
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from papo import SUBPROTOCOL
from papo.commands import (
    HELP,
    Help,
    HistoryHere,
    Nick,
    PartRoom,
    Quit,
    RoomCommand,
    TopicHere,
    parse_line,
)
from papo.config import Settings
from papo.directory import Session
from papo.hub import Hub
from papo.i18n import accept_language, choose_language, render, t
from papo.metrics import CONTENT_TYPE, Metrics, TransportStats
from papo.moderation import client_address, parse_network
from papo.protocol import (
    Conversation,
    Error,
    Hello,
    History,
    Mode,
    Notice,
    Outgoing,
    Part,
    ProtocolError,
    Say,
    SetTopic,
    check_name,
    parse_client,
)
from papo.store import StoreError
from papo.web import WebFiles

log = logging.getLogger(__name__)

WS_PATHS = frozenset({"/", "/ws"})

HOW_TO_CONNECT = """papo chat server

This address speaks WebSocket. To chat:
  terminal:        python client.py --url {ws}://{host}/
  any WebSocket:   connect to {ws}://{host}/ and send lines of text
                   (e.g. in a browser console:
                    ws = new WebSocket("{ws}://{host}/"); ws.onmessage = e => console.log(e.data);
                    ws.send("/nick maria"); ws.send("oi"))
  JSON clients:    ask for the subprotocol "papo.v1" (see docs/protocol.md)
Health: /healthz
"""


class Outbox:
    """Connections owed frames, flushed together: one write per connection per flush.

    Everything a connection is owed until the next flush leaves in one
    ``transport.write``. On loopback and LAN most of a server's time goes to
    the kernel's per-write cost, so fewer, larger writes are the main lever.

    Flushing is self-clocking: when idle, frames leave at the end of the
    current event-loop iteration; when the last flush took T seconds (the
    server is write-bound), the next waits until T has passed since it ended
    (at most ``MAX_DELAY``), so messages arriving meanwhile share the writes.
    Latency stays near one flush time while the cost per message falls as
    load rises.
    """

    MAX_DELAY = 0.02

    __slots__ = ("dirty", "loop", "next_at", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty: list[WsLink] = []
        self.scheduled = False
        self.next_at = 0.0

    def owe(self, link: WsLink) -> None:
        self.dirty.append(link)
        if not self.scheduled:
            self.scheduled = True
            wait = self.next_at - time.monotonic()
            if wait > 0:
                self.loop.call_later(wait, self.flush)
            else:
                self.loop.call_soon(self.flush)

    def flush(self) -> None:
        started = time.monotonic()
        self.scheduled = False
        dirty, self.dirty = self.dirty, []
        for link in dirty:
            link.flush()
        ended = time.monotonic()
        self.next_at = ended + min(ended - started, self.MAX_DELAY)


class WsLink:
    """A websockets connection as the hub sees it."""

    __slots__ = (
        "_buf",
        "_closer",
        "address",
        "lang",
        "max_pending",
        "mode",
        "outbox",
        "raw",
        "stats",
        "ws",
    )

    def __init__(
        self,
        ws: ServerConnection,
        mode: Mode,
        lang: str,
        *,
        max_pending: int,
        outbox: Outbox,
        stats: TransportStats,
        address: str | None = None,
    ) -> None:
        self.ws = ws
        self.mode: Mode = mode
        self.lang = lang
        peer = ws.remote_address
        # The client's address (behind a trusted proxy: the one it names), else the peer's.
        self.address = address or (str(peer[0]) if isinstance(peer, tuple) else str(peer))
        self.max_pending = max_pending
        self.outbox = outbox
        self.stats = stats
        # Pre-built frames are valid only without extensions (no compression).
        self.raw = not ws.protocol.extensions
        self._buf: list[bytes] | None = None
        self._closer: asyncio.Task[None] | None = None

    def write(self, out: Outgoing) -> None:
        if self._closer is not None:
            return
        if not self.raw:
            self._write_framed(out)
            return
        frame = out.frame(self.mode, self.lang)
        if frame is None:
            return
        buf = self._buf
        if buf is None:
            self._buf = [frame]
            self.outbox.owe(self)
        else:
            buf.append(frame)

    def flush(self) -> None:
        buf, self._buf = self._buf, None
        ws = self.ws
        # Once the closing handshake started, no data frame may follow the close frame.
        if buf is None or ws.protocol.state is not State.OPEN:
            return
        transport = ws.transport
        transport.write(buf[0] if len(buf) == 1 else b"".join(buf))
        self._check_pending()

    def _write_framed(self, out: Outgoing) -> None:
        ws = self.ws
        payload = out.payload(self.mode, self.lang)
        if payload is None or ws.protocol.state is not State.OPEN:
            return
        ws.protocol.send_text(payload)
        ws.send_data()
        self._check_pending()

    def _check_pending(self) -> None:
        """Close with 1013 a connection whose unsent output passed ``max_pending``."""
        pending = self.ws.transport.get_write_buffer_size()
        if pending <= self.max_pending:
            return
        log.warning(
            "conn %s: %d bytes pending (limit %d); closing slow consumer",
            self.ws.id,
            pending,
            self.max_pending,
        )
        self.stats.slow_consumer_closes += 1
        self.close(1013, "too slow: output limit reached, reconnect and resume")

    async def drain(self) -> None:
        if self._buf is not None:
            self.flush()
        with contextlib.suppress(ConnectionClosed, OSError):  # the handler sees the close
            await self.ws.drain()

    @property
    def closed(self) -> bool:
        return self._closer is not None or self.ws.protocol.state is not State.OPEN

    def close(self, code: int, reason: str) -> None:
        if self._closer is None:
            if self._buf is not None:
                self.flush()  # what was owed goes before the close frame
            self._closer = asyncio.get_running_loop().create_task(self.ws.close(code, reason))


class Transport:
    """Serves one :class:`Hub` over WebSocket and HTTP."""

    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        metrics: Metrics | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.metrics = metrics
        self.tls = tls  # wss:// and https:// on the same port when set
        self.stats = TransportStats() if metrics is None else metrics.transport
        self.server: Server | None = None
        self.outbox: Outbox | None = None
        self.web = WebFiles()
        #: connections open (or in their handshake) per address, for --max-connections-per-ip
        self.per_address: Counter[str] = Counter()
        self.trusted = tuple(parse_network(proxy) for proxy in settings.trusted_proxies)
        #: The client address of each handshake, from process_request to handler.
        self._addresses: weakref.WeakKeyDictionary[ServerConnection, str] = (
            weakref.WeakKeyDictionary()
        )

    async def start(self) -> Server:
        s = self.settings
        self.outbox = Outbox(asyncio.get_running_loop())
        self.server = await serve(
            self.handler,
            s.host,
            s.port,
            ssl=self.tls,
            process_request=self.process_request,
            select_subprotocol=select_subprotocol,
            compression="deflate" if s.compression else None,
            max_size=s.max_size or None,
            open_timeout=s.open_timeout or None,
            ping_interval=s.ping_interval or None,
            ping_timeout=s.ping_timeout or None,
            server_header=None,
            # --workers: every worker listens on the same port and the kernel
            # spreads new connections over them (see papo.workers).
            reuse_port=s.workers is not None,
        )
        return self.server

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """Route plain HTTP; let WebSocket upgrades at ``/`` and ``/ws`` through."""
        path = urlsplit(request.path).path
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if upgrade and path in WS_PATHS:
            address = self.client_address(connection, request)
            if self.hub.moderation.ip_ban_of(address) is not None:
                log.warning("refusing a connection from %s: the address is banned", address)
                return _text(connection, http.HTTPStatus.FORBIDDEN, "this address is banned\n")
            self._addresses[connection] = address
            origin = request.headers.get("Origin")
            if origin is not None and not self._origin_allowed(origin, request):
                log.warning("refusing a connection from origin %s", origin)
                self.stats.refused_origin += 1
                return _text(
                    connection, http.HTTPStatus.FORBIDDEN, f"origin not allowed: {origin}\n"
                )
            if len(self.hub.pool) >= self.settings.max_connections:
                log.warning("refusing a connection: %d connections open", len(self.hub.pool))
                self.stats.refused_full += 1
                return _text(
                    connection,
                    http.HTTPStatus.SERVICE_UNAVAILABLE,
                    "server full, try again later\n",
                )
            return self._count_address(connection, request)
        if path == "/healthz":
            return await self._health(connection)
        if path == "/metrics" and self.metrics is not None:
            return _respond(http.HTTPStatus.OK, self.metrics.render(), CONTENT_TYPE)
        asset = self.web.get(path)
        if asset is not None:
            if request.headers.get("If-None-Match") == asset.etag:
                return _respond(
                    http.HTTPStatus.NOT_MODIFIED, b"", asset.content_type, asset.headers()
                )
            return _respond(http.HTTPStatus.OK, asset.body, asset.content_type, asset.headers())
        if path == "/ws":
            host = request.headers.get("Host", f"localhost:{self.settings.port}")
            text = HOW_TO_CONNECT.format(host=host, ws="ws" if self.tls is None else "wss")
            return _text(connection, http.HTTPStatus.OK, text)
        return _text(connection, http.HTTPStatus.NOT_FOUND, f"not found: {path}\n")

    def _count_address(self, connection: ServerConnection, request: Request) -> Response | None:
        """Count the connection against its address until it closes; refuse one too many (429)."""
        address = self.client_address(connection, request)
        cap = self.settings.max_connections_per_ip
        if cap and self.per_address[address] >= cap:
            self.stats.refused_per_ip += 1
            if self.stats.refused_per_ip % 1000 == 1:  # a log line, not one per attempt
                log.warning("refusing connections from %s: %d open already", address, cap)
            lang = self.language("", request)
            body = t("too many connections from your address ({limit}); close some", limit=cap)
            response = _text(
                connection, http.HTTPStatus.TOO_MANY_REQUESTS, render(body, lang) + "\n"
            )
            response.headers["Retry-After"] = "10"
            return response
        self.per_address[address] += 1

        def closed(_: object) -> None:
            left = self.per_address[address] - 1
            if left > 0:
                self.per_address[address] = left
            else:
                del self.per_address[address]

        connection.connection_lost_waiter.add_done_callback(closed)
        return None

    def client_address(self, connection: ServerConnection, request: Request) -> str:
        """The client's address: the peer's, or behind a ``--trusted-proxy`` the one its
        ``X-Forwarded-For`` names (see :func:`papo.moderation.client_address`)."""
        peer = connection.remote_address
        address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if not self.trusted:
            return address
        return client_address(address, request.headers.get_all("X-Forwarded-For"), self.trusted)

    async def _health(self, connection: ServerConnection) -> Response:
        """200 when serving and the store answers; 503 (and why) when it does not."""
        try:
            async with asyncio.timeout(2.0):
                await self.hub.store.ping()
        except (StoreError, TimeoutError) as exc:
            reason = str(exc) or "the store did not answer in time"
            return _text(connection, http.HTTPStatus.SERVICE_UNAVAILABLE, f"unhealthy: {reason}\n")
        return _text(
            connection,
            http.HTTPStatus.OK,
            f"ok: {len(self.hub.pool)} connections, last message id {self.hub.store.log.committed}\n",
        )

    def _origin_allowed(self, origin: str, request: Request) -> bool:
        """Same origin as the page (Origin's host is the Host asked for), or allowed by flag.

        Browsers always send Origin; a page on another site must not be able to
        open a connection with the visitor's cookies or local tokens
        (cross-site WebSocket hijacking). Clients that send no Origin (scripts,
        the terminal client) are not browsers and are not refused.
        """
        allowed = self.settings.allow_origins
        if "*" in allowed or origin in allowed:
            return True
        return urlsplit(origin).netloc.lower() == request.headers.get("Host", "").lower()

    async def handler(self, ws: ServerConnection) -> None:
        """One connection's life: attach, read frames until it closes, detach."""
        mode: Mode = "json" if ws.subprotocol == SUBPROTOCOL else "plain"
        query = urlsplit(ws.request.path).query if ws.request is not None else ""
        lang = self.language(query, ws.request)
        _forget_handshake(ws)
        assert self.outbox is not None
        link = WsLink(
            ws,
            mode,
            lang,
            max_pending=self.settings.max_pending,
            outbox=self.outbox,
            stats=self.stats,
            address=self._addresses.pop(ws, None),
        )
        hub = self.hub
        session = hub.attach(link)
        log.info("conn %d open from %s (%s)", session.id, _peer(ws), mode)
        try:
            if mode == "plain":
                await self._plain_start(session, query)
            async for raw in ws:
                if isinstance(raw, bytes):
                    hub.send(
                        session, Error("binary", t("binary frames are not supported; send text"))
                    )
                    hub.refused(session)
                elif mode == "json":
                    await self._json_frame(session, raw)
                else:
                    await self._plain_line(session, raw)
        except ConnectionClosed:
            pass
        finally:
            hub.detach(session)
            log.info(
                "conn %d closed from %s: code %s%s after %.1f s",
                session.id,
                _peer(ws),
                ws.close_code,
                f" ({ws.close_reason})" if ws.close_reason else "",
                time.monotonic() - session.opened,
            )

    def language(self, query: str, request: Request | None) -> str:
        """A connection's language: ``?lang=``, else ``Accept-Language``, else ``--lang``."""
        asked = parse_qs(query).get("lang", [None])[0]
        header = request.headers.get("Accept-Language") if request is not None else None
        return choose_language([asked, *accept_language(header)], self.settings.lang)

    async def _json_frame(self, session: Session, raw: str) -> None:
        try:
            event = parse_client(raw, max_text=self.settings.max_text)
        except ProtocolError as exc:
            self.hub.send(session, Error(exc.code, exc.message))
            self.hub.refused(session)
            return
        await self.hub.handle(session, event)

    async def _plain_start(self, session: Session, query_string: str) -> None:
        hub = self.hub
        query = parse_qs(query_string)
        wanted = query.get("name", [None])[0]
        password = query.get("password", [None])[0]
        hub.send(session, Notice(t("welcome to papo. /help lists the commands, sair leaves")))
        if wanted is not None:
            try:
                hello = Hello(check_name(wanted), password=password)
            except ProtocolError as exc:
                hub.send(session, Error(exc.code, exc.message))
                hub.refused(session)
            else:
                await hub.handle(session, hello)
                if session.user is not None:
                    return
        if hub.guests:
            await hub.presence.join_guest(session)
        else:
            hub.send(
                session, Notice(t("this server needs a name and password: /nick NAME PASSWORD"))
            )

    async def _plain_line(self, session: Session, line: str) -> None:
        hub = self.hub
        try:
            command = parse_line(line, max_text=self.settings.max_text)
        except ProtocolError as exc:
            hub.send(session, Error(exc.code, exc.message))
            hub.refused(session)
            return
        if isinstance(command, Quit):
            session.link.close(1000, "bye")
        elif isinstance(command, Help):
            hub.send(session, Notice(HELP))
            for text in await hub.moderation.help_for(session):  # edit, delete; by role
                hub.send(session, Notice(text))
        elif isinstance(command, Nick):
            await hub.handle(session, Hello(command.name, password=command.password), rename=True)
        elif isinstance(command, PartRoom):
            await hub.handle(session, Part(command.room or self._current(session)))
        elif isinstance(command, TopicHere):
            await hub.handle(session, SetTopic(self._current(session), command.text))
        elif isinstance(command, HistoryHere):
            room = Conversation(room=self._current(session))
            await hub.handle(session, History(room, limit=command.limit))
        elif isinstance(command, RoomCommand):  # /kick, /mute, /edit ...: about this room
            await hub.handle(session, command.at(self._current(session)))
        elif isinstance(command, Say) and command.to is None:
            await hub.handle(session, replace(command, room=session.room))
        else:
            await hub.handle(session, command)

    def _current(self, session: Session) -> str:
        """The room a plain-text connection's lines go to."""
        return session.room or self.hub.home.name


def select_subprotocol(
    connection: ServerConnection, subprotocols: Sequence[Subprotocol]
) -> Subprotocol | None:
    """``papo.v1`` when offered; otherwise none (plain-text mode), never a refusal."""
    return Subprotocol(SUBPROTOCOL) if SUBPROTOCOL in subprotocols else None


def _forget_handshake(ws: ServerConnection) -> None:
    """Release the handshake's headers: nothing reads them after the upgrade.

    ``ws.request`` itself must stay (the library takes ``None`` to mean "no
    handshake yet"), but its headers and the response are a few hundred bytes
    of small objects per connection, kept for the connection's whole life.
    """
    if ws.request is not None:
        ws.request.headers = Headers()
    ws.response = None


def _text(connection: ServerConnection, status: http.HTTPStatus, body: str) -> Response:
    return _respond(status, body.encode(), "text/plain; charset=utf-8")


def _respond(
    status: http.HTTPStatus,
    body: bytes,
    content_type: str,
    extra: list[tuple[str, str]] | None = None,
) -> Response:
    """An HTTP response with exactly one of each header (``Headers`` is a multidict)."""
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("X-Content-Type-Options", "nosniff"),
            *(extra if extra is not None else [("Cache-Control", "no-store")]),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def _address(connection: ServerConnection) -> str:
    """The peer's address without the port (what limits per address count)."""
    peer = connection.remote_address
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


def _peer(ws: ServerConnection) -> str:
    peer = ws.remote_address
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
