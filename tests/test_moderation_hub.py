"""Moderation and the message lifecycle in the hub, in-process: fake connections, a fake clock.

Every role and action is tried both ways (allowed and refused with
``forbidden``), each in a fresh hub so that no action's effect leaks into the
next; then each action's effect on exactly whom it concerns.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from papo.directory import Session
from papo.hub import Hub
from papo.moderation import parse_time
from papo.protocol import (
    Ban,
    BanIp,
    Conversation,
    Delete,
    Deop,
    Edit,
    Hello,
    History,
    Join,
    Kick,
    ListRooms,
    Mute,
    Op,
    Purge,
    ReadAudit,
    Register,
    Say,
    SetMode,
    SetTopic,
    Unban,
    UnbanIp,
    Unmute,
)
from papo.store_records import Stored
from tests.fakes import FakeLink, connect, link, make_hub
from tests.test_hub import clear, do, errors, say

ADMIN = "root"
PASSWORD = "segredo-forte"


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def world(tmp_path: Path | None = None) -> tuple[Hub, dict[str, Session], Clock]:
    """A hub with an admin (root, protected), ana who created #sala, beto and carla in it."""
    hub = await make_hub(tmp_path, admins=(ADMIN,))
    clock = Clock()
    hub.moderation.clock = clock
    s = {
        "admin": await connect(hub, ADMIN, password=PASSWORD),
        "operator": await connect(hub, "ana"),
        "member": await connect(hub, "beto"),
        "target": await connect(hub, "carla"),
    }
    await do(hub, s["operator"], Join("#sala"))  # ana creates it: its operator
    for role in ("admin", "member", "target"):
        await do(hub, s[role], Join("#sala"))
    clear(*s.values())
    return hub, s, clock


async def _own_message(hub: Hub, s: dict[str, Session], role: str) -> int:
    ack = await say(hub, s[role], "meu texto", room="#sala")
    return int(ack["id"])


async def _attempt(action: str, hub: Hub, s: dict[str, Session], role: str) -> None:
    """``role`` tries ``action`` (on carla, or on its own message)."""
    actor = s[role]
    carla_msg = (await say(hub, s["target"], "da carla", room="#sala"))["id"]
    if action == "edit_own":
        event: Any = Edit(await _own_message(hub, s, role), "corrigido")
    elif action == "delete_own":
        event = Delete(await _own_message(hub, s, role))
    elif action == "delete_any":
        event = Delete(carla_msg)
    elif action == "kick":
        event = Kick("#sala", "carla", "chega")
    elif action == "mute":
        event = Mute("#sala", "carla", 600)
    elif action == "unmute":
        await do(hub, s["admin"], Mute("#sala", "carla", 600))
        event = Unmute("#sala", "carla")
    elif action == "op":
        event = Op("#sala", "carla")
    elif action == "deop":
        await do(hub, s["admin"], Op("#sala", "carla"))
        event = Deop("#sala", "carla")
    elif action == "mode":
        event = SetMode("#sala", moderated=True)
    elif action == "speak_moderated":
        await do(hub, s["admin"], SetMode("#sala", moderated=True))
        event = Say("posso falar?", room="#sala")
    elif action == "topic_locked":
        await do(hub, s["admin"], SetMode("#sala", topic_locked=True))
        event = SetTopic("#sala", "novo tópico")
    elif action == "ban":
        event = Ban("carla", reason="spam")
    elif action == "unban":
        await do(hub, s["admin"], Ban("carla"))
        event = Unban("carla")
    elif action == "ban_ip":
        event = BanIp("203.0.113.0/24")
    elif action == "unban_ip":
        await do(hub, s["admin"], BanIp("203.0.113.0/24"))
        event = UnbanIp("203.0.113.0/24")
    elif action == "purge":
        event = Purge("carla")
    else:
        assert action == "audit"
        event = ReadAudit()
    clear(actor)
    await do(hub, actor, event)


