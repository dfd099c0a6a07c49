"""papo's lean WebSocket connection, in process: no sockets, no sleeps.

The first tests pin down what :mod:`papo.wsconn` relies on in ``websockets``'
sans-I/O layer (``ServerProtocol``, ``Frame``, ``Request``): if an upgrade of
the library changes any of it, they fail here, by name, before anything else.
The rest drive :class:`papo.wsconn.WsConnection` through a fake transport.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Awaitable
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import SEND_EOF, State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader
from websockets.utils import apply_mask

from papo.metrics import TransportStats
from papo.wsconn import INBOX_HIGH, PIPELINE, Endpoint, Message, WsConnection, _ServerProtocol
from papo.wsframe import client_text
from papo.wsloop import Keepalive, Outbox

KEY = base64.b64encode(os.urandom(16)).decode()


def handshake(subprotocols: str | None = None) -> bytes:
    offer = f"Sec-WebSocket-Protocol: {subprotocols}\r\n" if subprotocols else ""
    return (
        "GET /?lang=pt-BR HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    ).encode()


def client_frame(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    return Frame(opcode, data, fin).serialize(mask=True, extensions=[])


def server_frames(data: bytes) -> list[Frame]:
    """The frames in what the server wrote after its HTTP response."""
    _, _, rest = data.partition(b"\r\n\r\n")
    reader = StreamReader()
    reader.feed_data(rest)
    frames = []
    while True:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
        else:
            return frames


# ---------------------------------------------------------------- the library's contract


def test_the_sans_io_protocol_still_works_as_papo_uses_it() -> None:
    protocol = _ServerProtocol(subprotocols=["papo.v1"], extensions=None, max_size=1000)  # type: ignore[list-item]
    assert protocol.state is State.CONNECTING and protocol.available_subprotocols == ["papo.v1"]
    protocol.receive_data(handshake("chat, papo.v1"))
    [request] = protocol.events_received()
    assert isinstance(request, Request) and request.path == "/?lang=pt-BR"
    assert "headers" in {f.name for f in fields(Request)}  # _forget_headers replaces it
    response = protocol.accept(request)
    assert response.status_code == 101
    assert response.headers["Sec-WebSocket-Protocol"] == "papo.v1"  # our select_subprotocol
    protocol.send_response(response)
    assert protocol.state is State.OPEN  # type: ignore[comparison-overlap]
    assert protocol.subprotocol == "papo.v1"
    assert protocol.extensions == []  # so pre-built frames are valid
    protocol.data_to_send()

    protocol.receive_data(client_frame(Opcode.PING, b"p") + client_frame(Opcode.TEXT, b"oi"))
    ping, text = protocol.events_received()
    assert (ping.opcode, text.opcode, bytes(text.data), text.fin) == (
        Opcode.PING,
        Opcode.TEXT,
        b"oi",
        True,
    )
    [pong] = server_frames(b"\r\n\r\n" + b"".join(protocol.data_to_send()))
    assert pong.opcode is Opcode.PONG  # answered by the library

    protocol.send_ping(b"")
    protocol.fail(1011, "keepalive ping timeout")
    *data, eof = protocol.data_to_send()
    assert eof == SEND_EOF == b""  # the server half-closes after its close frame
    ping_out, close = server_frames(b"\r\n\r\n" + b"".join(data))
    assert ping_out.opcode is Opcode.PING
    assert Close.parse(close.data) == Close(1011, "keepalive ping timeout")
    assert protocol.close_expected() and protocol.state is State.CLOSING
    protocol.receive_eof()
    protocol.receive_eof()  # idempotent: connection_lost calls it after eof_received
    assert protocol.state is State.CLOSED and protocol.close_code == 1006  # none received


def test_a_client_close_is_echoed_then_eof_and_too_big_is_1009() -> None:
    protocol = ServerProtocol(max_size=10)
    protocol.receive_data(handshake())
    [request] = protocol.events_received()
    assert isinstance(request, Request)
    protocol.send_response(protocol.accept(request))
    assert protocol.subprotocol is None  # plain-text mode
    protocol.data_to_send()
    protocol.receive_data(client_frame(Opcode.TEXT, b"x" * 11))
    *_, eof = protocol.data_to_send()
    assert eof == SEND_EOF and protocol.close_sent is not None
    assert protocol.close_sent.code == 1009

    closing = ServerProtocol()
    closing.receive_data(handshake())
    [request] = closing.events_received()
    assert isinstance(request, Request)
    closing.send_response(closing.accept(request))
    closing.data_to_send()
    closing.receive_data(client_frame(Opcode.CLOSE, Close(1000, "bye").serialize()))
    *echo, eof = closing.data_to_send()
    assert eof == SEND_EOF and server_frames(b"\r\n\r\n" + b"".join(echo))[0].opcode is Opcode.CLOSE


def test_the_parser_state_papo_reads_before_reading_a_frame_itself() -> None:
    # WsConnection.data_received reads a lone text frame itself (papo.wsframe.client_text)
    # only while the library's parser waits for a frame's first byte: it checks these.
    protocol = ServerProtocol()
    protocol.receive_data(handshake())
    [request] = protocol.events_received()
    assert isinstance(request, Request)
    protocol.send_response(protocol.accept(request))
    assert isinstance(protocol.reader.buffer, bytearray) and protocol.current_size is None
    protocol.receive_data(client_frame(Opcode.TEXT, b"dois ", fin=False)[:3])
    assert protocol.reader.buffer  # half a header: the parser is inside a frame
    protocol.receive_data(client_frame(Opcode.TEXT, b"dois ", fin=False)[3:])
    assert not protocol.reader.buffer and protocol.current_size == 5  # inside a message
    protocol.receive_data(client_frame(Opcode.CONT, b"ok"))
    assert protocol.current_size is None


def raw_frame(first: int, data: bytes, mask: bool) -> bytes:
    """A frame as any client could send it, reserved bits and unknown opcodes included."""
    n, masked = len(data), 0x80 if mask else 0
    if n < 126:
        head = bytes([first, masked | n])
    elif n < 1 << 16:
        head = bytes([first, masked | 126]) + n.to_bytes(2)
    else:
        head = bytes([first, masked | 127]) + n.to_bytes(8)
    key = os.urandom(4)
    return head + (key + apply_mask(data, key) if mask else data)


frames = st.builds(
    raw_frame,
    st.just(0x81) | st.just(0x01) | st.just(0x80) | st.integers(0, 255),
    st.binary(max_size=70_000) | st.text(max_size=200).map(str.encode) | st.just(b""),
    st.just(True) | st.booleans(),
)


@settings(max_examples=300)
@given(st.lists(frames, min_size=1, max_size=3), st.integers(0, 3), st.integers(0, 10))
@example(sent=[raw_frame(0x81, b"unmasked", mask=False)], cut=3, extra=4)  # as long as a masked one
@example(sent=[raw_frame(0xC1, b"rsv1", mask=True)], cut=0, extra=0)
@example(sent=[raw_frame(0x91, b"rsv3", mask=True)], cut=0, extra=0)
@example(sent=[raw_frame(0x8A, b"pong", mask=True)], cut=0, extra=0)
@example(sent=[raw_frame(0x81, b"x" * 65_001, mask=True)], cut=0, extra=0)  # over max_size
def test_a_lone_text_frame_reads_as_the_library_reads_it(
    sent: list[bytes], cut: int, extra: int
) -> None:
    data = b"".join(sent)
    if cut:  # or part of it, or one more byte
        data = data[:-cut] if cut < 3 else data + b"\x00" * extra
    protocol = ServerProtocol(max_size=65_000)
    protocol.receive_data(handshake())
    [request] = protocol.events_received()
    assert isinstance(request, Request)
    protocol.send_response(protocol.accept(request))
    protocol.data_to_send()
    payload = client_text(data, 65_000)
    protocol.receive_data(data)
    events = protocol.events_received()
    frame = events[0] if len(events) == 1 else None
    alone = (
        isinstance(frame, Frame)
        and frame.opcode is Opcode.TEXT
        and frame.fin
        and not protocol.reader.buffer
        and protocol.state is State.OPEN
        and not protocol.data_to_send()
    )
    if payload is not None:  # read the same, and the library would have changed nothing else
        assert alone and isinstance(frame, Frame) and bytes(frame.data) == payload
        assert protocol.current_size is None
    elif alone and isinstance(frame, Frame) and len(frame.data) < 1 << 16:
        assert len(sent) > 1 or cut  # what it refuses is never a lone frame it could read


async def test_what_is_not_a_lone_text_frame_goes_to_the_library() -> None:
    app = Recorder()
    _, conn, transport = make(app)
    line = client_frame(Opcode.TEXT, "olá".encode())
    conn.data_received(line[:3])  # a frame over two reads
    conn.data_received(line[3:])
    conn.data_received(line)  # read by papo itself
    conn.data_received(client_frame(Opcode.TEXT, b"x" * 300))  # a 16-bit length
    conn.data_received(client_frame(Opcode.PING, b"p") + line)  # answered by the library
    await until(lambda: len(app.messages) == 4)
    assert app.messages == ["olá", "olá", "x" * 300, "olá"]
    assert server_frames(bytes(transport.out))[0].opcode is Opcode.PONG
    conn.data_received(client_frame(Opcode.TEXT, b"x" * 1001))  # over max_size: 1009
    close = conn.protocol.close_sent
    assert close is not None and close.code == 1009


async def test_invalid_utf8_in_a_lone_frame_fails_with_1007() -> None:
    app = Recorder()
    _, conn, transport = make(app)
    conn.data_received(client_frame(Opcode.TEXT, b"ok \xff"))
    close = conn.protocol.close_sent
    assert close is not None and close.code == 1007 and transport.eof
    assert app.messages == []


# ---------------------------------------------------------------- the connection


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.eof = False
        self.aborted = False
        self.closing = False
        self.paused = False
        self.buffered = 0  # what get_write_buffer_size says

    def write(self, data: Any) -> None:
        assert not self.eof, "wrote after EOF"
        self.out += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closing or self.aborted

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


class Recorder:
    """An app that records; ``gate`` (when set) holds every message until released."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.closed_count = 0
        self.gate: asyncio.Event | None = None

    def route(self, conn: WsConnection, request: Request) -> None:
        return None

    def opened(self, conn: WsConnection, request: Request) -> None:
        conn.session = "a session"
        conn.lang = request.headers.get("Host", "")  # headers are still there in opened()

    def received(self, conn: WsConnection, message: Message) -> Awaitable[object] | None:
        return self.record(message)

    async def record(self, message: Message) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.messages.append(message)

    def closed(self, conn: WsConnection) -> None:
        self.closed_count += 1


