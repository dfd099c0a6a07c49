"""The client side of a connection: join, send, read events, and come back after a drop.

Used by the terminal client; knows the protocol, not the screen.

Delivery is exactly-once from the client's view: the session remembers the
newest message id it has seen and, after a drop, reconnects (exponential
backoff with jitter, capped at 30 s), joins again with its token and
``resume_from`` that id, and re-sends every message the server has not yet
acknowledged, under the same ``cid``, so the server stores it once. Messages
typed while disconnected wait in the outbox and go out after the reconnect.
A message's ``room`` (or ``to``) is part of what is re-sent.

A message the server refuses with ``store_unavailable`` (its store failed,
or could not confirm the write) stays in the outbox and is sent again by
itself, under the same ``cid``, after a short backoff, a few times
(:mod:`papo.client_resend`); only then is it dropped and its error shown.

What it says to people (``status``) is a :class:`~papo.i18n.Text`, rendered
by the screen in its language: one line when the connection is lost, one when
it is back. The technical detail (exceptions, close codes, ids, each retry)
goes to the log only (the terminal client's ``--verbose``).

The session keeps one position per conversation (the newest message id it
passed on in each room and direct conversation) and resumes with all of them
(``resume``) as well as the newest id anywhere (``resume_from``): the server
replays each conversation after its own position, each in its own order, so
after a reconnect a message is a duplicate when its id is at or below its
*conversation's* position (a conversation with none: below ``resume_from``).

Rooms add one wrinkle to "an id at or below the newest seen is a duplicate":
a ``room {event:"joined"}`` is followed by the room's last messages, which are
older than what was seen elsewhere but new to this client. The session lets
them through, except those of a room whose messages it has already passed on
(joining a room again re-sends its backlog).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import math
import random
import re
import socket
import ssl as ssl_module
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from papo import SUBPROTOCOL
from papo.client_positions import Positions
from papo.client_resend import Resends
from papo.i18n import Text, t
from papo.names import name_key, room_key
from papo.protocol import (
    Ack,
    ClientEvent,
    DirectState,
    Error,
    Hello,
    Logout,
    Message,
    ProtocolError,
    RoomJoined,
    RoomState,
    Say,
    ServerEvent,
    Users,
    Welcome,
    Who,
)
from papo.protocol_client import encode_client, parse_server

log = logging.getLogger(__name__)

#: Close codes after which reconnecting would not help (or was asked for).
FINAL_CLOSE_CODES = frozenset({1000, 1008})
#: Join refusals after which reconnecting would not help.
FINAL_JOIN_ERRORS = frozenset({"auth_required", "bad_password", "bad_token", "bad_name", "banned"})


#: Hosts where "start a server" is the advice when nothing answers.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", ""})


class ConnectError(Exception):
    """The server could not be reached or refused the connection.

    ``text`` says why to people (``str()`` gives it in English); ``detail`` is
    the technical cause, for the log.
    """

    def __init__(self, text: Text, detail: str = "") -> None:
        super().__init__(str(text))
        self.text = text
        self.detail = detail


class JoinError(Exception):
    """The server refused the join; ``code``, ``message`` and ``until`` (a ban's end,
    ISO 8601) come from its ``error``."""

    def __init__(self, code: str, message: str, until: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.until = until


@dataclass(slots=True)
class Joined:
    name: str
    token: str | None
    last_id: int
    rooms: tuple[RoomState, ...] = ()  # the user's rooms (the default room first)
    direct: tuple[DirectState, ...] = ()  # the user's direct conversations
    admin: bool = False  # a server admin (the welcome says so)


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before reconnect ``attempt`` (1, 2, ...): exponential, jittered, capped."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


class ChatSession:
    """A ``papo.v1`` conversation that survives drops of its connection."""

    def __init__(
        self,
        url: str,
        *,
        lang: str | None = None,
        open_timeout: float = 10.0,
        status: Callable[[Text], None] = lambda text: None,
        max_backoff: float = 30.0,
        ssl: ssl_module.SSLContext | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.url = url  # as the user wrote it (what errors show)
        self.lang = lang
        self.ssl = ssl  # for wss:// (papo.tls.for_url); None: the library's default
        self.open_timeout = open_timeout
        self.status = status
        self.max_backoff = max_backoff
        self.ws: ClientConnection | None = None
        self.hello: Hello | None = None
        self.joined: Joined | None = None
        self.last_id = 0  # newest message id seen (or the first welcome's last_id)
        self.positions = Positions()  # where we are in each conversation, for resume
        self.own_ids: set[int] = set()  # ids of our own acknowledged messages
        #: Told ``(id, say)`` when the server acknowledges one of our messages (cid → id):
        #: the terminal client learns which messages it may ``/edit`` by default.
        #: Called with each of our messages once stored: its id, what was sent, and for a
        #: private one the recipient's name as the server spells it.
        self.on_ack: Callable[[int, Say, str | None], None] = lambda message_id, say, to: None
        self.unacked: OrderedDict[str, Say] = OrderedDict()
        #: Messages refused with ``store_unavailable``, waiting to be sent again.
        self.resends = Resends(self._send_again, status, sleep=sleep)
        self.closing = False
        self.resumed = False  # a reconnect happened: older ids are duplicates
        self.live = False  # joined on the current connection: sending is allowed
        self.reconnects = 0  # how many times the conversation came back after a drop
        self.gave_up: Text | None = None  # why reconnecting stopped for good, if it did
        self._acked = asyncio.Event()
        self._acked.set()
        self._cids = itertools.count(1)
        self._prefix = f"{random.getrandbits(32):08x}-"
        self._room_newest: dict[str, int] = {}  # room key → newest message id passed on
        # room key → (the room's last_id when joined, newest id passed on before): its backlog
        self._backlog: dict[str, tuple[int, int]] = {}
        self._rejoined: Welcome | None = None  # the welcome of a reconnect, for events()
        self._marker = False  # the `who` sent after a join is not answered yet

    @property
    def connect_url(self) -> str:
        """The URL dialled: the user's, with ``?lang=`` so the server's words are ours."""
        return url_with_lang(self.url, self.lang)

    async def connect(self) -> None:
        """Open the connection (once, or again after a drop); :class:`ConnectError` if not."""
        url = self.url
        try:
            ws = await connect(
                self.connect_url,
                subprotocols=[Subprotocol(SUBPROTOCOL)],
                open_timeout=self.open_timeout,
                compression=None,
                max_size=None,
                ssl=self.ssl,
            )
        except InvalidURI as exc:
            raise ConnectError(
                t("not a WebSocket address: {url} (try ws://localhost:8765)", url=url), repr(exc)
            ) from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ConnectError(
                t("{url} refused the connection (HTTP {status})", url=url, status=status),
                repr(exc),
            ) from None
        except InvalidHandshake as exc:
            raise ConnectError(
                t("{url} did not answer as a papo server", url=url), repr(exc)
            ) from None
        except TimeoutError:
            seconds = math.ceil(self.open_timeout)
            raise ConnectError(
                t("no answer from {url} in {seconds} s", url=url, seconds=seconds), "timeout"
            ) from None
        except OSError as exc:
            raise ConnectError(unreachable(url, exc), repr(exc)) from None
        if ws.subprotocol != SUBPROTOCOL:
            await ws.close()
            raise ConnectError(
                t(
                    "{url} is not a papo server (it does not speak {protocol})",
                    url=url,
                    protocol=SUBPROTOCOL,
                ),
                f"subprotocol {ws.subprotocol!r}",
            )
        self.ws = ws

    async def join(self, hello: Hello) -> Joined:
        """Send ``hello`` and wait for ``welcome`` (or raise :class:`JoinError`)."""
        assert self.ws is not None
        await self.ws.send(encode_client(hello))
        while True:
            try:
                event = parse_server(await self.ws.recv())
            except ProtocolError:
                continue
            if isinstance(event, Welcome):
                break
            if isinstance(event, Error):
                raise JoinError(event.code, str(event.message), event.until)
        first = self.joined is None
        self.joined = Joined(
            event.name, event.token, event.last_id, event.rooms, event.direct, event.admin
        )
        if first:
            self.last_id = event.last_id
            self.positions.floor = event.last_id
        listed = [(room_key(r.room), r.room) for r in event.rooms]
        listed += [("@" + name_key(d.with_), "@" + d.with_) for d in event.direct]
        self.positions.listed(listed, event.last_id if first else self.positions.resumed_from)
        # Later joins use the token (no password prompt) and resume where we were.
        self.hello = self._resuming(event.name, event.token)
        self.live = True
        # Answered after the whole catch-up: its answer proves this connection is live.
        self._marker = await self._send(Who())
        return self.joined

    def _resuming(self, name: str, token: str | None) -> Hello:
        """The ``hello`` of a reconnect: each conversation's position, and the newest id."""
        positions = self.positions
        return Hello(name, token=token, resume_from=positions.floor, resume=positions.resume())

    async def say(self, text: str, to: str | None = None, room: str | None = None) -> None:
        """Send a message (to ``room``, or privately ``to``; neither: the default room).

        Kept and re-sent, room and all, until the server acknowledges it.
        """
        cid = f"{self._prefix}{next(self._cids)}"
        say = Say(text, to, cid, room)
        self.unacked[cid] = say
        self._acked.clear()
        await self._send(say)

    async def send(self, event: ClientEvent) -> bool:
        """Send another event (``who``, ``join``, ``read``, ``logout``...); False when offline."""
        if isinstance(event, Say):
            await self.say(event.text, event.to, event.room)
            return True
        if isinstance(event, Logout):
            self.closing = True
        return await self._send(event)

    async def _send(self, event: ClientEvent) -> bool:
        if self.ws is None or not self.live:
            return False  # a Say stays in the outbox and goes out after the next join
        try:
            await self.ws.send(encode_client(event))
        except ConnectionClosed:
            return False
        return True

    async def events(self) -> AsyncIterator[ServerEvent]:
        """Server events, across reconnects, until the conversation ends for good."""
        while True:
            assert self.ws is not None
            if self._rejoined is not None:  # the new welcome: the user's rooms and unread counts
                welcome, self._rejoined = self._rejoined, None
                yield welcome
            try:
                async for raw in self.ws:
                    try:
                        event = parse_server(raw)
                    except ProtocolError:
                        continue  # an event this client does not know yet
                    if self._settle(event):
                        yield event
            except ConnectionClosed:
                pass
            self.live = False
            self.positions.proven = False
            code = self.ws.close_code
            if self.closing or code in FINAL_CLOSE_CODES:
                log.info("connection closed: code %s (%s)", code, self.ws.close_reason or "-")
                self.resends.stop()
                return
            log.info("connection lost: code %s (%s)", code, self.ws.close_reason or "-")
            if not await self._reconnect():
                self.resends.stop()
                return

    @property
    def _me(self) -> str:
        return "" if self.joined is None else self.joined.name

    def _settle(self, event: ServerEvent) -> bool:
        """Book-keeping for one event; False when it must not be shown (a duplicate)."""
        if isinstance(event, Message):
            if event.cid is not None:  # ours, replayed on resume: its ack may have been lost
                self._settle_cid(event.cid, event.id)
            room = None if event.room is None else room_key(event.room)
            backlog = self._backlog.get(room) if room is not None else None
            if backlog is not None and event.id <= backlog[0]:
                # The backlog of a room just joined: older than ids seen elsewhere, yet new
                # here, unless this room's messages were passed on already (a second join).
                fresh = event.id > backlog[1]
            else:
                # A resume replays each conversation after its own position (one with
                # none after resume_from): at or below it, this was passed on before.
                seen_before = self.resumed and self.positions.seen_before(event, self._me)
                fresh = event.id not in self.own_ids and not seen_before
            self.last_id = max(self.last_id, event.id)
            self.positions.see(event, self._me)
            if fresh and room is not None:
                self._room_newest[room] = max(self._room_newest.get(room, 0), event.id)
            return fresh
        if isinstance(event, Users) and self._marker:  # the answer to our own `who`
            self._marker = False
            self.positions.live(self.last_id)
            return False
        if isinstance(event, RoomJoined):
            room = room_key(event.room)
            self.positions.listed([(room, event.room)], event.last_id)
            self._backlog[room] = (event.last_id, self._room_newest.get(room, 0))
            return True
        if isinstance(event, Ack) and not self.positions.proven:
            self.positions.live(self.last_id)  # answered after the catch-up, like `who`
        if isinstance(event, Ack) and event.cid is not None:
            self._settle_cid(event.cid, event.id, event.to)
            return False
        if isinstance(event, Error) and event.cid is not None:
            say = self.unacked.get(event.cid)
            if (
                event.code == "store_unavailable"
                and say is not None
                and self.resends.refused(event.cid, say)
            ):
                return False  # sent again soon (the user was told)
            self._settle_cid(event.cid, None)
        return True

    def _settle_cid(self, cid: str, message_id: int | None, to: str | None = None) -> None:
        """The server answered for ``cid``: stored as ``message_id``, or refused (None)."""
        say = self.unacked.pop(cid, None)
        self.resends.settled(cid)
        if say is not None and message_id is not None:
            self.own_ids.add(message_id)
            self.on_ack(message_id, say, to)
        if not self.unacked:
            self._acked.set()

    async def _send_again(self, cid: str) -> None:
        say = self.unacked.get(cid)
        if say is not None:  # (offline: it goes with the others after the reconnect)
            await self._send(say)

    async def _reconnect(self) -> bool:
        """Dial again until joined (True) or hopeless (False); one status line each way."""
        attempt = 0
        while not self.closing:
            attempt += 1
            delay = backoff(attempt, cap=self.max_backoff)
            if attempt == 1:
                seconds = max(1, math.ceil(delay))
                self.status(t("connection lost; reconnecting in {seconds} s…", seconds=seconds))
            log.info("reconnect attempt %d in %.1f s", attempt, delay)
            await asyncio.sleep(delay)
            try:
                await self.connect()
                assert self.hello is not None
                self.hello = self._resuming(self.hello.name, self.hello.token)
                self.positions.resumed_from = self.positions.floor
                await self.join(self.hello)
            except ConnectError as exc:
                log.info("reconnect attempt %d failed: %s (%s)", attempt, exc, exc.detail)
                continue
            except JoinError as exc:
                if exc.code in FINAL_JOIN_ERRORS:
                    self.gave_up = t("cannot join again: {message}", message=exc.message)
                    self.status(self.gave_up)
                    return False
                log.info("reconnect attempt %d refused: %s (%s)", attempt, exc.code, exc.message)
                continue
            except ConnectionClosed as exc:
                log.info("reconnect attempt %d: connection lost while joining (%s)", attempt, exc)
                continue
            self.resumed = True
            self.reconnects += 1
            self._backlog.clear()  # a resume replays in id order: nothing older is new
            assert self.joined is not None
            self._rejoined = Welcome(
                self.joined.name,
                self.joined.token,
                self.joined.last_id,
                rooms=self.joined.rooms,
                direct=self.joined.direct,
                admin=self.joined.admin,
            )
            log.info(
                "reconnected after %d attempt(s); resuming after message %d", attempt, self.last_id
            )
            self.status(t("back online"))
            for say in list(self.unacked.values()):
                await self._send(say)
            return True
        return False

    async def wait_acked(self, within: float) -> bool:
        """Wait until every message sent so far is acknowledged; False on timeout."""
        try:
            async with asyncio.timeout(within):
                await self._acked.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self.closing = True
        self.resends.stop()
        if self.ws is not None:
            await self.ws.close(1000, "bye")

    @property
    def close_code(self) -> int | None:
        return None if self.ws is None else self.ws.close_code

    @property
    def close_reason(self) -> str:
        """Why the server closed the connection (a ban says so), or empty."""
        return "" if self.ws is None else self.ws.close_reason or ""