MATRIX = {
    "edit_own": (True, True, True),
    "delete_own": (True, True, True),
    "delete_any": (True, True, False),
    "kick": (True, True, False),
    "mute": (True, True, False),
    "unmute": (True, True, False),
    "op": (True, True, False),
    "deop": (True, True, False),
    "mode": (True, True, False),
    "speak_moderated": (True, True, False),
    "topic_locked": (True, True, False),
    "ban": (True, False, False),
    "unban": (True, False, False),
    "ban_ip": (True, False, False),
    "unban_ip": (True, False, False),
    "purge": (True, False, False),
    "audit": (True, False, False),
}
ROLES = ("admin", "operator", "member")


@pytest.mark.parametrize("action", list(MATRIX))
@pytest.mark.parametrize("role", ROLES)
async def test_every_role_and_action_allowed_and_refused(role: str, action: str) -> None:
    hub, s, _ = await world()
    await _attempt(action, hub, s, role)
    allowed = MATRIX[action][ROLES.index(role)]
    answers = link(s[role]).take()
    got = [e["code"] for e in answers if e["type"] == "error"]
    assert got == ([] if allowed else ["forbidden"]), (role, action, got)
    if allowed:  # and it was done: the actor hears of it (edited, deleted, a notice, ...)
        assert answers, (role, action)


async def test_an_admin_name_without_a_password_has_no_powers() -> None:
    hub = await make_hub(admins=(ADMIN,))
    root = await connect(hub, ADMIN)  # an open name called like an admin
    await connect(hub, "carla")
    await do(hub, root, Ban("carla"))
    assert errors(root) == ["forbidden"]
    await do(hub, root, Register(PASSWORD))  # protected now: an admin
    clear(root)
    await do(hub, root, ReadAudit())
    assert errors(root) == [] and hub.moderation.state.bans == {}


async def test_nobody_acts_on_an_admin_and_operators_act_only_in_their_room() -> None:
    hub, s, _ = await world()
    for event in (Kick("#sala", ADMIN), Mute("#sala", ADMIN, 60), Deop("#sala", ADMIN)):
        await do(hub, s["operator"], event)
        assert errors(s["operator"]) == ["forbidden"], event
    await do(hub, s["member"], Join("#outra"))  # beto creates #outra: ana is no operator there
    await do(hub, s["operator"], Join("#outra"))
    clear(*s.values())
    await do(hub, s["operator"], Kick("#outra", "beto"))
    assert errors(s["operator"]) == ["forbidden"]
    await do(hub, s["admin"], Ban(ADMIN))
    assert errors(s["admin"]) == ["forbidden"]


async def test_room_joined_and_rooms_show_operators() -> None:
    hub, s, _ = await world()
    await do(hub, s["operator"], Op("#sala", "beto"))
    fresh = await connect(hub, "davi")
    await do(hub, fresh, Join("#sala"))
    joined = link(fresh).of("room")[0]
    ops = {m["name"]: m.get("op", False) for m in joined["members"]}
    assert ops == {"ana": True, "beto": True, "carla": False, "davi": False, ADMIN: True}
    await do(hub, fresh, ListRooms())
    rooms = {r["room"]: r["operators"] for r in link(fresh).of("rooms")[0]["rooms"]}
    assert rooms == {"#geral": [], "#sala": ["ana", "beto"]}
    # beto, an operator now, is told so with everyone in the room
    notices = [e["text"] for e in link(s["target"]).of("notice")]
    assert notices == ["ana made beto an operator of #sala"]


# ---------------------------------------------------------------- edit and delete