async def until(condition: Any, seconds: float = 5.0) -> None:
    """Let the loop run until ``condition()`` (the app's task runs in its steps)."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - one loop step at a time, no sleeping
            await asyncio.sleep(0)


def make(app: Recorder, **options: Any) -> tuple[Endpoint, WsConnection, FakeTransport]:
    settings: dict[str, Any] = {
        "subprotocol": "papo.v1",
        "max_size": 1000,
        "max_pending": 10_000,
        "open_timeout": None,
        "ping_interval": None,
        "ping_timeout": None,
    }
    settings.update(options)
    endpoint = Endpoint(app, TransportStats(), **settings)
    conn = endpoint()
    transport = FakeTransport()
    conn.connection_made(transport)
    conn.data_received(handshake())
    assert transport.out.startswith(b"HTTP/1.1 101")
    return endpoint, conn, transport


async def test_an_idle_open_connection_keeps_no_task_no_timer_and_no_headers() -> None:
    app = Recorder()
    _, conn, _ = make(app, open_timeout=10.0)
    assert conn.lang == "x"  # opened() read the Host header
    assert conn._worker is None and conn._timer is None and conn._inbox is None
    assert conn.protocol.state is State.OPEN and not conn.closed


async def test_messages_arrive_whole_and_in_order() -> None:
    app = Recorder()
    _, conn, _ = make(app)
    conn.data_received(
        client_frame(Opcode.TEXT, b"um")
        + client_frame(Opcode.TEXT, b"dois ", fin=False)
        + client_frame(Opcode.CONT, "ç".encode()[:1], fin=False)  # a character cut in two
        + client_frame(Opcode.CONT, "ç".encode()[1:])
        + client_frame(Opcode.BINARY, b"\x00\x01")
    )
    await until(lambda: len(app.messages) == 3)
    assert app.messages == ["um", "dois ç", b"\x00\x01"]
    await until(lambda: conn._worker is None)  # the task ends with the inbox


async def test_invalid_utf8_in_a_fragment_fails_at_once_with_1007() -> None:
    app = Recorder()
    _, conn, transport = make(app)
    conn.data_received(client_frame(Opcode.TEXT, b"ok \xff", fin=False))  # no fin yet
    close = conn.protocol.close_sent
    assert close is not None and close.code == 1007 and transport.eof
    conn.data_received(client_frame(Opcode.CONT, b"more"))  # discarded
    assert app.messages == []


async def test_a_busy_app_stops_the_reading_then_resumes_it() -> None:
    app = Recorder()
    app.gate = asyncio.Event()
    _, conn, transport = make(app)
    for n in range(INBOX_HIGH + 5):
        conn.data_received(client_frame(Opcode.TEXT, str(n).encode()))
    assert transport.paused
    app.gate.set()
    await until(lambda: len(app.messages) == INBOX_HIGH + 5)
    assert app.messages == [str(n) for n in range(INBOX_HIGH + 5)] and not transport.paused


async def test_close_sends_what_was_owed_first_and_nothing_after() -> None:
    app = Recorder()
    _, conn, transport = make(app)
    conn.write_frame(b"\x81\x02oi")
    conn.close(1013, "too slow")
    conn.write_frame(b"\x81\x02no")  # after the close: dropped
    conn.flush()
    first, close = server_frames(bytes(transport.out))
    assert bytes(first.data) == b"oi" and Close.parse(close.data).code == 1013
    assert conn.closed
    conn.data_received(client_frame(Opcode.CLOSE, Close(1013, "").serialize()))
    assert transport.eof  # the handshake is done: the server half-closes
    conn.connection_lost(None)
    assert app.closed_count == 1 and conn._timer is None


async def test_a_slow_consumer_is_closed_with_1013() -> None:
    app = Recorder()
    endpoint, conn, transport = make(app, max_pending=100)
    transport.buffered = 101
    conn.write_frame(b"\x81\x02oi")
    conn.flush()
    assert conn.closed and endpoint.stats.slow_consumer_closes == 1
    assert Close.parse(server_frames(bytes(transport.out))[-1].data).code == 1013


async def test_a_lost_connection_is_closed_for_the_app_after_its_last_message() -> None:
    app = Recorder()
    app.gate = asyncio.Event()
    endpoint, conn, _ = make(app)
    conn.data_received(client_frame(Opcode.TEXT, b"last words"))
    conn.connection_lost(ConnectionResetError())
    assert app.closed_count == 0  # "last words" is still being handled
    app.gate.set()
    await until(lambda: app.closed_count == 1)
    assert app.messages == ["last words"] and conn not in endpoint.connections
    assert conn.session is None  # no cycle left behind


class Committing(Recorder):
    """An app that answers each message with a future (a commit, say) the test settles."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[asyncio.Future[None]] = []

    def received(self, conn: WsConnection, message: Message) -> asyncio.Future[None]:
        self.messages.append(message)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future


