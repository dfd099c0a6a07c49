"""``--redis`` URLs (papo/redis_connect.py), the replica count of ``--redis-wait``
(papo/redis_wait.py), what a failed append tells its sender, and the pools that wait
(papo/redis_pools.py): in-process, no Redis."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from papo.config import parse_settings
from papo.redis_connect import (
    SENTINEL_PORT,
    BadRedisUrl,
    RedisTarget,
    connect,
    disconnect,
    parse_redis_url,
)
from papo.redis_pools import (
    POOL_SIZE,
    POOL_WAIT,
    SentinelBlockingPool,
    WaitingCluster,
    node_client,
)
from papo.redis_wait import NotReplicated, ReplicaWait
from papo.store import StoreError, StoreUnconfirmed
from papo.store_redis_base import append_failure


def test_a_sentinel_url_names_the_sentinels_the_master_and_its_options() -> None:
    target = parse_redis_url(
        "redis+sentinel://10.0.0.1:26380,sentinel-b,[::1]:5000/mymaster"
        "?password=p%40ss&db=2&username=papo&sentinel_password=s3"
    )
    assert target == RedisTarget(
        "sentinel",
        target.url,
        (("10.0.0.1", 26380), ("sentinel-b", SENTINEL_PORT), ("::1", 5000)),
        "mymaster",
        2,
        "papo",
        "p@ss",
        None,
        "s3",
    )
    assert "p@ss" not in target.safe and "s3" not in target.safe and "p%40ss" not in target.safe
    assert target.safe == (
        "redis+sentinel://10.0.0.1:26380,sentinel-b:26379,[::1]:5000/mymaster"
        "?db=2&password=***&sentinel_password=***"
    )
    assert "p%40ss" not in repr(target) and "p@ss" not in repr(target)


def test_single_server_urls_keep_redis_py_syntax() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://h:6380/3", "unix:///run/redis.sock?db=1"):
        assert parse_redis_url(url) == RedisTarget("single", url)
    assert parse_redis_url("redis://:hunter2@h:1/0").safe == "redis://***@h:1/0"
    assert "hunter2" not in parse_redis_url("redis://h:1/0?password=hunter2").safe


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("127.0.0.1:6379", "--redis wants a URL like redis://"),
        ("http://h/0", "--redis wants a URL like redis://"),
        ("redis://h/zero", "the path is the database number"),
        ("redis+sentinel://h", "the master's name is missing"),
        ("redis+sentinel:///m", "no sentinel given"),
        ("redis+sentinel://h,/m", "an empty sentinel address"),
        ("redis+sentinel://h:0/m", "the port must be a number from 1 to 65535"),
        ("redis+sentinel://h:x/m", "the port must be a number from 1 to 65535"),
        ("redis+sentinel://h:/m", "has a colon but no port"),
        ("redis+sentinel://::1/m", "write an IPv6 address in brackets"),
        ("redis+sentinel://[::1/m", "Invalid IPv6 URL"),
        ("redis+sentinel://[zz]:1/m", "IPv6 address"),
        ("redis+sentinel://h/m/n", "is not a master name"),
        ("redis+sentinel://h/m?db=-1", "db must be a whole number"),
        ("redis+sentinel://h/m?pasword=x", "unknown parameter 'pasword'"),
        ("redis+sentinel://h/m?db=1&db=2", "'db' is given twice"),
        ("redis+sentinel://h/m?password", "not name=value pairs"),
        ("redis+sentinel://u:secret@h/m", "put passwords in the query"),
        ("redis+sentinel://h/m#x", "fragment"),
    ],
)
def test_a_bad_url_is_refused_saying_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(BadRedisUrl) as refused:
        parse_redis_url(url)
    assert says in str(refused.value)
    assert "secret" not in str(refused.value)
    assert isinstance(refused.value, StoreError)  # one exception tree


def test_the_flags_refuse_a_bad_url_and_a_wait_without_redis() -> None:
    url = "redis+sentinel://127.0.0.1:26379/papo"
    settings = parse_settings(["--redis", url, "--redis-wait", "2"], {})
    assert (settings.redis_url, settings.redis_wait) == (url, 2)
    assert parse_settings(["--redis", url], {"PAPO_REDIS_WAIT": "0"}).redis_wait == 0
    assert parse_settings(["--redis", url], {}).redis_wait is None  # automatic
    for argv, says in (
        (["--redis", "redis+sentinel://h"], "the master's name is missing"),
        (["--redis-wait", "1"], "--redis-wait counts Redis replicas: it needs --redis"),
        (["--redis", url, "--redis-wait", "-1"], "must not be negative"),
    ):
        err = io.StringIO()
        with pytest.raises(SystemExit) as exited, contextlib.redirect_stderr(err):
            parse_settings(argv, {})
        assert exited.value.code == 2 and says in err.getvalue(), err.getvalue()


hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=30)


@given(
    nodes=st.lists(st.tuples(hosts, st.integers(1, 65535)), min_size=1, max_size=5),
    master=st.from_regex(r"[A-Za-z0-9_.-]{1,30}", fullmatch=True),
    db=st.integers(0, 10_000),
    password=st.none() | texts,
    sentinel_password=st.none() | texts,
)
def test_any_sentinel_url_written_from_its_parts_parses_back_to_them(
    nodes: list[tuple[str, int]],
    master: str,
    db: int,
    password: str | None,
    sentinel_password: str | None,
) -> None:
    netloc = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in nodes)
    query = [f"db={db}"]
    if password is not None:
        query.append("password=" + quote(password, safe=""))
    if sentinel_password is not None:
        query.append("sentinel_password=" + quote(sentinel_password, safe=""))
    url = f"redis+sentinel://{netloc}/{master}?{'&'.join(query)}"
    target = parse_redis_url(url)
    assert target.nodes == tuple(nodes)
    assert (target.master, target.db) == (master, db)
    assert (target.password, target.sentinel_password) == (password, sentinel_password)
    assert parse_redis_url(target.safe).nodes == tuple(nodes)  # what logs show parses too
    for secret in (password, sentinel_password):
        if secret is not None and len(secret) > 3:
            assert quote(secret, safe="") not in target.safe.replace("***", "")


@given(st.text(max_size=60))
def test_any_text_either_parses_or_is_refused_with_bad_redis_url(url: str) -> None:
    for prefix in ("", "redis+sentinel://", "redis://"):
        with contextlib.suppress(BadRedisUrl):  # anything else escaping fails the test
            parse_redis_url(prefix + url)


def test_automatic_wait_follows_the_masters_replicas(caplog: pytest.LogCaptureFixture) -> None:
    wait = ReplicaWait()
    assert wait.automatic and wait.command() is None  # until the master is asked
    wait.heard({"role": "master", "connected_slaves": 2})
    assert wait.command() == ("WAIT", 1, wait.timeout_ms)
    wait.heard({"role": "master", "connected_slaves": 0})  # a failover left none
    assert wait.command() is None
    wait.heard({"role": "master", "connected_slaves": 1})  # the old master came back
    assert wait.wanted == 1


def test_a_configured_wait_holds_and_warns_when_replicas_are_too_few(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert ReplicaWait(0).command() is None
    assert not ReplicaWait(0).asks  # --redis-wait 0: the replicas are never asked about
    assert ReplicaWait(2).asks and ReplicaWait().asks
    wait = ReplicaWait(2)
    with caplog.at_level(logging.WARNING, "papo.store_redis"):
        wait.heard({"connected_slaves": 1})
    assert wait.command() == ("WAIT", 2, wait.timeout_ms)
    assert "every message is refused until enough replicas connect" in caplog.text
    wait.check(2, 2, "stored")
    wait.check(3, 2, "stored")
    with pytest.raises(NotReplicated) as refused:
        wait.check(1, 2, "the message is not on enough replicas")
    assert "1 of 2 replica(s) confirmed it within 2 s" in str(refused.value)
    with pytest.raises(ValueError, match="0 or more"):
        ReplicaWait(-1)


def test_a_failed_append_says_whether_the_message_may_still_arrive() -> None:
    """What the writers (one Redis, a cluster) tell the senders of a batch that failed,
    and what those are told (``store_unavailable``'s message, papo/store.py)."""
    late = append_failure(NotReplicated("0 of 1 replica(s) confirmed it within 2 s"))
    assert isinstance(late, NotReplicated)  # on the master: it may still arrive
    unanswered = append_failure(RedisTimeoutError("Timeout reading from socket"))
    assert isinstance(unanswered, StoreUnconfirmed)  # the script may have run
    refused = append_failure(RedisConnectionError("Connection refused"))
    assert type(refused) is StoreError
    assert "nothing was sent" in str(refused.refusal(resendable=True))
    for maybe in (late, unanswered):
        assert "it may still arrive" in str(maybe.refusal(resendable=True))
        assert "check before you send it again" in str(maybe.refusal(resendable=False))


async def test_a_single_redis_client_waits_for_a_free_connection() -> None:
    """redis-py's default pool refuses a command at once beyond 100 connections
    ("Too many connections": a thousand clients joining at once did it, and
    --redis-wait 1, which holds connections longer, refused most messages of a
    benchmark step); papo's waits for one instead."""
    client = connect(parse_redis_url("redis://127.0.0.1:1/0"), socket_timeout=1.0)
    try:
        pool = client.connection_pool
        assert isinstance(pool, BlockingConnectionPool)
        assert pool.max_connections == POOL_SIZE
        assert pool.timeout == POOL_WAIT
    finally:
        await disconnect(client)


async def test_a_sentinel_masters_client_waits_for_a_free_connection_too() -> None:
    """The same bounded pool that waits, with the Sentinel pool's connections (which ask
    the sentinels where the master is): tests/test_redis_sentinel.py runs it for real."""
    target = parse_redis_url("redis+sentinel://127.0.0.1:1/papo")
    client = connect(target, pool_size=7, pool_wait=0.5, socket_timeout=1.0)
    try:
        pool = client.connection_pool
        assert isinstance(pool, SentinelBlockingPool)
        assert isinstance(pool, SentinelConnectionPool) and isinstance(pool, BlockingConnectionPool)
        assert (pool.max_connections, pool.timeout) == (7, 0.5)
        assert pool.service_name == "papo" and pool.is_master
        # get_connection and release are the blocking pool's, the connections Sentinel's
        assert type(pool).get_connection is BlockingConnectionPool.get_connection
        assert type(pool).release is BlockingConnectionPool.release
        assert issubclass(pool.connection_class, SentinelManagedConnection)
    finally:
        await disconnect(client)


def test_a_cluster_nodes_client_waits_for_a_free_connection() -> None:
    client = node_client("127.0.0.1", 1, socket_timeout=1.0)
    pool = client.connection_pool
    assert isinstance(pool, BlockingConnectionPool)
    assert (pool.max_connections, pool.timeout) == (POOL_SIZE, POOL_WAIT)
    assert pool.connection_kwargs["port"] == 1


async def test_a_cluster_client_gives_turns_and_a_task_holding_one_needs_no_second() -> None:
    """WaitingCluster's turns, without a cluster (tests/test_redis_cluster.py runs it on a
    real one): two run at once, a third waits (and fails after ``pool_wait``), a task that
    holds one (a pipeline re-sending a redirected command) does not wait for another."""
    cluster = WaitingCluster(host="127.0.0.1", port=1, pool_size=2, pool_wait=0.05)
    assert cluster.nodes_manager.connection_kwargs["max_connections"] == 4  # the nodes' ceiling
    holding = asyncio.Semaphore(0)
    done = asyncio.Event()

    async def hold() -> None:
        async with cluster.turn():
            holding.release()
            await done.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    for _ in holders:
        await holding.acquire()
    with pytest.raises(RedisConnectionError, match="No connection available"):
        async with cluster.turn():
            raise AssertionError("a third turn while two are held")
    third = asyncio.create_task(hold())
    done.set()
    async with asyncio.timeout(10):
        await asyncio.gather(*holders, third)
    single = WaitingCluster(host="127.0.0.1", port=1, pool_size=1, pool_wait=0.05)
    async with single.turn(), single.turn():  # nested: the task's own turn
        pass
    async with single.turn():  # and it was given back
        pass