async def test_edit_reaches_everyone_who_could_see_it_and_history_shows_the_latest() -> None:
    hub, s, _ = await world()
    outsider = await connect(hub, "zeca")
    message = await say(hub, s["member"], "erro de digitação", room="#sala")
    clear(*s.values())
    await do(hub, s["member"], Edit(message["id"], "sem erro"))
    for role in ("admin", "operator", "member", "target"):  # the editor's sessions too
        [edited] = link(s[role]).of("edited")
        assert edited["id"] == message["id"] and edited["text"] == "sem erro"
        assert edited["from"] == "beto" and edited["room"] == "#sala" and edited["edited_ts"]
    assert link(outsider).take() == []
    await do(hub, s["target"], History(Conversation(room="#sala")))
    [page] = link(s["target"]).of("history")
    [shown] = [m for m in page["messages"] if m["id"] == message["id"]]
    assert shown["text"] == "sem erro" and "edited_ts" in shown
    assert [m["id"] for m in page["messages"]] == [message["id"]]  # no entry shows


async def test_edit_refusals() -> None:
    hub, s, clock = await world()
    mine = await say(hub, s["member"], "meu", room="#sala")
    theirs = await say(hub, s["target"], "dela", room="#sala")
    await do(hub, s["member"], Edit(theirs["id"], "x"))
    await do(hub, s["member"], Edit(10**6, "x"))
    assert errors(s["member"]) == ["forbidden", "unknown_message"]
    await do(hub, s["member"], Join("#privada"))
    secret = await say(hub, s["member"], "segredo", room="#privada")
    await do(hub, s["target"], Edit(secret["id"], "x"))
    assert errors(s["target"]) == ["unknown_message"]  # not "forbidden": it is not hers to see
    sent = parse_time(_ts(hub, mine["id"]))
    clock.now = sent + 15 * 60 - 1
    await do(hub, s["member"], Edit(mine["id"], "a tempo"))
    assert errors(s["member"]) == []
    clock.now = sent + 15 * 60 + 1
    await do(hub, s["member"], Edit(mine["id"], "tarde demais"))
    assert errors(s["member"]) == ["edit_window"]


async def test_delete_own_and_others_and_what_history_and_a_fresh_join_show() -> None:
    hub, s, _ = await world()
    first = await say(hub, s["member"], "primeira", room="#sala")
    second = await say(hub, s["target"], "spam", room="#sala")
    clear(*s.values())
    await do(hub, s["member"], Delete(first["id"]))
    await do(hub, s["operator"], Delete(second["id"]))
    for role in ("admin", "operator", "member", "target"):
        got = [(e["id"], e["by"]) for e in link(s[role]).of("deleted")]
        assert got == [(first["id"], "beto"), (second["id"], "ana")]
    fresh = await connect(hub, "davi")  # the context was taken by connect: join #sala
    await do(hub, fresh, Join("#sala"))
    shown = [e for e in link(fresh).take() if e["type"] == "message"]
    assert [(m["id"], m.get("deleted")) for m in shown] == [
        (first["id"], True),
        (second["id"], True),
    ]
    assert all("text" not in m and "from" not in m for m in shown)
    await do(hub, s["target"], Delete(second["id"]))  # already deleted
    assert errors(s["target"]) == ["unknown_message"]
    assert [e.action for e in await hub.moderation.keeper.audit_entries(10)] == ["delete"]


async def test_direct_message_edit_and_delete_reach_only_the_two() -> None:
    hub, s, _ = await world()
    dm = await say(hub, s["member"], "psiu", to="carla")
    clear(*s.values())
    await do(hub, s["member"], Edit(dm["id"], "psiu!"))
    await do(hub, s["member"], Delete(dm["id"]))
    for role in ("member", "target"):
        kinds = [e["type"] for e in link(s[role]).take()]
        assert kinds == ["edited", "deleted"], role
    assert link(s["operator"]).take() == [] and link(s["admin"]).take() == []
    other = await say(hub, s["member"], "de novo", to="carla")
    await do(hub, s["operator"], Delete(other["id"]))  # an operator is nobody in a DM
    assert errors(s["operator"]) == ["unknown_message"]
    await do(hub, s["admin"], Delete(other["id"]))  # an admin deletes anywhere
    assert errors(s["admin"]) == []


