"""Moderation as rules: roles, what each may do, durations, bans and mutes, addresses. Pure, no I/O.

Everything here is a value or a function of values (the time is always
passed in as ``now``, seconds since the epoch), so every rule is tested
exhaustively in microseconds; :mod:`papo.moderation_ops` applies them to the
hub, and :mod:`papo.moderation_store` keeps them.

* **Roles**: a server *admin* (``--admin NAME``, and only once that name has
  a password), a room *operator* (the room's creator, or made one with
  ``op``), or a *member*. Admins are operators everywhere. :func:`may` says
  whether a role may do an :class:`Action`; :func:`may_target` whether it may
  do it *to* someone of another role (nobody acts on an admin).
* **Durations** as people type them (``10m``, ``2h``, ``1d``, ``1h30m``):
  :func:`parse_duration` and :func:`format_duration`, inverse of each other.
* **Restrictions** (a ban, a mute, an address ban) with who, why and an
  optional end (:class:`Restriction`); they end by themselves when ``now``
  passes ``until``.
* **Addresses**: an address or CIDR block (:func:`parse_network`), whether an
  address falls in one (:class:`AddressBans`), and the real client address
  behind trusted proxies from ``X-Forwarded-For`` (:func:`client_address`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

Role = Literal["admin", "operator", "member"]
ROLES: tuple[Role, ...] = ("admin", "operator", "member")
_RANK: dict[Role, int] = {"member": 0, "operator": 1, "admin": 2}

#: Everyone may edit their own message this long after sending it.
EDIT_WINDOW = 15 * 60.0


class Action(StrEnum):
    """Everything a role decides: one name per thing someone may or may not do."""

    EDIT_OWN = "edit_own"
    DELETE_OWN = "delete_own"
    DELETE_ANY = "delete_any"
    KICK = "kick"
    MUTE = "mute"
    UNMUTE = "unmute"
    MODE = "mode"  # read-only room, topic lock
    SPEAK_MODERATED = "speak_moderated"  # say in a read-only room
    TOPIC_LOCKED = "topic_locked"  # set the topic of a room whose topic is locked
    OP = "op"
    DEOP = "deop"
    BAN = "ban"
    UNBAN = "unban"
    BAN_IP = "ban_ip"
    UNBAN_IP = "unban_ip"
    PURGE = "purge"
    AUDIT = "audit"


_MEMBER = frozenset({Action.EDIT_OWN, Action.DELETE_OWN})
_OPERATOR = _MEMBER | {
    Action.DELETE_ANY,
    Action.KICK,
    Action.MUTE,
    Action.UNMUTE,
    Action.MODE,
    Action.SPEAK_MODERATED,
    Action.TOPIC_LOCKED,
    Action.OP,
    Action.DEOP,
}
_ADMIN = _OPERATOR | {
    Action.BAN,
    Action.UNBAN,
    Action.BAN_IP,
    Action.UNBAN_IP,
    Action.PURGE,
    Action.AUDIT,
}
PERMISSIONS: dict[Role, frozenset[Action]] = {
    "member": _MEMBER,
    "operator": _OPERATOR,
    "admin": _ADMIN,
}


def may(role: Role, action: Action) -> bool:
    """Whether someone of ``role`` may do ``action`` (in the room the role is about)."""
    return action in PERMISSIONS[role]


def may_target(actor: Role, target: Role) -> bool:
    """Whether ``actor`` may kick, mute, ban or deop someone of role ``target``.

    Members act on nobody; nobody acts on an admin (admins are the server
    owner's choice, made with ``--admin``); operators act on members and on
    other operators of their room.
    """
    return actor != "member" and target != "admin" and _RANK[actor] >= _RANK[target]


def role_of(*, admin: bool, operator: bool) -> Role:
    """The role of someone who is (or is not) a verified admin, an operator of the room."""
    if admin:
        return "admin"
    return "operator" if operator else "member"


# --------------------------------------------------------------------------
# Durations

_UNITS: tuple[tuple[str, int], ...] = (
    ("w", 604_800),
    ("d", 86_400),
    ("h", 3600),
    ("m", 60),
    ("s", 1),
)
_UNIT_SECONDS = dict(_UNITS)
_DURATION = re.compile(r"(?:(\d{1,7})([wdhms]))", re.IGNORECASE)
#: The longest mute or ban with an end: a year (longer is "until lifted").
MAX_DURATION = 366 * 86_400


class BadDuration(ValueError):
    """Text that is not a duration like ``10m``, ``2h``, ``1d`` or ``1h30m``."""


def parse_duration(text: str) -> int:
    """Seconds in ``text``: ``30s``, ``10m``, ``2h``, ``1d``, ``1w`` or a sum like ``1h30m``.

    Raises :class:`BadDuration` for anything else, for zero, and for more
    than :data:`MAX_DURATION`.
    """
    stripped = text.strip()
    if not stripped:
        raise BadDuration("a duration like 10m, 2h or 1d")
    total = 0
    position = 0
    for match in _DURATION.finditer(stripped):
        if match.start() != position:
            break
        total += int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
        position = match.end()
    if position != len(stripped):
        raise BadDuration(f"{stripped[:20]!r} is not a duration like 10m, 2h or 1d")
    if total <= 0:
        raise BadDuration("a duration must be longer than zero")
    if total > MAX_DURATION:
        raise BadDuration("a duration is at most 366d")
    return total


def format_duration(seconds: float) -> str:
    """``seconds`` as people read it, largest units first: ``1h30m``, ``2d``, ``45s``.

    Fractions of a second round up (a mute with 0.2 s left has ``1s`` left);
    :func:`parse_duration` reads it back as the same number of seconds.
    """
    left = max(1, int(-(-seconds // 1)))
    parts = []
    for unit, size in _UNITS:
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def iso_time(moment: float) -> str:
    """An epoch time as ISO 8601 UTC with milliseconds, the way message ``ts`` look."""
    dt = datetime.fromtimestamp(moment, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_time(text: str) -> float:
    """An ISO 8601 time (``2026-11-22T21:40:00.123Z``; no zone means UTC) as epoch seconds.

    Raises ``ValueError`` for anything else.
    """
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# --------------------------------------------------------------------------
# Restrictions


@dataclass(frozen=True, slots=True)
class Restriction:
    """A ban, a mute or an address ban: on whom (``name``), by whom, why, until when.

    ``until`` is epoch seconds; None means until someone lifts it.
    """

    name: str
    by: str
    reason: str = ""
    until: float | None = None

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    def left(self, now: float) -> float | None:
        """Seconds until it ends by itself (None: it does not)."""
        return None if self.until is None else max(0.0, self.until - now)

    @property
    def until_iso(self) -> str | None:
        return None if self.until is None else iso_time(self.until)


def restriction_for(
    name: str, by: str, reason: str, seconds: float | None, now: float
) -> Restriction:
    """A restriction that starts ``now`` and lasts ``seconds`` (None: until lifted)."""
    return Restriction(name, by, reason, None if seconds is None else now + seconds)


@dataclass(frozen=True, slots=True)
class RoomMode:
    """A room's moderation switches: read-only (only operators speak), topic lock."""

    moderated: bool = False
    topic_locked: bool = False


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One thing an operator or admin did: when, who, what, to whom, why (and where)."""

    ts: str
    by: str
    action: str
    target: str
    reason: str = ""
    room: str = ""


# --------------------------------------------------------------------------
# Addresses

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class BadAddress(ValueError):
    """Text that is neither an IP address nor a CIDR block."""


def parse_address(text: str) -> Address:
    """An IP address; an IPv4 address written as IPv6 (``::ffff:1.2.3.4``) is the IPv4 one."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        raise BadAddress(f"{text[:60]!r} is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_network(text: str) -> Network:
    """An address (``203.0.113.7``) or a CIDR block (``203.0.113.0/24``, ``2001:db8::/32``).

    Host bits are allowed and dropped (``10.1.2.3/8`` is ``10.0.0.0/8``).
    """
    raw = text.strip()
    try:
        if "/" not in raw:
            address = parse_address(raw)
            return ipaddress.ip_network(address)
        network = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise BadAddress(f"{raw[:60]!r} is not an IP address or CIDR block") from None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        mapped = network.network_address.ipv4_mapped
        return ipaddress.ip_network(f"{mapped}/{max(0, network.prefixlen - 96)}", strict=False)
    return network


def in_networks(address: str, networks: Iterable[Network]) -> bool:
    """Whether ``address`` (text) is in any of ``networks``; not an address: False."""
    try:
        parsed = parse_address(address)
    except BadAddress:
        return False
    return any(parsed.version == net.version and parsed in net for net in networks)


@dataclass(slots=True)
class AddressBans:
    """Banned addresses and blocks, each with its :class:`Restriction`."""

    entries: dict[str, tuple[Network, Restriction]] = field(default_factory=dict)

    def add(self, network: Network, restriction: Restriction) -> None:
        self.entries[str(network)] = (network, restriction)

    def remove(self, network: Network) -> bool:
        return self.entries.pop(str(network), None) is not None

    def match(self, address: str, now: float) -> Restriction | None:
        """The ban that refuses ``address`` now, if any (expired ones are dropped)."""
        if not self.entries:
            return None
        try:
            parsed = parse_address(address)
        except BadAddress:
            return None
        for key, (network, restriction) in list(self.entries.items()):
            if not restriction.active(now):
                del self.entries[key]
            elif parsed.version == network.version and parsed in network:
                return restriction
        return None


def client_address(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The address of the client behind any trusted proxies.

    ``peer`` is the address the connection came from; ``forwarded_for`` the
    values of its ``X-Forwarded-For`` headers, in order. Only a trusted
    proxy's word counts: starting from ``peer``, while the hop we are at is a
    trusted proxy, step to the address it says it got the request from (the
    rightmost entry not yet used). The first untrusted hop is the client. A
    header from anyone else is ignored, so a client cannot choose its address
    by sending the header itself.
    """
    try:
        current = str(parse_address(peer))
    except BadAddress:
        current = peer  # a Unix socket or the like: nothing to match
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    while in_networks(current, trusted) and hops:
        hop = hops.pop()
        try:
            current = str(parse_address(hop))
        except BadAddress:
            break  # a garbled header: the trusted proxy we reached is as far as we know
    return current


# --------------------------------------------------------------------------
# The state: who is an operator where, who is banned or muted, room modes


@dataclass(slots=True)
class ModerationState:
    """Everything moderation decides from, in dictionaries (the store keeps a copy).

    Operators are explicit entries (``op`` on, or off for a creator who was
    ``deop``-ed) over the rule that a room's creator is its operator, so
    rooms created before roles existed have theirs too.
    """

    #: room key → {user key: (name, is an operator)}
    operators: dict[str, dict[str, tuple[str, bool]]] = field(default_factory=dict)
    #: user key → ban
    bans: dict[str, Restriction] = field(default_factory=dict)
    #: (room key, user key) → mute
    mutes: dict[tuple[str, str], Restriction] = field(default_factory=dict)
    ip_bans: AddressBans = field(default_factory=AddressBans)
    #: room key → its mode (absent: open)
    modes: dict[str, RoomMode] = field(default_factory=dict)

    def is_operator(self, room_key: str, creator_key: str, user_key: str) -> bool:
        """Whether ``user_key`` is an operator of the room (admins aside)."""
        explicit = self.operators.get(room_key, {}).get(user_key)
        if explicit is not None:
            return explicit[1]
        return bool(creator_key) and creator_key == user_key

    def operator_names(self, room_key: str, creator_key: str, creator: str) -> list[str]:
        """The names of the room's operators (admins aside), creator first."""
        explicit = self.operators.get(room_key, {})
        names = [creator] if creator_key and explicit.get(creator_key, (creator, True))[1] else []
        names += [name for key, (name, on) in explicit.items() if on and key != creator_key]
        return names

    def set_operator(self, room_key: str, user_key: str, name: str, on: bool) -> None:
        self.operators.setdefault(room_key, {})[user_key] = (name, on)

    def ban_of(self, user_key: str, now: float) -> Restriction | None:
        """The user's ban while it lasts (an ended one is forgotten)."""
        ban = self.bans.get(user_key)
        if ban is not None and not ban.active(now):
            del self.bans[user_key]
            return None
        return ban

    def mute_of(self, room_key: str, user_key: str, now: float) -> Restriction | None:
        """The user's mute in the room while it lasts (an ended one is forgotten)."""
        mute = self.mutes.get((room_key, user_key))
        if mute is not None and not mute.active(now):
            del self.mutes[(room_key, user_key)]
            return None
        return mute

    def mode_of(self, room_key: str) -> RoomMode:
        return self.modes.get(room_key, RoomMode())


@dataclass(frozen=True, slots=True)
class ModerationChange:
    """One change of the moderation state, as it is kept and as every instance applies it.

    ``what`` says which: ``op`` (``key`` is, ``on``, or is no longer an
    operator of ``room``), ``ban`` and ``mute`` (of the user ``key``, in
    ``room`` for a mute), ``ip_ban`` (``key`` is the network), with their
    ``restriction`` (None lifts it), or ``mode`` (``room``'s new ``mode``).
    ``by`` made the change; ``name`` and ``room_name`` are for telling people.
    """

    what: Literal["op", "ban", "mute", "ip_ban", "mode"]
    key: str = ""
    room: str = ""
    room_name: str = ""
    name: str = ""
    by: str = ""
    on: bool = True
    restriction: Restriction | None = None
    mode: RoomMode | None = None

    def apply_to(self, state: ModerationState) -> None:
        """The change to the state alone (telling people is the hub's)."""
        r = self.restriction
        if self.what == "op":
            state.set_operator(self.room, self.key, self.name, self.on)
        elif self.what == "ban":
            if r is None:
                state.bans.pop(self.key, None)
            else:
                state.bans[self.key] = r
        elif self.what == "mute":
            if r is None:
                state.mutes.pop((self.room, self.key), None)
            else:
                state.mutes[(self.room, self.key)] = r
        elif self.what == "ip_ban":
            network = parse_network(self.key)
            if r is None:
                state.ip_bans.remove(network)
            else:
                state.ip_bans.add(network, r)
        else:
            mode = self.mode or RoomMode()
            if mode == RoomMode():
                state.modes.pop(self.room, None)
            else:
                state.modes[self.room] = mode
