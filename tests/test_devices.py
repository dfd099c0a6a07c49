"""Devices: a token belongs to a token family, and ending the family refuses every token of it.

The rules of a family are pure (:class:`papo.devices.Device`, tested with
explicit times); the hub's devices, logout, revoke and password change run in
process over fake links (memory and SQLite stores); the wire and several
instances over real sockets.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

from papo.accounts import Tokens
from papo.commands import parse_line
from papo.devices import OVERLAP, Device, new_device
from papo.directory import Session
from papo.hub import Hub
from papo.protocol import ChangePassword, Devices, Hello, Logout, ProtocolError, Register, Revoke
from papo.protocol_parse import parse_client
from tests.conftest import StartServer
from tests.fakes import FakeLink, link, make_hub
from tests.helpers import ROOT, JsonClient, RedisServer, ServerProcess, closed_with

# ---------------------------------------------------------------- the family, pure

DAY = 86_400.0


def test_a_refresh_supersedes_its_predecessor_once_used_after_an_overlap() -> None:
    first = new_device("ana", "10.0.0.1", now=1000.0, ttl=DAY)
    assert first.gen == 1 and first.used == 0
    second = first.refreshed(1, 1001.0, "10.0.0.2", DAY)  # joined with token 1: token 2 issued
    assert second is not None and second.gen == 2 and second.address == "10.0.0.2"
    assert second.accepts(1, 1002.0) and second.accepts(2, 1002.0)  # token 2 not used yet
    third = second.refreshed(2, 2000.0, "10.0.0.2", DAY)  # token 2 used: token 1 superseded
    assert third is not None and third.gen == 3
    assert third.accepts(1, 2000.0 + OVERLAP - 1)  # a reconnect that raced the refresh
    assert not third.accepts(1, 2000.0 + OVERLAP)
    assert third.accepts(2, 2000.0 + 10 * OVERLAP) and third.accepts(3, 2000.0 + 10 * OVERLAP)
    fourth = third.refreshed(3, 3000.0, "x", DAY)
    assert fourth is not None
    assert not fourth.accepts(1, 3000.0)  # only the one just superseded overlaps
    assert fourth.accepts(2, 3000.0)
    assert not fourth.accepts(5, 3000.0)  # never issued
    assert not fourth.accepts(4, 3000.0 + DAY)  # expired


def test_a_device_kept_as_json_comes_back_the_same() -> None:
    from papo.devices import device_from_json

    device = Device("abc", "ana", 3, 2, 1, 5.0, 1.0, 6.0, "::1", 99.0)
    assert device_from_json(device.to_json()) == device
    assert device_from_json("{not json") is None
    assert device_from_json('{"id": "x"}') is None


# ---------------------------------------------------------------- in process


async def join(hub: Hub, name: str, address: str = "127.0.0.1", **hello: Any) -> Session:
    """A session that sent ``hello``; its answers stay on its link."""
    session = hub.attach(FakeLink(address=address))
    await hub.handle(session, Hello(name, **hello))
    await hub.settle()
    return session


def welcome(session: Session) -> dict[str, Any]:
    found = link(session).of("welcome")
    assert found, "no welcome"
    return found[0]


def refused(session: Session) -> str:
    found = link(session).of("error")
    assert found, "no error"
    return str(found[0]["code"])


async def token_of(hub: Hub, name: str, **hello: Any) -> tuple[Session, str]:
    session = await join(hub, name, **hello)
    return session, str(welcome(session)["token"])


async def test_logout_ends_every_token_of_the_device_and_its_sessions_only() -> None:
    hub = await make_hub()
    first, t1 = await token_of(hub, "ana", password="senha1")
    second, t2 = await token_of(hub, "ana", token=t1)
    third, _ = await token_of(hub, "ana", token=t1)  # t2 not used yet: t1 still joins
    laptop, t_laptop = await token_of(hub, "ana", password="senha1")  # another device
    await hub.handle(second, Logout())
    assert [link(s).close_code for s in (first, second, third)] == [1000] * 3
    assert link(laptop).close_code is None
    for token in (t1, t2):
        assert refused(await join(hub, "ana", token=token)) == "bad_token"
    assert welcome(await join(hub, "ana", token=t_laptop))["name"] == "ana"


async def test_logout_all_closes_every_session_and_refuses_every_token() -> None:
    hub = await make_hub()
    phone, t_phone = await token_of(hub, "ana", password="senha1")
    laptop, t_laptop = await token_of(hub, "ana", password="senha1")
    beto, _ = await token_of(hub, "beto")
    await hub.handle(phone, Logout(all=True))
    assert link(phone).close_code == link(laptop).close_code == 1000
    assert link(beto).close_code is None
    for token in (t_phone, t_laptop):
        assert refused(await join(hub, "ana", token=token)) == "bad_token"
    assert welcome(await join(hub, "ana", password="senha1"))  # the password still works


async def test_devices_lists_them_and_revoke_ends_one() -> None:
    hub = await make_hub()
    phone, _ = await token_of(hub, "ana", password="senha1", address="10.0.0.7")
    laptop, t_laptop = await token_of(hub, "ana", password="senha1", address="10.0.0.8")
    await hub.handle(phone, Devices())
    (listed,) = link(phone).of("devices")
    devices = listed["devices"]
    assert sorted(d["address"] for d in devices) == ["10.0.0.7", "10.0.0.8"]
    assert [d["current"] for d in devices if d["address"] == "10.0.0.7"] == [True]
    assert all(d["first_seen"].endswith("Z") and d["last_seen"].endswith("Z") for d in devices)
    other = next(d["id"] for d in devices if not d["current"])
    await hub.handle(phone, Revoke(other))
    assert link(laptop).close_code == 1000 and link(phone).close_code is None
    assert other in link(phone).of("notice")[0]["text"]
    assert refused(await join(hub, "ana", token=t_laptop)) == "bad_token"
    await hub.handle(phone, Revoke("nosuchdevice"))
    assert refused(phone) == "unknown_device"


async def test_a_password_change_ends_the_other_devices_and_keeps_this_one() -> None:
    hub = await make_hub()
    phone, t_phone = await token_of(hub, "ana", password="senha1")
    laptop, t_laptop = await token_of(hub, "ana", password="senha1")
    await hub.handle(phone, ChangePassword("errada", "nova-senha"))
    assert refused(phone) == "bad_password"
    await hub.handle(phone, ChangePassword("senha1", "abc"))
    assert refused(phone) == "weak_password"
    await hub.handle(phone, ChangePassword("senha1", "nova-senha"))
    assert "1 other device" in link(phone).of("notice")[0]["text"]
    assert link(laptop).close_code == 1000 and link(phone).close_code is None
    assert refused(await join(hub, "ana", token=t_laptop)) == "bad_token"
    assert refused(await join(hub, "ana", password="senha1")) == "bad_password"
    assert welcome(await join(hub, "ana", password="nova-senha"))
    assert welcome(await join(hub, "ana", token=t_phone))  # this device stays


async def test_password_change_tries_are_throttled() -> None:
    hub = await make_hub()
    phone, _ = await token_of(hub, "ana", password="senha1")
    codes = []
    for _ in range(6):
        await hub.handle(phone, ChangePassword("errada", "nova-senha"))
        codes.append(refused(phone))
    assert codes == ["bad_password"] * 5 + ["too_many_attempts"]


async def test_an_open_name_has_no_devices_to_manage() -> None:
    hub = await make_hub()
    open_name, _ = await token_of(hub, "livre")
    for event in (Devices(), Revoke("x"), Logout(all=True), ChangePassword("a", "bcde")):
        await hub.handle(open_name, event)
        assert refused(open_name) == "not_protected", event
    assert link(open_name).close_code is None


async def test_protecting_an_open_name_logs_out_whoever_else_used_it() -> None:
    hub = await make_hub()
    owner, t_owner = await token_of(hub, "livre")
    squatter, t_squatter = await token_of(hub, "livre")
    await hub.handle(owner, Register("minha-senha"))
    assert link(squatter).close_code == 1000 and link(owner).close_code is None
    assert refused(await join(hub, "livre", token=t_squatter)) == "bad_token"
    assert welcome(await join(hub, "livre", token=t_owner))


async def test_a_token_from_before_devices_is_exchanged_once(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path)
    await token_of(hub, "ana", password="senha1")
    legacy = Tokens(await hub.store.secret(), 3600).issue("ana")  # no device in it
    exchanged, fresh = await token_of(hub, "ana", token=legacy)
    assert link(exchanged).close_code is None
    assert refused(await join(hub, "ana", token=legacy)) == "bad_token"
    assert welcome(await join(hub, "ana", token=fresh))


async def test_devices_survive_a_restart_and_logouts_stay(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path)
    _, kept = await token_of(hub, "ana", password="senha1")
    gone_session, gone = await token_of(hub, "ana", password="senha1")
    await hub.handle(gone_session, Logout())
    await hub.store.close()
    hub = await make_hub(tmp_path)
    assert welcome(await join(hub, "ana", token=kept))
    assert refused(await join(hub, "ana", token=gone)) == "bad_token"
    await hub.store.close()


def test_the_wire_and_the_commands_for_devices() -> None:
    assert parse_client('{"type":"devices"}') == Devices()
    assert parse_client('{"type":"revoke","device":"ab12"}') == Revoke("ab12")
    assert parse_client('{"type":"logout","all":true}') == Logout(all=True)
    assert parse_client('{"type":"logout"}') == Logout()
    assert parse_client('{"type":"password","old":"a","new":"b"}') == ChangePassword("a", "b")
    for bad, code in [
        ('{"type":"revoke"}', "missing_field"),
        ('{"type":"revoke","device":""}', "bad_field"),
        ('{"type":"logout","all":"yes"}', "bad_field"),
        ('{"type":"password","old":"a"}', "missing_field"),
    ]:
        with pytest.raises(ProtocolError) as caught:
            parse_client(bad)
        assert caught.value.code == code, bad
    assert parse_line("/devices") == parse_line("/dispositivos") == Devices()
    assert parse_line("/revoke ab12") == parse_line("/revogar ab12") == Revoke("ab12")
    assert parse_line("/logout all") == parse_line("/logout todos") == Logout(all=True)
    assert parse_line("/password velha nova") == ChangePassword("velha", "nova")
    assert parse_line("/senha velha nova") == ChangePassword("velha", "nova")
    for bad in ("/revoke", "/password one", "/logout everything"):
        with pytest.raises(ProtocolError):
            parse_line(bad)


async def test_plain_devices_line() -> None:
    hub = await make_hub()
    await token_of(hub, "ana", password="senha1", address="10.0.0.9")
    plain = hub.attach(FakeLink("plain", address="10.0.0.1"))
    await hub.handle(plain, Hello("ana", password="senha1"))
    await hub.settle()
    link(plain).take()
    await hub.handle(plain, Devices())
    (line,) = link(plain).take()
    assert line.startswith("* your devices (2): ")
    assert "(this one), from 10.0.0.1" in line and "from 10.0.0.9" in line


# ---------------------------------------------------------------- over real sockets


async def test_an_older_token_dies_with_the_logout_of_its_device(server: ServerProcess) -> None:
    """The issue's reproduction: hello with password → T1; hello with T1 → T2; logout;
    T1 must not join any more."""
    first = await JsonClient.open(server.url, "ana", password="senha1")
    t1 = first.welcome["token"]
    await first.close()
    second = await JsonClient.open(server.url, "ana", token=t1)
    t2 = second.welcome["token"]
    await second.send({"type": "logout"})
    assert await closed_with(second.ws) == 1000
    again = await JsonClient.open(server.url)
    for token in (t1, t2):
        await again.send({"type": "hello", "name": "ana", "token": token})
        answer = await again.expect("error", "welcome")
        assert answer.get("code") == "bad_token", answer
    await again.close()


async def test_devices_and_logout_all_across_two_instances(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    args = ("--redis", redis_server.url, "--presence-grace", "0.3", "--rate-limit", "0")
    one, two = start_server(*args), start_server(*args)
    phone = await JsonClient.open(one.url, "ana", password="senha1")
    laptop = await JsonClient.open(two.url, "ana", password="senha1")
    refreshed = await JsonClient.open(two.url, "ana", token=phone.welcome["token"])
    await phone.send({"type": "devices"})
    devices = (await phone.expect("devices"))["devices"]
    assert len(devices) == 2 and sum(d["current"] for d in devices) == 1
    laptop_id = next(d["id"] for d in devices if not d["current"])
    await phone.send({"type": "revoke", "device": laptop_id})
    assert await closed_with(laptop.ws) == 1000  # on the other instance
    again = await JsonClient.open(one.url)
    await again.send({"type": "hello", "name": "ana", "token": laptop.welcome["token"]})
    answer = await again.expect("error", "welcome")
    assert answer.get("code") == "bad_token", answer
    await refreshed.send({"type": "logout", "all": True})
    assert await closed_with(refreshed.ws) == 1000
    assert await closed_with(phone.ws) == 1000  # the same device, on the first instance
    for token in (phone.welcome["token"], refreshed.welcome["token"]):
        await again.send({"type": "hello", "name": "ana", "token": token})
        answer = await again.expect("error", "welcome")
        assert answer.get("code") == "bad_token", answer
    await again.close()


def test_the_terminal_client_lists_devices_and_logs_all_out(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    def client() -> pexpect.spawn:
        child = pexpect.spawn(
            sys.executable,
            ["client.py", "--url", server.url, "--name", "ana", "--password", "senha1"],
            cwd=str(ROOT),
            env={**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1", "NO_COLOR": "1"},
            encoding="utf-8",
            timeout=15,
            dimensions=(24, 160),
        )
        children.append(child)
        child.expect("you are ana")
        return child

    other, ana = client(), client()
    ana.sendline("/devices")
    ana.expect(r"your devices \(2\): ")
    ana.expect(r"\(this one\), from 127\.0\.0\.1")
    ana.sendline("/logout all")
    for child in (ana, other):  # both closed with 1000: they leave, and do not reconnect
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