async def test_resume_across_an_edit_and_a_delete() -> None:
    """Away, a message is sent, edited and deleted: the resume shows no text of it."""
    hub, s, _ = await world()
    kept = await say(hub, s["target"], "fica", room="#sala")
    last = kept["id"]
    hub.detach(s["member"])
    await hub.settle()
    gone = await say(hub, s["target"], "vai sumir", room="#sala")
    await do(hub, s["target"], Edit(gone["id"], "vai sumir mesmo"))
    await do(hub, s["target"], Edit(kept["id"], "fica, editada"))
    await do(hub, s["target"], Delete(gone["id"]))
    back = hub.attach(FakeLink())
    await do(hub, back, Hello("beto", resume_from=last))
    replay = [e for e in link(back).take() if e["type"] in ("message", "edited", "deleted")]
    assert [(e["type"], e["id"]) for e in replay] == [
        ("message", gone["id"]),  # a tombstone
        ("deleted", gone["id"]),  # was its first edit: erased with it
        ("edited", kept["id"]),
        ("deleted", gone["id"]),
    ]
    assert replay[0] == {
        "type": "message",
        "id": gone["id"],
        "ts": replay[0]["ts"],
        "deleted": True,
        "room": "#sala",
    }
    assert replay[2]["text"] == "fica, editada"
    assert "vai sumir" not in repr(link(back).sent) + repr(replay)


async def test_plain_edit_and_delete_take_the_last_own_message_of_the_room() -> None:
    hub, s, _ = await world()
    await say(hub, s["member"], "um", room="#sala")
    await say(hub, s["member"], "dois", room="#sala")
    await say(hub, s["target"], "dela", room="#sala")
    clear(*s.values())
    await do(hub, s["member"], Edit(None, "dois!", "#sala"))
    [edited] = link(s["target"]).of("edited")
    assert edited["text"] == "dois!"
    await do(hub, s["member"], Delete(None, "#sala"))
    await do(hub, s["member"], Delete(None, "#sala"))  # then "um"
    assert len(link(s["target"]).of("deleted")) == 2
    await do(hub, s["member"], Delete(None, "#sala"))
    assert errors(s["member"]) == ["unknown_message"]


# ---------------------------------------------------------------- kick, mute, modes


async def test_kick_tells_all_sessions_why_and_they_may_join_again() -> None:
    hub, s, _ = await world()
    carla2 = await connect(hub, "carla")
    clear(*s.values())
    await do(hub, s["operator"], Kick("#sala", "carla", "chega de spam"))
    parted = {
        "type": "room",
        "event": "parted",
        "room": "#sala",
        "by": "ana",
        "reason": "chega de spam",
    }
    assert link(s["target"]).of("room") == [parted]
    assert link(carla2).of("room") == [parted]
    assert link(s["member"]).of("member") == [
        {"type": "member", "event": "part", "room": "#sala", "name": "carla"}
    ]
    await say(hub, s["member"], "ela saiu", room="#sala")
    assert link(s["target"]).of("message") == []
    await do(hub, s["target"], Join("#sala"))
    assert link(s["target"]).of("room")[0]["event"] == "joined"
    await do(hub, s["operator"], Kick("#geral", "carla"))
    await do(hub, s["operator"], Kick("#sala", "zeca"))
    assert errors(s["operator"]) == ["cannot_part", "not_member"]


