"""The terminal client in Portuguese and in English, and what a newcomer runs into.

The language comes from ``--lang`` or the locale variables; the client is
driven in a real pseudo-terminal (pexpect) against a real server on a free
port, its other side a ``papo.v1`` test client. The language choice and the
connection errors' wording are also checked in-process, without sockets.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from papo.client_options import build_parser, environment_language
from papo.client_session import refused, unreachable, url_with_lang
from papo.i18n import render
from tests.helpers import ROOT, JsonClient, ServerProcess
from tests.test_client import TERMINAL, TIME, locale_env, spawn

PT = {"LANG": "pt_BR.UTF-8"}
PROMPT = r"\[#geral\] >"
EN = {"LANG": "C.UTF-8"}


# --------------------------------------------------------------------------
# In-process: which language, and the words of a failed connection


def test_the_first_locale_variable_set_decides() -> None:
    assert environment_language({}) == "en"
    assert environment_language({"LANG": "pt_BR.UTF-8"}) == "pt-BR"
    assert environment_language({"LANG": "C.UTF-8"}) == "en"
    assert environment_language({"LANG": "C"}) == "en"
    assert environment_language({"LC_ALL": "", "LANG": "pt_BR.UTF-8"}) == "pt-BR"  # empty: unset
    assert environment_language({"LC_MESSAGES": "pt_BR", "LANG": "C.UTF-8"}) == "pt-BR"
    assert environment_language({"LC_ALL": "C.UTF-8", "LC_MESSAGES": "pt_BR"}) == "en"
    # A language papo does not speak is not skipped for a later variable: it reads English.
    assert environment_language({"LC_ALL": "fr_FR.UTF-8", "LANG": "pt_BR.UTF-8"}) == "en"


def test_the_lang_option_takes_any_spelling_and_refuses_others() -> None:
    parser = build_parser()
    assert parser.parse_args(["--lang", "pt_BR"]).lang == "pt-BR"
    assert parser.parse_args(["--lang", "pt"]).lang == "pt-BR"
    assert parser.parse_args(["--lang", "en-US"]).lang == "en"
    assert not hasattr(parser.parse_args([]), "lang")  # the environment decides
    with pytest.raises(SystemExit):
        parser.parse_args(["--lang", "fr"])
    assert "--lang" in parser.format_help()


def test_the_server_is_told_the_language_in_the_url() -> None:
    assert url_with_lang("ws://localhost:8765", "pt-BR") == "ws://localhost:8765?lang=pt-BR"
    assert url_with_lang("ws://h:1/?lang=en&x=1", "pt-BR") == "ws://h:1/?x=1&lang=pt-BR"
    assert url_with_lang("ws://h:1/", None) == "ws://h:1/"


def test_a_refused_connection_says_how_to_start_a_server() -> None:
    local = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 8765)")
    assert refused(local)
    both = OSError(
        "Multiple exceptions: [Errno 111] Connect call failed ('::1', 8765, 0, 0), "
        "[Errno 111] Connect call failed ('127.0.0.1', 8765)"
    )
    assert refused(both)  # localhost on two addresses (Python 3.11 joins the errors)
    mixed = OSError("Multiple exceptions: [Errno 111] Connect call failed, [Errno 113] No route")
    assert not refused(mixed)
    said = unreachable("ws://localhost:8765", both)
    assert render(said, "en") == (
        "no papo server at ws://localhost:8765; start one with: make run (or python server.py)"
    )
    assert render(said, "pt-BR") == (
        "nenhum servidor papo em ws://localhost:8765; inicie um com: make run (ou python server.py)"
    )
    remote = render(unreachable("ws://chat.example:8765", local), "en")
    assert remote.startswith("nothing answers at ws://chat.example:8765")
    lookup = socket.gaierror(-2, "Name or service not known")
    assert render(unreachable("ws://chat.example/", lookup), "pt-BR") == (
        "não foi possível encontrar o host chat.example; o endereço está certo?"
    )


# --------------------------------------------------------------------------
# In a terminal, in each language


LANGUAGES = {
    "pt-BR": {
        "env": locale_env(**PT),
        "welcome": "você entrou como ana. /ajuda lista os comandos; digite sair para ir embora.",
        "earlier": "— mensagens anteriores —",
        "now": "— agora —",
        "help": "/ajuda",
        "join": "/entrar",
        "commands": r"\* comandos:",
        "who": r"/quem ou /who \(quem está online\)",
        "unknown": r"\* erro: não existe usuário chamado ninguem",
        "usage": r"\* uso: /entrar #SALA",
        "time": r"\d\d:\d\d",
        "bye": "até logo!",
    },
    "en": {
        "env": locale_env(**EN),
        "welcome": "you are ana. /help lists commands, sair leaves.",
        "earlier": "— earlier messages —",
        "now": "— now —",
        "help": "/help",
        "join": "/join",
        "commands": r"\* commands:",
        "who": r"/who or /quem \(who is online\)",
        "unknown": r"\* error: there is no user named ninguem",
        "usage": r"\* usage: /join #ROOM",
        "time": TIME,
        "bye": "bye!",
    },
}


@pytest.mark.parametrize("lang", list(LANGUAGES))
def test_a_session_in_the_terminals_language(
    lang: str, server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    words = LANGUAGES[lang]
    env = words["env"]
    assert isinstance(env, dict)

    async def beto_says(text: str) -> None:
        beto = await JsonClient.open(server.url, "beto")
        assert (await beto.say(text))["type"] == "ack"
        await beto.close()

    asyncio.run(beto_says("dito antes"))
    ana = spawn("--url", server.url, "--name", "ana", env=env, track=children)
    ana.expect_exact(str(words["welcome"]))
    ana.expect_exact(str(words["earlier"]))  # the recent messages are set off from live ones
    ana.expect(rf"\[{words['time']}\] beto: dito antes")
    ana.expect_exact(str(words["now"]))  # even with no traffic after them

    ana.sendline(str(words["help"]))
    ana.expect(str(words["commands"]))
    ana.expect(str(words["who"]))
    ana.sendline("/msg ninguem oi")  # the server's error, in our language
    ana.expect(str(words["unknown"]))
    ana.sendline(str(words["join"]))  # a usage error of the client's own
    ana.expect(str(words["usage"]))

    asyncio.run(beto_says("ao vivo"))
    ana.expect(rf"\[({words['time']})\] beto: ao vivo")
    if lang == "pt-BR":  # a 24-hour clock
        assert not re.search(r"AM|PM", ana.match.group(1))
    ana.sendline("sair")
    ana.expect_exact(str(words["bye"]))
    ana.expect(pexpect.EOF)
    ana.close()
    assert ana.exitstatus == 0


@pytest.mark.parametrize(
    ("locale", "args", "expected"),
    [
        ({"LANG": "pt_BR.UTF-8"}, ("--lang", "en"), "you are ana."),
        ({"LANG": "C.UTF-8"}, ("--lang", "pt-BR"), "você entrou como ana."),
        ({"LC_ALL": "C.UTF-8", "LANG": "pt_BR.UTF-8"}, (), "you are ana."),
        ({"LC_MESSAGES": "pt_BR.UTF-8", "LANG": "C.UTF-8"}, (), "você entrou como ana."),
    ],
)
def test_lang_overrides_the_environment_and_lc_all_overrides_lang(
    locale: dict[str, str],
    args: tuple[str, ...],
    expected: str,
    server: ServerProcess,
    children: list[pexpect.spawn],
) -> None:
    ana = spawn("--url", server.url, "--name", "ana", *args, env=locale_env(**locale))
    children.append(ana)
    ana.expect_exact(expected)
    ana.expect(PROMPT)  # keys typed before the prompt is up would be the tty's, not its
    ana.sendcontrol("d")
    ana.expect(pexpect.EOF)


def test_ctrl_c_says_goodbye_in_portuguese(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    ana = spawn("--url", server.url, "--name", "ana", env=locale_env(**PT), track=children)
    ana.expect_exact("você entrou como ana")
    ana.expect(PROMPT)
    ana.sendcontrol("c")
    ana.expect_exact("até logo!")
    ana.expect(pexpect.EOF)
    ana.close()
    assert ana.exitstatus == 0


def test_private_labels_name_the_other_side_once(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    beatriz = spawn(
        "--url", server.url, "--name", "Beatriz", "--lang", "pt-BR", track=children
    )  # a Portuguese reader
    beatriz.expect_exact("você entrou como Beatriz")
    ana = spawn("--url", server.url, "--name", "ana", track=children)
    ana.expect_exact("you are ana")
    ana_phone = spawn("--url", server.url, "--name", "ana", track=children)  # another device
    ana_phone.expect_exact("you are ana")

    ana.sendline("/msg beatriz psiu")  # typed in lower case
    beatriz.expect(r"\[\d\d:\d\d\] privado de ana: psiu")
    ana_phone.expect(rf"\[{TIME}\] private to Beatriz: psiu")  # the name as the server has it
    assert "ana: psiu" not in (ana_phone.before or "") + (ana_phone.after or "")
    ana.expect(rf"\[{TIME}\] private to Beatriz: psiu")  # and the sending terminal, once stored
    ana.sendline("/msg ninguem oi")
    ana.expect(r"\* error: there is no user named ninguem")


def test_room_history_is_set_off_from_live_messages(
    server: ServerProcess, children: list[pexpect.spawn]
) -> None:
    async def beto_in_sala(*texts: str) -> None:
        beto = await JsonClient.open(server.url, "beto")
        await beto.send({"type": "join", "room": "#sala"})
        await beto.expect("room")
        for text in texts:
            await beto.send({"type": "say", "text": text, "room": "#sala"})
            assert (await beto.expect("ack", "error"))["type"] == "ack"
        await beto.close()

    asyncio.run(beto_in_sala("s1", "s2"))
    ana = spawn("--url", server.url, "--name", "ana", track=children)
    ana.expect_exact("you are ana")
    ana.sendline("/join #sala")
    ana.expect(r"\* you are in #sala")
    ana.expect_exact("— earlier messages —")
    ana.expect(r"\[#sala\] beto: s1")
    ana.expect(r"\[#sala\] beto: s2")
    ana.expect_exact("— now —")
    asyncio.run(beto_in_sala("s3"))
    ana.expect(r"\[#sala\] beto: s3")
    assert "earlier messages" not in (ana.before or "")


# --------------------------------------------------------------------------
# No server, a lost server


def test_no_server_running_is_one_clear_line_in_portuguese() -> None:
    with socket.socket() as sock:  # a port nobody listens on (bound, not listening)
        sock.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{sock.getsockname()[1]}"
        result = subprocess.run(
            [sys.executable, "client.py", "--url", url, "--name", "ana"],
            cwd=ROOT,
            env=locale_env(**PT),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode != 0
    assert result.stderr == (
        f"papo: nenhum servidor papo em {url}; inicie um com: make run (ou python server.py)\n"
    )
    assert result.stdout == ""


def test_no_server_running_in_a_terminal_exits_at_once(children: list[pexpect.spawn]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{sock.getsockname()[1]}"
        child = spawn("--url", url, track=children)  # no --name: it would ask, but cannot
        child.expect_exact(f"papo: no papo server at {url}; start one with: make run")
        child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    assert "your name" not in (child.before or "")


def wait_for(path: Path, text: str, timeout: float = 20.0) -> str:
    """The content of ``path`` once it holds ``text`` (polled until the deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {path}:\n{content}")


def test_a_lost_server_is_one_line_then_back_online(
    server: ServerProcess, children: list[pexpect.spawn], tmp_path: Path
) -> None:
    log = tmp_path / "client.log"
    # --verbose with stderr in a file: the terminal shows what people see, the file the detail.
    command = f"exec {sys.executable} client.py --url {server.url} --name ana --verbose 2> {log}"
    ana = pexpect.spawn(
        "/bin/sh",
        ["-c", command],
        cwd=str(ROOT),
        env={**locale_env(), **TERMINAL},
        encoding="utf-8",
        timeout=10,
        dimensions=(24, 120),
    )
    children.append(ana)
    ana.expect_exact("you are ana")
    server.kill()
    ana.expect(r"\* connection lost; reconnecting in \d+ s…")
    wait_for(log, "reconnect attempt 3 failed")  # several retries, not one line each
    server.restart()
    ana.expect_exact("* back online", timeout=30)
    shown = ana.before or ""
    assert "reconnecting" not in shown, shown
    assert "Connect call failed" not in shown and "1006" not in shown, shown
    assert "resumed" not in shown, shown
    detail = wait_for(log, "reconnected after")
    assert "Connect call failed" in detail  # the technical detail is not lost
    ana.sendline("sair")
    ana.expect_exact("bye!")
    ana.expect(pexpect.EOF)
