"""Names as people type them: one user however it is typed, one script per name.

Properties (hypothesis) of :mod:`papo.names`: accents, case and compatibility
forms map to one key, the key is idempotent (and maps a key of the rule
before to today's), equal keys are one user; a Cyrillic or Greek look-alike
in a Latin name is refused, a name of one script is accepted, invisible
characters are refused. Then concrete cases, and the hub routing a private
message typed without accents to the user who joined with them.
"""

from __future__ import annotations

import asyncio
import unicodedata
from functools import cache

import pytest
import regex
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from papo.accounts import Accounts, Tokens
from papo.commands import parse_line
from papo.i18n import render
from papo.limits import AttemptLimiter
from papo.names import (
    MAX_NAME_LENGTH,
    InvalidNameError,
    clean_name,
    clean_room,
    legacy_key,
    name_key,
    room_key,
)
from papo.protocol import Hello, Join, ProtocolError, Say
from papo.protocol_parse import check_name, check_room
from papo.store_memory import MemoryStore
from tests.fakes import FakeLink, connect, link, make_hub

ACCENTS = [chr(c) for c in (0x300, 0x301, 0x302, 0x303, 0x308, 0x30A, 0x30C, 0x327, 0x328)]
#: Cyrillic and Greek letters that look like Latin ones.
LOOK_ALIKES = "аеорсухіјѕԁһӏԛԝοαντικρѵ"


def variants(base: str) -> st.SearchStrategy[str]:
    """Ways people may type the ASCII name ``base``: any case, accents, fullwidth, NFC or NFD."""

    def letter(char: str) -> st.SearchStrategy[str]:
        return st.builds(
            lambda upper, wide, marks: _typed(char, upper, wide, marks),
            st.booleans(),
            st.booleans(),
            st.lists(st.sampled_from(ACCENTS), max_size=2),
        )

    parts = st.tuples(*(letter(c) for c in base))
    form = st.sampled_from(["NFC", "NFD", "NFKC", "NFKD"])
    return st.builds(lambda ps, f: unicodedata.normalize(f, "".join(ps)), parts, form)


def _typed(char: str, upper: bool, wide: bool, marks: list[str]) -> str:
    if not char.isalpha():
        return char
    out = char.upper() if upper else char
    if wide:
        out = chr(ord(out) - 0x21 + 0xFF01)  # the fullwidth form
    return out + "".join(marks)


bases = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=10)


@settings(deadline=None)
@given(st.data())
def test_accents_case_and_compatibility_forms_are_one_key(data: st.DataObject) -> None:
    base = data.draw(bases)
    typed = data.draw(variants(base))
    assert clean_name(typed)  # a valid name, however typed
    assert name_key(typed) == name_key(base) == base


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=12))
def test_key_is_idempotent_and_maps_keys_of_the_rule_before(text: str) -> None:
    key = name_key(text)
    assert name_key(key) == key
    assert name_key(legacy_key(text)) == key


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_equal_keys_are_one_user_displayed_as_first_chosen(data: st.DataObject) -> None:
    base = data.draw(bases)
    first, second = data.draw(variants(base)), data.draw(variants(base))

    async def join_both() -> tuple[str, str, str, str]:
        store = MemoryStore()
        accounts = Accounts(store, Tokens(b"k" * 32, 60), AttemptLimiter(5, 60))
        a = await accounts.authenticate(clean_name(first), password=None, token=None, address="x")
        b = await accounts.authenticate(clean_name(second), password=None, token=None, address="x")
        return a.key, b.key, a.name, b.name

    key_a, key_b, name_a, name_b = asyncio.run(join_both())
    assert key_a == key_b
    assert name_a == name_b == clean_name(first)


@settings(deadline=None)
@given(bases.filter(lambda s: len(s) >= 2), st.data())
def test_a_look_alike_in_a_latin_name_is_refused(base: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(base) - 1))
    fake = data.draw(st.sampled_from(LOOK_ALIKES))
    name = base[:at] + fake + base[at + 1 :]
    with pytest.raises(ProtocolError) as refused:
        check_name(name)
    assert refused.value.code == "bad_name"
    message = str(refused.value.message)
    assert "Latin" in message
    assert ("Cyrillic" if regex.match(r"\p{sc=Cyrillic}", fake) else "Greek") in message