async def test_a_timed_mute_ends_by_itself() -> None:
    hub, s, clock = await world()
    await do(hub, s["operator"], Mute("#sala", "carla", 600, "calma"))
    assert [e["text"] for e in link(s["target"]).of("notice")] == [
        "ana muted you in #sala for 10m: calma"
    ]
    refused = await say(hub, s["target"], "oi", room="#sala")
    assert refused["code"] == "muted" and refused["until"].endswith("Z")
    assert (await say(hub, s["target"], "oi geral"))["type"] == "ack"  # only in #sala
    clock.advance(599)
    assert (await say(hub, s["target"], "oi", room="#sala"))["code"] == "muted"
    clock.advance(2)
    assert (await say(hub, s["target"], "oi", room="#sala"))["type"] == "ack"
    await do(hub, s["operator"], Mute("#sala", "carla", 60))
    await do(hub, s["operator"], Unmute("#sala", "carla"))
    assert (await say(hub, s["target"], "livre", room="#sala"))["type"] == "ack"


async def test_a_muted_user_cannot_edit_into_the_room_either() -> None:
    hub, s, _ = await world()
    mine = await say(hub, s["target"], "antes", room="#sala")
    await do(hub, s["operator"], Mute("#sala", "carla", 600))
    await do(hub, s["target"], Edit(mine["id"], "agora"))
    assert errors(s["target"]) == ["muted"]


async def test_read_only_room_and_topic_lock() -> None:
    hub, s, _ = await world()
    await do(hub, s["operator"], SetMode("#sala", moderated=True, topic_locked=True))
    mode = {
        "type": "room",
        "event": "mode",
        "room": "#sala",
        "moderated": True,
        "topic_locked": True,
        "by": "ana",
    }
    assert link(s["member"]).of("room") == [mode]
    assert (await say(hub, s["member"], "oi", room="#sala"))["code"] == "forbidden"
    assert (await say(hub, s["operator"], "só eu", room="#sala"))["type"] == "ack"
    await do(hub, s["member"], SetTopic("#sala", "meu tópico"))
    assert errors(s["member"]) == ["forbidden"]
    fresh = await connect(hub, "davi")
    await do(hub, fresh, Join("#sala"))
    joined = link(fresh).of("room")[0]
    assert joined["moderated"] is True and joined["topic_locked"] is True
    await do(hub, s["operator"], SetMode("#sala", moderated=False))
    assert (await say(hub, s["member"], "oi de novo", room="#sala"))["type"] == "ack"
    await do(hub, s["member"], SetTopic("#sala", "ainda travado"))
    assert errors(s["member"]) == ["forbidden"]


async def test_op_makes_an_operator_and_deop_undoes_it() -> None:
    hub, s, _ = await world()
    await do(hub, s["operator"], Op("#sala", "beto"))
    await do(hub, s["member"], Mute("#sala", "carla", 60))
    assert errors(s["member"]) == []
    await do(
        hub, s["member"], Deop("#sala", "ana")
    )  # operators may deop each other, the creator too
    await do(hub, s["operator"], Kick("#sala", "carla"))
    assert errors(s["operator"]) == ["forbidden"]


# ---------------------------------------------------------------- bans, purge, audit


async def test_ban_closes_every_session_with_1008_and_refuses_hello_until_it_ends() -> None:
    hub, s, clock = await world()
    carla2 = await connect(hub, "carla")
    await do(hub, s["admin"], Ban("carla", 3600, "spam"))
    for session in (s["target"], carla2):
        [error] = link(session).of("error")
        assert error["code"] == "banned" and error["until"].endswith("Z")
        assert link(session).close_code == 1008
    again = hub.attach(FakeLink())
    await do(hub, again, Hello("carla"))
    [refused] = link(again).of("error")
    assert refused["code"] == "banned" and "spam" in refused["message"] and again.user is None
    clock.advance(3601)
    later = hub.attach(FakeLink())
    await do(hub, later, Hello("carla"))
    assert link(later).of("welcome")
    await do(hub, s["admin"], Ban("carla"))  # until lifted
    await do(hub, s["admin"], Unban("carla"))
    last = hub.attach(FakeLink())
    await do(hub, last, Hello("carla"))
    assert link(last).of("welcome")


