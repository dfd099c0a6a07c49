"""The terminal client sends again, by itself, a message refused with ``store_unavailable``.

In-process: a :class:`~papo.client_session.ChatSession` over a fake server
(:class:`tests.fakes.FakeServer`) and a clock that moves only when the test
says; no sockets, no sleeps. The last test runs it against a real server
whose database another process holds locked for a moment.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from papo.client_resend import RESEND_TRIES, resend_delay
from papo.client_session import ChatSession
from papo.i18n import Text, render
from papo.protocol import Hello, ServerEvent
from tests.fakes import FakeClock, FakeServer, settle
from tests.helpers import JsonClient, ServerProcess

REFUSED = "the server cannot store this now; nothing was sent, try again"


class Client:
    """A joined session, what it showed and what it said to the user."""

    def __init__(self, clock: FakeClock) -> None:
        self.said: list[Text] = []
        self.session = ChatSession("ws://papo.test", status=self.said.append, sleep=clock.sleep)
        self.server = FakeServer()
        self.session.ws = self.server  # type: ignore[assignment]
        self.session.live = True
        self.shown: list[ServerEvent] = []
        self.acked: list[tuple[int, str]] = []
        self.session.on_ack = lambda message_id, say, to: self.acked.append((message_id, say.text))
        self._reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for event in self.session.events():
            self.shown.append(event)

    def says(self) -> list[dict[str, Any]]:
        return [e for e in self.server.sent if e["type"] == "say"]

    async def answer(self, **event: Any) -> None:
        self.server.play(**event)
        await settle()

    async def close(self) -> None:
        await self.session.close()
        await self._reading


@pytest.fixture
async def client() -> AsyncIterator[tuple[Client, FakeClock]]:
    clock = FakeClock()
    one = Client(clock)
    yield one, clock
    await one.close()


async def test_a_refused_message_is_sent_again_with_its_cid_until_acknowledged(
    client: tuple[Client, FakeClock],
) -> None:
    one, clock = client
    await one.session.say("oi", room="#sala")
    first = one.says()[0]
    for refusal in range(3):  # refused three times: sent again each time, told once
        await one.answer(type="error", code="store_unavailable", message=REFUSED, cid=first["cid"])
        assert one.shown == [] and one.session.resends.waiting == 1
        assert len(one.says()) == 1 + refusal  # not yet: after a backoff
        await clock.advance(10.0)  # more than the longest wait
        assert one.says()[-1] == first  # the same message, room and cid
    assert [t.msgid for t in one.said] == [
        "your message is not confirmed yet; sending it again in {seconds} s…"
    ]
    await one.answer(type="ack", id=7, cid=first["cid"])
    assert one.acked == [(7, "oi")] and not one.session.unacked
    assert one.session.resends.waiting == 0 and clock.sleeping == 0
    assert await one.session.wait_acked(0)


async def test_a_message_still_refused_after_its_tries_is_given_up_saying_so(
    client: tuple[Client, FakeClock],
) -> None:
    one, clock = client
    await one.session.say("até logo")
    cid = one.says()[0]["cid"]
    for _ in range(RESEND_TRIES):
        await one.answer(type="error", code="store_unavailable", message=REFUSED, cid=cid)
        await clock.advance(10.0)
    assert len(one.says()) == 1 + RESEND_TRIES and one.shown == []
    await one.answer(type="error", code="store_unavailable", message=REFUSED, cid=cid)
    assert [type(e).__name__ for e in one.shown] == ["Error"]  # the server's words, shown
    assert not one.session.unacked and one.session.resends.waiting == 0
    gave_up = one.said[-1]
    assert render(gave_up, "en") == "gave up sending your message after 6 tries: até logo"
    assert render(gave_up, "pt-BR") == (
        "desisti de enviar sua mensagem depois de 6 tentativas: até logo"
    )
    await clock.advance(10.0)
    assert len(one.says()) == 1 + RESEND_TRIES  # nothing more


async def test_other_refusals_are_not_sent_again_and_an_ack_stops_a_waiting_resend(
    client: tuple[Client, FakeClock],
) -> None:
    one, clock = client
    await one.session.say("calado")
    muted = one.says()[0]["cid"]
    await one.answer(type="error", code="muted", message="you are muted", cid=muted)
    assert len(one.shown) == 1 and not one.session.unacked  # shown, dropped, as before
    await one.session.say("depois")
    cid = one.says()[-1]["cid"]
    await one.answer(type="error", code="store_unavailable", message=REFUSED, cid=cid)
    # the first send was stored after all (its ack was only late): no re-send follows
    await one.answer(type="ack", id=9, cid=cid)
    await clock.advance(10.0)
    assert [s["cid"] for s in one.says()] == [muted, cid]
    assert one.said[0].msgid.startswith("your message is not confirmed yet")


async def test_offline_when_its_time_comes_it_goes_with_the_reconnect_instead(
    client: tuple[Client, FakeClock],
) -> None:
    one, clock = client
    await one.session.say("oi")
    cid = one.says()[0]["cid"]
    await one.answer(type="error", code="store_unavailable", message=REFUSED, cid=cid)
    one.session.live = False  # the connection dropped meanwhile
    await clock.advance(10.0)
    assert len(one.says()) == 1 and cid in one.session.unacked  # kept for the reconnect


def test_the_wait_before_each_resend_grows_and_is_capped() -> None:
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0), (9, 5.0)]:
        for _ in range(20):
            assert ceiling / 2 <= resend_delay(attempt) <= ceiling


async def test_a_message_refused_while_the_database_is_locked_goes_once_it_is_free(
    server: ServerProcess,
) -> None:
    said: list[Text] = []
    session = ChatSession(server.url, status=said.append)
    await session.connect()
    await session.join(Hello("ana"))
    reading = asyncio.create_task(read_all(session))
    beto = await JsonClient.open(server.url, "beto")
    locker = sqlite3.connect(server.data_dir / "papo.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the database
    try:
        await session.say("espera")
        deadline = time.monotonic() + 30
        while not said:  # refused (store_unavailable): the session says it sends it again
            assert time.monotonic() < deadline, "no store_unavailable within 30 s"
            await asyncio.sleep(0.05)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert said[0].msgid.startswith("your message is not confirmed yet")
    assert await session.wait_acked(30.0)  # sent again by itself, and stored
    got = await beto.expect("message", timeout=10)
    assert got["text"] == "espera"
    assert [e for e in await beto.quiet(0.3) if e["type"] == "message"] == []  # once
    await beto.close()
    await session.close()
    await reading


async def read_all(session: ChatSession) -> None:
    async for _ in session.events():
        pass