SCRIPTS = [
    "Latin", "Greek", "Cyrillic", "Armenian", "Georgian", "Hebrew", "Arabic", "Devanagari",
    "Bengali", "Tamil", "Thai", "Ethiopic", "Hangul", "Han", "Hiragana", "Katakana",
    "Canadian_Aboriginal", "Tifinagh",
]  # fmt: skip


@cache
def letters_of(script: str) -> list[str]:
    """The letters Python's Unicode and the regex module's both place in ``script``."""
    pattern = regex.compile(
        rf"[[\p{{sc={script}}}&&\p{{L}}]--\p{{Default_Ignorable_Code_Point}}]", regex.V1
    )
    every = "".join(chr(c) for c in range(0x20, 0x32000) if not 0xD800 <= c < 0xE000)
    return [c for c in pattern.findall(every) if unicodedata.category(c).startswith("L")]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_name_of_one_script_is_accepted(data: st.DataObject) -> None:
    script = data.draw(st.sampled_from(SCRIPTS))
    pool = letters_of(script)
    neutral = st.sampled_from("0123456789_-.")
    chars = data.draw(st.lists(st.sampled_from(pool) | neutral, min_size=1, max_size=32))
    name = unicodedata.normalize("NFC", "".join(chars))
    if len(name) == 0 or not any(c in pool for c in name):
        name = pool[0] + name[:31]
    # Some letters grow under NFC (Hebrew presentation forms such as U+FB2A are two
    # code points composed): a name of more than 32 is not the case this property is about.
    assume(len(name) <= MAX_NAME_LENGTH)
    assert clean_name(name) == name


#: Every default-ignorable code point: zero-width, bidi controls, fillers, variation selectors, tags.
INVISIBLE = regex.findall(
    r"\p{Default_Ignorable_Code_Point}",
    "".join(chr(c) for c in range(0xE1000) if not 0xD800 <= c < 0xE000),
)


@settings(deadline=None)
@given(bases, st.sampled_from(INVISIBLE), st.data())
def test_invisible_and_bidi_characters_are_refused(
    base: str, hidden: str, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(base)))
    with pytest.raises(ProtocolError) as refused:
        check_name(base[:at] + hidden + base[at:])
    assert refused.value.code == "bad_name"


# ------------------------------------------------------------------ concrete cases


def test_joao_typed_four_ways_is_one_name() -> None:
    typed = ["joao", "João", "JOAO", "joão", unicodedata.normalize("NFD", "João"), "ｊｏãｏ"]
    assert {name_key(clean_name(n)) for n in typed} == {"joao"}
    assert clean_name(unicodedata.normalize("NFD", "João")) == "João"  # displayed as NFC


def test_rooms_fold_the_same_way() -> None:
    assert room_key(check_room("#acao")) == room_key(check_room("#ação")) == "#acao"
    assert room_key(clean_room("AÇÃO")) == "#acao"


@pytest.mark.parametrize(
    "name",
    [
        "山田たろう",
        "やまだ",
        "ヤマダ",
        "ラーメン",
        "김철수",
        "金철수",
        "李ㄅㄆ",
        "Ελένη",
        "Дмитрий",
        "कमला",
        "joao_99",
    ],
)
def test_names_of_one_writing_system_are_accepted(name: str) -> None:
    assert clean_name(name) == name


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("कम", "किम"),  # a vowel sign
        ("कम", "क्म"),  # the virama
        ("जल", "ज़ल"),  # the nukta
        ("सीता", "सिता"),  # long and short i
        ("か", "が"),  # the dakuten
        ("ハナ", "パナ"),  # the handakuten
        ("ø", "o"),  # a letter of its own, not an accent
    ],
)
def test_marks_that_make_letters_keep_names_apart(a: str, b: str) -> None:
    assert clean_name(a) and clean_name(b)
    assert name_key(a) != name_key(b)


