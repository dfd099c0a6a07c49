"""A throwaway store (``--memory``): everything in this process, gone when it stops.

For trying papo out, for tests that need no disk, and as the baseline the
durable store is measured against. Each conversation keeps its own newest
``retention`` messages, so a busy room cannot evict a quiet one's history.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import secrets
import time
from collections.abc import Callable, Collection

from papo.devices import Device, beyond_limit
from papo.message_log import DEFAULT_RETENTION, RING_SIZE, MessageLog
from papo.store_lifecycle import MemoryLifecycle
from papo.store_local import LocalRooms
from papo.store_records import UNREAD_CAP, Account, Page, Stored


class MemoryStore(MemoryLifecycle, LocalRooms):
    """The :class:`~papo.store.Store` interface kept in dictionaries."""

    async def set_aside_account(self, key: str) -> Account | None:
        return None  # nothing outlives a restart, so no name was ever kept by another rule

    def __init__(self, retention: int = DEFAULT_RETENTION) -> None:
        super().__init__()
        self.retention = retention
        self.log = MessageLog(retention, ring_size=RING_SIZE)
        self._secret = secrets.token_bytes(32)
        self._accounts: dict[str, Account] = {}
        self._revoked: set[str] = set()
        self._devices: dict[str, dict[str, Device]] = {}  # user key → device id → device
        #: conversation key → its messages, oldest first (ids increase)
        self._convs: dict[str, list[Stored]] = {}
        #: messages queued for the next turn of the loop (see enqueue)
        self._batch: list[tuple[Stored, int | None, asyncio.Future[Stored]]] = []

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def secret(self) -> bytes:
        return self._secret

    async def get_account(self, key: str) -> Account | None:
        return self._accounts.get(key)

    async def save_account(self, account: Account) -> None:
        self._accounts[account.key] = account

    async def set_last_seen(self, key: str, message_id: int) -> None:
        account = self._accounts.get(key)
        if account is not None:
            self._accounts[key] = Account(
                account.key, account.name, account.password_hash, account.created, message_id
            )

    async def revoke_token(self, token_id: str, expires: float) -> None:
        self._revoked.add(token_id)

    async def is_revoked(self, token_id: str) -> bool:
        return token_id in self._revoked

    async def devices(self, key: str) -> list[Device]:
        now = time.time()
        return [d for d in self._devices.get(key, {}).values() if d.expires > now]

    async def add_device(self, device: Device) -> None:
        kept = self._devices.setdefault(device.user_key, {})
        kept[device.id] = device
        for gone in beyond_limit(list(kept.values()), time.time()):
            del kept[gone]

    async def refresh_device(
        self, key: str, device_id: str, gen: int, *, now: float, address: str, ttl: float
    ) -> Device | None:
        kept = self._devices.get(key, {})
        device = kept.get(device_id)
        fresh = None if device is None else device.refreshed(gen, now, address, ttl)
        if fresh is not None:
            kept[device_id] = fresh
        return fresh

    async def end_devices(
        self, key: str, ids: Collection[str] | None = None, *, keep: str | None = None
    ) -> list[str]:
        kept = self._devices.get(key, {})
        gone = [i for i in (kept if ids is None else ids) if i in kept and i != keep]
        for device_id in gone:
            del kept[device_id]
        self.on_devices(key, None if ids is None else frozenset(ids), keep)
        return gone

    async def append(self, message: Stored, origin: int | None = None) -> tuple[Stored, bool]:
        earlier = self.log.duplicate(message.sender_key, message.cid)
        if earlier is not None:
            return (await earlier if isinstance(earlier, asyncio.Future) else earlier), False
        return await self.enqueue(message.with_id, origin), True

    def enqueue(
        self, make: Callable[[int], Stored], origin: int | None = None
    ) -> asyncio.Future[Stored]:
        """Queue a message whose ``cid`` is new (see :class:`~papo.store.Enqueues`) for
        the batch kept on the next turn of the loop.

        As the SQLite store's batches: the messages of one turn reach the hub
        together (consecutive ones to a room go out as one run), and a sender's
        messages are under way until then, so that a connection pipelines at most
        :data:`~papo.wsconn.PIPELINE` of them, whatever it sends.
        """
        message = make(self.log.next_id())
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self.log.pending(message, future)
        self._batch.append((message, origin, future))
        if len(self._batch) == 1:
            future.get_loop().call_soon(self._keep)
        return future

    def _keep(self) -> None:
        """Keep the batch queued since the last turn, hand it on, and say so."""
        batch, self._batch = self._batch, []
        messages = [message for message, _, _ in batch]
        self.log.commit(messages)
        for stored in messages:
            kept = self._convs.setdefault(stored.conv, [])
            kept.append(stored)
            if len(kept) > self.retention + self.retention // 100:  # trim in steps of 1 %
                del kept[: len(kept) - self.retention]
                self.log.trim_conversation(stored.conv, kept[0].id)
        self._directs_of(messages)
        self.on_message([(stored, origin) for stored, origin, _ in batch])
        for stored, _, future in batch:
            if not future.done():
                future.set_result(stored)

    async def page(self, key: str, convs: Collection[str], after: int, limit: int) -> Page:
        runs = []
        for conv in convs:
            kept = self._convs.get(conv, [])
            start = bisect.bisect_right(kept, after, key=lambda m: m.id)
            runs.append(kept[start : start + limit])
        messages = list(heapq.merge(*runs, key=lambda m: m.id))[:limit]
        scanned = messages[-1].id if len(messages) == limit else max(after, self.log.committed)
        return Page(messages, scanned, self.log.oldest)

    async def since(self, conv: str, after: int, limit: int) -> list[Stored]:
        kept = self._convs.get(conv, [])
        start = bisect.bisect_right(kept, after, key=lambda m: m.id)
        return kept[start : start + limit]

    async def history(self, conv: str, before: int | None, limit: int) -> tuple[list[Stored], bool]:
        kept = self._convs.get(conv, [])
        end = len(kept) if before is None else bisect.bisect_left(kept, before, key=lambda m: m.id)
        page: list[Stored] = []
        index = end - 1
        while index >= 0 and len(page) < limit:  # edits and deletions are not shown, but applied
            if kept[index].is_message:
                page.append(kept[index])
            index -= 1
        page.reverse()
        return page, any(m.is_message for m in kept[: index + 1])

    async def ping(self) -> None:
        pass

    async def _newest(self, conv: str) -> int:
        kept = self._convs.get(conv)
        return kept[-1].id if kept else 0

    async def _unread(self, key: str, marks: dict[str, int]) -> dict[str, int]:
        out = {}
        for conv, after in marks.items():
            kept = self._convs.get(conv, [])
            start = bisect.bisect_right(kept, after, key=lambda m: m.id)
            count = 0
            for message in kept[start:]:
                if message.sender_key != key and message.is_message and not message.deleted:
                    count += 1
                    if count >= UNREAD_CAP:
                        break
            out[conv] = count
        return out
