"""The terminal client: keyboard and incoming messages, concurrently, on one connection.

In a terminal it uses ``prompt_toolkit``: incoming lines print above the
input line without disturbing what is being typed. When stdin is not a
terminal (``echo oi | python client.py --name bot``) it reads plain lines and
prints plain lines, so it can be scripted; at the end of input it waits for
the server to acknowledge what it sent, then leaves.

Every line is in the client's language, English or Brazilian Portuguese
(see :mod:`papo.client_options`), and the server is told it so its errors
and notices arrive in it too.

This module is the wiring: :func:`main` reads the options
(:mod:`papo.client_options`), :func:`run` connects and joins, with the name
and password given or asked for (a refused password is asked again; a banned
name is not tried again, and a timed ban says until when, in local time),
then hands the connection to the prompt loop (:mod:`papo.client_chat`),
whose lines go to the screen (:mod:`papo.client_screen`). The connection
itself is :class:`~papo.client_session.ChatSession`'s, a protocol-level
library.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.patch_stdout import patch_stdout
from websockets.exceptions import ConnectionClosed

from papo import tls
from papo.client_chat import Client
from papo.client_format import until_text
from papo.client_options import Options, build_parser, environment_language
from papo.client_screen import GOODBYE, Screen
from papo.client_session import ChatSession, ConnectError, JoinError
from papo.i18n import render, t
from papo.protocol import Hello, ProtocolError, Welcome, visible
from papo.protocol_parse import check_name

log = logging.getLogger(__name__)


class Left(Exception):
    """The user left at a prompt before joining (Ctrl+C, Ctrl+D)."""


async def run(options: Options, interactive: bool) -> int:
    """Connect, join and chat until the user leaves; returns the exit status."""
    screen = Screen(interactive, options.lang)
    session = ChatSession(options.url, lang=options.lang, status=screen.say, ssl=options.tls)
    try:
        await session.connect()
    except ConnectError as exc:
        log.info("cannot connect to %s: %s", session.connect_url, exc.detail)
        screen.fail(exc.text)
        return 2
    client: Client | None = None
    try:
        try:
            joined = await _join(session, screen, options, interactive)
        except Left:
            screen.goodbye()
            return 0
        if joined is None:
            return 1
        client = Client(session, screen, interactive)
        assert session.joined is not None
        welcome = Welcome(
            session.joined.name,
            session.joined.token,
            session.joined.last_id,
            rooms=session.joined.rooms,
            direct=session.joined.direct,
            admin=session.joined.admin,
        )
        client.state.welcome(welcome)
        screen.say(t("you are {name}. /help lists commands, sair leaves.", name=visible(joined)))
        client.show_unread()
        client.transcript.expect_context(welcome.last_id)  # the recent messages follow
        await client.mark_replay()
        return await client.chat()
    finally:
        if client is not None:
            client.reads.cancel()
        await session.close()


async def _join(
    session: ChatSession, screen: Screen, options: Options, interactive: bool
) -> str | None:
    """Join with the name and password given or asked for; the name, or None on a refusal."""
    name, password = options.name, options.password
    asked_name = name is None
    while True:
        if name is None:
            if not interactive:
                screen.fail(t("no name given: use --name NAME"))
                return None
            name = await _ask(render(t("your name:"), screen.lang) + " ")
            if not name:
                name = None
                continue  # an empty answer: ask again
        try:
            joined = await session.join(Hello(check_name(name), password=password))
            return joined.name
        except JoinError as exc:
            code, message = exc.code, exc.message
            if exc.until is not None:  # a timed ban: until when, in local time
                message = f"{message} {until_text(exc.until, screen.lang)}"
        except ProtocolError as exc:
            code, message = exc.code, render(exc.message, screen.lang)
        except ConnectionClosed as exc:
            log.info("closed while joining: %s", exc)
            screen.fail(t("the server closed the connection"))
            return None
        if code in ("auth_required", "bad_password") and interactive:
            screen.say(message, "error")
            password = await _ask(render(t("password:"), screen.lang) + " ", secret=True) or None
            continue
        if code == "bad_name" and interactive and asked_name:
            screen.say(message, "error")
            name = None
            continue
        screen.fail(message)
        return None


async def _ask(prompt: str, *, secret: bool = False) -> str:
    """One answer, stripped (maybe empty); raises :class:`Left` on Ctrl+C or Ctrl+D."""
    if not sys.stdin.isatty():
        line: str = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            raise Left
        return line.strip()
    try:
        answer: str = await PromptSession[str]().prompt_async(prompt, is_password=secret)
    except (EOFError, KeyboardInterrupt):
        raise Left from None
    return answer.strip()


def setup_logging(verbose: bool, stream: TextIO) -> None:
    """``--verbose``: the client's technical detail (and the libraries' notes) on ``stream``."""
    if not verbose:
        return
    logging.basicConfig(
        stream=stream,
        level=logging.INFO,
        format="papo: %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("papo").setLevel(logging.DEBUG)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    lang: str = getattr(args, "lang", None) or environment_language(os.environ)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    try:
        context = tls.for_url(args.url, args.ca)
    except tls.TlsError as exc:
        print(f"papo: {exc}", file=sys.stderr, flush=True)
        return 2
    options = Options(args.url, args.name, args.password, lang, context)

    stderr = sys.stderr

    async def go() -> int:
        if interactive:
            with patch_stdout(raw=True):
                # Into a terminal: above the prompt, like every line; else (2> file) as is.
                setup_logging(args.verbose, sys.stderr if stderr.isatty() else stderr)
                return await run(options, True)
        setup_logging(args.verbose, stderr)
        return await run(options, False)

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:  # Ctrl+C outside a prompt (connecting, or a piped client)
        print(render(GOODBYE, lang), flush=True)
        return 0
