"""Languages: the catalogs are complete, texts render per reader, negotiation picks right.

In-process and pure: no sockets. The catalog check is the one CI relies on to
keep English out of pt-BR: every text the code (and the page) can show has a
translation in both catalogs, with the same placeholders.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from papo.events import Error, Message, Notice, Presence
from papo.i18n import (
    LANGUAGES,
    accept_language,
    choose_language,
    match_language,
    render,
    t,
    tn,
)
from papo.outgoing import Outgoing
from tools import catalogs


def test_every_text_is_translated_in_both_languages() -> None:
    template = catalogs.extract()
    assert len(template) > 50  # the extraction found the code's texts
    problems = list(catalogs.problems(template))
    assert problems == [], "\n".join(problems) + "\n(run tools/catalogs.py, then translate)"


def test_texts_render_in_each_language() -> None:
    text = t("there is no user named {name}", name="joão")
    assert render(text, "en") == "there is no user named joão"
    assert render(text, "pt-BR") == "não existe usuário chamado joão"
    assert str(text) == "there is no user named joão"
    assert render("as is", "pt-BR") == "as is"


def test_counts_follow_each_language_plural_rule() -> None:
    def members(n: int, lang: str) -> str:
        return render(tn("{n} member", "{n} members", n), lang)

    assert [members(n, "en") for n in (0, 1, 2)] == ["0 members", "1 member", "2 members"]
    # Portuguese counts 0 and 1 as singular ("0 membro" is how gettext's pt_BR rule reads).
    assert [members(n, "pt-BR") for n in (1, 2)] == ["1 membro", "2 membros"]


def test_nested_texts_render_in_the_same_language() -> None:
    text = t("usage: {usage}", usage=t("{command} #ROOM", command="/entrar"))
    assert render(text, "pt-BR") == "uso: /entrar #SALA"
    assert render(text, "en") == "usage: /entrar #ROOM"


def test_language_tags_people_and_browsers_send() -> None:
    for tag in ("pt-BR", "pt_BR.UTF-8", "pt", "PT-br", "pt-PT", "pt_BR@euro"):
        assert match_language(tag) == "pt-BR", tag
    for tag in ("en", "en-US", "en_GB.UTF-8", "C", "C.UTF-8", "POSIX"):
        assert match_language(tag) == "en", tag
    for other in ("", None, "fr-FR", "de", "zz"):
        assert match_language(other) is None, other


def test_accept_language_orders_by_weight() -> None:
    header = "fr;q=0.9, pt-BR;q=0.8, en;q=0.7, de"
    assert accept_language(header) == ["de", "fr", "pt-BR", "en"]
    assert choose_language(accept_language(header)) == "pt-BR"
    assert accept_language("en;q=0, pt") == ["pt"]
    assert accept_language("*") == []
    assert choose_language([None, "xx"], "pt-BR") == "pt-BR"


@given(st.text(max_size=200))
def test_any_accept_language_header_is_read_without_error(header: str) -> None:
    tags = accept_language(header)
    assert all(tag and "," not in tag for tag in tags)
    assert choose_language(tags) in LANGUAGES


def test_a_chat_message_is_encoded_once_whatever_the_readers_languages() -> None:
    out = Outgoing(Message(1, "ana", "oi", "t"))
    assert out.frame("json", "en") is out.frame("json", "pt-BR")
    assert out.frame("plain", "en") is out.frame("plain", "pt-BR")


def test_notices_errors_and_plain_lines_are_encoded_once_per_language() -> None:
    error = Outgoing(Error("unknown_user", t("there is no user named {name}", name="x")))
    assert b"no user named" in (error.payload("json", "en") or b"")
    pt = error.payload("json", "pt-BR") or b""
    assert "não existe usuário".encode() in pt
    assert b'"code":"unknown_user"' in pt  # the code never changes
    assert error.frame("json", "pt-BR") is error.frame("json", "pt-BR")
    joined = Outgoing(Presence("join", "ana"))
    assert joined.payload("plain", "pt-BR") == b"* ana entrou"
    assert joined.payload("plain", "en") == b"* ana joined"
    assert joined.frame("json", "en") is joined.frame("json", "pt-BR")  # JSON carries no words
    private = Outgoing(Message(2, "ana", "oi", "t", to="beto"))
    assert private.payload("plain", "pt-BR") == "ana → beto (privado): oi".encode()
    assert Outgoing(Notice(t("today"))).payload("plain", "pt-BR") == b"* hoje"
