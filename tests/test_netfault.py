"""Network faults between papo and Redis: a slow, lossy link, then a cut one.

The test's own ``redis-server`` runs in a network namespace of the test's own
(:mod:`tests.netns`), reached by two real papo instances, each across a delay
line of its own the test controls. Clients chat over real WebSockets on both instances the
whole time, as a careful client does: every message has a client id (``cid``)
and is sent again, under the same cid, after ``store_unavailable`` or a lost
connection, until it is acknowledged. Meanwhile the links are first delayed
(100 ms ± 50 ms each way) and lossy (5 % of the packets), then cut for 5 s
(every packet dropped: nothing is refused, everything times out), then
healed. One client leaves its instance during the cut and comes back on the
other one, resuming where it was.

Afterwards every acknowledged message is stored exactly once, every client
received every message of the others exactly once and in id order (so all of
them converge to the same history, the one in Redis), ``/healthz`` said 503
during the cut and 200 again after it, and no user who stayed connected was
announced as gone, even after a cut longer than an instance may stay silent.

A second test cuts one instance's link alone, for longer than an instance
may stay silent: the other one reaps it and announces its users as gone;
once the link is back they are all online again, for everyone.

Root is needed for the namespace: in CI (``CI=true``) its absence fails the
test; elsewhere the test is skipped, saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import redis as redis_py
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from papo.store import StoreError
from papo.store_records import Stored
from papo.store_redis import RedisStore
from tests.conftest import StartServer
from tests.helpers import JsonClient, RedisServer, ServerProcess, need, redis_missing
from tests.netns import FaultyLink, Namespace, NamespacedRedis, netns_missing

HOME_STREAM = "{r:#geral}:messages"


@dataclass
class Faulty:
    """A redis-server in a namespace of its own, and a link to it for each instance."""

    redis: NamespacedRedis
    links: list[FaultyLink]


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[Faulty]:
    """Redis behind two links the test can break (one per papo instance).

    Everything (the delay lines, their devices, the namespace and what runs
    in it) is removed afterwards, however the test ended.
    """
    need(redis_missing(), "the network-fault tests")
    need(netns_missing(), "the network-fault tests")
    namespace = Namespace()
    try:
        namespace.open()
        links = [namespace.link(), namespace.link()]
        redis = NamespacedRedis(tmp_path / "redis", namespace)
        redis.start()
        yield Faulty(redis, links)
    finally:
        namespace.close()


class Chatter:
    """One user on one instance, chatting through every fault.

    Keeps no duplicate filter of its own: what the server sends is recorded
    as it came, so a duplicate shows. Resumes (token, ``resume_from`` the
    newest id it saw) after a lost connection, and re-sends its message under
    the same cid until it is acknowledged.
    """

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self.token: str | None = None
        self.last_id: int | None = None  # None until the first welcome
        self.received: list[dict[str, Any]] = []  # every message event, as it came
        self.acked: dict[str, int] = {}  # cid → id
        self.texts: dict[str, str] = {}  # cid → text
        self.presence: list[tuple[str, str]] = []
        self.errors: list[dict[str, Any]] = []  # errors not about a message of ours
        self.refused = 0  # store_unavailable for a message
        self.hellos_refused = 0  # store_unavailable for a hello
        self.catch_ups_refused = 0  # store_unavailable after the welcome of a resume
        self.reconnects = 0
        self.online = asyncio.Event()
        self.closing = False
        self.ws: ClientConnection | None = None
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._rng = random.Random(name)

    # ---------------------------------------------------------------- the connection

    async def connection(self) -> None:
        """Be connected, for ever: dial, join (or resume), read; after a loss, again."""
        while not self.closing:
            try:
                ws = await connect(self.url, subprotocols=[Subprotocol("papo.v1")], open_timeout=10)
            except (OSError, InvalidHandshake, TimeoutError):
                await asyncio.sleep(self._rng.uniform(0.1, 0.4))
                continue
            self.ws = ws
            joined = await self._session(ws)
            self.online.clear()
            self.ws = None
            for answer in self._answers.values():  # the answer will not come on this one
                if not answer.done():
                    answer.set_result({"type": "lost"})
            await ws.close()
            self.reconnects += joined and not self.closing
            await asyncio.sleep(self._rng.uniform(0.1, 0.4))

    async def _session(self, ws: ClientConnection) -> bool:
        """One connection: the hello, then every event until it closes; whether it joined."""
        hello: dict[str, Any] = {"type": "hello", "name": self.name}
        if self.token is not None:
            hello["token"] = self.token
        if self.last_id is not None:
            hello["resume_from"] = self.last_id
        joined = False
        try:
            await ws.send(json.dumps(hello))
            async for raw in ws:
                event = json.loads(raw)
                if joined:
                    self._handle(event)
                elif event["type"] == "welcome":
                    joined = True
                    self.token = event["token"]
                    if self.last_id is None:
                        self.last_id = event["last_id"]
                    self.online.set()
                elif event["type"] == "error" and event["code"] == "store_unavailable":
                    self.hellos_refused += 1
                    break  # try again on a new connection
                elif event["type"] == "error":
                    raise AssertionError(f"{self.name}'s hello refused: {event}")
        except ConnectionClosed:
            pass
        return joined

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "message":
            self.received.append(event)
            self.last_id = max(self.last_id or 0, event["id"])
            if event.get("cid") is not None and event["from"] == self.name:
                self._answer(event["cid"], {"type": "ack", "id": event["id"]})  # a replay of ours
        elif kind in ("ack", "error") and event.get("cid") is not None:
            self._answer(str(event["cid"]), event)
        elif kind == "error" and event["code"] == "store_unavailable":
            self.catch_ups_refused += 1  # welcomed, not caught up: closed with 1013 next
        elif kind == "error":
            self.errors.append(event)
        elif kind == "presence":
            self.presence.append((event["event"], event["name"]))

    def _answer(self, cid: str, event: dict[str, Any]) -> None:
        answer = self._answers.get(cid)
        if answer is not None and not answer.done():
            answer.set_result(event)

    def move_to(self, url: str) -> None:
        """Leave this instance (the connection drops) and come back on the one at ``url``."""
        self.url = url
        if self.ws is not None:
            asyncio.get_running_loop().create_task(self.ws.close())

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            await self.ws.close()

    # ---------------------------------------------------------------- sending

    async def chat(self, stop: asyncio.Event) -> None:
        """Say one message after another until ``stop``, each until acknowledged."""
        serial = 0
        while not stop.is_set():
            await self.say(f"{self.name}-{serial}", f"{self.name}#{serial}")
            serial += 1
            await asyncio.sleep(self._rng.uniform(0.02, 0.1))

    async def say(self, cid: str, text: str) -> None:
        self.texts[cid] = text
        while True:
            await self.online.wait()
            ws = self.ws
            assert ws is not None
            answer = self._answers[cid] = asyncio.get_running_loop().create_future()
            try:
                await ws.send(json.dumps({"type": "say", "text": text, "cid": cid}))
                # generous: a hung store would leave it unanswered for ever
                reply = await asyncio.wait_for(answer, 90)
            except ConnectionClosed:
                continue
            except TimeoutError:
                raise AssertionError(f"{self.name}: no answer to {cid} in 90 s") from None
            finally:
                del self._answers[cid]
            if reply["type"] == "ack":
                self.acked[cid] = reply["id"]
                return
            if reply["type"] == "lost":
                continue
            if reply.get("code") != "store_unavailable":
                raise AssertionError(f"{self.name}: {cid} refused: {reply}")
            self.refused += 1
            await asyncio.sleep(self._rng.uniform(0.1, 0.3))


# ---------------------------------------------------------------- looking


def health(server: ServerProcess) -> int:
    try:
        with urllib.request.urlopen(server.http + "/healthz", timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def until(condition: Callable[[], bool], within: float, what: str) -> None:
    """Wait for ``condition``, checking often; fail saying ``what`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, f"not within {within:.0f} s: {what}"
        await asyncio.sleep(0.05)


async def until_health(server: ServerProcess, status: int, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (got := await asyncio.to_thread(health, server)) != status:
        assert loop.time() < deadline, f"/healthz of {server.url} still {got}, not {status}"
        await asyncio.sleep(0.1)


def stored_messages(redis: RedisServer) -> list[tuple[int, str, str, str]]:
    """(id, sender, text, cid) of every message in the default room's stream, in id order."""
    client = redis_py.Redis(host=redis.host, port=redis.port, decode_responses=True)
    try:
        entries = cast(list[tuple[str, dict[str, str]]], client.xrange(HOME_STREAM))
    finally:
        client.close()
    return [(int(i.split("-")[1]), f["s"], f["x"], f.get("c", "")) for i, f in entries]


async def who(server: ServerProcess) -> dict[str, int]:
    """Who is online, as ``server`` answers a new client: name → sessions."""
    client = await JsonClient.open(server.url, "observador")
    try:
        await client.send({"type": "who"})
        users = (await client.expect("users", timeout=15))["users"]
    finally:
        await client.close()
    return {u["name"]: u["sessions"] for u in users if u["name"] != "observador"}


# ---------------------------------------------------------------- the scene


class Scene:
    """Two instances, each with its own link to Redis, and four users chatting on them.

    ana and beto are on A, carla and davi on B; davi is the one who moves.
    """

    def __init__(self, start_server: StartServer, faulty: Faulty) -> None:
        self.redis = faulty.redis
        self.links = faulty.links
        self.a, self.b = (
            start_server("--redis", faulty.redis.url_via(link), "--rate-limit", "0")
            for link in faulty.links
        )
        self.chatters = [
            Chatter("ana", self.a.url),
            Chatter("beto", self.a.url),
            Chatter("carla", self.b.url),
            Chatter("davi", self.b.url),
        ]
        self.mover = self.chatters[-1]
        self.stayers = self.chatters[:-1]
        self._stop = asyncio.Event()
        self._connections: list[asyncio.Task[None]] = []
        self._senders: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Everyone joined, then chatting: five messages each acknowledged."""
        self._connections = [asyncio.create_task(c.connection()) for c in self.chatters]
        await until(lambda: all(c.online.is_set() for c in self.chatters), 30, "everyone joined")
        self._senders = [asyncio.create_task(c.chat(self._stop)) for c in self.chatters]
        await self.acked(5, 60, "chatting on a healthy link")

    async def acked(
        self, more: int, within: float, what: str, chatters: list[Chatter] | None = None
    ) -> None:
        """Wait until each of ``chatters`` (all) had ``more`` messages acknowledged from now."""
        who = self.chatters if chatters is None else chatters
        marks = [len(c.acked) for c in who]
        await until(
            lambda: all(len(c.acked) >= m + more for c, m in zip(who, marks, strict=True)),
            within,
            what,
        )

    async def finish(self) -> list[tuple[int, str, str, str]]:
        """Stop chatting; once every client has every message, what Redis stored."""
        self._stop.set()
        await asyncio.gather(*self._senders)
        stored = stored_messages(self.redis)
        everything = {row[0] for row in stored}

        def has_all(chatter: Chatter) -> bool:
            return {m["id"] for m in chatter.received} | set(chatter.acked.values()) >= everything

        await until(lambda: all(map(has_all, self.chatters)), 90, "every client got everything")
        return stored

    async def close(self) -> None:
        self._stop.set()
        for chatter in self.chatters:
            await chatter.close()
        tasks = [*self._senders, *self._connections]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def check_exactly_once(self, stored: list[tuple[int, str, str, str]]) -> None:
        """Every acknowledged message stored once, and delivered once, in id order, to every
        client: they all have the history Redis has."""
        by_id = {message_id: (sender, text, cid) for message_id, sender, text, cid in stored}
        texts = [text for _, _, text, _ in stored]
        assert len(set(texts)) == len(texts), "a message was stored twice"
        for chatter in self.chatters:
            for cid, message_id in chatter.acked.items():
                assert by_id.get(message_id) == (chatter.name, chatter.texts[cid], cid), (
                    f"{chatter.name}'s acknowledged {cid} (id {message_id}) is not stored as sent"
                )
        told = {(c.name, cid) for c in self.chatters for cid in c.acked}
        assert {(sender, cid) for sender, _, cid in by_id.values()} == told, (
            "stored messages whose sender was never told their id"
        )
        for chatter in self.chatters:
            ids = [m["id"] for m in chatter.received]
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            assert not duplicates, f"{chatter.name} received {duplicates} more than once"
            assert ids == sorted(ids), f"{chatter.name} received messages out of id order"
            others = [i for i, (sender, _, _) in sorted(by_id.items()) if sender != chatter.name]
            got = [m["id"] for m in chatter.received if m["from"] != chatter.name]
            assert got == others, f"{chatter.name}: {len(got)} of {len(others)} messages of others"
            own = {m["id"] for m in chatter.received if m["from"] == chatter.name}
            assert own <= set(chatter.acked.values()), "a replay of a message never acknowledged"
        assert not [e for c in self.chatters for e in c.errors], [c.errors for c in self.chatters]
        for server in (self.a, self.b):
            assert server.proc is not None and server.proc.poll() is None  # never crashed

    def report(self, stored: list[tuple[int, str, str, str]]) -> str:
        return (
            f"{len(stored)} messages stored, each delivered once to each of "
            f"{len(self.chatters)} clients; refused (store_unavailable, then re-sent): "
            f"{ {c.name: c.refused for c in self.chatters} }; davi's hellos refused: "
            f"{self.mover.hellos_refused}, its resumes refused: {self.mover.catch_ups_refused}; packets passed/dropped per link: "
            f"{[link.stats() for link in self.links]}; presence seen: "
            f"{ {c.name: c.presence for c in self.chatters} }"
        )


# ---------------------------------------------------------------- the tests


@pytest.mark.timeout(400)
@pytest.mark.parametrize("cut", [5.0, 20.0], ids=["cut-5s", "cut-20s"])
async def test_delay_loss_then_a_cut_between_papo_and_redis_lose_and_duplicate_nothing(
    start_server: StartServer, faulty: Faulty, cut: float
) -> None:
    """Both instances lose Redis together. A cut of 20 s is longer than an instance
    may stay silent (15 s) before the others reap it: still nobody who stayed is
    announced as gone, as an instance that was cut off itself does not judge others."""
    scene = Scene(start_server, faulty)
    try:
        await scene.start()

        # (a) a slow, jittery, lossy link
        for link in scene.links:
            link.shape(delay_ms=100, jitter_ms=50, loss=0.05)
        await scene.acked(10, 180, "chatting on a slow, lossy link")

        # (b) the links cut for `cut` seconds; davi leaves B meanwhile, for A
        for link in scene.links:
            link.shape(loss=1.0)
        cut_at = asyncio.get_running_loop().time()
        scene.mover.move_to(scene.a.url)
        for server in (scene.a, scene.b):
            await until_health(server, 503, 30)
        await asyncio.sleep(max(0.0, cut_at + cut - asyncio.get_running_loop().time()))
        for link in scene.links:
            link.shape()  # healed

        for server in (scene.a, scene.b):
            await until_health(server, 200, 90)
        await scene.acked(5, 90, "chatting again after the cut")
        stored = await scene.finish()
    finally:
        await scene.close()

    scene.check_exactly_once(stored)
    assert scene.mover.reconnects >= 1
    stayers = {c.name for c in scene.stayers}
    for chatter in scene.chatters:
        gone = {name for event, name in chatter.presence if event == "leave"}
        assert not gone & stayers, f"{chatter.name} was told {gone & stayers} left"
    print(scene.report(stored))


@pytest.mark.timeout(400)
async def test_an_instance_cut_off_alone_is_reaped_and_comes_back_with_all_its_users(
    start_server: StartServer, faulty: Faulty
) -> None:
    """A's link alone is cut for 20 s (longer than 15 s without a heartbeat): B goes
    on, reaps A and announces its users as gone, which is true for B's users. davi
    moves from B to A meanwhile. When the link is back, A's users are all online
    again, for both instances and every client, and no message was lost."""
    scene = Scene(start_server, faulty)
    carla, davi = scene.chatters[2:]
    try:
        await scene.start()
        scene.links[0].shape(loss=1.0)  # A's link only
        cut_at = asyncio.get_running_loop().time()
        davi.move_to(scene.a.url)
        await until_health(scene.a, 503, 30)
        await until(
            lambda: {("leave", "ana"), ("leave", "beto")} <= set(carla.presence),
            60,
            "B announcing A's users as gone",
        )
        await scene.acked(3, 60, "carla chatting on B meanwhile", [carla])
        await asyncio.sleep(max(0.0, cut_at + 20 - asyncio.get_running_loop().time()))
        scene.links[0].shape()  # healed

        await until_health(scene.a, 200, 90)
        await scene.acked(5, 90, "chatting again after the cut")
        stored = await scene.finish()

        everyone = {"ana": 1, "beto": 1, "carla": 1, "davi": 1}
        for server in (scene.a, scene.b):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while (online := await who(server)) != everyone:
                assert loop.time() < deadline, f"{server.url} says online: {online}"
                await asyncio.sleep(0.2)

        # A hears the chat's events again: a newcomer on B is announced to A's users
        newcomer = await JsonClient.open(scene.b.url, "eva")
        try:
            await until(
                lambda: all(("join", "eva") in c.presence for c in scene.chatters),
                60,
                "A's users hearing of a newcomer on B",
            )
        finally:
            await newcomer.close()

        def last_word(chatter: Chatter, name: str) -> str:
            said = [event for event, who in chatter.presence if who == name]
            return said[-1] if said else "join"

        await until(
            lambda: all(
                last_word(c, other.name) == "join"
                for c in scene.chatters
                for other in scene.chatters
                if other is not c
            ),
            60,
            "every client hearing that A's users are back",
        )
    finally:
        await scene.close()

    scene.check_exactly_once(stored)
    print(scene.report(stored))


@pytest.mark.timeout(200)
async def test_an_instance_behind_redis_never_resumes_a_client_from_an_older_id(
    faulty: Faulty,
) -> None:
    """A client saw message N on B, and resumes from N on A, whose reader is cut off
    from Redis. A must not answer that N does not exist (a resume would then replay
    from A's own, older, watermark: every message in between a second time): it
    cannot tell now (``StoreError``: the client is told to try again), and says yes
    once its reader caught up. An id Redis never handed out is still refused."""
    a = RedisStore(faulty.redis.url_via(faulty.links[0]))
    b = RedisStore(faulty.redis.url_via(faulty.links[1]))
    await a.open()
    await b.open()

    def message(text: str) -> Stored:
        return Stored(0, "ana", "ana", text, "2026-12-01T12:00:00.000Z", conv="#geral")

    try:
        first, _ = await b.append(message("antes"))
        assert await a.reach(first.id)
        faulty.links[0].shape(loss=1.0)  # A's link only
        later, _ = await b.append(message("durante"))
        with pytest.raises(StoreError):
            await a.reach(later.id)
        faulty.links[0].shape()

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            with contextlib.suppress(StoreError):
                if await a.reach(later.id):
                    break
            assert loop.time() < deadline, "A's reader never caught up"
        assert not await a.reach(later.id + 1000)
    finally:
        faulty.links[0].shape()
        await a.close()
        await b.close()
