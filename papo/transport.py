"""papo's HTTP routes and the life of a WebSocket connection, over :mod:`papo.wsconn`.

On one port it answers plain HTTP (the web page, ``/healthz``, ``/metrics``,
a text note at ``/ws``), checks the Origin and the connection limits (in all,
and per address) before the upgrade (403, 429, 503), accepts the upgrade at
``/`` and ``/ws``, picks the mode from the subprotocol (``papo.v1`` → JSON,
none → plain text), and turns messages into hub calls. With a TLS context the
same port speaks ``wss://`` and ``https://``.

The connection itself (framing, the fan-out's pre-built frames, the
slow-consumer bound, keepalive, closing) is :class:`papo.wsconn.WsConnection`,
which is also the hub's :class:`papo.directory.Link`.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from papo import SUBPROTOCOL
from papo.commands import (
    HELP,
    Command,
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
    Part,
    ProtocolError,
    Say,
    SetTopic,
)
from papo.protocol_parse import check_name, parse_client
from papo.store import StoreError
from papo.web import WebFiles
from papo.wsconn import Endpoint, RouteResult, WsConnection

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


class Listener:
    """The listening socket and its connections (what ``main`` stops on shutdown)."""

    def __init__(self, server: asyncio.Server, endpoint: Endpoint) -> None:
        self.server = server
        self.endpoint = endpoint

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self.server.sockets)

    def close(self, close_connections: bool = True) -> None:
        """Stop listening; with ``close_connections``, close each one with 1001 (going away)."""
        self.server.close()
        if close_connections:
            self.endpoint.close_all(1001)

    async def wait_closed(self) -> None:
        await self.endpoint.wait_finished(self.endpoint.close_timeout + 1)
        await self.server.wait_closed()


class Transport:
    """Serves one :class:`Hub` over WebSocket and HTTP (the :class:`papo.wsconn.App`)."""

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
        self.server: Listener | None = None
        self.web = WebFiles()
        #: connections open (or in their handshake) per address, for --max-connections-per-ip
        self.per_address: Counter[str] = Counter()
        self.trusted = tuple(parse_network(proxy) for proxy in settings.trusted_proxies)

    async def start(self) -> Listener:
        s = self.settings
        endpoint = Endpoint.configured(self, self.stats, s)
        server = await asyncio.get_running_loop().create_server(
            endpoint,
            s.host,
            s.port,
            ssl=self.tls,
            ssl_handshake_timeout=(s.open_timeout or None) if self.tls is not None else None,
            backlog=4096,
            # --workers: every worker listens on the same port and the kernel
            # spreads new connections over them (see papo.workers).
            reuse_port=s.workers is not None,
        )
        self.server = Listener(server, endpoint)
        return self.server

    # ------------------------------------------------------------ HTTP, before the upgrade

    def route(self, conn: WsConnection, request: Request) -> RouteResult:
        """Route plain HTTP; let WebSocket upgrades at ``/`` and ``/ws`` through (None)."""
        path = urlsplit(request.path).path
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if upgrade and path in WS_PATHS:
            address = self.client_address(conn, request)
            conn.address = address  # the client's (behind a trusted proxy: the one it names)
            if self.hub.moderation.ip_ban_of(address) is not None:
                log.warning("refusing a connection from %s: the address is banned", address)
                return _text(http.HTTPStatus.FORBIDDEN, "this address is banned\n")
            origin = request.headers.get("Origin")
            if origin is not None and not self._origin_allowed(origin, request):
                log.warning("refusing a connection from origin %s", origin)
                self.stats.refused_origin += 1
                return _text(http.HTTPStatus.FORBIDDEN, f"origin not allowed: {origin}\n")
            if len(self.hub.pool) >= self.settings.max_connections:
                log.warning("refusing a connection: %d connections open", len(self.hub.pool))
                self.stats.refused_full += 1
                return _text(http.HTTPStatus.SERVICE_UNAVAILABLE, "server full, try again later\n")
            return self._count_address(conn, request)
        if path == "/healthz":
            return self._health()
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
            return _text(http.HTTPStatus.OK, text)
        return _text(http.HTTPStatus.NOT_FOUND, f"not found: {path}\n")

    def _count_address(self, conn: WsConnection, request: Request) -> Response | None:
        """Count the connection against its address until it closes; refuse one too many (429)."""
        address = conn.address
        cap = self.settings.max_connections_per_ip
        if cap and self.per_address[address] >= cap:
            self.stats.refused_per_ip += 1
            if self.stats.refused_per_ip % 1000 == 1:  # a log line, not one per attempt
                log.warning("refusing connections from %s: %d open already", address, cap)
            lang = self.language("", request)
            body = t("too many connections from your address ({limit}); close some", limit=cap)
            response = _text(http.HTTPStatus.TOO_MANY_REQUESTS, render(body, lang) + "\n")
            response.headers["Retry-After"] = "10"
            return response
        self.per_address[address] += 1
        conn.counted = True  # released in closed(), or below if the upgrade fails after all
        return None

    def _uncount(self, conn: WsConnection) -> None:
        if conn.counted:
            conn.counted = False
            left = self.per_address[conn.address] - 1
            if left > 0:
                self.per_address[conn.address] = left
            else:
                del self.per_address[conn.address]

    def client_address(self, conn: WsConnection, request: Request) -> str:
        """The client's address: the peer's, or behind a ``--trusted-proxy`` the one its
        ``X-Forwarded-For`` names (see :func:`papo.moderation.client_address`)."""
        address = conn.address
        if not self.trusted:
            return address
        return client_address(address, request.headers.get_all("X-Forwarded-For"), self.trusted)

    async def _health(self) -> Response:
        """200 when serving and the store answers; 503 (and why) when it does not."""
        try:
            async with asyncio.timeout(2.0):
                await self.hub.store.ping()
        except (StoreError, TimeoutError) as exc:
            reason = str(exc) or "the store did not answer in time"
            return _text(http.HTTPStatus.SERVICE_UNAVAILABLE, f"unhealthy: {reason}\n")
        return _text(
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

    # ------------------------------------------------------------ a connection's life

    def opened(self, conn: WsConnection, request: Request) -> Awaitable[None] | None:
        """Attach the connection to the hub; a plain-text one starts with the welcome."""
        mode: Mode = "json" if conn.protocol.subprotocol == SUBPROTOCOL else "plain"
        query = urlsplit(request.path).query
        conn.mode = mode
        conn.lang = self.language(query, request)
        session = self.hub.attach(conn)
        conn.session = session
        log.info("conn %d open from %s (%s)", session.id, _peer(conn.peer), mode)
        return self._plain_start(session, query) if mode == "plain" else None

    def received(self, conn: WsConnection, raw: str | bytes) -> Awaitable[object] | None:
        """One message from the client: a protocol event (JSON) or a line (plain).

        A room message is queued for the store at once (:meth:`Hub.handle_now`):
        what is returned, if anything, finishes the message before the next one.
        """
        session = conn.session
        assert isinstance(session, Session)
        if isinstance(raw, bytes):
            self.hub.send(session, Error("binary", t("binary frames are not supported; send text")))
            self.hub.refused(session)
            return None
        if conn.mode == "json":
            return self._json_frame(session, raw)
        return self._plain_line(session, raw)

    def closed(self, conn: WsConnection) -> None:
        """Release its address's count; detach (the user leaves after the grace period)."""
        self._uncount(conn)
        session = conn.session
        if not isinstance(session, Session):
            return
        self.hub.detach(session)
        log.info(
            "conn %d closed from %s: code %s%s after %.1f s",
            session.id,
            _peer(conn.peer),
            conn.close_code,
            f" ({conn.close_reason})" if conn.close_reason else "",
            time.monotonic() - session.opened,
        )

    def language(self, query: str, request: Request | None) -> str:
        """A connection's language: ``?lang=``, else ``Accept-Language``, else ``--lang``."""
        asked = parse_qs(query).get("lang", [None])[0]
        header = request.headers.get("Accept-Language") if request is not None else None
        return choose_language([asked, *accept_language(header)], self.settings.lang)

    def _json_frame(self, session: Session, raw: str) -> Awaitable[object] | None:
        try:
            event = parse_client(raw, max_text=self.settings.max_text)
        except ProtocolError as exc:
            self.hub.send(session, Error(exc.code, exc.message))
            self.hub.refused(session)
            return None
        return self.hub.handle_now(session, event)

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

    def _plain_line(self, session: Session, line: str) -> Awaitable[object] | None:
        try:
            command = parse_line(line, max_text=self.settings.max_text)
        except ProtocolError as exc:
            self.hub.send(session, Error(exc.code, exc.message))
            self.hub.refused(session)
            return None
        if isinstance(command, Say):  # a line of text (Hub.say: to the session's room), /msg
            return self.hub.handle_now(session, command)
        return self._plain_command(session, command)

    async def _plain_command(self, session: Session, command: Command) -> None:
        hub = self.hub
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
        else:
            await hub.handle(session, command)

    def _current(self, session: Session) -> str:
        """The room a plain-text connection's lines go to."""
        return session.room or self.hub.home.name


def _text(status: http.HTTPStatus, body: str) -> Response:
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


def _peer(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