def url_with_lang(url: str, lang: str | None) -> str:
    """``url`` with its ``lang`` query parameter set to ``lang`` (unchanged when None)."""
    if lang is None:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "lang"]
    query.append(("lang", lang))
    return urlunsplit(parts._replace(query=urlencode(query)))


#: asyncio's message when every address of a host failed (Python 3.11 joins them in one).
_MULTIPLE = re.compile(r"\[Errno (\d+)\]")


def refused(exc: OSError) -> bool:
    """True when nothing listens there: the connection was refused (on every address)."""
    if isinstance(exc, ConnectionRefusedError):
        return True
    text = str(exc)
    if exc.errno is None and text.startswith("Multiple exceptions"):
        codes = _MULTIPLE.findall(text)
        return bool(codes) and all(int(c) == errno.ECONNREFUSED for c in codes)
    return False


def unreachable(url: str, exc: OSError) -> Text:
    """Why ``url`` cannot be reached, for people: what to do about it, no errno."""
    host = (urlsplit(url).hostname or "").lower()
    if refused(exc):
        if host in LOCAL_HOSTS or host.startswith("127."):
            return t(
                "no papo server at {url}; start one with: make run (or python server.py)", url=url
            )
        return t("nothing answers at {url}; is the address right, and is the server up?", url=url)
    if isinstance(exc, socket.gaierror):
        return t("cannot find the host {host}; is the address right?", host=host)
    if isinstance(exc, ssl_module.SSLCertVerificationError):
        return t(
            "the certificate of {url} is not trusted ({reason}); "
            "for a private certificate authority, pass its certificate with --ca FILE",
            url=url,
            reason=exc.verify_message or "certificate verify failed",
        )
    if isinstance(exc, ssl_module.SSLError):
        return t("cannot talk TLS with {url} ({reason})", url=url, reason=exc.reason or exc)
    return t("cannot reach {url}; check the address and the network", url=url)
