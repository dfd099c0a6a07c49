"""Languages: text for people that waits for its reader's language, and the catalogs.

Everything papo says to people is written in the code as a :class:`Text`,
made with :func:`t` (or :func:`tn` for counts): an English message id and the
values that fill its ``{placeholders}``, in no language yet. The edge that
knows the reader (a connection on the server, the terminal on the client)
renders it with :func:`render`, through the standard gettext catalogs in
``papo/locale`` (``.po`` files, extracted and checked with Babel; see
``tools/catalogs.py``). So the core never needs to know who reads, an error
code never changes with the language, and one event is encoded once per
language, not once per reader.

Languages are BCP 47 tags (``en``, ``pt-BR``); :func:`match_language`
turns whatever a person or a browser sends (``pt_BR.UTF-8``, ``pt``,
``PT-br``, ``en-US``) into one of :data:`LANGUAGES`, and
:func:`accept_language` reads an HTTP ``Accept-Language`` header.
"""

from __future__ import annotations

import gettext
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path

from babel.core import Locale
from babel.dates import format_date, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

log = logging.getLogger(__name__)

#: The languages papo speaks; the first is the source language of the catalogs.
LANGUAGES = ("en", "pt-BR")
DEFAULT_LANGUAGE = "en"
DOMAIN = "papo"
LOCALE_DIR = Path(__file__).with_name("locale")


@dataclass(frozen=True, slots=True)
class Text:
    """A message for people in no language yet: a catalog id and the values it shows.

    ``plural`` and ``n`` make it a count (``{n} member`` / ``{n} members``).
    Values may be :class:`Text` themselves; they render in the same language.
    ``str()`` gives the English (for logs and for tests that read it).
    """

    msgid: str
    args: tuple[tuple[str, object], ...] = ()
    plural: str | None = None
    n: int = 0

    def __str__(self) -> str:
        return render(self, DEFAULT_LANGUAGE)


#: What events and errors carry for people: a Text on the server, a str once rendered.
Says = Text | str


def t(msgid: str, /, **values: object) -> Text:
    """A message for people: ``t("{name} joined", name=name)``; rendered later, per reader."""
    return Text(msgid, tuple(values.items()))


def tn(singular: str, plural: str, n: int, /, **values: object) -> Text:
    """A count: ``tn("{n} member", "{n} members", count)``; ``{n}`` is the count."""
    return Text(singular, (("n", n), *values.items()), plural, n)


def render(text: Says, lang: str) -> str:
    """``text`` in the language ``lang`` (one of :data:`LANGUAGES`; others read English)."""
    if isinstance(text, str):
        return text
    catalog = translations(lang)
    if text.plural is None:
        template = catalog.gettext(text.msgid)
    else:
        template = catalog.ngettext(text.msgid, text.plural, text.n)
    if not text.args:
        return template
    values = {key: render(v, lang) if isinstance(v, Text) else v for key, v in text.args}
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        # A translation that names a placeholder the code does not give: say the
        # English rather than fail (the catalog test keeps this from happening).
        log.error("catalog %s: bad placeholders in %r", lang, template)
        english = text.msgid if text.plural is None or text.n == 1 else text.plural
        return english.format(**values)


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The gettext catalog of ``lang``, compiled in memory from its ``.po`` file once."""
    if lang == DEFAULT_LANGUAGE or lang not in LANGUAGES:
        return gettext.NullTranslations()
    path = po_path(lang)
    with path.open("rb") as source:
        catalog = read_po(source, locale=locale_id(lang), domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def po_path(lang: str) -> Path:
    """The catalog file of ``lang``: ``papo/locale/pt_BR/LC_MESSAGES/papo.po``."""
    return LOCALE_DIR / locale_id(lang) / "LC_MESSAGES" / f"{DOMAIN}.po"


def locale_id(lang: str) -> str:
    """The gettext/Babel name of a language tag (``pt-BR`` → ``pt_BR``)."""
    return lang.replace("-", "_")


def match_language(tag: str | None) -> str | None:
    """The language of :data:`LANGUAGES` that ``tag`` asks for, or None.

    Accepts BCP 47 tags and POSIX locale names alike, in any case:
    ``pt-BR``, ``pt_BR.UTF-8``, ``pt`` and ``pt-PT`` are Portuguese (papo has one
    Portuguese); ``en``, ``en-US``, ``C`` and ``POSIX`` are English.
    """
    if not tag:
        return None
    base = tag.strip().split(".", 1)[0].split("@", 1)[0].replace("_", "-").lower()
    if base in ("c", "posix"):
        return "en"
    primary = base.split("-", 1)[0]
    for lang in LANGUAGES:
        if lang.lower() == base or lang.lower().split("-", 1)[0] == primary:
            return lang
    return None


def accept_language(header: str | None) -> list[str]:
    """The language tags of an ``Accept-Language`` header, most wanted first (q=0 dropped)."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _sep, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        q = 1.0
        for param in params.split(";"):
            key, _eq, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            weighted.append((-q, index, tag))
    return [tag for _q, _i, tag in sorted(weighted)]


def choose_language(wanted: Iterable[str | None], default: str = DEFAULT_LANGUAGE) -> str:
    """The first of ``wanted`` that papo speaks, else ``default``."""
    for tag in wanted:
        lang = match_language(tag)
        if lang is not None:
            return lang
    return default


def clock_time(moment: datetime, lang: str) -> str:
    """A message's time as people of ``lang`` write it: ``01:55`` (pt-BR), ``1:55 AM`` (en)."""
    return format_time(moment, "short", locale=locale_id(lang))


def day_label(day: date, today: date, lang: str) -> str:
    """A day separator's words: today, yesterday (in ``lang``), else the date in full."""
    if day == today:
        return render(t("today"), lang)
    if (today - day).days == 1:
        return render(t("yesterday"), lang)
    return format_date(day, "long", locale=locale_id(lang))


def language_name(lang: str) -> str:
    """The language's own name, for a language switch (``português (Brasil)``)."""
    return str(Locale.parse(locale_id(lang)).get_display_name(locale_id(lang)))
