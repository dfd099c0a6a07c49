"""The in-memory ring of a Redis Cluster instance: per conversation, in arrival order.

In cluster mode ids increase within each conversation (in its commit order)
but not across conversations: each shard hands out the ids of its own
conversations. So the ring cannot be one id-ordered run as with one Redis.
:class:`ClusterLog` keeps the entries in the order the readers delivered them
(``ring``, which per conversation is id order) and an index per conversation
(``convs``), and answers per conversation: :meth:`ClusterLog.since_conv` and
:meth:`ClusterLog.covers_conv`, exact for a resume that gives one position per
conversation. ``complete_from[conv]`` says from which id on the ring holds
every entry of ``conv`` (0: all of them): set when the instance starts
following the conversation (it loads its recent entries), raised when the
ring drops the conversation's oldest entry. The chat-wide methods of
:class:`~papo.store.MessageLog` (``since``, ``covers``, ``recent``) are
answered by merging the conversations, which is what one ``resume_from``
number can mean here (see docs/protocol.md).
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Collection, Iterable

from papo.names import DIRECT_PREFIX, DIRECT_SEPARATOR
from papo.store import MessageLog, Stored


class ClusterLog(MessageLog):
    """Recent entries of the followed conversations, indexed per conversation."""

    ordered = False  # ids increase per conversation only: no one id is a position in all

    def __init__(self, retention: int, ring_size: int) -> None:
        super().__init__(retention, ring_size)
        self.ring_size = max(1, min(ring_size, retention))
        self.ring: deque[Stored] = deque()  # bounded by hand: see commit
        self.convs: dict[str, deque[Stored]] = {}
        self.complete_from: dict[str, int] = {}
        self.newest: dict[str, int] = {}  # conversation → the newest id delivered here

    # ---------------------------------------------------------------- filling

    def follow(self, conv: str, entries: list[Stored], complete_from: int) -> None:
        """Start holding ``conv``: its recent ``entries`` (ascending), complete from that id."""
        self.forget(conv)
        kept = deque(entries)
        self.convs[conv] = kept
        self.complete_from[conv] = complete_from
        self.newest[conv] = entries[-1].id if entries else 0
        self.ring.extend(entries)
        for message in entries:
            self.committed = max(self.committed, message.id)
            if message.cid is not None:
                self._remember(message.sender_key, message.cid, message)
        self._bound()

    def commit(self, messages: list[Stored]) -> None:
        """Entries a reader delivered, each conversation's in id order."""
        for message in messages:
            kept = self.convs.get(message.conv)
            if kept is None or message.id <= self.newest.get(message.conv, 0):
                continue  # not followed (any more), or had already
            kept.append(message)
            self.newest[message.conv] = message.id
            self.ring.append(message)
            self.committed = max(self.committed, message.id)
            if message.cid is not None:
                self._remember(message.sender_key, message.cid, message)
        self._bound()

    def _bound(self) -> None:
        while len(self.ring) > self.ring_size:
            old = self.ring.popleft()
            kept = self.convs.get(old.conv)
            if kept and kept[0].id == old.id:
                kept.popleft()
                self.complete_from[old.conv] = max(self.complete_from[old.conv], old.id + 1)

    def forget(self, conv: str) -> None:
        """A conversation no longer followed: its entries leave the ring."""
        self.complete_from.pop(conv, None)
        self.newest.pop(conv, None)
        if self.convs.pop(conv, None):
            self.ring = deque(m for m in self.ring if m.conv != conv)

    def load(self, messages: Iterable[Stored], last_id: int, oldest: int) -> None:
        """Not used in cluster mode: conversations are loaded one by one (:meth:`follow`)."""
        raise NotImplementedError("ClusterLog.follow loads conversations")

    # ---------------------------------------------------------------- per conversation

    def covers_conv(self, conv: str, after: int) -> bool:
        """Whether the ring holds every entry of ``conv`` with an id over ``after``."""
        since = self.complete_from.get(conv)
        return since is not None and since <= after + 1

    def since_conv(self, conv: str, after: int, limit: int) -> list[Stored]:
        """Up to ``limit`` entries of ``conv`` over ``after``, ascending ([] when not
        covered: see :meth:`covers_conv`)."""
        if not self.covers_conv(conv, after):
            return []
        kept = self.convs.get(conv, deque())
        start = bisect.bisect_right(kept, after, key=lambda m: m.id)
        return [kept[i] for i in range(start, min(len(kept), start + limit))]

    def complete_to(self, conv: str) -> int:
        """The newest id of ``conv`` delivered here: the reader read every entry of the
        conversation up to it, and :meth:`ClusterStore.since` reads only so far (what
        comes after is delivered live). Not :attr:`committed`, the newest id of any
        conversation, which another conversation's entries may still be below."""
        return self.newest.get(conv, 0)

    def recent_in(self, convs: Collection[str], count: int) -> dict[str, list[Stored]]:
        out: dict[str, list[Stored]] = {}
        for conv in convs:
            tail: list[Stored] = []
            for message in reversed(self.convs.get(conv, ())):
                if len(tail) >= count:
                    break
                if not message.kind:
                    tail.append(message)
            tail.reverse()
            out[conv] = tail
        return out

    def directs_after(self, key: str, after: int) -> tuple[set[str], int] | None:
        """Every followed direct conversation of ``key``: here a new conversation's ids
        may be below ``after`` (another slot's), so ids cannot say which are new."""
        return {c for c in self.convs if c.startswith(DIRECT_PREFIX) and _in_direct(c, key)}, after

    def find(self, message_id: int) -> Stored | None:
        for kept in self.convs.values():
            index = bisect.bisect_left(kept, message_id, key=lambda m: m.id)
            if index < len(kept) and kept[index].id == message_id:
                return kept[index]
        return None

    def rewrite(self, messages: Iterable[Stored]) -> None:
        wanted = {m.id: m for m in messages}
        if not wanted:
            return
        for message in wanted.values():
            kept = self.convs.get(message.conv)
            if kept is None:
                continue
            index = bisect.bisect_left(kept, message.id, key=lambda m: m.id)
            if index < len(kept) and kept[index].id == message.id:
                kept[index] = message
        for index, current in enumerate(self.ring):
            if current.id in wanted:
                self.ring[index] = wanted[current.id]
        self._rewrite_cids(wanted.values())

    # ---------------------------------------------------------------- chat-wide

    def _visible_convs(self, key: str, rooms: Collection[str]) -> list[str]:
        return [
            conv
            for conv in self.convs
            if conv in rooms or (conv.startswith(DIRECT_PREFIX) and _in_direct(conv, key))
        ]

    def covers(self, after: int, convs: Collection[str] = ()) -> bool:
        return all(self.covers_conv(conv, after) for conv in convs)

    def since(
        self, key: str, rooms: Collection[str], after: int, limit: int
    ) -> tuple[list[Stored], int]:
        runs = [
            [m for m in self.since_conv(conv, after, limit) if m.visible_to(key, rooms)]
            for conv in self._visible_convs(key, rooms)
        ]
        out = list(heapq.merge(*runs, key=lambda m: m.id))[:limit]
        if len(out) == limit:
            return out, out[-1].id
        return out, max(after, self.committed)

    def recent(self, key: str, rooms: Collection[str], count: int) -> list[Stored]:
        runs: list[list[Stored]] = []
        for conv in self._visible_convs(key, rooms):
            tail: list[Stored] = []
            for message in reversed(self.convs[conv]):
                if len(tail) >= count:
                    break
                if not message.kind and message.visible_to(key, rooms):
                    tail.append(message)
            tail.reverse()
            runs.append(tail)
        return list(heapq.merge(*runs, key=lambda m: m.id))[-count:] if count else []


def _in_direct(conv: str, key: str) -> bool:
    """Whether the user ``key`` is one of the two of the direct conversation ``conv``."""
    return key in conv.removeprefix(DIRECT_PREFIX).split(DIRECT_SEPARATOR)
