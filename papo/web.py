"""The browser client's files, served by the chat server itself (no CDN, no build step).

The files are read once at start-up from ``papo/web/``. Each has a strong
ETag; browsers revalidate (``no-cache``) and get 304 when nothing changed.
Every page is served with a Content-Security-Policy that allows scripts,
styles and connections from papo's own origin only, and no inline script.

Languages. The page's texts are English message ids in ``papo/web/app.js``,
written ``t("Name")`` and ``tn("{n} member", "{n} members", n)``, extracted
into the same gettext catalogs as the server's (``tools/catalogs.py``). The
page gets its language's translations as JSON, ``GET /i18n/pt-BR.json``,
built here from the ``.po`` file: the messages used in ``papo/web/`` only,
``{msgid: msgstr}`` (a list of forms for a count), the language tag, and which
gettext form each of the language's CLDR plural categories is, so that the
page can pick a form with ``Intl.PluralRules``. It is fetched like any other
asset (same origin, no inline script), so the CSP stays as strict as it is.

``index.html`` is one file for every language, and holds no words of its own:
the page's script writes every label, placeholder and status from the
catalog. That was chosen over serving ``index.html`` once per language
because the language is the browser's to choose (``navigator.languages``,
then the switch on the page, remembered in ``localStorage``), and a switch
then re-renders the page at once, without a reload that would drop the
connection and what is being typed; one text source (the script's ``t``
calls) is also one place for the extractor to look. The only words in the
HTML are the language switch's options, each language's own name (an
autonym: "English" reads "English" on a Portuguese page too, as it should).
"""

from __future__ import annotations

import gettext
import hashlib
import json
import logging
from dataclasses import dataclass
from importlib import resources

from babel.core import Locale
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from papo.i18n import DOMAIN, LANGUAGES, locale_id, po_path

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
}

#: URL path → file in papo/web/
ROUTES = {
    "/": "index.html",
    "/index.html": "index.html",
    "/static/app.js": "app.js",
    "/static/style.css": "style.css",
    "/static/favicon.svg": "favicon.svg",
    # Browsers that ignore <link rel="icon"> still ask for this: the same icon, not a 404.
    "/favicon.ico": "favicon.svg",
}

#: Where the page's texts are used, as the catalogs' locations spell it.
WEB_SOURCES = "papo/web/"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("Cache-Control", "no-cache"),
            ("ETag", self.etag),
            ("Content-Security-Policy", CSP),
            ("Referrer-Policy", "no-referrer"),
        ]


def asset(body: bytes, content_type: str) -> Asset:
    """An asset with its strong ETag (a hash of the body)."""
    return Asset(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


class WebFiles:
    """The page's files and its catalogs in memory, looked up by URL path."""

    def __init__(self) -> None:
        folder = resources.files("papo") / "web"
        self._assets: dict[str, Asset] = {}
        for path, name in ROUTES.items():
            body = (folder / name).read_bytes()
            self._assets[path] = asset(body, TYPES[name[name.rindex(".") :]])
        for lang in LANGUAGES:
            self._assets[f"/i18n/{lang}.json"] = asset(page_catalog(lang), TYPES[".json"])

    def get(self, path: str) -> Asset | None:
        return self._assets.get(path)


def page_catalog(lang: str) -> bytes:
    """The JSON the page reads its texts from: the ``papo/web/`` messages of ``lang``'s catalog.

    ``{"lang": "pt-BR", "plural": {"one": 0, "other": 1}, "messages": {msgid: msgstr}}``;
    a count's msgstr is the list of its forms, keyed by its singular msgid. An
    untranslated or fuzzy message is left out: the page then shows the English.
    """
    with po_path(lang).open("rb") as source:
        catalog = read_po(source, locale=locale_id(lang), domain=DOMAIN)
    messages: dict[str, str | list[str]] = {}
    for message in catalog:
        if not message.id or message.fuzzy:
            continue
        if not any(str(file).startswith(WEB_SOURCES) for file, _line in message.locations):
            continue
        if isinstance(message.id, (list, tuple)):
            forms = [str(form or "") for form in message.string or ()]
            if all(forms):
                messages[str(message.id[0])] = forms
        elif message.string:
            messages[str(message.id)] = str(message.string)
    body = {"lang": lang, "plural": plural_categories(catalog, lang), "messages": messages}
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def plural_categories(catalog: Catalog, lang: str) -> dict[str, int]:
    """Which gettext form (index in msgstr[]) each CLDR plural category of ``lang`` is.

    The catalog orders a count's forms by its ``Plural-Forms`` expression; the
    browser's ``Intl.PluralRules`` names CLDR categories (``one``, ``other``,
    ...). Both are evaluated on the same counts to pair them up.
    """
    form_of = gettext.c2py(catalog.plural_expr)
    category_of = Locale.parse(locale_id(lang)).plural_form
    pairs: dict[str, int] = {}
    # Beyond 0-999, CLDR has categories for large round numbers (pt: 1 000 000 is
    # "many"): sample those too, so that no category the browser names lacks a form.
    for n in [*range(1000), 10**6, 2 * 10**6, 10**9]:
        category, form = str(category_of(n)), form_of(n)
        if pairs.setdefault(category, form) != form:
            log.warning("catalog %s: plural category %s is two gettext forms", lang, category)
    return pairs
