"""The terminal client: keyboard and incoming messages, concurrently, on one connection.

In a terminal it uses ``prompt_toolkit``: incoming lines print above the
input line without disturbing what is being typed. When stdin is not a
terminal (``echo oi | python client.py --name bot``) it reads plain lines and
prints plain lines, so it can be scripted; at the end of input it waits for
the server to acknowledge what it sent, then leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence
from datetime import datetime

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.patch_stdout import patch_stdout
from prompt_toolkit.shortcuts import print_formatted_text

from papo.commands import HELP, Help, Nick, Quit, parse_line
from papo.protocol import (
    Error,
    Gap,
    Hello,
    Message,
    Notice,
    Presence,
    ProtocolError,
    Say,
    ServerEvent,
    Users,
    Welcome,
    check_name,
    visible,
)
from papo.session import ChatSession, ConnectError, JoinError

DEFAULT_URL = "ws://localhost:8765"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="client.py",
        description="papo terminal chat client. Type to talk; /help lists commands; sair leaves.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--url", default=os.environ.get("PAPO_URL", DEFAULT_URL), help="server address (PAPO_URL)"
    )
    parser.add_argument("--name", default=os.environ.get("PAPO_NAME"), help="your name (PAPO_NAME)")
    parser.add_argument(
        "--password",
        default=os.environ.get("PAPO_PASSWORD"),
        help="password of a protected name (PAPO_PASSWORD; asked for when needed)",
    )
    return parser


def format_event(event: ServerEvent) -> tuple[str, str] | None:
    """(style, line) for an incoming event; None for events not shown."""
    if isinstance(event, Message):
        when = _local_time(event.ts)
        text = visible(event.text)
        if event.to is None:
            return ("", f"[{when}] {visible(event.sender)}: {text}")
        return (
            "private",
            f"[{when}] {visible(event.sender)} → {visible(event.to)} (private): {text}",
        )
    if isinstance(event, Presence):
        verb = "joined" if event.event == "join" else "left"
        return ("notice", f"* {visible(event.name)} {verb}")
    if isinstance(event, Users):
        names = ", ".join(
            visible(u.name) + ("" if u.sessions == 1 else f" ({u.sessions} sessions)")
            for u in event.users
        )
        return ("notice", f"* online ({len(event.users)}): {names}")
    if isinstance(event, Error):
        return ("error", f"* error: {visible(event.message)}")
    if isinstance(event, Notice):
        return ("notice", f"* {visible(event.text)}")
    if isinstance(event, Welcome):
        return ("notice", f"* you are {visible(event.name)}")
    if isinstance(event, Gap):
        return ("notice", f"* older messages (up to {event.oldest - 1}) are no longer kept")
    return None


def _local_time(ts: str) -> str:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone().strftime("%H:%M")
    except ValueError:
        return "--:--"


STYLES = {"notice": "ansibrightblack", "error": "ansired", "private": "ansimagenta", "": ""}


class Screen:
    """Where lines go: styled above the prompt in a terminal, plain when piped."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def show(self, style: str, line: str) -> None:
        if self.interactive:
            print_formatted_text(FormattedText([(STYLES.get(style, ""), line)]))
        else:
            print(line, flush=True)

    def fail(self, line: str) -> None:
        print(f"papo: {line}", file=sys.stderr, flush=True)


async def run(url: str, name: str | None, password: str | None, interactive: bool) -> int:
    """Connect, join and chat until the user leaves; returns the exit status."""
    screen = Screen(interactive)
    session = ChatSession(url, status=lambda text: screen.show("notice", f"* {text}"))
    try:
        await session.connect()
    except ConnectError as exc:
        screen.fail(str(exc))
        return 2
    try:
        joined = await _join(session, screen, name, password, interactive)
        if joined is None:
            return 1
        screen.show("notice", f"* you are {joined}. /help lists commands, sair leaves.")
        receiver = asyncio.create_task(_receive(session, screen))
        typer = asyncio.create_task(_type(session, screen, interactive))
        done, _ = await asyncio.wait({receiver, typer}, return_when=asyncio.FIRST_COMPLETED)
        if receiver in done:
            typer.cancel()
            code = session.close_code
            if session.closing or code == 1000:
                screen.show("notice", "* disconnected")
                return 0
            screen.fail(f"the server closed the connection (code {code})")
            return 1
        if not interactive and not await session.wait_acked(10.0):
            screen.fail(f"{len(session.unacked)} message(s) not acknowledged by the server")
            receiver.cancel()
            return 1
        receiver.cancel()
        return 0
    finally:
        await session.close()


async def _join(
    session: ChatSession, screen: Screen, name: str | None, password: str | None, interactive: bool
) -> str | None:
    asked_name = name is None
    while True:
        if name is None:
            if not interactive:
                screen.fail("no name given: use --name NAME")
                return None
            name = await _ask("your name: ")
            if name is None:
                return None
        try:
            joined = await session.join(Hello(check_name(name), password=password))
            return joined.name
        except (ProtocolError, JoinError) as exc:
            code, message = exc.code, exc.message
        if code in ("auth_required", "bad_password") and interactive:
            screen.show("error", f"* {message}")
            password = await _ask("password: ", secret=True)
            if password is None:
                return None
            continue
        if code == "bad_name" and interactive and asked_name:
            screen.show("error", f"* {message}")
            name = None
            continue
        screen.fail(message)
        return None


async def _ask(prompt: str, *, secret: bool = False) -> str | None:
    if not sys.stdin.isatty():
        line = await asyncio.to_thread(sys.stdin.readline)
        return line.strip() or None
    try:
        if secret:
            return await asyncio.to_thread(getpass.getpass, prompt)
        answer: str = await PromptSession[str]().prompt_async(prompt)
        return answer.strip() or None
    except (EOFError, KeyboardInterrupt):
        return None


async def _receive(session: ChatSession, screen: Screen) -> None:
    async for event in session.events():
        shown = format_event(event)
        if shown is not None:
            screen.show(*shown)


async def _type(session: ChatSession, screen: Screen, interactive: bool) -> None:
    prompt: PromptSession[str] | None = PromptSession() if interactive else None
    while True:
        if prompt is not None:
            try:
                line = await prompt.prompt_async("> ")
            except (EOFError, KeyboardInterrupt):
                return
        else:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
        if not line.strip():
            continue
        try:
            command = parse_line(line)
        except ProtocolError as exc:
            screen.show("error", f"* {exc.message}")
            continue
        if isinstance(command, Quit):
            return
        if isinstance(command, Help):
            screen.show("notice", f"* {HELP}")
        elif isinstance(command, Nick):
            screen.show("notice", "* to change your name, leave and start again with --name NAME")
        elif isinstance(command, Say):
            await session.say(command.text, command.to)  # kept until acknowledged
        elif not await session.send(command):
            screen.show("error", "* not connected right now; try again in a moment")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()

    async def go() -> int:
        if interactive:
            with patch_stdout(raw=True):
                return await run(args.url, args.name, args.password, True)
        return await run(args.url, args.name, args.password, False)

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        return 0
