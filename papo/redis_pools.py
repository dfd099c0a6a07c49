"""Connection pools that wait for a free connection instead of refusing a command.

redis-py's asyncio pools have a size (100 connections by default) and, at
that size, refuse the next command at once: ``Too many connections``
(``MaxConnectionsError``). A thousand clients joining at the same moment did
that to a single Redis, and so did ``--redis-wait 1``, whose ``WAIT`` holds a
connection until a replica answers (a benchmark step delivered 28.7 % of its
messages). A refused command is a ``store_unavailable`` for somebody; a
command that waits a few milliseconds for a connection is not. So every papo
client of Redis has a bounded pool that waits, up to :data:`POOL_WAIT`
seconds, then fails with ``ConnectionError`` ("No connection available"):

one Redis
    redis-py's :class:`~redis.asyncio.BlockingConnectionPool`
    (:func:`papo.redis_connect.connect`).
a master found through Redis Sentinel
    :class:`SentinelBlockingPool`: redis-py's
    :class:`~redis.asyncio.sentinel.SentinelConnectionPool` (its connections
    ask the sentinels where the master is) with
    :class:`~redis.asyncio.BlockingConnectionPool`'s waiting ``get_connection``
    and ``release``; redis-py has each half but not both in one class.
one node of a Redis Cluster
    :func:`node_client`, a :class:`~redis.asyncio.BlockingConnectionPool`
    to that node (the cluster store's appends with their ``WAIT``, and its
    shard readers, go to a node directly).
a Redis Cluster
    :class:`WaitingCluster`. redis-py's asyncio ``RedisCluster`` keeps a list
    of connections per node (``ClusterNode``) that raises
    ``MaxConnectionsError`` at ``max_connections``, with no blocking variant
    and no way to give it a pool class (the synchronous client's
    ``connection_pool_class`` has no asyncio counterpart: redis-py issue
    #2522, closed unimplemented; pull request #3359 would add one). So papo
    waits in front of it: at most :data:`POOL_SIZE` commands and pipelines of
    one client run at once (each holds at most one connection per node, so no
    node needs more), the others wait for a turn; the nodes' own limit is
    twice that, a ceiling for what takes a connection outside a turn (a
    transaction's ``WATCH``, a pub/sub connection, a topology refresh, a
    connection that closes in the background).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException

POOL_SIZE = 100  # connections one client may open to one Redis (commands at once, a cluster's)
POOL_WAIT = 5.0  # seconds a command waits for a free one before it fails

#: Whether the running task holds a turn of a :class:`WaitingCluster` already (a pipeline
#: re-sends a redirected command through the client: it must not wait for a second turn).
_HOLDING: ContextVar[bool] = ContextVar("papo_redis_turn", default=False)


class SentinelBlockingPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel-managed master's pool that waits for a free connection.

    The method order puts :class:`SentinelConnectionPool` first (its connections,
    the master's address, what it disconnects after a failover) and
    :class:`BlockingConnectionPool` under it: its ``get_connection`` and ``release``
    (which the Sentinel pool does not override) wait up to ``timeout`` seconds for
    one of ``max_connections``.
    """


def blocking_pool(**options: Any) -> BlockingConnectionPool:
    """A pool of :data:`POOL_SIZE` connections that waits :data:`POOL_WAIT` s for one
    (``options``: redis-py connection keywords, and ``max_connections``/``timeout``)."""
    options.setdefault("max_connections", POOL_SIZE)
    options.setdefault("timeout", POOL_WAIT)
    return BlockingConnectionPool(**options)


def node_client(host: str, port: int, **options: Any) -> Redis:
    """A client of one Redis server at ``host:port`` (a cluster node) on a waiting pool."""
    return Redis.from_pool(blocking_pool(host=host, port=port, **options))


class WaitingCluster(RedisCluster):
    """A :class:`RedisCluster` whose commands wait for a turn instead of failing.

    ``pool_size`` commands and pipelines run at once; the next waits up to
    ``pool_wait`` seconds for one to end (then ``ConnectionError``, as a
    :class:`BlockingConnectionPool` says it). See the module's docstring for why.
    """

    def __init__(
        self, *args: Any, pool_size: int = POOL_SIZE, pool_wait: float = POOL_WAIT, **kwargs: Any
    ) -> None:
        kwargs.setdefault("max_connections", 2 * pool_size)
        super().__init__(*args, **kwargs)
        self.pool_size = pool_size
        self.pool_wait = pool_wait
        self._turns = asyncio.Semaphore(pool_size)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold one of the ``pool_size`` turns (at once when this task holds one already)."""
        if _HOLDING.get():
            yield
            return
        try:
            async with asyncio.timeout(self.pool_wait):
                await self._turns.acquire()
        except TimeoutError:
            raise RedisConnectionError(
                f"No connection available: {self.pool_size} Redis Cluster commands "
                f"were running for {self.pool_wait:g} s"
            ) from None
        holding = _HOLDING.set(True)
        try:
            yield
        finally:
            _HOLDING.reset(holding)
            self._turns.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.turn():
            return await super().execute_command(*args, **kwargs)

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:  # as RedisCluster.pipeline
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        # (mypy takes ClusterPipeline for abstract: a protocol of redis-py's typing
        # declares an attribute it never sets; redis-py's own pipeline() makes one too)
        return WaitingPipeline(self, transaction)  # type: ignore[abstract]


class WaitingPipeline(ClusterPipeline):
    """A pipeline of a :class:`WaitingCluster`: its ``execute`` takes a turn."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        client = self.cluster_client
        assert isinstance(client, WaitingCluster)
        async with client.turn():
            return await super().execute(raise_on_error, allow_redirections)
