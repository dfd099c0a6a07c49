"""What a newcomer meets, over real sockets: the language, the first lines, restarts, start-up errors.

Each test starts the real server on a free port. Plain-text connections are
what the challenge's five-line script opens; JSON ones are ``papo.v1``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import StartServer
from tests.helpers import ROOT, JsonClient, PlainClient, ServerProcess, free_port, need


async def first_lines(client: PlainClient, last: str) -> list[str]:
    """Every line up to and including the first that contains ``last``."""
    lines = []
    while True:
        line = await client.recv()
        lines.append(line)
        if last in line:
            return lines


async def test_a_plain_script_learns_what_the_server_is_then_its_name_then_the_history(
    server: ServerProcess,
) -> None:
    ana = await JsonClient.open(server.url, "ana")
    for n in range(7):
        await ana.say(f"mensagem {n}")
    script = await PlainClient.open(server.url)
    lines = await first_lines(script, "mensagem 6")
    assert lines[0] == "* welcome to papo. /help lists the commands, sair leaves"
    assert lines[1].startswith("* you are guest-")
    assert lines[2] == "* choose your name with /nick NAME"
    assert lines[3] == "— last 7 messages —"
    assert lines[4:] == [f"ana: mensagem {n}" for n in range(7)]
    await script.close()
    await ana.close()


async def test_plain_mode_speaks_portuguese_to_accept_language_pt_br(server: ServerProcess) -> None:
    ana = await JsonClient.open(server.url, "ana")
    await ana.say("oi")
    script = await PlainClient.open(server.url, accept_language="pt-BR,pt;q=0.9,en;q=0.5")
    lines = await first_lines(script, "ana: oi")
    assert (
        lines[0] == "* boas-vindas ao papo! /ajuda mostra os comandos; digite sair para ir embora"
    )
    assert lines[1].startswith("* você é guest-")
    assert lines[2] == "* escolha seu nome com /nome NOME"
    assert lines[3] == "— última mensagem —"
    await script.send("/privado zeca oi")
    assert await script.recv() == "* erro: não existe usuário chamado zeca"
    await script.send("/nome bia")
    assert await script.until("você é") == "* você é bia"
    assert await ana.expect("presence") == {"type": "presence", "event": "join", "name": "bia"}
    await script.send("/quem")
    assert (await script.until("online")).startswith("* online (2): ")
    await script.send("/ajuda")
    assert (await script.recv()).startswith("* comandos: /privado ou /msg NOME TEXTO")
    await script.send("/entrar #sala")
    assert await script.until("sala") == "* você está em #sala: 1 membro, 1 online"
    await script.send("/comando")
    assert await script.recv() == "* erro: comando desconhecido /comando; /ajuda lista os comandos"
    await script.close()
    await ana.close()


async def test_lang_in_the_url_wins_over_accept_language(server: ServerProcess) -> None:
    script = await PlainClient.open(server.url + "?lang=en", accept_language="pt-BR")
    assert await script.recv() == "* welcome to papo. /help lists the commands, sair leaves"
    await script.send("/quem")  # the Portuguese spellings work in every language
    assert await script.until("online") == "* nobody is online yet"  # a guest is not listed
    await script.close()
    portuguese = await PlainClient.open(server.url + "?lang=pt-BR")
    assert (await portuguese.recv()).startswith("* boas-vindas ao papo!")
    await portuguese.close()


async def test_json_errors_keep_their_code_and_speak_the_hello_language(
    server: ServerProcess,
) -> None:
    bia = await JsonClient.open(server.url, "bia", lang="pt-BR")
    await bia.send({"type": "say", "to": "zeca", "text": "oi"})
    error = await bia.expect("error")
    assert error["code"] == "unknown_user"
    assert error["message"] == "não existe usuário chamado zeca"
    english = await JsonClient.open(server.url, "carla")
    await english.send({"type": "say", "to": "zeca", "text": "oi"})
    assert (await english.expect("error"))["message"] == "there is no user named zeca"
    unknown = await JsonClient.open(server.url, "davi", lang="xx-YY")  # no error: English
    await unknown.send({"type": "join", "room": "x y"})
    assert (await unknown.expect("error"))["code"] == "bad_name"
    for client in (bia, english, unknown):
        await client.close()


async def test_the_server_lang_is_the_default(start_server: StartServer) -> None:
    server = start_server("--lang", "pt-BR", "--rate-limit", "0")
    script = await PlainClient.open(server.url)
    assert (await script.recv()).startswith("* boas-vindas ao papo!")
    await script.close()
    english = await PlainClient.open(server.url, accept_language="en-US,en;q=0.9")
    assert (await english.recv()).startswith("* welcome to papo.")
    await english.close()


async def test_a_message_to_someone_reconnecting_within_the_grace_does_not_say_offline(
    start_server: StartServer,
) -> None:
    server = start_server("--presence-grace", "30", "--rate-limit", "0")
    ana = await JsonClient.open(server.url, "ana")
    pedro = await JsonClient.open(server.url, "pedro")
    assert await ana.expect("presence") == {"type": "presence", "event": "join", "name": "pedro"}
    await pedro.close()  # dropped: within the 30 s grace he is still here
    await ana.send({"type": "say", "to": "pedro", "text": "volta!", "cid": "1"})
    assert (await ana.expect("ack"))["cid"] == "1"
    pedro = await JsonClient.open(server.url, "pedro", resume_from=0)
    assert (await pedro.expect("message"))["text"] == "volta!"
    await ana.say("probe")  # a notice for the first message would have come before this ack
    events = list(ana.backlog)
    assert not [e for e in events if e["type"] in ("notice", "presence")], events
    await ana.close()
    await pedro.close()


async def test_after_a_restart_nobody_who_never_left_is_announced_again(
    start_server: StartServer,
) -> None:
    server = start_server("--presence-grace", "5", "--rate-limit", "0")
    clients = [await JsonClient.open(server.url, name) for name in ("ana", "beto", "carla")]
    await clients[0].say("antes")
    server.restart(signal.SIGKILL)  # a crash: nobody left
    ana = await JsonClient.open(server.url, "ana", resume_from=0)
    beto = await JsonClient.open(server.url, "beto", resume_from=0)
    await ana.say("depois")
    assert (await beto.expect("message"))["text"] in ("antes", "depois")
    await beto.say("probe")
    while (await ana.expect("message", timeout=10))["text"] != "probe":
        pass
    # beto went live before sending the probe: an announcement would be queued before it.
    presence = [e for e in ana.backlog if e["type"] == "presence"]
    assert presence == [], "beto was re-announced after the restart"
    await ana.send({"type": "who"})
    who = await ana.expect("users")
    assert sorted(u["name"] for u in who["users"]) == ["ana", "beto"]
    await ana.close()
    await beto.close()


def run_server(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "--host", "127.0.0.1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_a_data_path_that_is_a_file_is_named(tmp_path: Path) -> None:
    afile = tmp_path / "papo-data"
    afile.write_text("not a directory")
    result = run_server("--port", "0", "--data", str(afile))
    assert result.returncode == 1
    assert f"--data {afile} is a file, not a directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_data_directory_that_cannot_be_written_says_which_and_why(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        need("mounting a read-only tmpfs needs root", "the unwritable --data test")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)], check=True)
    try:
        result = run_server("--port", "0", "--data", str(readonly))
        assert result.returncode == 1
        assert f"cannot write in the data directory {readonly} (--data)" in result.stderr
        assert "Read-only file system" in result.stderr
        result = run_server("--port", "0", "--data", str(readonly / "inside"))
        assert f"cannot create the data directory {readonly / 'inside'}" in result.stderr
    finally:
        subprocess.run(["umount", str(readonly)], check=True)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PAPO_PORT", "abc"),
        ("PAPO_RATE_LIMIT", "muito"),
        ("PAPO_LANG", "fr"),
        ("PAPO_LOG_LEVEL", "x"),
    ],
)
def test_a_bad_environment_variable_is_named(variable: str, value: str, tmp_path: Path) -> None:
    result = run_server("--data", str(tmp_path), env={variable: value})
    assert result.returncode == 2
    assert f"the environment variable {variable}={value!r} is not valid" in result.stderr


def test_a_port_in_use_suggests_another(tmp_path: Path) -> None:
    port = free_port()
    first = ServerProcess(tmp_path / "one", "--memory")
    first.port = str(port)
    first.start()
    try:
        result = run_server("--port", str(port), "--memory")
        assert result.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr
        assert "choose another with --port" in result.stderr
    finally:
        first.kill()
