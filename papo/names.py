"""User names: what a valid name is and when two names are the same user.

Pure functions, no I/O. A name is 1-32 characters: letters of any script,
digits, ``_``, ``-`` and ``.`` (combining marks may follow a letter, so names
in scripts that need them work). Two names are the same user when their keys
are equal: the key is the NFKC normalisation of the casefolded NFKC form, so
``João``, ``joão`` and ``JOÃO`` (composed or decomposed) are one user.
"""

from __future__ import annotations

import unicodedata

MAX_NAME_LENGTH = 32
_PUNCTUATION = frozenset("_-.")


class InvalidNameError(ValueError):
    """A proposed name is not acceptable; ``str(error)`` says why."""


def clean_name(raw: str) -> str:
    """Return ``raw`` as a display name (NFC), or raise :class:`InvalidNameError`."""
    name = unicodedata.normalize("NFC", raw)
    if not name:
        raise InvalidNameError("a name cannot be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"a name has at most {MAX_NAME_LENGTH} characters")
    for index, char in enumerate(name):
        category = unicodedata.category(char)
        if category[0] == "L" or category == "Nd" or char in _PUNCTUATION:
            continue
        if category[0] == "M" and index > 0:
            continue
        raise InvalidNameError(
            f"a name may hold only letters, digits, '_', '-' and '.'; "
            f"{_describe(char)} is not allowed"
        )
    return name


def name_key(name: str) -> str:
    """The comparison key of a name: equal keys mean the same user."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def _describe(char: str) -> str:
    if char.isprintable() and not char.isspace():
        return repr(char)
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'control character')})"