async def test_ban_ip_closes_connections_from_it_and_is_what_the_handshake_checks() -> None:
    hub, s, _ = await world()
    far = hub.attach(FakeLink(address="203.0.113.9"))
    await do(hub, far, Hello("davi"))
    await do(hub, s["admin"], BanIp("203.0.113.0/24", reason="bots"))
    assert link(far).close_code == 1008
    assert hub.moderation.ip_ban_of("203.0.113.200") is not None
    assert hub.moderation.ip_ban_of("::ffff:203.0.113.1") is not None
    assert hub.moderation.ip_ban_of("198.51.100.1") is None
    await do(hub, s["admin"], BanIp("127.0.0.0/8"))  # the admin's own address
    assert errors(s["admin"]) == ["forbidden"]
    await do(hub, s["admin"], UnbanIp("203.0.113.0/24"))
    assert hub.moderation.ip_ban_of("203.0.113.9") is None


async def test_purge_bans_and_deletes_every_message_since_in_every_conversation() -> None:
    hub, s, _ = await world()
    # an old message (stored as it would have been long ago), then the spam
    old, _ = await hub.store.append(
        Stored(
            0, "carla", "carla", "antiga", "2020-01-01T00:00:00.000Z", room="#sala", conv="#sala"
        )
    )
    recent = [
        await say(hub, s["target"], "spam 1", room="#sala"),
        await say(hub, s["target"], "spam 2"),
        await say(hub, s["target"], "spam 3", to="beto"),
    ]
    first = _ts(hub, recent[0]["id"])
    clear(*s.values())
    await do(hub, s["admin"], Purge("carla", since=first, reason="spam"))
    assert link(s["target"]).close_code == 1008
    deleted = [e["id"] for e in link(s["member"]).of("deleted")]
    assert deleted == [m["id"] for m in recent]  # the DM too: beto could see it
    assert [e["id"] for e in link(s["operator"]).of("deleted")] == [m["id"] for m in recent[:2]]
    history = await hub.store.history("#sala", None, 50)
    texts = [m.text for m in history[0]]
    assert "antiga" in texts and not any(t.startswith("spam") for t in texts)
    actions = [(e.action, e.target) for e in await hub.moderation.keeper.audit_entries(10)]
    assert actions == [("purge", "carla"), ("delete", "carla")]
    assert old.id not in deleted


async def test_audit_lists_who_did_what_to_whom_and_why() -> None:
    hub, s, _ = await world()
    await do(hub, s["operator"], Kick("#sala", "carla", "chega"))
    await do(hub, s["admin"], Ban("carla", 600, "spam"))
    clear(s["admin"])
    await do(hub, s["admin"], ReadAudit(10))
    [audit] = link(s["admin"]).of("audit")
    assert [
        (e["by"], e["action"], e["target"], e["reason"], e.get("room")) for e in audit["entries"]
    ] == [("ana", "kick", "carla", "chega", "#sala"), (ADMIN, "ban", "carla", "10m: spam", None)]
    plain = await connect(hub, ADMIN, mode="plain", password=PASSWORD)
    await do(hub, plain, ReadAudit(10))
    lines = link(plain).take()
    assert lines[0] == "— the last 2 audit entries —"
    assert lines[1].endswith("ana: kick carla in #sala (chega)")


async def test_roles_bans_mutes_and_modes_survive_a_restart(tmp_path: Path) -> None:
    hub, s, _ = await world(tmp_path)
    await do(hub, s["operator"], Op("#sala", "beto"))
    await do(hub, s["operator"], Mute("#sala", "carla", 3600))
    await do(hub, s["operator"], SetMode("#sala", topic_locked=True))
    await do(hub, s["admin"], Ban("zeca-nao-existe"))
    assert errors(s["admin"]) == ["unknown_user"]
    await connect(hub, "davi")
    await do(hub, s["admin"], Ban("davi", reason="spam"))
    await do(hub, s["admin"], BanIp("198.51.100.0/24"))
    hub.stop()
    await hub.store.close()
    hub = await make_hub(tmp_path, admins=(ADMIN,))
    beto = await connect(hub, "beto")
    await do(hub, beto, Kick("#sala", "carla"))
    assert errors(beto) == []
    assert hub.moderation.state.mutes and hub.moderation.mode_of("#sala").topic_locked
    davi = hub.attach(FakeLink())
    await do(hub, davi, Hello("davi"))
    assert errors(davi) == ["banned"]
    assert hub.moderation.ip_ban_of("198.51.100.7") is not None
    actions = [e.action for e in await hub.moderation.keeper.audit_entries(50)]
    assert actions == ["op", "mute", "mode", "ban", "ban_ip", "kick"]
    hub.stop()
    await hub.store.close()


