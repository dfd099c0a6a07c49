"""Floods end: refusals counted over a sliding window per user and per address.

In process the hub runs on a fake clock (no sleeps): a client at ten times the
rate, whose token bucket gives a token back every 50 ms, is closed within the
window, and so is its reconnect; joins and password tries are limited per
address. Over real sockets a flood is closed while ten others keep chatting
(no timing is asserted: the flood is far above the limit and the close is
awaited on a condition), and the per-address connection cap answers 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from papo.directory import Session
from papo.hub import Hub
from papo.limits import SlidingWindow
from papo.protocol import Hello, Say
from tests.conftest import StartServer
from tests.fakes import FakeLink, link, make_hub, send
from tests.helpers import JsonClient, closed_with


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_sliding_window_counts_the_last_seconds_only() -> None:
    clock = Clock()
    window = SlidingWindow(3, 10.0, clock)
    assert [window.hit("a") for _ in range(3)] == [False] * 3
    assert window.hit("a")  # the fourth within 10 s
    assert not window.hit("b")  # keys are apart
    clock.now += 10.0
    assert not window.hit("a") and window.count("a") == 1
    assert not SlidingWindow(0, 10.0, clock).hit("a")  # 0: no limit


def test_a_sliding_window_forgets_quiet_keys() -> None:
    clock = Clock()
    window = SlidingWindow(5, 1.0, clock, max_keys=2000)
    for i in range(5000):
        window.hit(f"k{i}")
        clock.now += 0.01
    assert len(window._stamps) <= 2000


async def joined(hub: Hub, name: str, address: str = "10.0.0.1") -> Session:
    session = hub.attach(FakeLink(address=address))
    await hub.handle(session, Hello(name))
    await hub.settle()
    link(session).take()
    return session


async def flood(hub: Hub, session: Session, clock: Clock, rate: float, seconds: float) -> int:
    """Send at ``rate`` messages a second for ``seconds`` (or until closed); how many went."""
    sent = 0
    while sent < rate * seconds and not link(session).closed:
        await send(hub, session, Say(f"m{sent}"))  # as the transport hands them over
        sent += 1
        clock.now += 1 / rate
    return sent


async def test_ten_times_the_rate_is_closed_within_the_window() -> None:
    """The issue's reproduction: 200 messages/s against 20/s got a token back every
    50 ms, so the run of refusals reset and the flood was never closed."""
    clock = Clock()
    hub = await make_hub(rate=20, burst=40, clock=clock)
    session = await joined(hub, "flood")
    calm = await joined(hub, "calm", address="10.0.0.2")
    sent = await flood(hub, session, clock, rate=200, seconds=10)
    assert link(session).close_code == 1008
    assert sent < 200 * 10  # within the window, not at its end
    assert hub.stats.flood_closes == 1
    await hub.handle(calm, Say("ainda aqui"))
    assert link(calm).of("ack") and link(calm).close_code is None


async def test_the_limit_itself_is_never_closed() -> None:
    clock = Clock()
    hub = await make_hub(rate=20, burst=40, clock=clock)
    session = await joined(hub, "steady")
    await flood(hub, session, clock, rate=20, seconds=60)
    assert link(session).close_code is None
    assert link(session).of("error") == []


async def test_a_reconnect_or_a_new_name_does_not_reset_the_count() -> None:
    clock = Clock()
    hub = await make_hub(rate=20, burst=40, clock=clock)
    first = await joined(hub, "flood")
    await flood(hub, first, clock, rate=200, seconds=10)
    assert link(first).close_code == 1008
    hub.detach(first)  # what the transport does once it closed
    again = await joined(hub, "flood")  # same user, same address: a fresh bucket
    await flood(hub, again, clock, rate=200, seconds=1)
    assert link(again).close_code == 1008
    elsewhere = await joined(hub, "flood", address="10.0.9.9")  # same user, another address
    await flood(hub, elsewhere, clock, rate=200, seconds=1)
    assert link(elsewhere).close_code == 1008
    other_name = await joined(hub, "outro")  # same address, another name
    await flood(hub, other_name, clock, rate=200, seconds=1)
    assert link(other_name).close_code == 1008
    clock.now += 11  # the window has passed: a fresh start
    later = await joined(hub, "flood")
    await hub.handle(later, Say("calmo"))
    assert link(later).of("ack") and link(later).close_code is None


async def test_joins_are_limited_per_address_and_a_join_flood_closes() -> None:
    clock = Clock()
    hub = await make_hub(joins_per_address=5, clock=clock)
    answers = []
    for i in range(6):
        session = hub.attach(FakeLink(address="10.0.0.3"))
        await hub.handle(session, Hello(f"n{i}"))
        await hub.settle()
        answers += [e.get("code", e["type"]) for e in link(session).take()]
    assert [a for a in answers if a in ("welcome", "rate_limited")] == ["welcome"] * 5 + [
        "rate_limited"
    ]
    elsewhere = hub.attach(FakeLink(address="10.0.0.4"))
    await hub.handle(elsewhere, Hello("elsewhere"))
    assert link(elsewhere).of("welcome")
    hammer = hub.attach(FakeLink(address="10.0.0.3"))
    for i in range(200):
        if hammer.link.closed:
            break
        await hub.handle(hammer, Hello(f"h{i}"))
    assert link(hammer).close_code == 1008
    clock.now += 11
    assert (await joined(hub, "later", address="10.0.0.3")).user is not None


async def test_password_tries_are_limited_per_address_across_names() -> None:
    hub = await make_hub()
    for i in range(6):
        owner = hub.attach(FakeLink(address="10.0.0.9"))
        await hub.handle(owner, Hello(f"alvo{i}", password="certa1"))
    codes = []
    guesser = hub.attach(FakeLink(address="10.0.0.5"))
    for i in range(6):  # four names a time each: never five wrong tries for one name
        for _ in range(4):
            await hub.handle(guesser, Hello(f"alvo{i}", password="errada"))
    for event in link(guesser).of("error"):
        codes.append(event["code"])
    assert "too_many_attempts" in codes
    assert codes.count("bad_password") == 20  # four times a name's five
    assert guesser.user is None


# ---------------------------------------------------------------- over real sockets


async def test_a_flood_at_ten_times_the_rate_is_closed_while_ten_others_chat(
    start_server: StartServer,
) -> None:
    server = start_server("--rate-limit", "20", "--presence-grace", "0.3")
    others = [await JsonClient.open(server.url, f"calmo{i}") for i in range(10)]
    flooder = await JsonClient.open(server.url, "flood")

    async def send_flood() -> None:
        # About 200 a second (the machine may make it slower; even 40 a second
        # is twice the limit and refused 20 times a second, closed in 5 s).
        with contextlib.suppress(ConnectionClosed):
            for i in range(20_000):
                await flooder.ws.send(f'{{"type":"say","text":"f{i}"}}')
                await asyncio.sleep(0.005)

    sender = asyncio.create_task(send_flood())
    try:
        assert await closed_with(flooder.ws, timeout=60) == 1008
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    for i, client in enumerate(others):  # each of the ten is heard by the others
        ack = await client.say(f"oi de {i}")
        assert ack["type"] == "ack", ack
    for i, client in enumerate(others):
        deadline = time.monotonic() + 10
        heard: set[str] = set()
        while len(heard) < 9 and time.monotonic() < deadline:
            event = await client.expect("message", timeout=max(0.1, deadline - time.monotonic()))
            if event["text"].startswith("oi de"):
                heard.add(event["text"])
        assert heard == {f"oi de {j}" for j in range(10) if j != i}
    for client in others:
        await client.close()


async def test_connections_per_address_are_capped_with_429(start_server: StartServer) -> None:
    server = start_server("--max-connections-per-ip", "3")
    open_ = [await connect(server.url, open_timeout=5) for _ in range(3)]
    with pytest.raises(InvalidStatus) as caught:
        await connect(server.url, open_timeout=5)
    assert caught.value.response.status_code == 429
    assert b"too many connections" in caught.value.response.body
    await open_.pop().close()
    deadline = time.monotonic() + 10  # the server notices the close a moment later
    while True:
        try:
            open_.append(await connect(server.url, open_timeout=5))
            break
        except InvalidStatus:
            assert time.monotonic() < deadline, "a closed connection was never counted out"
            await asyncio.sleep(0.05)
    for ws in open_:
        await ws.close()
