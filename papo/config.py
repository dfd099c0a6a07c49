"""Server settings: one frozen :class:`Settings`, from flags and ``PAPO_*`` variables.

Precedence: a command-line flag, else the ``PAPO_<FLAG>`` environment variable
(``--port`` ↔ ``PAPO_PORT``), else the default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from papo import __version__
from papo.i18n import DEFAULT_LANGUAGE, LANGUAGES, match_language
from papo.moderation import BadAddress, parse_network
from papo.names import InvalidNameError, clean_name, clean_room
from papo.protocol import DEFAULT_MAX_TEXT
from papo.redis_connect import BadRedisUrl, parse_redis_url


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "localhost"
    port: int = 8765
    log_level: str = "INFO"
    data_dir: Path = Path("papo-data")
    max_text: int = DEFAULT_MAX_TEXT
    max_size: int = 64 * 1024
    max_pending: int = 1024 * 1024
    presence_grace: float = 5.0
    require_password: bool = False
    token_ttl_days: float = 30.0
    login_attempts: int = 5
    max_connections: int = 10_000
    max_connections_per_ip: int = 50
    open_timeout: float = 10.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    uvloop: bool = True
    memory: bool = False
    redis_url: str | None = None
    #: replicas a message must reach before its ack; None: 1 when the master has replicas
    redis_wait: int | None = None
    retention: int = 100_000
    rate_limit: float = 20.0
    rate_burst: float = 40.0
    allow_origins: tuple[str, ...] = ()
    compression: bool = False
    default_room: str = "#geral"
    max_rooms_per_user: int = 100
    room_creations: int = 5
    lang: str = DEFAULT_LANGUAGE
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: ``--workers``: worker processes on one port (0: one per core); None: this process serves.
    workers: int | None = None
    #: Tests only (hidden flag): echo every message back, for the Autobahn conformance suite.
    echo_for_conformance: bool = False

    @property
    def joins_per_address(self) -> int:
        """Joins one address may make in 10 s: twice its connections (0: no limit)."""
        return 2 * self.max_connections_per_ip

    #: Server admins' names (their powers need the name protected by a password).
    admins: tuple[str, ...] = ()
    #: Proxies (addresses or CIDR blocks) whose X-Forwarded-For names the client.
    trusted_proxies: tuple[str, ...] = ()


def _room(text: str) -> str:
    try:
        return clean_room(text)
    except InvalidNameError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _admin(text: str) -> str:
    try:
        return clean_name(text)
    except InvalidNameError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _proxy(text: str) -> str:
    try:
        return str(parse_network(text))
    except BadAddress as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _env_list(
    parser: argparse.ArgumentParser,
    environ: Mapping[str, str],
    variable: str,
    kind: Callable[[str], str],
) -> list[str]:
    """A comma-separated ``PAPO_*`` list, each item checked like the flag's value."""
    items = [item.strip() for item in environ.get(variable, "").split(",") if item.strip()]
    for item in items:
        _check_env(parser, variable, item, kind)
    return [kind(item) for item in items]


def _language(text: str) -> str:
    lang = match_language(text)
    if lang is None:
        raise argparse.ArgumentTypeError(
            f"{text!r}: papo speaks {' and '.join(LANGUAGES)} (pt_BR, pt and en-US work too)"
        )
    return lang


