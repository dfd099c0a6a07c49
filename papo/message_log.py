"""The message log every store keeps in memory: ids, the ring of recent messages, cids.

Each store (:class:`~papo.store.Store`) keeps a :class:`MessageLog`: id
assignment, a ring of recently committed messages and the ``cid`` index. A
message gets its id when it is appended and reaches the ring only once it is
committed, so anything read from the ring is durable, and ring reads are
synchronous: the hub can replay the ring's tail and make a session live in
the same event-loop step, with no message falling in between. In Redis
Cluster mode, where ids increase per conversation only, the ring is kept per
conversation (:class:`~papo.store_cluster_log.ClusterLog`).
"""

from __future__ import annotations

import asyncio
import bisect
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from papo.store_records import Stored

if TYPE_CHECKING:
    from collections.abc import Collection

DEFAULT_RETENTION = 100_000
RING_SIZE = 20_000


class MessageLog:
    """Ids, the ring of recent committed messages and the cid index (in memory)."""

    #: Ids are handed out in commit order across the chat, so one id is a position
    #: in every conversation (``resume_from`` is exact). Not so in Redis Cluster
    #: mode (:class:`~papo.store_cluster_log.ClusterLog`).
    ordered = True

    def __init__(self, retention: int = DEFAULT_RETENTION, ring_size: int = RING_SIZE) -> None:
        self.retention = retention
        self.ring: deque[Stored] = deque(maxlen=max(1, min(ring_size, retention)))
        self.assigned = 0  # the newest id handed out
        self.committed = 0  # the newest id stored for good
        self.oldest = 0  # the oldest id still kept
        #: conversation key → its oldest id still kept, for conversations trimmed by retention
        self.trims: dict[str, int] = {}
        self._cids: OrderedDict[tuple[str, str], Stored | asyncio.Future[Stored]] = OrderedDict()

    def load(self, messages: Iterable[Stored], last_id: int, oldest: int) -> None:
        """Start from what the store holds (the newest messages, oldest first)."""
        for message in messages:
            self.ring.append(message)
            if message.cid is not None:
                self._remember(message.sender_key, message.cid, message)
        self.assigned = self.committed = last_id
        self.oldest = oldest

    def duplicate(self, sender_key: str, cid: str | None) -> Stored | asyncio.Future[Stored] | None:
        return None if cid is None else self._cids.get((sender_key, cid))

    def next_id(self) -> int:
        """Hand out the next id (a store that could not keep it sets ``assigned`` back)."""
        self.assigned += 1
        return self.assigned

    def pending(self, message: Stored, future: asyncio.Future[Stored]) -> None:
        if message.cid is not None:
            self._remember(message.sender_key, message.cid, future)

    def failed(self, message: Stored) -> None:
        if message.cid is not None:
            self._cids.pop((message.sender_key, message.cid), None)

    def commit(self, messages: list[Stored]) -> None:
        for message in messages:
            self.ring.append(message)
            if message.cid is not None:
                self._remember(message.sender_key, message.cid, message)
        if messages:
            self.committed = max(self.committed, messages[-1].id)
            if not self.oldest:
                self.oldest = messages[0].id

    def rewrite(self, messages: Iterable[Stored]) -> None:
        """Put ``messages`` in place of the kept copies with their ids (an edit, a
        deletion): in the ring, and as the earlier answer to a retried ``cid``."""
        wanted = {m.id: m for m in messages}
        if not wanted:
            return
        first = min(wanted)
        for index in range(len(self.ring) - 1, -1, -1):
            current = self.ring[index]
            if current.id < first:
                break
            if current.id in wanted:
                self.ring[index] = wanted[current.id]
        self._rewrite_cids(wanted.values())

    def _rewrite_cids(self, messages: Iterable[Stored]) -> None:
        """Rewritten ``messages`` become the earlier answer to their retried ``cid``."""
        for message in messages:
            if message.cid is not None:
                kept = self._cids.get((message.sender_key, message.cid))
                if isinstance(kept, Stored) and kept.id == message.id:
                    self._cids[(message.sender_key, message.cid)] = message

    def find(self, message_id: int) -> Stored | None:
        """The ring's entry with id ``message_id``, if the ring holds it."""
        ring = self.ring
        if not ring or not ring[0].id <= message_id <= ring[-1].id:
            return None
        index = bisect.bisect_left(ring, message_id, key=lambda m: m.id)
        if index < len(ring) and ring[index].id == message_id:
            return ring[index]
        return None

    def trimmed(self, oldest: int) -> None:
        self.oldest = max(self.oldest, oldest)

    def trim_conversation(self, conv: str, oldest: int) -> None:
        """Messages of ``conv`` older than ``oldest`` are gone (retention)."""
        self.trims[conv] = max(self.trims.get(conv, 0), oldest)

    def gap_before(self, convs: Collection[str]) -> int:
        """The oldest id kept in the most trimmed of ``convs`` (0: none was trimmed)."""
        return max((self.trims.get(conv, 0) for conv in convs), default=0)

    def _remember(self, sender_key: str, cid: str, value: Stored | asyncio.Future[Stored]) -> None:
        self._cids[(sender_key, cid)] = value
        self._cids.move_to_end((sender_key, cid))
        while len(self._cids) > self.retention:
            self._cids.popitem(last=False)

    def covers(self, after: int, convs: Collection[str] = ()) -> bool:
        """Whether the ring holds every kept message with an id over ``after``
        (of the conversations ``convs``: a store that does not see every
        conversation from the start, the Redis one, checks them too)."""
        if after >= self.committed:
            return True
        if not self.ring:
            return False
        first = self.ring[0].id
        return first <= after + 1 or first <= self.oldest

    def since(
        self, key: str, rooms: Collection[str], after: int, limit: int
    ) -> tuple[list[Stored], int]:
        """Up to ``limit`` messages visible to ``key`` (a member of ``rooms``) with ids
        over ``after``, from the ring, and the id the scan reached (``committed``
        when it reached the end)."""
        start = len(self.ring)
        for index in range(len(self.ring) - 1, -1, -1):  # the tail is what resumes want
            if self.ring[index].id <= after:
                break
            start = index
        out: list[Stored] = []
        for index in range(start, len(self.ring)):
            message = self.ring[index]
            if message.visible_to(key, rooms):
                out.append(message)
                if len(out) == limit:
                    return out, message.id
        return out, max(after, self.committed)

    def directs_after(self, key: str, after: int) -> tuple[set[str], int] | None:
        """The direct conversations of the user ``key`` with an entry over ``after`` in
        the ring, and the id the scan reached; None when the ring does not reach back
        to ``after`` (the store must be asked). A resume finds with it the direct
        conversations opened while it replays (``after``: the newest id before the
        user's conversations were read)."""
        if not self.covers(after):
            return None
        found, scanned = self.since(key, (), after, 2**31)
        return {message.conv for message in found}, scanned

    def complete_to(self, conv: str) -> int:
        """The id up to which every entry of ``conv`` is committed: readable by
        :meth:`~papo.store.Store.since`, and in the ring as far as :meth:`covers_conv` says.

        One number for every conversation when ids are handed out in commit
        order (one SQLite, one Redis): :attr:`committed`.
        """
        return self.committed

    def covers_conv(self, conv: str, after: int) -> bool:
        """Whether the ring holds every kept entry of ``conv`` with an id over ``after``."""
        return self.covers(after, (conv,))

    def since_conv(self, conv: str, after: int, limit: int) -> list[Stored]:
        """Up to ``limit`` entries of ``conv`` with ids over ``after``, in id order, from
        the ring; [] when the ring does not cover them (:meth:`covers_conv`)."""
        if not self.covers_conv(conv, after):
            return []
        ring = self.ring
        index = bisect.bisect_right(ring, after, key=_entry_id)  # the ring is in id order
        out: list[Stored] = []
        for position in range(index, len(ring)):
            entry = ring[position]
            if entry.conv == conv:
                out.append(entry)
                if len(out) == limit:
                    break
        return out

    def recent_in(self, convs: Collection[str], count: int) -> dict[str, list[Stored]]:
        """The newest ``count`` messages of each of ``convs`` in the ring (edits are
        applied, not listed), oldest first: each conversation's recent context."""
        out: dict[str, list[Stored]] = {conv: [] for conv in convs}
        missing = len(out)
        for entry in reversed(self.ring):
            if not missing:
                break
            found = out.get(entry.conv)
            if found is None or entry.kind or len(found) >= count:
                continue
            found.append(entry)
            if len(found) == count:
                missing -= 1
        for found in out.values():
            found.reverse()
        return out

    def recent(self, key: str, rooms: Collection[str], count: int) -> list[Stored]:
        """The newest ``count`` messages visible to ``key`` (a member of ``rooms``) in the ring."""
        out: list[Stored] = []
        for message in reversed(self.ring):
            if len(out) >= count:
                break
            if not message.kind and message.visible_to(key, rooms):  # edits are applied
                out.append(message)
        out.reverse()
        return out


def _entry_id(entry: Stored) -> int:
    return entry.id