async def test_messages_answered_with_futures_go_on_without_waiting_up_to_the_pipeline() -> None:
    app = Committing()
    _, conn, _ = make(app)
    for n in range(PIPELINE + 2):
        conn.data_received(client_frame(Opcode.TEXT, str(n).encode()))
    # Each handed over as it arrived, no task, until PIPELINE are under way.
    assert app.messages == [str(n) for n in range(PIPELINE)]
    assert conn._worker is not None and not isinstance(conn._worker, asyncio.Task)
    app.pending[0].set_exception(RuntimeError("the app's own business"))
    await until(lambda: len(app.messages) == PIPELINE + 1)  # one done: one more goes
    assert app.pending[0].exception() is not None  # (retrieved: the app would have)
    app.pending[1].set_result(None)
    await until(lambda: len(app.messages) == PIPELINE + 2)
    for future in app.pending[2:]:
        future.set_result(None)
    await until(lambda: conn._worker is None and conn._flying == 0)
    assert app.messages == [str(n) for n in range(PIPELINE + 2)] and not conn.closed
    conn.data_received(client_frame(Opcode.TEXT, b"again"))  # idle again: at once
    assert app.messages[-1] == "again"


class Mixed(Committing):
    """Futures for messages, a coroutine for "/cmd": what the coroutine saw under way."""

    def __init__(self) -> None:
        super().__init__()
        self.seen_under_way: list[int] = []

    def received(self, conn: WsConnection, message: Message) -> Any:
        if message != "/cmd":
            return super().received(conn, message)
        self.messages.append(message)

        async def command() -> None:
            self.seen_under_way.append(sum(not f.done() for f in self.pending))

        return command()


