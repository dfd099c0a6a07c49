"""An echo server on papo's own connection class, for the Autobahn conformance suite.

``python server.py --echo-for-conformance`` (a hidden flag: for tests only)
serves it with the limits papo ships (``--max-size`` and the rest). Text comes
back through the chat's fan-out path (a frame built by
:func:`papo.wsframe.text_frame`, written at the next flush), binary through
the library's framing; everything else (fragments, control frames, UTF-8
checks, the closing handshake) is the connection's own behaviour, which is
what the suite tests. See docs/autobahn/README.md.
"""

from __future__ import annotations

import asyncio
import logging

from websockets.http11 import Request

from papo.config import Settings
from papo.metrics import TransportStats
from papo.wsconn import Endpoint, Message, RouteResult, WsConnection
from papo.wsframe import text_frame

log = logging.getLogger(__name__)


class Echo:
    """The :class:`papo.wsconn.App` that sends every message back."""

    def route(self, conn: WsConnection, request: Request) -> RouteResult:
        return None  # every request is an upgrade (the library refuses what is not)

    def opened(self, conn: WsConnection, request: Request) -> None:
        return None

    async def received(self, conn: WsConnection, message: Message) -> None:
        if isinstance(message, str):
            conn.write_frame(text_frame(message.encode()))
        else:
            conn.send_binary(message)

    def closed(self, conn: WsConnection) -> None:
        pass


async def serve_echo(settings: Settings) -> int:
    """Echo on ``settings.host``/``port`` until cancelled (SIGINT/SIGTERM end the process)."""
    endpoint = Endpoint.configured(Echo(), TransportStats(), settings)
    server = await asyncio.get_running_loop().create_server(endpoint, settings.host, settings.port)
    log.warning("conformance echo (tests only) on ws://%s:%d/", settings.host, settings.port)
    async with server:
        await server.serve_forever()
    return 0
