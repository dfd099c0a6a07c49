"""Message ids, hash slots and node grouping in Redis Cluster mode (pure functions).

A Redis Cluster splits its keys over 16384 hash slots, and a script may only
touch keys of one slot. Each conversation's keys share the conversation's
hash tag (``{r:#sala}``), so its messages are appended, and get their ids,
by one script on the shard that owns that slot. Ids must still be unique
across the whole chat (an edit names its message by id alone) and increase
in each conversation's commit order (a resume replays a conversation after
an id), so:

    id = T * 16384 + slot

where ``slot`` is the conversation's hash slot and ``T`` a counter of that
slot, kept in a key of the same slot (``{<tag>}:clock``, the tag found by
:func:`slot_tag`) and advanced in the append script:
``T = max(last T + 1, milliseconds since EPOCH_MS by the shard's clock)``.

* unique: two conversations of one slot share its counter; two slots differ
  in the low 14 bits;
* increasing per conversation in commit order: the counter only grows and is
  advanced in the script that appends (and never below the stream's newest
  entry, should the counter key be lost);
* roughly time-ordered across the chat: ``T`` is the shard's clock in
  milliseconds while a slot takes under 1000 messages a second (more, and
  its ``T`` runs ahead of the clock until traffic calms down);
* below 2**53 (the page's JavaScript numbers): ``T`` < 2**39 milliseconds,
  which is about 17.4 years after the epoch (2025-01-01): until mid-2042, less
  whatever a slot ran ahead of the clock. :data:`LAST_ID_TIME` says when.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import cache

from redis.crc import key_slot as _key_slot

SLOTS = 16384
#: 2025-01-01T00:00:00Z in milliseconds since the Unix epoch.
EPOCH_MS = 1_735_689_600_000
#: The largest id a JavaScript number holds exactly.
MAX_ID = 2**53 - 1
#: When the id space ends if no slot ever ran ahead of the clock.
LAST_ID_TIME = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(milliseconds=MAX_ID // SLOTS)


class ClusterUrlError(ValueError):
    """A ``redis+cluster://`` URL that names no usable node."""


def make_id(t: int, slot: int) -> int:
    """The message id for counter value ``t`` of ``slot``."""
    if not 0 <= slot < SLOTS:
        raise ValueError(f"slot {slot} is not in 0..{SLOTS - 1}")
    return t * SLOTS + slot


def slot_of_id(message_id: int) -> int:
    """The hash slot of the conversation a cluster id was handed out in."""
    return message_id % SLOTS


def tick(last_t: int, now_ms: int) -> int:
    """The next counter value of a slot: above the last one, and at least the clock."""
    return max(last_t + 1, now_ms)


def key_slot(key: str) -> int:
    """The hash slot of a key (its ``{tag}`` when it has one), as Redis computes it."""
    return int(_key_slot(key.encode()))


_ALPHABET = string.ascii_lowercase + string.digits


@cache
def _slot_tags() -> tuple[str, ...]:
    """For every slot, the first short string (a..z, 0..9; shortest first) in it."""
    tags: list[str | None] = [None] * SLOTS
    missing = SLOTS
    for length in itertools.count(1):
        for letters in itertools.product(_ALPHABET, repeat=length):
            tag = "".join(letters)
            slot = key_slot(tag)
            if tags[slot] is None:
                tags[slot] = tag
                missing -= 1
                if not missing:
                    return tuple(t for t in tags if t is not None)
    raise AssertionError("unreachable")  # pragma: no cover


def slot_tag(slot: int) -> str:
    """A hash tag whose keys (``{tag}:...``) live in ``slot``, e.g. for its id counter."""
    return _slot_tags()[slot]


def clock_key(slot: int) -> str:
    """The key that holds a slot's id counter ``T``."""
    return f"{{{slot_tag(slot)}}}:clock"


def group_by_slot(keys: Iterable[str]) -> dict[int, list[str]]:
    """``keys`` by hash slot (a multi-key command or a script takes one slot's keys)."""
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(key_slot(key), []).append(key)
    return groups


def group_by_node(keys: Iterable[str], node_of_slot: Callable[[int], str]) -> dict[str, list[str]]:
    """``keys`` by the node that serves their slot (one reader per shard)."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(node_of_slot(key_slot(key)), []).append(key)
    return groups


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """``redis+cluster://[user:password@]host:port[,host:port...]`` → nodes, user, password."""
    scheme, sep, rest = url.partition("://")
    if scheme != "redis+cluster" or not sep:
        raise ClusterUrlError(f"not a redis+cluster:// URL: {url!r}")
    rest = rest.split("/", 1)[0].split("?", 1)[0]
    credentials, at, hosts = rest.rpartition("@")
    user = password = None
    if at:
        name, colon, secret = credentials.partition(":")
        user, password = (name or None), (secret if colon else None)
    nodes: list[tuple[str, int]] = []
    for part in hosts.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ClusterUrlError(f"{part.strip()!r} in {url!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    return nodes, user, password
