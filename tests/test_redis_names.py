"""Accounts kept in Redis under the name-key rule of before are moved once, on a real Redis.

Before accents were folded, ``João`` was kept under ``joão``; today's key is
``joao``. Were it not moved, anyone typing ``joao`` would find no account
and make an open one, and João's password would protect nothing.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from papo.accounts import hash_password
from papo.names import legacy_key
from tests.conftest import StartServer
from tests.helpers import JsonClient, RedisServer


async def test_legacy_accounts_move_to_todays_keys_once(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    raw = aioredis.from_url(redis_server.url, decode_responses=True)
    protected = hash_password("segredo1").hex()
    accounts = [("João", protected, 1.0), ("JOAO", "", 2.0), ("Zé", "", 5.0)]
    for name, hashed, created in accounts:
        await raw.hset(
            "{papo}:account:" + legacy_key(name),
            mapping={"name": name, "hash": hashed, "created": created, "last_seen": 0},
        )
    server = start_server("--redis", redis_server.url, "--rate-limit", "0")
    assert server.logged("'João' (the older) keeps it, 'JOAO' must choose another name")
    for typed in ("joao", "JOAO", "João"):  # none of them gets an open account beside João's
        client = await JsonClient.open(server.url)
        await client.send({"type": "hello", "name": typed})
        assert (await client.expect("error", "welcome"))["code"] == "auth_required", typed
        await client.close()
    joao = await JsonClient.open(server.url, "joao", password="segredo1")
    assert joao.welcome["name"] == "João" and joao.welcome["protected"] is True
    assert not await raw.exists("{papo}:account:joão", "{papo}:account:zé")
    assert await raw.hget("{papo}:account-set-aside:joao", "name") == "JOAO"
    await joao.close()
    server.restart()  # done once: nothing moves, nothing is logged again
    assert sum("one name now" in line for line in server.log) == 1
    await raw.aclose()
