"""User names: what a valid name is and when two names are the same user.

Pure functions, no I/O. A name is 1-32 characters: letters of any script,
digits, ``_``, ``-`` and ``.`` (combining marks may follow a letter, so names
in scripts that need them work).

**Same user.** Two names are the same user when their keys are equal
(:func:`name_key`): names are compared as people type them, so case,
compatibility forms (fullwidth letters, ligatures, mathematical letters)
and accents on Latin, Greek and Cyrillic letters do not count: ``joao``,
``João``, ``JOAO`` and ``joão`` (composed or decomposed) are one user. Accents
are folded only on letters of those three scripts, where a mark is an accent
on a letter people also write without it. In other scripts marks are parts of
letters (a Devanagari vowel sign or virama, a Japanese dakuten: ``कमल`` and
``कामल``, ``か`` and ``が`` are different names), so they stay. Letters that
do not decompose stay as they are (``ø``, ``ł``, a dotless i); ``ß`` casefolds
to ``ss``, and Cyrillic ``й``/``ё`` lose their marks as accents do.

**One script.** A name's letters come from one script (per character its
Unicode Script_Extensions, as UTS #39 resolves them): ``joao`` spelled with a
Cyrillic o (U+043E) imitates another user and is refused, naming both scripts.
Digits, ``_-.`` and other characters of the Common and Inherited scripts fit
any script. Japanese (Han, Hiragana, Katakana), Korean (Han, Hangul) and
Chinese (Han, Bopomofo) each count as one script, as in UTS #39. The check
runs on the name and on its compatibility form, so a mathematical bold j
(script Common, but a Latin j once folded) cannot hide a mix either. Names mixing
Latin with Japanese, Korean or Chinese, which UTS #39's "highly restrictive"
level would allow, are refused: one script keeps the rule simple to state.

**Invisible characters** (zero-width, bidi controls, fillers, variation
selectors: Unicode's Default_Ignorable_Code_Point) are refused, so no two
names look alike and differ only by what cannot be seen.

Rooms follow the same rules behind a ``#`` (``#Ação``, ``#ação`` and
``#acao`` are one room), and a conversation is named by a key: ``#`` and the
room's name key, or ``@`` and the two users' keys for their direct messages.
"""

from __future__ import annotations

import unicodedata
from functools import cache, lru_cache

import regex
from babel.core import Locale

from papo.i18n import Text, t

MAX_NAME_LENGTH = 32
#: The version of the rule :func:`name_key` follows (1: before accents were folded,
#: :func:`legacy_key`). Stores and tokens record it, to know a key of before.
KEY_RULE = 2
_PUNCTUATION = frozenset("_-.")
ROOM_PREFIX = "#"
DIRECT_PREFIX = "@"
DIRECT_SEPARATOR = "|"

#: Letters whose combining marks are accents the key drops.
_ACCENTED = regex.compile(r"(?P<base>(?=\p{L})[\p{sc=Latin}\p{sc=Greek}\p{sc=Cyrillic}])\p{M}+")
_INVISIBLE = regex.compile(r"\p{Default_Ignorable_Code_Point}")
#: Script codes (ISO 15924) that fit any script: Common and Inherited. (Unknown,
#: ``Zzzz``, is a script of its own: a letter no table places mixes with nothing.)
_NEUTRAL = frozenset({"Zyyy", "Zinh"})
#: UTS #39 augmented script sets: a Han character is also Japanese, Korean and
#: Chinese-with-Bopomofo; Hiragana and Katakana are Japanese; Hangul is Korean.
_AUGMENT = {
    "Hani": ("Hanb", "Jpan", "Kore"),
    "Hira": ("Jpan",),
    "Kana": ("Jpan",),
    "Hang": ("Kore",),
    "Bopo": ("Hanb",),
}
#: The names of the scripts people most often write names in, for the reason
#: a mixed name is refused (others are named in English, from CLDR).
_SCRIPT_NAMES: dict[str, Text] = {
    # TRANSLATORS: the name of a script (writing system), as in "the Latin script"
    "Latn": t("Latin"),
    "Grek": t("Greek"),
    "Cyrl": t("Cyrillic"),
    "Armn": t("Armenian"),
    "Geor": t("Georgian"),
    "Hebr": t("Hebrew"),
    "Arab": t("Arabic"),
    "Syrc": t("Syriac"),
    "Thaa": t("Thaana"),
    "Deva": t("Devanagari"),
    "Beng": t("Bengali"),
    "Guru": t("Gurmukhi"),
    "Gujr": t("Gujarati"),
    "Orya": t("Odia"),
    "Taml": t("Tamil"),
    "Telu": t("Telugu"),
    "Knda": t("Kannada"),
    "Mlym": t("Malayalam"),
    "Sinh": t("Sinhala"),
    "Thai": t("Thai"),
    "Laoo": t("Lao"),
    "Tibt": t("Tibetan"),
    "Mymr": t("Myanmar"),
    "Khmr": t("Khmer"),
    "Mong": t("Mongolian"),
    "Ethi": t("Ethiopic"),
    "Cher": t("Cherokee"),
    "Hani": t("Han"),
    "Hira": t("Hiragana"),
    "Kana": t("Katakana"),
    "Hang": t("Hangul"),
    "Bopo": t("Bopomofo"),
}

