"""papo's events as values: what a client may ask, what a server may tell. Pure, no I/O.

Plain frozen dataclasses, shared by the server, the terminal client and the
tests. How they look on the wire is the business of :mod:`papo.protocol_parse`
(client events from JSON), :mod:`papo.protocol_encode` (server events to
JSON) and :mod:`papo.plain` (lines for people); the client side of the wire
is :mod:`papo.protocol_client`'s. :mod:`papo.protocol` gathers them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from papo.frozen import quick_init
from papo.i18n import Says
from papo.moderation import AuditEntry

Mode = Literal["json", "plain"]

DEFAULT_MAX_TEXT = 4096
MAX_CID_LENGTH = 64
MAX_SECRET_LENGTH = 1024
#: A ``hello``'s ``resume`` names at most this many conversations...
MAX_RESUME = 1000
#: ... each as ``#room`` or ``@name`` of at most this many characters.
MAX_RESUME_KEY = 100


MAX_TOPIC = 300
DEFAULT_HISTORY = 50
MAX_HISTORY = 200
MAX_REASON = 300
DEFAULT_AUDIT = 20
MAX_AUDIT = 500


# --------------------------------------------------------------------------
# Client events


@dataclass(frozen=True, slots=True)
class Hello:
    """Join as ``name``, with a password or a token when the name needs one."""

    name: str
    password: str | None = None
    token: str | None = None
    resume_from: int | None = None
    #: The language the connection wants its notices and errors in (``en``, ``pt-BR``).
    lang: str | None = None
    #: Per-conversation resume: ``("#sala", 120)``, ``("@maria", 7)``, as the client
    #: wrote them (the server folds the names): replay each after its own position.
    resume: tuple[tuple[str, int], ...] | None = None


@quick_init  # built once per message
@dataclass(frozen=True, slots=True)
class Say:
    """Send ``text`` to a room (``room``; None: the default room), or privately to ``to``."""

    text: str
    to: str | None = None
    cid: str | None = None
    room: str | None = None


@dataclass(frozen=True, slots=True)
class Join:
    """Join the room ``room`` (created when nobody has yet)."""

    room: str


@dataclass(frozen=True, slots=True)
class Part:
    """Leave the room ``room``."""

    room: str


@dataclass(frozen=True, slots=True)
class Conversation:
    """Which conversation a request is about: a ``room``, or the direct messages ``with`` a user."""

    room: str | None = None
    with_: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    """Up to ``limit`` messages of one conversation older than id ``before`` (None: newest)."""

    conversation: Conversation
    before: int | None = None
    limit: int = DEFAULT_HISTORY


@dataclass(frozen=True, slots=True)
class Read:
    """Everything up to id ``id`` in one conversation has been read."""

    conversation: Conversation
    id: int


@dataclass(frozen=True, slots=True)
class ListRooms:
    """Ask for the list of rooms."""


@dataclass(frozen=True, slots=True)
class SetTopic:
    """Set the topic of ``room`` (empty text clears it)."""

    room: str
    text: str


@dataclass(frozen=True, slots=True)
class Who:
    """Ask for the list of online users."""


@dataclass(frozen=True, slots=True)
class Register:
    """Protect the current name with ``password``."""

    password: str


@dataclass(frozen=True, slots=True)
class Logout:
    """End this device (every token of it) and leave; ``all``: every device of the user."""

    all: bool = False


@dataclass(frozen=True, slots=True)
class Devices:
    """Ask for the list of the user's devices."""


@dataclass(frozen=True, slots=True)
class Revoke:
    """End one of the user's devices: its tokens are refused, its sessions closed."""

    device: str


@dataclass(frozen=True, slots=True)
class ChangePassword:
    """Replace the password (``old`` is the current one); the other devices end."""

    old: str
    new: str


# ---------------------------------------------------------------- moderation and the
# message lifecycle (what each role may do: papo.moderation)


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace the text of your message ``id``.

    ``id`` None (plain-text ``/edit``) means your newest message in ``room``.
    """

    id: int | None
    text: str
    room: str | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete message ``id`` (your own, or anyone's as an operator or admin).

    ``id`` None (plain-text ``/delete``) means your newest message in ``room``.
    """

    id: int | None
    room: str | None = None


