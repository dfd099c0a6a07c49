"""User names: what a valid name is and when two names are the same user.

Pure functions, no I/O. A name is 1-32 characters: letters of any script,
digits, ``_``, ``-`` and ``.`` (combining marks may follow a letter, so names
in scripts that need them work). Two names are the same user when their keys
are equal: the key is the NFKC normalisation of the casefolded NFKC form, so
``João``, ``joão`` and ``JOÃO`` (composed or decomposed) are one user.

Rooms follow the same rules behind a ``#`` (``#Ação`` and ``#ação`` are one
room), and a conversation is named by a key: ``#`` and the room's name key,
or ``@`` and the two users' keys for their direct messages.
"""

from __future__ import annotations

import unicodedata

from papo.i18n import Text, t

MAX_NAME_LENGTH = 32
_PUNCTUATION = frozenset("_-.")
ROOM_PREFIX = "#"
DIRECT_PREFIX = "@"
DIRECT_SEPARATOR = "|"


class InvalidNameError(ValueError):
    """A proposed name is not acceptable; ``reason`` says why (``str(error)`` in English)."""

    def __init__(self, reason: Text) -> None:
        super().__init__(str(reason))
        self.reason = reason


def clean_name(raw: str) -> str:
    """Return ``raw`` as a display name (NFC), or raise :class:`InvalidNameError`."""
    name = unicodedata.normalize("NFC", raw)
    if not name:
        raise InvalidNameError(t("a name cannot be empty"))
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(t("a name has at most {max} characters", max=MAX_NAME_LENGTH))
    for index, char in enumerate(name):
        category = unicodedata.category(char)
        if category[0] == "L" or category == "Nd" or char in _PUNCTUATION:
            continue
        if category[0] == "M" and index > 0:
            continue
        raise InvalidNameError(
            t(
                "a name may hold only letters, digits, '_', '-' and '.'; {char} is not allowed",
                char=_describe(char),
            )
        )
    return name


def clean_room(raw: str) -> str:
    """Return ``raw`` as a room's display name, ``#`` and a valid name (``sala`` → ``#sala``),
    or raise :class:`InvalidNameError`."""
    body = raw[1:] if raw.startswith(ROOM_PREFIX) else raw
    return ROOM_PREFIX + clean_name(body)


def room_key(room: str) -> str:
    """The comparison key of a room (``#Ação`` and ``#ação`` are one room)."""
    return ROOM_PREFIX + name_key(room.removeprefix(ROOM_PREFIX))


def direct_key(a: str, b: str) -> str:
    """The conversation key of the direct messages between the users keyed ``a`` and ``b``.

    ``@`` and the two keys in order, joined by ``|`` (which no name may hold),
    so both sides name the same conversation.
    """
    first, second = sorted((a, b))
    return f"{DIRECT_PREFIX}{first}{DIRECT_SEPARATOR}{second}"


def direct_other(conversation: str, key: str) -> str:
    """The other user's key in the direct conversation ``conversation`` of ``key``."""
    first, _, second = conversation.removeprefix(DIRECT_PREFIX).partition(DIRECT_SEPARATOR)
    return second if first == key else first


def name_key(name: str) -> str:
    """The comparison key of a name: equal keys mean the same user."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def _describe(char: str) -> str:
    if char.isprintable() and not char.isspace():
        return repr(char)
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'control character')})"