_RANK = {code: rank for rank, code in enumerate(_SCRIPT_NAMES)}


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
        if _INVISIBLE.match(char):
            raise InvalidNameError(
                t(
                    "{char} is invisible; a name cannot hold invisible characters",
                    char=_code_point(char),
                )
            )
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
    for form in (name, unicodedata.normalize("NFKC", name)):
        mixed = mixed_scripts(form)
        if mixed is not None:
            first, second, char = mixed
            raise InvalidNameError(
                t(
                    "it mixes letters of different scripts, {first} and {second} "
                    "({char} is {second}); use the letters of one script",
                    first=script_name(first),
                    second=script_name(second),
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
    """The comparison key of a room (``#Ação``, ``#ação`` and ``#acao`` are one room)."""
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


@lru_cache(maxsize=16384)
def name_key(name: str) -> str:
    """The comparison key of a name: equal keys mean the same user.

    Compatibility forms folded (NFKC), case folded, accents on Latin, Greek
    and Cyrillic letters dropped, then NFKC again; repeated until nothing
    changes, so a key is its own key (``name_key(name_key(x)) == name_key(x)``)
    and a key made by the rule before accents were folded (:func:`legacy_key`)
    maps to the key of today: ``name_key(legacy_key(x)) == name_key(x)``.
    Total: any string has a key, valid name or not.
    """
    key = name
    for _ in range(8):  # one round is enough for every name tried; the bound is a guard
        folded = _fold(key)
        if folded == key:
            break
        key = folded
    return key


def legacy_key(name: str) -> str:
    """The key papo gave a name before accents were folded: NFKC, casefold, NFKC.

    Data made then (session tokens, a store not yet migrated) holds such keys;
    :func:`name_key` of one is the key of today.
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text).casefold())
    return unicodedata.normalize("NFKC", _ACCENTED.sub(r"\g<base>", folded))


def mixed_scripts(text: str) -> tuple[str, str, str] | None:
    """Whether ``text`` mixes scripts: ``(first, second, char)`` if it does, else None.

    ``first`` and ``second`` are ISO 15924 codes of two scripts no one
    writing system holds together, ``char`` the character where the second
    one started. Characters of the Common and Inherited scripts fit any
    script; the UTS #39 sets make Japanese, Korean and Chinese one script each.
    """
    allowed: frozenset[str] | None = None
    witness = ""
    for char in text:
        scripts, label = char_scripts(char)
        if not scripts:
            continue
        if allowed is None:
            allowed, witness = scripts, label
            continue
        narrowed = allowed & scripts
        if not narrowed:
            return witness, label, char
        if narrowed != allowed:
            witness = label
        allowed = narrowed
    return None


@lru_cache(maxsize=16384)
def char_scripts(char: str) -> tuple[frozenset[str], str]:
    """The scripts ``char`` may be written in (its UTS #39 augmented Script_Extensions;
    empty: it fits any script) and the one to name it by (its Script, ISO 15924)."""
    tables = _script_tables()
    found = tables.script.match(char)
    script = "Zzzz" if found is None or found.lastgroup is None else found.lastgroup
    if tables.extended.match(char):  # Script_Extensions is not just {Script}: ask each script
        match = tables.extensions.match(char)
        codes = {code for code, hit in match.groupdict().items() if hit} if match else set()
    else:
        codes = {script}
    codes -= _NEUTRAL
    if script in _NEUTRAL and codes:  # named by its best-known script (an accent: Latin)
        script = min(codes, key=lambda code: (_RANK.get(code, len(_RANK)), code))
    for code in list(codes):
        codes.update(_AUGMENT.get(code, ()))
    return frozenset(codes), script


def script_name(code: str) -> Text | str:
    """The name of the script ``code`` (ISO 15924) for people."""
    known = _SCRIPT_NAMES.get(code)
    if known is not None:
        return known
    return str(Locale("en").scripts.get(code, code))


class _ScriptTables:
    """The patterns that tell a character's scripts, compiled once on first use.

    ``script`` is one alternative per script (Script is a partition: the
    group that matched names it); ``extended`` matches the few characters
    whose Script_Extensions differ from their Script (mostly marks and
    punctuation shared by several scripts), for which ``extensions`` asks
    every script at once.
    """

    def __init__(self, codes: list[str]) -> None:
        self.script = regex.compile("|".join(rf"(?P<{c}>\p{{sc={c}}})" for c in codes))
        specific = [c for c in codes if c not in _NEUTRAL]
        self.extended = regex.compile(
            "[" + "".join(rf"[\p{{scx={c}}}--\p{{sc={c}}}]" for c in codes) + "]", regex.V1
        )
        self.extensions = regex.compile("".join(rf"(?=(?P<{c}>\p{{scx={c}}})|)" for c in specific))


@cache
def _script_tables() -> _ScriptTables:
    # The ISO 15924 codes CLDR names that are Unicode scripts (the regex module
    # knows them as property values): every script of the Unicode in use.
    codes = []
    for code in sorted(Locale("en").scripts):
        try:
            regex.compile(rf"\p{{sc={code}}}")
        except regex.error:
            continue
        codes.append(code)
    return _ScriptTables(codes)


def _code_point(char: str) -> str:
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'unnamed character')})"


def _describe(char: str) -> str:
    if char.isprintable() and not char.isspace() and unicodedata.category(char)[0] != "M":
        return repr(char)
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'control character')})"
