"""The README's nginx configuration, run by Debian's nginx in front of two instances.

The test runs ``deploy/nginx.conf`` itself, with free ports swapped in for
the documented ones, so the file in the repository is the file that works:
balancing and failover, and address bans judged by the client address nginx
forwards in ``X-Forwarded-For`` (papo trusting nginx with ``--trusted-proxy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.conftest import StartServer
from tests.helpers import (
    ROOT,
    JsonClient,
    RedisServer,
    ServerProcess,
    closed_with,
    free_port,
    need,
)
from tests.test_moderation_e2e import ADMIN, PASSWORD, next_of
from tests.test_redis import pair

CONFIG = ROOT / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Nginx:
    def __init__(self, prefix: Path, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.prefix = prefix
        self.port = port
        self.proc = proc

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def nginx_for(tmp_path: Path, servers: list[ServerProcess]) -> Iterator[Nginx]:
    """``deploy/nginx.conf``, with free ports swapped in, running in front of ``servers``."""
    need(
        None if os.path.exists(NGINX) else "nginx is not installed (apt-get install nginx-light)",
        "the nginx test",
    )
    port = free_port()
    config = CONFIG.read_text()
    for documented, real in (
        ("server 127.0.0.1:8765 ", f"server 127.0.0.1:{servers[0].port} "),
        ("server 127.0.0.1:8766 ", f"server 127.0.0.1:{servers[1].port} "),
        ("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};"),
    ):
        assert config.count(documented) == 1, f"{CONFIG} no longer says {documented!r}"
        config = config.replace(documented, real)
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "nginx.conf").write_text(config)
    errors = prefix / "error.log"  # a file, not a pipe nobody reads: nginx never blocks on it
    with errors.open("wb") as log:
        proc = subprocess.Popen(
            [NGINX, "-p", str(prefix), "-c", "nginx.conf", "-e", "stderr", "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("nginx did not start: " + errors.read_text()) from None
            time.sleep(0.05)
    try:
        yield Nginx(prefix, port, proc)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def nginx_in_front(
    tmp_path: Path, start_server: StartServer, redis_server: RedisServer
) -> Iterator[tuple[Nginx, list[ServerProcess]]]:
    servers = pair(start_server, redis_server)
    with nginx_for(tmp_path, servers) as nginx:
        yield nginx, servers


def page(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.status, reply.headers["Content-Type"]


def opened(server: ServerProcess) -> int:
    return sum(1 for line in server.log if " open from " in line)


async def test_nginx_balances_websockets_across_two_instances_and_fails_over(
    nginx_in_front: tuple[Nginx, list[ServerProcess]],
) -> None:
    nginx, (a, b) = nginx_in_front
    clients = [await JsonClient.open(nginx.url, f"user{i}") for i in range(6)]
    await asyncio.sleep(0.5)
    # least_conn spreads the long-lived connections over both instances
    assert opened(a) >= 2 and opened(b) >= 2, (opened(a), opened(b))
    for client in clients:
        await client.quiet(0.05)

    # one chat whichever instance each client landed on
    await clients[0].say("olá pelo nginx")
    for client in clients[1:]:
        event = await client.expect("message")
        assert (event["from"], event["text"]) == ("user0", "olá pelo nginx")

    # the page, its health check and a browser's same-origin upgrade pass too
    status, content_type = await asyncio.to_thread(page, nginx.http + "/")
    assert status == 200 and content_type.startswith("text/html")
    origin = f"http://127.0.0.1:{nginx.port}"
    async with connect(nginx.url, origin=origin, open_timeout=5) as ws:  # type: ignore[arg-type]
        assert "welcome" in str(await ws.recv())

    # one instance dies: new connections all land on the other
    a.kill()
    for client in clients:
        await client.close()
    late = [await JsonClient.open(nginx.url, f"late{i}") for i in range(4)]
    await asyncio.sleep(0.3)
    for client in late:
        await client.quiet(0.05)
    await late[0].say("ainda aqui")
    for client in late[1:]:
        assert (await client.expect("message"))["text"] == "ainda aqui"
    for client in late:
        await client.close()


# ---------------------------------------------------------------- address bans behind nginx
#
# Every loopback address reaches nginx (Linux routes 127.0.0.0/8 to lo), so a
# client bound to 127.0.0.2 is, for nginx, a client at 127.0.0.2: nginx adds it
# to X-Forwarded-For, and papo, trusting nginx's 127.0.0.1 only, believes it.


async def handshake_from(
    source: str, url: str, forwarded: str | None = None
) -> tuple[int, ClientConnection | None]:
    """The HTTP status of a handshake from ``source`` (and the connection when 101)."""
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    try:
        ws = await connect(
            url,
            subprotocols=[Subprotocol("papo.v1")],
            additional_headers=headers,
            open_timeout=5,
            local_addr=(source, 0),
        )
    except InvalidStatus as refused:
        return refused.response.status_code, None
    return 101, ws


async def status_from(source: str, url: str, forwarded: str | None = None) -> int:
    status, ws = await handshake_from(source, url, forwarded)
    if ws is not None:
        await ws.close()
    return status


async def test_ban_ip_through_nginx_judges_the_address_nginx_forwards(
    tmp_path: Path, start_server: StartServer, redis_server: RedisServer
) -> None:
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in CONFIG.read_text()
    flags = ("--admin", ADMIN, "--trusted-proxy", "127.0.0.1", "--max-connections-per-ip", "0")
    servers = pair(start_server, redis_server, *flags)
    with nginx_for(tmp_path, servers) as nginx:
        status, ws = await handshake_from("127.0.0.3", nginx.url)
        assert status == 101 and ws is not None
        root = JsonClient(ws)
        await root.send({"type": "hello", "name": ADMIN, "password": PASSWORD})
        await root.expect("welcome")
        status, ws = await handshake_from("127.0.0.2", nginx.url)
        assert status == 101 and ws is not None
        victim = JsonClient(ws)
        await victim.send({"type": "hello", "name": "vitima"})
        await victim.expect("welcome")

        await root.send({"type": "ban_ip", "address": "127.0.0.2", "reason": "bots"})
        await next_of(root, "notice", text="127.0.0.2/32 is banned: bots")
        assert await closed_with(victim.ws, timeout=10) == 1008  # on whichever instance
        # through nginx: refused with 403 before the upgrade, on both instances
        for _ in range(4):  # least_conn: the handshakes go to both
            assert await status_from("127.0.0.2", nginx.url) == 403
            # a header of the client's own is kept by nginx, but nginx's word comes last
            assert await status_from("127.0.0.2", nginx.url, "198.51.100.9") == 403
        for server in servers:  # each instance refuses it (the ban came through Redis)
            assert await status_from("127.0.0.1", server.url, "127.0.0.2") == 403
        assert await status_from("127.0.0.4", nginx.url) == 101
        # straight to papo, not through the trusted proxy: the real address counts
        a = servers[0]
        assert await status_from("127.0.0.2", a.url, "198.51.100.9") == 403
        assert await status_from("127.0.0.5", a.url, "127.0.0.2") == 101
        await root.send({"type": "unban_ip", "address": "127.0.0.2"})
        await next_of(root, "notice", text="127.0.0.2/32 is no longer banned")
        assert await status_from("127.0.0.2", nginx.url) == 101
        await root.close()