async def test_an_awaitable_runs_only_once_every_future_before_it_is_done() -> None:
    app = Mixed()
    _, conn, _ = make(app)
    for message in (b"a", b"b", b"/cmd", b"c"):
        conn.data_received(client_frame(Opcode.TEXT, message))
    assert app.messages == ["a", "b", "/cmd"]  # "c" waits behind the command
    app.pending[1].set_result(None)  # out of order: the command still waits for "a"
    for _ in range(3):
        await asyncio.sleep(0)
    assert app.seen_under_way == []
    app.pending[0].set_result(None)
    await until(lambda: app.messages == ["a", "b", "/cmd", "c"])
    assert app.seen_under_way == [0]
    app.pending[2].set_result(None)
    await until(lambda: conn._worker is None and conn._flying == 0)


async def test_a_connection_lost_under_a_future_is_closed_for_the_app_after_it() -> None:
    app = Committing()
    endpoint, conn, _ = make(app)
    conn.data_received(client_frame(Opcode.TEXT, b"last words"))
    conn.connection_lost(ConnectionResetError())
    assert app.closed_count == 0
    app.pending[0].set_result(None)
    await until(lambda: app.closed_count == 1)
    assert conn not in endpoint.connections and conn.session is None


async def test_an_app_that_fails_at_once_closes_the_connection_with_1011() -> None:
    class Failing(Recorder):
        def received(self, conn: WsConnection, message: Message) -> None:
            raise RuntimeError("bug")

    _, conn, _ = make(Failing())
    conn.data_received(client_frame(Opcode.TEXT, b"boom"))
    close = conn.protocol.close_sent
    assert close is not None and close.code == 1011


