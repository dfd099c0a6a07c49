"""Users over real sockets: routing, several sessions, presence, names, accounts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import StartServer
from tests.helpers import JsonClient, PlainClient, ServerProcess, closed_with


async def settle(*clients: JsonClient) -> None:
    """Let join notices arrive, then forget them."""
    await asyncio.sleep(0.2)
    for client in clients:
        await client.quiet(0.05)


def messages(events: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    return [(e["from"], e["text"], e.get("to")) for e in events if e["type"] == "message"]


async def test_public_and_private_routing_with_three_users_two_sessions_each(
    server: ServerProcess,
) -> None:
    s = {
        f"{name}{i}": await JsonClient.open(server.url, name)
        for name in ("ana", "beto", "carla")
        for i in (1, 2)
    }
    await settle(*s.values())

    await s["ana1"].say("para todos")
    got = {k: messages(await c.quiet(0.3)) for k, c in s.items()}
    public = [("ana", "para todos", None)]
    assert got == {
        "ana1": [],
        "ana2": public,
        "beto1": public,
        "beto2": public,
        "carla1": public,
        "carla2": public,
    }

    ack = await s["ana1"].say("só para o beto", to="BETO")
    assert ack["type"] == "ack"
    got = {k: messages(await c.quiet(0.3)) for k, c in s.items()}
    private = [("ana", "só para o beto", "beto")]
    assert got == {
        "ana1": [],
        "ana2": private,
        "beto1": private,
        "beto2": private,
        "carla1": [],
        "carla2": [],
    }

    await s["carla2"].say("resposta", to="ana")
    got = {k: messages(await c.quiet(0.3)) for k, c in s.items()}
    reply = [("carla", "resposta", "ana")]
    assert got == {
        "ana1": reply,
        "ana2": reply,
        "beto1": [],
        "beto2": [],
        "carla1": reply,
        "carla2": [],
    }
    for c in s.values():
        await c.close()


async def test_plain_private_message_reaches_every_session_of_the_user(
    server: ServerProcess,
) -> None:
    joao1 = await JsonClient.open(server.url, "joao")
    joao2 = await PlainClient.open(server.url + "?name=joao")
    maria = await PlainClient.open(server.url + "?name=maria")
    other = await JsonClient.open(server.url, "zeca")
    await maria.until("you are maria")
    await joao2.until("you are joao")
    await settle(joao1, other)
    await maria.send("/msg joao oi")
    assert messages([await joao1.expect("message")]) == [("maria", "oi", "joao")]
    assert await joao2.until("private") == "maria → joao (private): oi"
    assert await other.quiet(0.3, ignore=["presence"]) == []


async def test_who_lists_users_with_session_counts(server: ServerProcess) -> None:
    a1 = await JsonClient.open(server.url, "João")
    a2 = await JsonClient.open(server.url, "joão")  # the same user
    b = await JsonClient.open(server.url, "beto")
    assert a2.welcome["name"] == "João"  # the name as it was first chosen
    await b.send({"type": "who"})
    users = (await b.expect("users"))["users"]
    assert users == [{"name": "beto", "sessions": 1}, {"name": "João", "sessions": 2}]
    for c in (a1, a2, b):
        await c.close()


async def test_presence_on_first_join_and_last_leave_only(server: ServerProcess) -> None:
    watcher = await JsonClient.open(server.url, "watcher")
    tab1 = await JsonClient.open(server.url, "ana")
    assert await watcher.recv() == {"type": "presence", "event": "join", "name": "ana"}
    tab2 = await JsonClient.open(server.url, "ana")
    await tab1.close()
    assert await watcher.quiet(0.8) == []  # a second tab joining, one of two leaving: silent
    await tab2.close()
    assert await watcher.recv(3) == {"type": "presence", "event": "leave", "name": "ana"}
    await watcher.close()


async def test_quick_reconnect_within_grace_does_not_flap(start_server: StartServer) -> None:
    server = start_server("--presence-grace", "1.5")
    watcher = await JsonClient.open(server.url, "watcher")
    ana = await JsonClient.open(server.url, "ana")
    assert (await watcher.recv())["event"] == "join"
    ana.ws.transport.abort()  # the network drops
    await asyncio.sleep(0.3)
    ana = await JsonClient.open(server.url, "ana", token=ana.welcome["token"])
    assert await watcher.quiet(2.0) == []  # no leave, no second join
    await ana.close()
    assert await watcher.recv(4) == {"type": "presence", "event": "leave", "name": "ana"}


async def test_bad_name_is_refused_and_may_try_again(server: ServerProcess) -> None:
    client = await JsonClient.open(server.url)
    for bad in ("with space", "", "x" * 33, "bidi\u202e", "zero\u200bwidth", "ctl\x07"):
        await client.send({"type": "hello", "name": bad})
        error = await client.expect("error")
        assert error["code"] == "bad_name", bad
    await client.send({"type": "hello", "name": "fine.name"})
    assert (await client.expect("welcome"))["name"] == "fine.name"


async def test_private_to_unknown_user_is_an_error_to_offline_user_is_kept(
    server: ServerProcess,
) -> None:
    ana = await JsonClient.open(server.url, "ana")
    gone = await JsonClient.open(server.url, "gone")
    assert (await ana.expect("presence"))["event"] == "join"
    await gone.close()
    # Within the grace period gone still counts as online; once announced gone, it is offline.
    leave = await ana.expect("presence", timeout=10)
    assert leave == {"type": "presence", "event": "leave", "name": "gone"}
    nobody = await ana.say("oi", to="nobody")
    assert nobody["code"] == "unknown_user"
    assert nobody["message"] == "there is no user named nobody"
    offline = await ana.say("guardei para ti", to="gone")
    assert offline["type"] == "ack"
    assert "offline" in (await ana.expect("notice"))["text"]
    back = await JsonClient.open(server.url, "gone")
    got = messages(await back.quiet(0.5))
    assert got == [("ana", "guardei para ti", "gone")]


async def test_protected_name_needs_password_or_token(server: ServerProcess) -> None:
    owner = await JsonClient.open(server.url, "dona", password="s3gredo")
    assert owner.welcome["protected"] is True
    token = owner.welcome["token"]

    intruder = await JsonClient.open(server.url)
    for hello, code in [
        ({"name": "dona"}, "auth_required"),
        ({"name": "DONA", "password": "wrong"}, "bad_password"),
        ({"name": "dona", "token": token + "x"}, "bad_token"),
        ({"name": "dona", "token": "garbage"}, "bad_token"),
    ]:
        await intruder.send({"type": "hello", **hello})
        error = await intruder.expect("error")
        assert error["code"] == code, hello
    await intruder.send({"type": "say", "text": "sneaky"})
    assert (await intruder.expect("error"))["code"] == "not_joined"  # no session was made

    second_tab = await JsonClient.open(server.url, "dona", token=token)
    assert second_tab.welcome["name"] == "dona"
    other = await JsonClient.open(server.url, "outro")
    other_token = other.welcome["token"]
    await intruder.send({"type": "hello", "name": "dona", "token": other_token})
    assert (await intruder.expect("error"))["code"] == "bad_token"  # another user's token
    assert (await JsonClient.open(server.url, "dona", password="s3gredo")).welcome


async def test_open_name_can_be_protected_later(server: ServerProcess) -> None:
    first = await JsonClient.open(server.url, "livre")
    assert first.welcome["protected"] is False
    assert (await JsonClient.open(server.url, "livre")).welcome  # open: anyone
    await first.send({"type": "register", "password": "chave"})
    assert "protected" in (await first.expect("notice"))["text"]
    await first.send({"type": "register", "password": "outra"})
    assert (await first.expect("error"))["code"] == "already_protected"
    late = await JsonClient.open(server.url)
    await late.send({"type": "hello", "name": "livre"})
    assert (await late.expect("error"))["code"] == "auth_required"


async def test_plain_register_and_nick_with_password(server: ServerProcess) -> None:
    plain = await PlainClient.open(server.url + "?name=pedro")
    await plain.until("you are pedro")
    await plain.send("/register abcd")
    assert "protected" in await plain.until("protected")
    other = await PlainClient.open(server.url)
    await other.until("you are guest-")
    await other.send("/nick pedro")
    assert "needs its password" in await other.until("error")
    await other.send("/nick pedro abcd")
    assert await other.until("you are") == "* you are pedro"


async def test_password_guessing_is_throttled(server: ServerProcess) -> None:
    await JsonClient.open(server.url, "alvo", password="certa1")
    guesser = await JsonClient.open(server.url)
    codes = []
    for attempt in range(7):
        password = "certa1" if attempt == 6 else f"errada{attempt}"
        await guesser.send({"type": "hello", "name": "alvo", "password": password})
        codes.append((await guesser.expect("error", "welcome"))["code"])
    assert codes == ["bad_password"] * 5 + ["too_many_attempts"] * 2  # even the right one waits


async def test_logout_revokes_the_token(server: ServerProcess) -> None:
    ana = await JsonClient.open(server.url, "ana", password="senha1")
    token = ana.welcome["token"]
    await ana.send({"type": "logout"})
    assert await closed_with(ana.ws) == 1000
    again = await JsonClient.open(server.url)
    await again.send({"type": "hello", "name": "ana", "token": token})
    assert (await again.expect("error"))["code"] == "bad_token"


async def test_accounts_and_tokens_survive_a_restart(start_server: StartServer) -> None:
    first = start_server()
    ana = await JsonClient.open(first.url, "ana", password="senha1")
    token = ana.welcome["token"]
    await ana.close()
    assert first.stop() == 0

    second = start_server()
    client = await JsonClient.open(second.url)
    await client.send({"type": "hello", "name": "ana"})
    assert (await client.expect("error"))["code"] == "auth_required"
    await client.send({"type": "hello", "name": "ana", "password": "wrong"})
    assert (await client.expect("error"))["code"] == "bad_password"
    await client.send({"type": "hello", "name": "ana", "token": token})
    assert (await client.expect("welcome"))["name"] == "ana"
    assert (await JsonClient.open(second.url, "ana", password="senha1")).welcome


async def test_require_password_makes_every_name_need_one(start_server: StartServer) -> None:
    server = start_server("--require-password")
    client = await JsonClient.open(server.url)
    await client.send({"type": "hello", "name": "semsenha"})
    assert (await client.expect("error"))["code"] == "auth_required"
    assert (await JsonClient.open(server.url, "comsenha", password="abcd")).welcome
    plain = await PlainClient.open(server.url)
    assert "/nick NAME PASSWORD" in await plain.until("needs a name")
    await plain.send("hello?")
    assert "join first" in await plain.until("error")


@pytest.mark.parametrize("password", ["abc", ""])
async def test_weak_password_is_refused(server: ServerProcess, password: str) -> None:
    client = await JsonClient.open(server.url, "fraco")
    await client.send({"type": "register", "password": password})
    assert (await client.expect("error"))["code"] in ("weak_password", "missing_field")
