"""The README's nginx configuration, run by Debian's nginx in front of two instances.

The test runs ``deploy/nginx.conf`` itself, with free ports swapped in for
the documented ones, so the file in the repository is the file that works.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.conftest import StartServer
from tests.helpers import ROOT, JsonClient, RedisServer, ServerProcess, free_port, need
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


@pytest.fixture
def nginx_in_front(
    tmp_path: Path, start_server: StartServer, redis_server: RedisServer
) -> Iterator[tuple[Nginx, list[ServerProcess]]]:
    need(
        None if os.path.exists(NGINX) else "nginx is not installed (apt-get install nginx-light)",
        "the nginx test",
    )
    servers = pair(start_server, redis_server)
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
    proc = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", "nginx.conf", "-e", "stderr", "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                assert proc.stderr is not None
                raise RuntimeError("nginx did not start: " + proc.stderr.read().decode()) from None
            time.sleep(0.05)
    yield Nginx(prefix, port, proc), servers
    proc.terminate()
    proc.wait(10)


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
