"""Presence in-process: a restart is not a leave, and a reconnect within the grace is not offline.

A hub over a real SQLite store in ``tmp_path`` and fake links; no sockets,
no sleeps. A "crash" is a store closed without anyone leaving.
"""

from __future__ import annotations

from pathlib import Path

from papo.protocol import Hello, Say
from papo.store import StoreError
from papo.store_sqlite import SqliteStore
from tests.fakes import FakeLink, connect, link, make_hub


async def test_users_back_after_a_restart_are_not_announced_again(tmp_path: Path) -> None:
    before = await make_hub(tmp_path, presence_grace=5)
    for name in ("ana", "beto", "carla"):
        await connect(before, name)
    await before.settle()
    assert isinstance(before.store, SqliteStore)
    await before.store.close()  # a crash: nobody left

    after = await make_hub(tmp_path, presence_grace=5)
    assert await after.presence.restore(60) == 3
    ana = await connect(after, "ana")
    beto = await connect(after, "beto")
    assert [e for e in link(ana).take() if e["type"] == "presence"] == []
    assert await after.store.is_online("carla")  # not back yet, not gone yet
    after.presence.end_restore()  # the restart's grace is over: carla did not come back
    await after.settle()
    leave = {"type": "presence", "event": "leave", "name": "carla"}
    assert link(ana).of("presence") == [leave]
    assert link(beto).of("presence") == [leave]
    assert not await after.store.is_online("carla")
    assert sorted(await after.store.online_before()) == [("ana", "ana"), ("beto", "beto")]
    assert isinstance(after.store, SqliteStore)
    await after.store.close()


async def test_the_store_forgets_who_left(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path, presence_grace=0)
    ana = await connect(hub, "ana")
    await connect(hub, "beto")
    hub.detach(ana)
    await hub.settle()
    assert await hub.store.online_before() == [("beto", "beto")]
    assert isinstance(hub.store, SqliteStore)
    await hub.store.close()


async def test_a_message_to_a_user_within_the_grace_does_not_say_offline() -> None:
    hub = await make_hub(presence_grace=30)
    ana = await connect(hub, "ana")
    pedro = await connect(hub, "pedro")
    link(ana).take()
    hub.detach(pedro)  # dropped; within the grace he is most likely reconnecting
    await hub.handle(ana, Say("volta!", to="pedro", cid="1"))
    sent = link(ana).take()
    assert [e["type"] for e in sent] == ["ack"], sent
    hub.stop()


async def test_a_message_to_a_user_who_left_says_offline_in_the_sender_language() -> None:
    hub = await make_hub(presence_grace=0)
    ana = await connect(hub, "ana", lang="pt-BR")
    pedro = await connect(hub, "pedro")
    hub.detach(pedro)
    await hub.handle(ana, Say("volta!", to="pedro", cid="1"))
    notice = link(ana).of("notice")
    assert notice == [{"type": "notice", "text": "pedro está offline; vai receber quando voltar"}]


async def test_a_welcomed_session_whose_catch_up_fails_is_closed_to_come_back() -> None:
    """The store fails after the welcome (an instance whose reader is behind Redis
    cannot resume a client yet): the client, told it joined, would wait for messages
    that never come. It gets store_unavailable and a close with 1013 (try again
    later), so it reconnects and resumes; the hub keeps nothing of it."""
    hub = await make_hub()
    beto = await connect(hub, "beto")
    await hub.handle(beto, Say("oi"))

    async def behind(message_id: int) -> bool:
        raise StoreError("this instance has not read it yet")

    hub.store.reach = behind  # type: ignore[method-assign]
    ana = hub.attach(FakeLink())
    await hub.handle(ana, Hello("ana", resume_from=hub.store.log.committed + 5))
    await hub.settle()
    sent = link(ana).take()
    assert [e["type"] for e in sent] == ["welcome", "error"]
    assert sent[1]["code"] == "store_unavailable"
    assert link(ana).close_code == 1013
    assert "ana" not in hub.users