@dataclass(frozen=True, slots=True)
class Kick:
    """Make ``name`` leave ``room`` (they may join again)."""

    room: str
    name: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Mute:
    """``name`` may not speak in ``room`` for ``seconds``."""

    room: str
    name: str
    seconds: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Unmute:
    room: str
    name: str


@dataclass(frozen=True, slots=True)
class Ban:
    """Close every session of ``name`` and refuse it, for ``seconds`` (None: until lifted)."""

    name: str
    seconds: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Unban:
    name: str


@dataclass(frozen=True, slots=True)
class BanIp:
    """Refuse handshakes from ``address`` (an address or CIDR block, normalised)."""

    address: str
    seconds: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class UnbanIp:
    address: str


@dataclass(frozen=True, slots=True)
class Purge:
    """Ban ``name`` and delete all their messages since ``since`` (ISO 8601) or of the last
    ``seconds`` (neither: all of them)."""

    name: str
    since: str | None = None
    seconds: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Op:
    """Make ``name`` an operator of ``room``."""

    room: str
    name: str


@dataclass(frozen=True, slots=True)
class Deop:
    room: str
    name: str


@dataclass(frozen=True, slots=True)
class SetMode:
    """Turn ``room``'s read-only mode or topic lock on or off (None: leave as it is)."""

    room: str
    moderated: bool | None = None
    topic_locked: bool | None = None


@dataclass(frozen=True, slots=True)
class ReadAudit:
    """The newest ``limit`` entries of the audit log (admins)."""

    limit: int = DEFAULT_AUDIT


ModerationEvent = (
    Edit
    | Delete
    | Kick
    | Mute
    | Unmute
    | Ban
    | Unban
    | BanIp
    | UnbanIp
    | Purge
    | Op
    | Deop
    | SetMode
    | ReadAudit
)

ClientEvent = (
    Hello
    | Say
    | Who
    | Register
    | Logout
    | Join
    | Part
    | History
    | Read
    | ListRooms
    | SetTopic
    | Devices
    | Revoke
    | ChangePassword
    | ModerationEvent
)


# --------------------------------------------------------------------------
# Server events


@dataclass(frozen=True, slots=True)
class RoomState:
    """One of the user's rooms as ``welcome`` lists it."""

    room: str
    topic: str = ""
    unread: int = 0
    last_read: int = 0


@dataclass(frozen=True, slots=True)
class DirectState:
    """One of the user's direct conversations as ``welcome`` lists it."""

    with_: str
    unread: int = 0
    last_read: int = 0


@dataclass(frozen=True, slots=True)
class Welcome:
    """The join succeeded: you are ``name``; ``token`` joins again without a password."""

    name: str
    token: str | None = None
    last_id: int = 0
    protected: bool = False
    rooms: tuple[RoomState, ...] = ()
    direct: tuple[DirectState, ...] = ()
    #: A server admin (``--admin`` and protected): clients show the admin commands.
    admin: bool = False


@quick_init  # built once per message
@dataclass(frozen=True, slots=True)
class Message:
    """A chat message: in ``room``, or private when ``to`` is set.

    ``cid`` is set only when a message is replayed to its own sender (after a
    resume): it lets the sender recognise a message whose ``ack`` it missed.
    ``home`` marks the default room, whose lines plain-text clients see
    without a room tag (as before rooms existed).
    """

    id: int
    sender: str
    text: str
    ts: str
    to: str | None = None
    cid: str | None = None
    room: str | None = None
    home: bool = False
    #: When its text was last edited (it shows the latest text).
    edited_ts: str | None = None
    #: A tombstone: the message was deleted; ``sender`` and ``text`` are empty.
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class MemberInfo:
    name: str
    online: bool
    #: An operator of the room (or a server admin).
    op: bool = False


@dataclass(frozen=True, slots=True)
class RoomJoined:
    """The user is now in ``room`` (sent to all of the user's sessions)."""

    room: str
    topic: str
    members: tuple[MemberInfo, ...]
    last_id: int
    unread: int
    last_read: int = 0
    moderated: bool = False
    topic_locked: bool = False


