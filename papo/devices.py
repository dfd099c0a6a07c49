"""Devices: a user's token families, so that a logout really logs out. Pure, no I/O.

Every join with a password (or of an open name) starts a *device*: a family
of tokens. The token it returns carries the device's id and a generation
number; a join with that token returns the family's next generation. A
refresh supersedes its predecessor: once a newer token of the family has been
used to join, older ones are refused, except the one it replaced, for
:data:`OVERLAP` seconds, so a reconnect that raced the refresh (two tabs, a
welcome lost with its connection) does not lock the user out. Tokens issued
but not used yet stay valid: a client that never stored its new token keeps
joining with the one it has.

Ending a device (``logout``, ``revoke``, ``logout {all}``, a password change)
removes it from the store: every token of the family is refused from then on,
wherever it was copied to, and the sessions that joined with one are closed.
The stores keep devices (SQLite table ``devices``, a hash per user in Redis,
a dictionary in memory) and apply :meth:`Device.refreshed` atomically.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection
from dataclasses import asdict, dataclass, replace

#: Seconds a superseded token still joins after its successor was first used.
OVERLAP = 60.0
#: Devices kept per user; joining on one more drops the one seen least recently.
MAX_DEVICES = 50
#: Longest device id a client may send (ids are 12 hex digits).
MAX_DEVICE_ID = 64


@dataclass(frozen=True, slots=True)
class Device:
    """One token family of one user.

    ``gen`` is the newest generation issued, ``used`` the newest that joined,
    ``prev`` the one ``used`` superseded at ``superseded_at`` (accepted until
    :data:`OVERLAP` seconds after). Times are Unix seconds; ``address`` is
    where it last joined from; ``expires`` is when its newest token expires.
    """

    id: str
    user_key: str
    gen: int = 1
    used: int = 0
    prev: int = 0
    superseded_at: float = 0.0
    first_seen: float = 0.0
    last_seen: float = 0.0
    address: str = ""
    expires: float = 0.0

    def accepts(self, gen: int, now: float, overlap: float = OVERLAP) -> bool:
        """Whether a token of generation ``gen`` of this family may join at ``now``."""
        if now >= self.expires or not 1 <= gen <= self.gen:
            return False
        if gen >= self.used:
            return True
        return gen == self.prev and now < self.superseded_at + overlap

    def refreshed(
        self, gen: int, now: float, address: str, ttl: float, overlap: float = OVERLAP
    ) -> Device | None:
        """The device after a join with generation ``gen`` (its next one issued), or None:
        refused."""
        if not self.accepts(gen, now, overlap):
            return None
        used, prev, superseded_at = self.used, self.prev, self.superseded_at
        if gen > used:  # the first join with this generation: it supersedes the last used
            used, prev, superseded_at = gen, used, now
        return replace(
            self,
            gen=self.gen + 1,
            used=used,
            prev=prev,
            superseded_at=superseded_at,
            last_seen=now,
            address=address,
            expires=now + ttl,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def new_device(user_key: str, address: str, now: float, ttl: float) -> Device:
    """A new family for ``user_key``: its first token is generation 1."""
    return Device(
        secrets.token_hex(6),
        user_key,
        first_seen=now,
        last_seen=now,
        address=address,
        expires=now + ttl,
    )


def device_from_json(text: str) -> Device | None:
    """A device as a store kept it, or None when the data is damaged."""
    try:
        data = json.loads(text)
        return Device(
            str(data["id"]),
            str(data["user_key"]),
            int(data["gen"]),
            int(data["used"]),
            int(data["prev"]),
            float(data["superseded_at"]),
            float(data["first_seen"]),
            float(data["last_seen"]),
            str(data["address"]),
            float(data["expires"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def beyond_limit(devices: Collection[Device], now: float, limit: int = MAX_DEVICES) -> list[str]:
    """The ids to drop: expired devices, then the least recently seen past ``limit``."""
    alive = sorted((d for d in devices if d.expires > now), key=lambda d: d.last_seen, reverse=True)
    keep = {d.id for d in alive[:limit]}
    return [d.id for d in devices if d.id not in keep]
