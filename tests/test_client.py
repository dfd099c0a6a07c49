"""The terminal client, driven in a real pseudo-terminal (pexpect) and through a pipe.

These tests read English: the client runs with ``LANG=C.UTF-8`` (and no other
locale variable), whatever the developer's machine says. The Portuguese
client is tests/test_client_lang.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pexpect

from tests.helpers import ROOT, JsonClient, ServerProcess

#: A clock time as the English client writes it (``9:05 PM``).
TIME = r"\d{1,2}:\d\d [AP]M"
LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE")


def locale_env(**locale: str) -> dict[str, str]:
    """This environment with exactly the locale variables given (default: ``LANG=C.UTF-8``)."""
    env = {k: v for k, v in os.environ.items() if k not in LOCALE_VARIABLES}
    return {**env, **(locale or {"LANG": "C.UTF-8"})}


TERMINAL = {"TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1", "NO_COLOR": "1"}


async def piped(
    url: str, name: str, lines: bytes, *args: str, env: dict[str, str] | None = None
) -> tuple[int | None, bytes, bytes]:
    """``client.py --name NAME [ARGS]`` with ``lines`` on its stdin (not a terminal): exit
    code, output; in English unless ``env`` says otherwise."""
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "client.py",
        "--url",
        url,
        "--name",
        name,
        *args,
        cwd=ROOT,
        env=env or locale_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate(lines)
    return proc.returncode, out, err


def spawn(
    *args: str, track: list[pexpect.spawn] | None = None, env: dict[str, str] | None = None
) -> pexpect.spawn:
    """``client.py`` in a real pseudo-terminal (closed by the fixture when tracked);
    in English unless ``env`` says otherwise."""
    child = pexpect.spawn(
        sys.executable,
        ["client.py", *args],
        cwd=str(ROOT),
        env={**(env or locale_env()), **TERMINAL},
        encoding="utf-8",
        timeout=10,
        dimensions=(24, 120),
    )
    if track is not None:
        track.append(child)
    return child


def joined(children: list[pexpect.spawn], url: str, name: str) -> pexpect.spawn:
    """A terminal client that has joined as ``name``."""
    child = spawn("--url", url, "--name", name, track=children)
    child.expect(f"you are {name}")
    child.expect(r"\[#geral\] >")  # the prompt is up: keys go to it
    return child


def test_two_terminal_clients_chat_and_sair_exits_0(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    ana = joined(children, server.url, "ana")
    beto = spawn("--url", server.url, track=children)  # no --name: it asks
    beto.expect("your name:")
    beto.sendline("beto")
    beto.expect("you are beto")
    ana.expect("beto joined")

    ana.sendline("olá beto")
    beto.expect(rf"\[{TIME}\] ana: olá beto")
    beto.sendline("oi ana, tudo bem?")
    ana.expect(rf"\[{TIME}\] beto: oi ana, tudo bem\?")

    beto.sendline("sair")
    beto.expect("bye!")
    beto.expect(pexpect.EOF)
    beto.close()
    assert beto.exitstatus == 0
    ana.expect("beto left", timeout=5)
    ana.sendline("/quit")
    ana.expect(pexpect.EOF)
    ana.close()
    assert ana.exitstatus == 0


def test_msg_and_who_in_the_terminal_client(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    ana = joined(children, server.url, "ana")
    beto = joined(children, server.url, "beto")
    carla = joined(children, server.url, "carla")

    ana.sendline("/msg beto segredo")
    beto.expect(r"\] private from ana: segredo")
    ana.sendline("/who")
    ana.expect(r"online \(3\): ana, beto, carla")
    ana.sendline("depois")
    carla.expect("ana: depois")  # carla.before: all carla saw since she joined
    assert "segredo" not in carla.before
    ana.sendline("/msg ninguem oi")
    ana.expect("error: there is no user named ninguem")


def test_ctrl_d_and_ctrl_c_leave_cleanly(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    for key in ("\x04", "\x03"):
        child = joined(children, server.url, "teclas")
        child.send(key)
        child.expect("bye!")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0, repr(key)


def test_protected_name_asks_for_the_password(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    owner = spawn("--url", server.url, "--name", "dona", "--password", "s3gredo", track=children)
    owner.expect("you are dona")
    again = spawn("--url", server.url, "--name", "dona", track=children)
    again.expect("needs its password")
    again.expect("password:")
    again.sendline("s3gredo")
    again.expect("you are dona")


def test_server_text_cannot_drive_the_terminal(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    import asyncio

    viewer = joined(children, server.url, "viewer")

    async def attack() -> None:
        evil = await JsonClient.open(server.url, "evil")
        await evil.say("\x1b[2J\x1b]0;pwned\x07clear\nfake line")
        await evil.close()

    asyncio.run(attack())
    viewer.expect("evil: ")
    viewer.expect("fake line")
    shown = viewer.before or ""
    assert "\x1b]0;pwned" not in shown and "\x1b[2J" not in shown
    assert "�[2J" in shown


def test_unreachable_server_is_one_clear_line_and_nonzero() -> None:
    result = subprocess.run(
        [sys.executable, "client.py", "--url", "ws://127.0.0.1:9", "--name", "x"],
        cwd=ROOT,
        env=locale_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "papo: no papo server at ws://127.0.0.1:9; start one with: make run (or python server.py)"
    )
    assert "Traceback" not in result.stderr


def test_unreachable_in_a_terminal_too(children: list[pexpect.spawn]) -> None:
    child = spawn("--url", "ws://127.0.0.1:9", "--name", "x", track=children)
    child.expect("papo: no papo server at ws://127.0.0.1:9; start one with: make run")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus != 0


def test_piped_client_can_be_scripted(server: ServerProcess) -> None:
    import asyncio

    async def scenario() -> list[str]:
        listener = await JsonClient.open(server.url, "listener")
        code, out, err = await piped(server.url, "bot", b"oi do bot\n/msg listener psiu\n")
        assert code == 0, err
        assert b"you are bot" in out
        got = [e["text"] for e in await listener.quiet(1.0) if e["type"] == "message"]
        await listener.close()
        return got

    assert asyncio.run(scenario()) == ["oi do bot", "psiu"]


def test_client_reconnects_resumes_and_sends_what_was_typed_offline(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    import asyncio

    ana = joined(children, server.url, "ana")

    async def beto_says(text: str, resume_from: int | None = None, token: str | None = None) -> Any:
        extra: dict[str, Any] = {}
        if token is not None:
            extra = {"token": token, "resume_from": resume_from}
        beto = await JsonClient.open(server.url, "beto", **extra)
        if text:
            await beto.say(text)
        got = await beto.quiet(1.5)
        await beto.close()
        return beto.welcome, got

    welcome, _ = asyncio.run(beto_says("antes da queda"))
    ana.expect(r"beto: antes da queda")

    server.kill()
    ana.expect("connection lost; reconnecting in")
    ana.sendline("escrito sem rede")  # typed while the server is down
    server.restart()
    ana.expect("back online", timeout=20)

    last = welcome["last_id"]
    _, got = asyncio.run(beto_says("depois da volta", resume_from=last, token=welcome["token"]))
    ana.expect(r"beto: depois da volta")
    assert "ana: escrito sem rede" not in ana.before  # our own line is not echoed back
    texts = [e["text"] for e in got if e["type"] == "message"]
    assert texts.count("escrito sem rede") <= 1
    _, seen = asyncio.run(beto_says("", resume_from=last, token=welcome["token"]))
    stored = [e["text"] for e in seen if e["type"] == "message"]
    assert stored.count("escrito sem rede") == 1  # sent after the reconnect, exactly once
    ana.sendline("sair")
    ana.expect(pexpect.EOF)
    ana.close()
    assert ana.exitstatus == 0