# ---------------------------------------------------------------- keepalive


class FakeTimer:
    """What Keepalive does with a timer: cancel it. (An asyncio.Handle needs an event loop,
    and one made per timer and never closed warns when collected during a later test.)"""

    def cancel(self) -> None:
        pass


class FakeLoop:
    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Any]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Any) -> Any:
        self.timers.append((self.now + delay, callback))
        return FakeTimer()

    def run_until(self, when: float) -> None:
        while self.timers and min(self.timers, key=lambda t: t[0])[0] <= when:
            self.timers.sort(key=lambda t: t[0])
            at, callback = self.timers.pop(0)
            self.now = at
            callback()
        self.now = when


class Peer:
    def __init__(self) -> None:
        self.ping_at: float | None = None
        self.pings = 0
        self.timed_out = False

    def ping(self, now: float) -> None:
        self.ping_at = now
        self.pings += 1

    def ping_unanswered(self) -> None:
        self.timed_out = True


def test_keepalive_pings_each_connection_once_an_interval_and_drops_the_silent() -> None:
    loop = FakeLoop()
    keepalive = Keepalive(loop, 20.0, 10.0)  # type: ignore[arg-type]
    answers, silent = Peer(), Peer()
    keepalive.add(answers)
    keepalive.add(silent)
    loop.run_until(18.9)
    assert answers.pings == 0  # not before (about) one interval
    loop.run_until(20.0)
    assert answers.pings == silent.pings == 1
    answers.ping_at = None  # its pong came
    keepalive.answered(answers)
    loop.run_until(31.0)
    assert silent.timed_out and not answers.timed_out
    loop.run_until(41.0)
    assert answers.pings == 2
    keepalive.remove(answers)
    loop.run_until(100.0)
    assert answers.pings == 2