def _ts(hub: Hub, message_id: int) -> str:
    """When message ``message_id`` was sent (from the ring of recent messages)."""
    return next(m.ts for m in hub.store.log.ring if m.id == message_id)


# ---------------------------------------------------------------- the SQLite store


def raw_files(data_dir: Path) -> bytes:
    """Every byte of the database, its write-ahead log and its shared memory."""
    return b"".join(
        (data_dir / name).read_bytes()
        for name in ("papo.db", "papo.db-wal", "papo.db-shm")
        if (data_dir / name).exists()
    )


async def test_sqlite_purge_leaves_no_text_in_the_database_files(tmp_path: Path) -> None:
    hub, s, _ = await world(tmp_path)
    secrets = [f"SEGREDO-{i}-{'x' * (i * 700)}" for i in range(8)]  # some overflow a page
    for i, text in enumerate(secrets):
        await say(hub, s["target"], text, room="#sala" if i % 2 else None)
    await say(hub, s["target"], "SEGREDO-dm", to="beto")
    edited = await say(hub, s["target"], "SEGREDO-antes", room="#sala")
    await do(hub, s["target"], Edit(edited["id"], "SEGREDO-depois"))
    await say(hub, s["member"], "fica-aqui", room="#sala")
    assert b"SEGREDO-" in raw_files(tmp_path)  # written where the test can see it
    await do(hub, s["admin"], Purge("carla", reason="spam"))
    data = raw_files(tmp_path)
    assert b"SEGREDO" not in data
    history, _ = await hub.store.history("#sala", None, 50)
    assert [m.text for m in history if not m.deleted] == ["fica-aqui"]
    hub.stop()
    await hub.store.close()
    assert b"SEGREDO" not in raw_files(tmp_path)


async def test_sqlite_history_and_resume_across_an_edit_and_a_delete_after_a_restart(
    tmp_path: Path,
) -> None:
    hub, s, _ = await world(tmp_path)
    start = (await say(hub, s["member"], "início", room="#sala"))["id"]
    edited = await say(hub, s["target"], "antes", room="#sala")
    gone = await say(hub, s["target"], "some", room="#sala")
    await do(hub, s["target"], Edit(edited["id"], "depois"))
    await do(hub, s["target"], Delete(gone["id"]))
    hub.stop()
    await hub.store.close()
    hub = await make_hub(tmp_path, admins=(ADMIN,))  # read back from the file, not the ring
    hub.store.log.ring.clear()
    back = hub.attach(FakeLink())
    await do(hub, back, Hello("beto", resume_from=start))
    replay = [(e["type"], e["id"], e.get("text")) for e in link(back).take() if "id" in e]
    assert replay == [
        ("message", edited["id"], "depois"),
        ("message", gone["id"], None),
        ("edited", edited["id"], "depois"),
        ("deleted", gone["id"], None),
    ]
    await do(hub, back, History(Conversation(room="#sala")))
    [page] = link(back).of("history")
    shown = [(m["id"], m.get("text"), m.get("deleted", False)) for m in page["messages"]]
    assert shown == [
        (start, "início", False),
        (edited["id"], "depois", False),
        (gone["id"], None, True),
    ]
    await hub.store.close()