def _env(environ: Mapping[str, str], flag: str) -> str | None:
    return environ.get("PAPO_" + flag.upper().replace("-", "_"))


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must not be negative: {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


_KINDS = {"int": "a whole number (0 or more)", "float": "a number (0 or more)"}


def _check_env(
    parser: argparse.ArgumentParser,
    variable: str,
    value: str,
    kind: Callable[[str], Any],
    choices: Sequence[str] | None = None,
) -> None:
    """Refuse a bad ``PAPO_*`` value naming the variable (argparse would name only the flag)."""
    try:
        converted = kind(value)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        wanted = _KINDS.get(getattr(kind, "__name__", ""), "")
        reason = f"it must be {wanted}" if wanted else str(exc)
        parser.error(f"the environment variable {variable}={value!r} is not valid: {reason}")
    if choices is not None and converted not in choices:
        parser.error(
            f"the environment variable {variable}={value!r} is not valid: "
            f"it must be one of {', '.join(choices)}"
        )


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except for on/off switches, where "(default: True)" misleads."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0:  # store_true / store_false
            return action.help
        return super()._get_help_string(action)


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The ``server.py`` argument parser; defaults come from ``environ``."""
    env = os.environ if environ is None else environ
    d = Settings()
    parser = argparse.ArgumentParser(
        prog="server.py",
        description="papo: a real-time chat server over WebSockets. "
        "Every flag can also be set as PAPO_<FLAG> (e.g. PAPO_PORT=9000).",
        formatter_class=_HelpFormatter,
    )

    def add(
        flag: str,
        default: Any,
        kind: Callable[[str], Any],
        help_: str,
        *,
        env_flag: str | None = None,
        **kw: Any,
    ) -> None:
        from_env = _env(env, env_flag or flag)
        if from_env is not None:
            _check_env(
                parser,
                "PAPO_" + (env_flag or flag).upper().replace("-", "_"),
                from_env,
                kind,
                kw.get("choices"),
            )
        parser.add_argument(
            "--" + flag,
            type=kind,
            # argparse converts a string default with `type`, so a bad
            # PAPO_* value is reported like a bad flag.
            default=from_env if from_env is not None else default,
            help=help_,
            **kw,
        )

    add("host", d.host, str, "interface to listen on (0.0.0.0 for every interface)")
    add("port", d.port, _positive(int), "TCP port for WebSocket, web page, health and metrics")
    add(
        "lang",
        d.lang,
        _language,
        "language of notices and errors for a connection that asks for none "
        "(?lang= in its URL, Accept-Language, or hello's lang): en or pt-BR",
    )
    add(
        "log-level",
        d.log_level,
        str.upper,
        "logging level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    add("data", d.data_dir, Path, "directory for the embedded store (accounts, secret)")
    add("max-text", d.max_text, _positive(int), "longest message, in characters")
    add(
        "max-size", d.max_size, _positive(int), "largest incoming frame in bytes (over: close 1009)"
    )
    add(
        "max-pending",
        d.max_pending,
        _positive(int),
        "bytes a slow client may have waiting before it is closed with 1013",
    )
    add(
        "presence-grace",
        d.presence_grace,
        _positive(float),
        "seconds to wait before announcing that a user left (absorbs quick reconnects)",
    )
    add("token-ttl-days", d.token_ttl_days, _positive(float), "lifetime of session tokens")
    add(
        "login-attempts",
        d.login_attempts,
        _positive(int),
        "password tries per name and address a minute",
    )
    add(
        "max-connections",
        d.max_connections,
        _positive(int),
        "connections beyond this get HTTP 503 (with --workers: per worker)",
    )
    add(
        "max-connections-per-ip",
        d.max_connections_per_ip,
        _positive(int),
        "connections one address may have open (beyond: HTTP 429), and half the joins it "
        "may make in 10 s; 0 turns both limits off (with --workers: per worker)",
    )
    add(
        "open-timeout",
        d.open_timeout,
        _positive(float),
        "seconds a client has to finish the handshake",
    )
    add("ping-interval", d.ping_interval, _positive(float), "seconds between keepalive pings")
    add(
        "ping-timeout",
        d.ping_timeout,
        _positive(float),
        "seconds to wait for a pong before closing",
    )
    add(
        "retention",
        d.retention,
        _positive(int),
        "how many messages the history keeps per conversation (room or direct messages)",
    )
    add(
        "default-room",
        d.default_room,
        _room,
        "the room everyone is in, where lines without a room go",
        metavar="#ROOM",
    )
    add(
        "max-rooms-per-user",
        d.max_rooms_per_user,
        _positive(int),
        "rooms one user may be a member of (the default room included)",
    )
    add(
        "room-creations",
        d.room_creations,
        _positive(int),
        "new rooms one user may create a minute; 0 turns the limit off",
    )
    add(
        "rate-limit",
        d.rate_limit,
        _positive(float),
        "messages a second per user (bursts of twice that); 0 turns the limit off",
    )

    def switch(flag: str, help_: str, *, dest: str | None = None, negate: bool = False) -> None:
        """A boolean flag; PAPO_<FLAG>=1 (or true, yes) sets it too."""
        on = (_env(env, flag) or "").lower() in ("1", "true", "yes")
        parser.add_argument(
            "--" + flag,
            dest=dest or flag.replace("-", "_"),
            action="store_false" if negate else "store_true",
            default=not on if negate else on,
            help=help_,
        )

    switch(
        "compression",
        "offer permessage-deflate (smaller frames on slow links, but ~4x memory per "
        "connection and one compression per recipient; off by default)",
    )
    switch("memory", "keep everything in memory (a throwaway run: nothing survives a restart)")
    add(
        "redis",
        None,
        str,
        "share the chat with other instances through Redis at URL "
        "(e.g. redis://127.0.0.1:6379/0): history, ids, accounts and presence live there "
        "and --data is not used",
        metavar="URL",
        dest="redis_url",
        env_flag="redis-url",
    )
    add(
        "redis-wait",
        None,
        _positive(int),
        "with --redis: acknowledge a message only once N replicas have it (Redis WAIT); "
        "by default 1 when a single or Sentinel master has replicas, else 0 (0 on a cluster)",
        metavar="N",
    )
    add(
        "workers",
        None,
        _positive(int),
        "run N worker processes on --port (0: one per core) that share the chat through "
        "--redis, with a supervisor that starts a worker again when it dies; limits such as "
        "--max-connections, --max-connections-per-ip and the rate limits are per worker",
        metavar="N",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[o for o in (_env(env, "allow-origin") or "").split(",") if o],
        metavar="ORIGIN",
        help="let browser pages from ORIGIN (e.g. https://chat.example.com, or *) connect; "
        "repeat for several. Pages served by papo itself are always allowed",
    )
    add(
        "tls-cert",
        None,
        Path,
        "serve wss:// and https:// on --port with this certificate chain (PEM; with "
        "--tls-key); SIGHUP reloads both files",
        metavar="FILE",
    )
    add("tls-key", None, Path, "the private key of --tls-cert (PEM)", metavar="FILE")
    switch("require-password", "every name needs a password (no open names, no guests)")
    parser.add_argument(
        "--admin",
        action="append",
        type=_admin,
        default=_env_list(parser, env, "PAPO_ADMINS", _admin),
        metavar="NAME",
        help="a server admin (ban, purge, audit, and an operator of every room) once the name "
        "is protected by a password; repeat for several (PAPO_ADMINS=ana,beto)",
    )
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        type=_proxy,
        default=_env_list(parser, env, "PAPO_TRUSTED_PROXIES", _proxy),
        metavar="ADDRESS",
        help="a reverse proxy (address or CIDR block) whose X-Forwarded-For header names the "
        "client's address (for address bans and limits); repeat for several "
        "(PAPO_TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8)",
    )
    switch(
        "no-uvloop",
        "use the stock asyncio event loop even when uvloop is installed",
        dest="uvloop",
        negate=True,
    )
    parser.add_argument("--version", action="version", version=f"papo {__version__}")
    # Tests only: the same connection class as the chat, echoing (docs/autobahn/README.md).
    parser.add_argument("--echo-for-conformance", action="store_true", help=argparse.SUPPRESS)
    return parser


def parse_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build :class:`Settings` from ``argv`` and ``environ`` (default: the process's)."""
    parser = build_parser(environ)
    ns = parser.parse_args(argv)
    if ns.redis_url and ns.memory:
        parser.error("--memory and --redis exclude each other: choose where the history lives")
    if ns.redis_url:
        try:
            parse_redis_url(ns.redis_url)
        except BadRedisUrl as exc:
            parser.error(str(exc))
    if ns.redis_wait is not None and not ns.redis_url:
        parser.error("--redis-wait counts Redis replicas: it needs --redis")
    if ns.workers is not None and not ns.redis_url:
        parser.error(
            "--workers runs several processes that share the chat through Redis: "
            "give --redis URL too (or PAPO_REDIS_URL), e.g. --redis redis://127.0.0.1:6379/0"
        )
    if (ns.tls_cert is None) != (ns.tls_key is None):
        parser.error("--tls-cert and --tls-key go together: the certificate and its key")
    return Settings(
        host=ns.host,
        port=ns.port,
        log_level=ns.log_level,
        data_dir=ns.data,
        max_text=ns.max_text,
        max_size=ns.max_size,
        max_pending=ns.max_pending,
        presence_grace=ns.presence_grace,
        require_password=ns.require_password,
        token_ttl_days=ns.token_ttl_days,
        login_attempts=ns.login_attempts,
        max_connections=ns.max_connections,
        max_connections_per_ip=ns.max_connections_per_ip,
        open_timeout=ns.open_timeout,
        ping_interval=ns.ping_interval,
        ping_timeout=ns.ping_timeout,
        uvloop=ns.uvloop,
        memory=ns.memory,
        redis_url=ns.redis_url or None,
        redis_wait=ns.redis_wait,
        retention=max(1, ns.retention),
        rate_limit=ns.rate_limit,
        rate_burst=2 * ns.rate_limit,
        allow_origins=tuple(ns.allow_origin),
        compression=ns.compression,
        default_room=ns.default_room,
        max_rooms_per_user=max(1, ns.max_rooms_per_user),
        room_creations=ns.room_creations,
        lang=ns.lang,
        tls_cert=ns.tls_cert,
        tls_key=ns.tls_key,
        workers=ns.workers,
        admins=tuple(dict.fromkeys(ns.admin)),
        trusted_proxies=tuple(dict.fromkeys(ns.trusted_proxy)),
        echo_for_conformance=ns.echo_for_conformance,
    )
