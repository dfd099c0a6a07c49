"""One exception tree for everything a client can be refused. Pure, no I/O.

Every refusal carries a stable machine ``code`` (listed in docs/protocol.md)
and a ``message`` for people (a :class:`~papo.i18n.Text`, rendered in each
reader's language; the code never changes with it); the hub turns any :class:`PapoError` into an
``error`` event for the connection that caused it, and the connection stays
open. Subclasses name what happened, so the code that raises says so and a
test can catch exactly that.
"""

from __future__ import annotations

from papo.i18n import Says


class PapoError(ValueError):
    """A client's request that cannot be carried out: ``code`` for programs, ``message`` for people."""

    code = "error"
    #: When a refusal ends by itself (ISO 8601): ``muted``, ``banned``; None otherwise.
    until: str | None = None

    def __init__(self, code: str | None, message: Says) -> None:
        super().__init__(str(message))
        if code is not None:
            self.code = code
        self.message = message


class ProtocolError(PapoError):
    """An event or line that is malformed, or refused with a code given by the raiser."""


class NotAllowed(PapoError):
    """Well formed, but this user may not do this here and now."""

    def __init__(self, message: Says) -> None:
        super().__init__(None, message)


class NotMember(NotAllowed):
    """The user is not a member of the room it talks to or asks about."""

    code = "not_member"


class UnknownRoom(NotAllowed):
    """No room of that name exists (and the request does not create one)."""

    code = "unknown_room"


class CannotPart(NotAllowed):
    """The default room cannot be left."""

    code = "cannot_part"


class TooManyRooms(NotAllowed):
    """The user is in as many rooms as the server allows (``--max-rooms-per-user``)."""

    code = "too_many_rooms"


class RateLimited(NotAllowed):
    """Too many requests of this kind; wait and try again."""

    code = "rate_limited"


class Forbidden(NotAllowed):
    """The user's role (member, operator, admin) does not allow this (see papo.moderation)."""

    code = "forbidden"


class Muted(NotAllowed):
    """The user may not speak in this room now; ``until`` says when it ends (None: unmuted
    by hand)."""

    code = "muted"

    def __init__(self, message: Says, until: str | None) -> None:
        super().__init__(message)
        self.until = until


class Banned(NotAllowed):
    """The user (or the address) is banned; ``until`` says when it ends (None: lifted by hand)."""

    code = "banned"

    def __init__(self, message: Says, until: str | None) -> None:
        super().__init__(message)
        self.until = until


class EditWindowOver(NotAllowed):
    """A message can be edited for a while after it was sent (15 minutes); this one is older."""

    code = "edit_window"


class UnknownMessage(NotAllowed):
    """No message with that id that this user can see (never sent, deleted, or not theirs to see)."""

    code = "unknown_message"