@pytest.mark.parametrize(
    ("name", "scripts"),
    [
        ("jоao", ("Latin", "Cyrillic")),  # a Cyrillic o
        ("pαypal", ("Latin", "Greek")),
        ("taro山田", ("Latin", "Han")),
        ("たㅎ", ("Hiragana", "Hangul")),
        ("\U0001d423оао", ("Latin", "Cyrillic")),  # a mathematical bold j, then Cyrillic
    ],
)
def test_mixed_scripts_are_refused_naming_them(name: str, scripts: tuple[str, str]) -> None:
    with pytest.raises(ProtocolError) as refused:
        check_name(name)
    assert refused.value.code == "bad_name"
    english = str(refused.value.message)
    assert f"{scripts[0]} and {scripts[1]}" in english, english


def test_the_reason_reads_in_portuguese() -> None:
    with pytest.raises(ProtocolError) as refused:
        check_name("jоao")
    assert render(refused.value.message, "pt-BR") == (
        "nome inválido: mistura letras de escritas diferentes (latina e cirílica: "
        "'о' é da escrita cirílica); use letras de uma só escrita"
    )


@pytest.mark.parametrize(
    "hidden",
    ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e", "\u2066", "\u061c",
     "\u3164", "\u115f", "\u034f", "\ufe0f", "\U000e0041"],
)  # fmt: skip
def test_invisible_characters_are_named_when_refused(hidden: str) -> None:
    with pytest.raises(InvalidNameError) as refused:
        clean_name("ana" + hidden + "b")
    assert "invisible" in str(refused.value)
    assert f"U+{ord(hidden):04X}" in str(refused.value)


def test_any_string_has_a_key() -> None:
    for text in ("", "\x00", "a|b", "~x", "\ud800", "#", "guest-1", "\U0010ffff" * 40):
        assert name_key(name_key(text)) == name_key(text)


# ------------------------------------------------------------------ the hub


async def test_a_private_message_typed_without_accents_reaches_joao() -> None:
    hub = await make_hub()
    joao = await connect(hub, "joão")
    maria = await connect(hub, "maria", mode="plain")
    link(joao).take()
    command = parse_line("/msg joao oi")
    assert isinstance(command, Say)
    await hub.handle(maria, command)
    await hub.handle(maria, Say("tudo bem?", to="JOAO"))
    await hub.settle()
    got = [(e["from"], e["to"], e["text"]) for e in link(joao).of("message")]
    assert got == [("maria", "joão", "oi"), ("maria", "joão", "tudo bem?")]
    assert not [line for line in link(maria).take() if "no user" in line]


async def test_joining_as_joao_is_joining_as_joao_with_accents_and_rooms_too() -> None:
    hub = await make_hub()
    first = await connect(hub, "João", password="s3gredo")
    other = hub.attach(FakeLink())
    await hub.handle(other, Hello("joao"))
    assert [e["code"] for e in link(other).of("error")] == ["auth_required"]
    await hub.handle(other, Hello("JOAO", password="s3gredo"))
    await hub.settle()
    assert [w["name"] for w in link(other).of("welcome")] == ["João"]
    await hub.handle(first, Join("#ação"))
    beto = await connect(hub, "beto")
    await hub.handle(beto, Join("#ACAO"))
    await hub.settle()
    clear = [link(s).take() for s in (first, other, beto)]
    assert clear
    await hub.handle(beto, Say("oi, sala", room="#acao"))
    await hub.settle()
    got = [(e["from"], e["room"], e["text"]) for e in link(first).of("message")]
    assert got == [("beto", "#ação", "oi, sala")]


async def test_the_ack_of_a_private_message_spells_the_name_as_the_server_does() -> None:
    hub = await make_hub()
    await connect(hub, "João")
    maria = await connect(hub, "maria")
    await hub.handle(maria, Say("oi", to="joao", cid="1"))
    assert link(maria).of("ack") == [{"type": "ack", "id": 1, "cid": "1", "to": "João"}]
    await hub.handle(maria, Say("todos", cid="2"))
    assert link(maria).of("ack") == [{"type": "ack", "id": 2, "cid": "2"}]  # rooms: no `to`
