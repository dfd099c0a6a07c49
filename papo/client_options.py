"""The terminal client's command line: its options, and the language it speaks.

The connection's options have environment variables too (``PAPO_URL``,
``PAPO_NAME``, ``PAPO_PASSWORD``, ``PAPO_CA``), so a script or a shell
profile sets them once. The language is ``--lang``'s, or else the standard
locale variables' (``LC_ALL``, ``LC_MESSAGES``, ``LANG``: the first one set
decides): English or Brazilian Portuguese, and English for a language papo
does not speak.

Apart from :mod:`papo.tui` because it needs neither a terminal nor a
connection: the parser and the language choice are tested in-process.
"""

from __future__ import annotations

import argparse
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from papo.i18n import DEFAULT_LANGUAGE, LANGUAGES, match_language

DEFAULT_URL = "ws://localhost:8765"
#: The locale variables that choose the language, in the order POSIX gives them.
LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")


def environment_language(env: Mapping[str, str]) -> str:
    """The language the locale variables ask for: the first of ``LC_ALL``,
    ``LC_MESSAGES``, ``LANG`` that is set decides (``pt_BR.UTF-8`` → pt-BR,
    ``C.UTF-8`` → en); one papo does not speak, or none set, is English."""
    for variable in LOCALE_VARIABLES:
        value = env.get(variable, "")
        if value:
            return match_language(value) or DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


def language_option(value: str) -> str:
    """``--lang``'s value: a language papo speaks, however it is spelled (``pt_BR``, ``pt``)."""
    lang = match_language(value)
    if lang is None:
        raise argparse.ArgumentTypeError(
            f"unknown language {value!r}: papo speaks {', '.join(LANGUAGES)}"
        )
    return lang


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="client.py",
        description=(
            "papo terminal chat client. Type to talk; /help lists commands; sair leaves. "
            "It speaks English or Brazilian Portuguese: --lang, else LC_ALL, LC_MESSAGES or LANG."
        ),
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
    parser.add_argument(
        "--lang",
        type=language_option,
        default=argparse.SUPPRESS,  # (no "default: None" in --help: the help says it)
        help=f"language of the client's lines, one of {', '.join(LANGUAGES)} "
        "(default: what LC_ALL, LC_MESSAGES or LANG asks for; English otherwise)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="log the technical detail (connection errors, close codes, retries) to stderr",
    )
    parser.add_argument(
        "--ca",
        type=Path,
        default=os.environ.get("PAPO_CA"),
        metavar="FILE",
        help="for a wss:// server with a private certificate: trust this CA too (PAPO_CA)",
    )
    return parser


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line asked for."""

    url: str
    name: str | None
    password: str | None
    lang: str
    tls: ssl.SSLContext | None = None  # for wss:// with --ca (papo.tls.for_url)