@dataclass(frozen=True, slots=True)
class RoomParted:
    """The user left ``room`` (sent to all of the user's sessions); ``by`` kicked them."""

    room: str
    by: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RoomTopic:
    """``by`` set the topic of ``room`` (sent to its members)."""

    room: str
    topic: str
    by: str


@dataclass(frozen=True, slots=True)
class Member:
    """Another user joined or left a room you are in."""

    event: Literal["join", "part"]
    room: str
    name: str


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """An answer to ``history``: ``messages`` oldest first; ``more`` when older ones exist."""

    conversation: Conversation
    messages: tuple[Message, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class ReadMarker:
    """The user has read ``conversation`` up to ``id`` (on another session)."""

    conversation: Conversation
    id: int


@dataclass(frozen=True, slots=True)
class RoomInfo:
    room: str
    members: int
    online: int
    topic: str
    joined: bool
    operators: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RoomList:
    """An answer to ``rooms``."""

    rooms: tuple[RoomInfo, ...]


@dataclass(frozen=True, slots=True)
class Presence:
    """A user came online (``join``: first session) or went away (``leave``: last one)."""

    event: Literal["join", "leave"]
    name: str


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    sessions: int


@dataclass(frozen=True, slots=True)
class Users:
    """The online users, with how many sessions each has."""

    users: tuple[UserInfo, ...]


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One device as ``devices`` lists it: times are ISO 8601 UTC, ``current``: this session's."""

    id: str
    first_seen: str
    last_seen: str
    address: str
    current: bool


@dataclass(frozen=True, slots=True)
class DeviceList:
    """An answer to ``devices``: the user's devices, the most recently seen first."""

    devices: tuple[DeviceInfo, ...]


@quick_init  # built once per message (JSON)
@dataclass(frozen=True, slots=True)
class Ack:
    """Your message ``cid`` was accepted and stored as ``id``."""

    id: int
    cid: str | None = None
    #: For a private message: the recipient's name as the server spells it (``joao`` → ``João``).
    to: str | None = None


@dataclass(frozen=True, slots=True)
class Error:
    """Something you sent could not be done; the connection stays open.

    ``cid`` repeats the client id of the ``say`` that failed, if it had one.
    """

    code: str
    message: Says
    cid: str | None = None
    #: ``muted`` and ``banned``: when it ends (ISO 8601), None when it does not.
    until: str | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages after ``after`` and before ``oldest`` are no longer kept (retention).

    A per-conversation resume says which conversation: ``room`` (its name), or
    ``with_`` (the other user's name) for a direct one.
    """

    after: int
    oldest: int
    room: str | None = None
    with_: str | None = None


@dataclass(frozen=True, slots=True)
class Notice:
    """Information for people (greetings, help, confirmations)."""

    text: Says


@dataclass(frozen=True, slots=True)
class Edited:
    """Message ``id`` (by ``sender``) now reads ``text``, since ``edited_ts``."""

    id: int
    text: str
    edited_ts: str
    sender: str
    room: str | None = None
    to: str | None = None
    home: bool = False


@dataclass(frozen=True, slots=True)
class Deleted:
    """Message ``id`` was deleted by ``by`` (its sender, an operator or an admin)."""

    id: int
    by: str
    room: str | None = None
    to: str | None = None
    home: bool = False


@dataclass(frozen=True, slots=True)
class RoomModeChanged:
    """``by`` turned ``room``'s read-only mode or topic lock on or off (to its members)."""

    room: str
    moderated: bool
    topic_locked: bool
    by: str


@dataclass(frozen=True, slots=True)
class AuditLog:
    """An answer to ``audit``: entries oldest first."""

    entries: tuple[AuditEntry, ...]


ServerEvent = (
    Welcome
    | Message
    | Presence
    | Users
    | Ack
    | Error
    | Gap
    | Notice
    | RoomJoined
    | RoomParted
    | RoomTopic
    | Member
    | HistoryPage
    | ReadMarker
    | RoomList
    | DeviceList
    | Edited
    | Deleted
    | RoomModeChanged
    | AuditLog
)
