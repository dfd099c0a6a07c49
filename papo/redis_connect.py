"""Where ``--redis`` points, and the clients that talk to it.

:func:`parse_redis_url` turns the flag's URL into a :class:`RedisTarget` at
start-up, so a malformed URL is refused with a clear message before anything
connects; :func:`connect` builds a client for a target. The kinds:

``redis://[user:password@]host:port/db``, ``rediss://...``, ``unix:///path?db=N``
    one Redis server (redis-py's own URL syntax, ``Redis.from_url``).
``redis+sentinel://host:port[,host:port...]/MASTER_NAME[?password=...&db=N]``
    the master that Redis Sentinel knows as ``MASTER_NAME``, asked of the
    sentinels listed (port 26379 when left out). The client asks the sentinels
    for the master's address whenever it opens a connection, so after a
    failover it finds the promoted replica by itself. Query parameters:
    ``password`` and ``username`` of the Redis servers, ``db``, and
    ``sentinel_password`` / ``sentinel_username`` when the sentinels ask for
    their own. (A password in the URL's user part would be ambiguous between
    the two, so it is refused.)

``redis+cluster://[user:password@]host:port[,host:port...]``
    a Redis Cluster, those nodes to start from (parsed by
    :func:`papo.cluster_ids.parse_cluster_url`); its clients are built by
    :class:`papo.store_cluster.ClusterStore` itself, one per node.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel
from redis.connection import parse_url

from papo.cluster_ids import ClusterUrlError, parse_cluster_url
from papo.redis_pools import POOL_SIZE, POOL_WAIT, SentinelBlockingPool
from papo.store import StoreError

SENTINEL_PORT = 26379
SENTINEL_SCHEME = "redis+sentinel"
SINGLE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEME = "redis+cluster"
EXAMPLES = (
    "redis://127.0.0.1:6379/0, redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster "
    "or redis+cluster://10.0.0.1:7000,10.0.0.2:7000"
)
_QUERY_PASSWORD = re.compile(r"([?&](?:sentinel_)?password=)[^&#]*")
_SENTINEL_QUERY = ("password", "username", "db", "sentinel_password", "sentinel_username")


class BadRedisUrl(StoreError):
    """The ``--redis`` URL cannot be understood; the message says what is wrong in it."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where the store's Redis is: one server (``url``) or a Sentinel-managed master."""

    kind: str  # "single", "sentinel" or "cluster"
    url: str = field(repr=False)  # as given (it may hold passwords: see safe)
    nodes: tuple[tuple[str, int], ...] = ()  # the sentinels (host, port)
    master: str = ""  # the master's name, as the sentinels know it
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    @property
    def safe(self) -> str:
        """The URL without its passwords, for logs and errors."""
        if self.kind in ("single", "cluster"):
            return _without_password(self.url)
        hosts = ",".join(_netloc(host, port) for host, port in self.nodes)
        query = [f"db={self.db}"] if self.db else []
        if self.password is not None:
            query.append("password=***")
        if self.sentinel_password is not None:
            query.append("sentinel_password=***")
        tail = "?" + "&".join(query) if query else ""
        return f"{SENTINEL_SCHEME}://{hosts}/{quote(self.master, safe='')}{tail}"


def parse_redis_url(url: str) -> RedisTarget:
    """The target ``url`` names; :class:`BadRedisUrl` saying what is wrong otherwise."""
    scheme, sep, _ = url.partition("://")
    parser = _PARSERS.get(scheme.lower()) if sep else None
    if parser is None:
        raise BadRedisUrl(f"--redis wants a URL like {EXAMPLES}, not {_without_password(url)!r}")
    return parser(url)


def _parse_single(url: str) -> RedisTarget:
    scheme, _, rest = url.partition("://")
    try:
        path = urlsplit(url).path.strip("/") if scheme.lower() != "unix" and rest else ""
    except ValueError as exc:  # e.g. an unclosed [ of an IPv6 address
        raise BadRedisUrl(f"--redis {_without_password(url)!r}: {exc}") from None
    if path and not (path.isascii() and path.isdigit()):
        raise BadRedisUrl(
            f"--redis {_without_password(url)!r}: the path is the database number "
            f"(like /0), not {path!r}"
        )
    try:
        # redis-py's own checks (a bad db, an unknown parameter value)
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise BadRedisUrl(f"--redis {_without_password(url)!r}: {exc}") from None
    return RedisTarget("single", url)


