"""The message catalogs: extract papo's texts, update the ``.po`` files, check them.

    python tools/catalogs.py          # extract, write papo/locale/papo.pot, update every .po
    python tools/catalogs.py --check  # exit 1 if a catalog is stale or incomplete (what CI runs)

Texts are found by Babel's extractors in ``papo/**.py`` (calls of
``papo.i18n.t`` and ``tn``) and in ``papo/web/**.js`` (the page's ``t`` and
``tn``). English is the source language: its catalog holds every id with the
English text, so that both languages are checked the same way. A new text
needs its Portuguese in ``papo/locale/pt_BR/LC_MESSAGES/papo.po`` before
``--check`` (and the test suite) pass.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from papo.i18n import DOMAIN, LANGUAGES, LOCALE_DIR, locale_id, po_path  # noqa: E402

KEYWORDS = {"t": None, "tn": (1, 2)}
METHODS = [("papo/**.py", "python"), ("papo/web/**.js", "javascript")]
TEMPLATE = LOCALE_DIR / f"{DOMAIN}.pot"
_PLACEHOLDER = re.compile(r"(?<!\{)\{([a-z_]+)\}(?!\})")


def extract() -> Catalog:
    """Every text of the source, with where it is used."""
    # A fixed date: the template changes only when the texts do.
    template = Catalog(
        domain=DOMAIN,
        project="papo",
        charset="utf-8",
        creation_date=datetime(2026, 12, 1, tzinfo=UTC),
    )
    found = extract_from_dir(
        str(ROOT),
        method_map=METHODS,
        keywords=KEYWORDS,
        comment_tags=("TRANSLATORS:",),
        strip_comment_tags=True,
    )
    for filename, lineno, message, comments, context in found:
        template.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return template


def placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def ids(message: Message) -> tuple[str, ...]:
    value = message.id
    return tuple(str(v) for v in value) if isinstance(value, (tuple, list)) else (str(value),)


def strings(message: Message) -> tuple[str, ...]:
    value = message.string
    if isinstance(value, (tuple, list)):
        return tuple(str(v or "") for v in value)
    return (str(value or ""),)


def load(lang: str) -> Catalog:
    with po_path(lang).open("rb") as source:
        return read_po(source, locale=locale_id(lang), domain=DOMAIN)


def problems(template: Catalog) -> Iterator[str]:
    """What is wrong with the catalogs against ``template`` (nothing: they are complete)."""
    wanted = {m.id: m for m in template if m.id}
    for lang in LANGUAGES:
        path = po_path(lang)
        if not path.exists():
            yield f"{lang}: {path} is missing"
            continue
        catalog = load(lang)
        have = {m.id: m for m in catalog if m.id}
        for msgid, message in wanted.items():
            got = have.get(msgid)
            where = ", ".join(f"{f}:{n}" for f, n in message.locations[:2])
            if got is None:
                yield f"{lang}: not in the catalog: {ids(message)[0]!r} ({where})"
                continue
            if got.fuzzy:
                yield f"{lang}: fuzzy: {ids(message)[0]!r}"
            translated = strings(got)
            if not all(translated):
                yield f"{lang}: not translated: {ids(message)[0]!r} ({where})"
                continue
            source = set().union(*(placeholders(s) for s in ids(message)))
            for string in translated:
                if placeholders(string) - source:
                    yield f"{lang}: {string!r} uses a placeholder {ids(message)[0]!r} lacks"
            if len(translated) == 1 and placeholders(translated[0]) != source:
                yield f"{lang}: {translated[0]!r} does not show what {ids(message)[0]!r} does"
        for msgid in have.keys() - wanted.keys():
            yield f"{lang}: no longer used: {msgid!r} (run tools/catalogs.py)"


def update(template: Catalog) -> None:
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    with TEMPLATE.open("wb") as out:
        write_po(out, template, width=100, include_lineno=False)
    for lang in LANGUAGES:
        path = po_path(lang)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            catalog = load(lang)
        else:
            catalog = Catalog(locale=locale_id(lang), domain=DOMAIN, project="papo")
        catalog.update(copy.deepcopy(template), no_fuzzy_matching=True)
        catalog.obsolete.clear()
        if lang == LANGUAGES[0]:  # the source language: its text is the id
            for message in catalog:
                if message.id:
                    message.string = message.id
        with path.open("wb") as out:
            write_po(out, catalog, width=100, include_previous=False, include_lineno=False)
        missing = sum(1 for m in catalog if m.id and not all(strings(m)))
        print(f"{path.relative_to(ROOT)}: {len(catalog)} texts, {missing} to translate")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 on a problem")
    args = parser.parse_args()
    template = extract()
    if args.check:
        found = list(problems(template))
        for problem in found:
            print(problem)
        print(f"{len(template)} texts, {len(found)} problems")
        return 1 if found else 0
    update(template)
    return 0


if __name__ == "__main__":
    sys.exit(main())