@pytest.mark.parametrize("interval", [None, 0.0])
def test_no_keepalive_when_the_interval_is_off(interval: float | None) -> None:
    loop = FakeLoop()
    keepalive = Keepalive(loop, interval, 10.0)  # type: ignore[arg-type]
    keepalive.add(Peer())
    assert loop.timers == []


# ---------------------------------------------------------------- outbox


class SoonLoop:
    """Records ``call_soon`` callbacks; :meth:`step` runs one event-loop turn's worth."""

    def __init__(self) -> None:
        self.ready: list[Any] = []

    def call_soon(self, callback: Any) -> None:
        self.ready.append(callback)

    def step(self) -> None:
        ready, self.ready = self.ready, []
        for callback in ready:
            callback()


class Owed:
    """A link that records the order of its flushes in a shared list."""

    def __init__(self, name: str, written: list[str], outbox: Outbox) -> None:
        self.name, self.written, self.outbox = name, written, outbox
        self.frames: list[str] | None = None

    def write(self, frame: str) -> None:
        if self.frames is None:
            self.frames = [frame]
            self.outbox.owe(self)
        else:
            self.frames.append(frame)

    def flush(self) -> None:
        if self.frames is not None:
            self.written.append(f"{self.name}:{'+'.join(self.frames)}")
            self.frames = None


def test_outbox_writes_when_idle_at_the_end_of_the_loop_turn() -> None:
    loop, written = SoonLoop(), list[str]()
    outbox = Outbox(loop)  # type: ignore[arg-type]
    a = Owed("a", written, outbox)
    a.write("1")
    a.write("2")
    assert written == [] and len(loop.ready) == 1  # one flush scheduled, not one per frame
    loop.step()
    assert written == ["a:1+2"] and loop.ready == [] and not outbox.scheduled


def test_outbox_writes_a_slice_per_turn_and_late_frames_join_the_waiting_writes() -> None:
    loop, written = SoonLoop(), list[str]()
    outbox = Outbox(loop)  # type: ignore[arg-type]
    links = [Owed(str(i), written, outbox) for i in range(Outbox.SLICE + 2)]
    for link in links:
        link.write("m1")
    loop.step()  # the first slice
    assert written == [f"{i}:m1" for i in range(Outbox.SLICE)]
    for link in links:  # a second message arrives between slices
        link.write("m2")
    while loop.ready:
        loop.step()
    # The two still waiting took both messages in one write; the others, written
    # already, got m2 one pass later, in the order they first became owed.
    n = Outbox.SLICE
    assert written[n:] == [f"{n}:m1+m2", f"{n + 1}:m1+m2"] + [f"{i}:m2" for i in range(n)]
    assert not outbox.scheduled


def test_outbox_keeps_going_after_a_write_raises() -> None:
    loop, written = SoonLoop(), list[str]()
    outbox = Outbox(loop)  # type: ignore[arg-type]

    class Broken(Owed):
        def flush(self) -> None:
            raise OSError("gone")

    Broken("x", written, outbox).write("1")
    b = Owed("b", written, outbox)
    b.write("1")
    with pytest.raises(OSError):
        loop.step()
    loop.step()  # the one behind it was not forgotten
    assert written == ["b:1"] and not outbox.scheduled