def _parse_sentinel(url: str) -> RedisTarget:
    shown = _without_password(url)

    def bad(problem: str) -> BadRedisUrl:
        return BadRedisUrl(f"--redis {shown!r}: {problem} (like {EXAMPLES.split(' or ')[1]})")

    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed [ of an IPv6 address
        raise bad(str(exc)) from None
    netloc = parts.netloc
    if "@" in netloc:
        raise bad(
            "put passwords in the query: ?password=... for the Redis servers, "
            "?sentinel_password=... for the sentinels"
        )
    if parts.fragment:
        raise bad("a URL fragment (#...) means nothing here")
    if not netloc:
        raise bad("no sentinel given")
    nodes = tuple(_node(item, bad) for item in netloc.split(","))
    master = unquote(parts.path.removeprefix("/"))
    if not master:
        raise bad("the master's name is missing after the sentinels")
    if "/" in master or any(ch.isspace() or not ch.isprintable() for ch in master):
        raise bad(f"{master!r} is not a master name (one word, no slash)")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise bad("the query is not name=value pairs joined by &") from None
    query: dict[str, str] = {}
    for name, value in pairs:
        if name not in _SENTINEL_QUERY:
            raise bad(f"unknown parameter {name!r} (known: {', '.join(_SENTINEL_QUERY)})")
        if name in query:
            raise bad(f"{name!r} is given twice")
        query[name] = value
    db_text = query.get("db", "0")
    if not db_text.isascii() or not db_text.isdigit():
        raise bad(f"db must be a whole number (0 or more), not {db_text!r}")
    return RedisTarget(
        "sentinel",
        url,
        nodes,
        master,
        int(db_text),
        query.get("username") or None,
        query.get("password") or None,
        query.get("sentinel_username") or None,
        query.get("sentinel_password") or None,
    )


def _node(item: str, bad: Callable[[str], BadRedisUrl]) -> tuple[str, int]:
    """``host[:port]`` or ``[v6]:port`` of one sentinel."""
    if not item:
        raise bad("an empty sentinel address (two commas, or a trailing one)")
    if item.startswith("["):
        host, close, rest = item[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise bad(f"{item!r} is not [IPv6 address]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad(f"{host!r} is not an IPv6 address") from None
        port_text = rest[1:] if rest else ""
    else:
        host, colon, port_text = item.partition(":")
        if ":" in port_text:
            raise bad(f"{item!r}: write an IPv6 address in brackets, [::1]:26379")
        if colon and not port_text:
            raise bad(f"{item!r} has a colon but no port")
        if not host or any(ch in host for ch in "/?#%") or any(ch.isspace() for ch in host):
            raise bad(f"{item!r} is not a host name or address")
    if not port_text:
        return host, SENTINEL_PORT
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad(f"{item!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def _parse_cluster(url: str) -> RedisTarget:
    try:
        nodes, _, _ = parse_cluster_url(url)
    except ClusterUrlError as exc:
        raise BadRedisUrl(f"--redis: {exc}") from None
    return RedisTarget("cluster", url, nodes=tuple(nodes))


_PARSERS: dict[str, Callable[[str], RedisTarget]] = {
    **dict.fromkeys(SINGLE_SCHEMES, _parse_single),
    SENTINEL_SCHEME: _parse_sentinel,
    CLUSTER_SCHEME: _parse_cluster,
}


def connect(
    target: RedisTarget,
    *,
    pool_size: int = POOL_SIZE,
    pool_wait: float = POOL_WAIT,
    **options: Any,
) -> Redis:
    """A client of ``target`` (options: redis-py connection keywords, e.g. timeouts).

    Each call makes a client with a connection pool of its own, so a blocking
    reader does not hold up the other commands. The pool opens at most
    ``pool_size`` connections; a command finding them all busy waits up to
    ``pool_wait`` seconds for one (see :mod:`papo.redis_pools`).
    """
    if target.kind == "single":
        pool = BlockingConnectionPool.from_url(
            target.url, max_connections=pool_size, timeout=pool_wait, **options
        )
        return Redis.from_pool(pool)
    if target.kind == "cluster":
        raise BadRedisUrl("a Redis Cluster's clients are made by its store (ClusterStore)")
    sentinel_options: dict[str, Any] = {
        "socket_timeout": options.get("socket_connect_timeout", 2.0),
        "socket_connect_timeout": options.get("socket_connect_timeout", 2.0),
    }
    if target.sentinel_password is not None:
        sentinel_options["password"] = target.sentinel_password
        sentinel_options["username"] = target.sentinel_username
    nodes = list(target.nodes)
    sentinel = Sentinel(nodes, sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    master: Redis = sentinel.master_for(
        target.master,
        connection_pool_class=SentinelBlockingPool,
        max_connections=pool_size,
        timeout=pool_wait,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
    )
    return master


async def disconnect(client: Redis) -> None:
    """Close a client of :func:`connect` (a Sentinel master's: its sentinels' too)."""
    await client.aclose()
    pool = getattr(client, "connection_pool", None)  # a cluster's client has none
    manager = getattr(pool, "sentinel_manager", None)
    if isinstance(manager, Sentinel):
        await manager.aclose()


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _without_password(url: str) -> str:
    """``url`` with its passwords (in the user part, or ``password=`` in the query)
    masked, for logs."""
    url = _QUERY_PASSWORD.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user + ':***' if user else '***'}@{host}"
