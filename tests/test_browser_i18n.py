"""The web page in Portuguese and in English, and its first-minute frictions, in real Chromium.

Same setup as ``tests/test_browser.py`` (a real server, Debian's ``/usr/bin/chromium``
driven by Playwright; in CI a missing Chromium fails). A browser context's
``locale`` is what ``navigator.languages`` says, as a person's browser would.
The catalog endpoint and ``index.html`` are also checked in-process (no browser).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from html.parser import HTMLParser
from importlib import resources
from typing import Any

from papo.i18n import LANGUAGES
from papo.web import WebFiles
from tests.helpers import JsonClient, ServerProcess
from tests.test_browser import log

# Without playwright the browser fixture says what is missing (and CI fails).
with contextlib.suppress(ImportError):
    from playwright.async_api import (
        Browser,
        BrowserContext,
        Page,
        ViewportSize,
        expect,
    )

PHONE: ViewportSize = {"width": 375, "height": 700}
CLOCK = re.compile(r"^\d{2}:\d{2}$")  # 01:55, no AM/PM


def catalog(lang: str) -> dict[str, Any]:
    asset = WebFiles().get(f"/i18n/{lang}.json")
    assert asset is not None
    data: dict[str, Any] = json.loads(asset.body)
    return data


def english_words_of_the_page() -> list[str]:
    """The page's own English texts without placeholders that read otherwise in Portuguese."""
    pt = catalog("pt-BR")["messages"]
    return [
        msgid
        for msgid, text in pt.items()
        if isinstance(text, str) and "{" not in msgid and text != msgid and len(msgid) > 2
    ]


async def shown_words(page: Page) -> str:
    """What a person sees or hears of the page: visible text, and names, hints and tooltips."""
    text: str = await page.evaluate(
        """() => [document.body.innerText,
                  ...[...document.querySelectorAll('[aria-label],[placeholder],[title]')]
                     .filter(el => el.closest('[hidden]') === null)
                     .flatMap(el => ['aria-label', 'placeholder', 'title']
                                    .map(a => el.getAttribute(a) || ''))].join('\\n')"""
    )
    return text


async def assert_no_english(page: Page) -> None:
    words = await shown_words(page)
    for english in english_words_of_the_page():
        assert not re.search(r"(?<!\w)" + re.escape(english) + r"(?!\w)", words), (english, words)


async def context_in(browser: Browser, locale: str, **options: Any) -> BrowserContext:
    return await browser.new_context(locale=locale, timezone_id="America/Sao_Paulo", **options)


async def join_in_portuguese(page: Page, server: ServerProcess, name: str) -> None:
    await page.goto(server.http + "/")
    await page.get_by_label("Nome").fill(name)
    await page.get_by_role("button", name="Entrar", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("conectado como " + name)
    await expect(page.get_by_label("Mensagem")).to_be_focused()


async def say(page: Page, label: str, text: str) -> None:
    box = page.get_by_label(label)
    await box.fill(text)
    await box.press("Enter")


def watch(page: Page) -> list[str]:
    """Console errors and failed requests of ``page``, as they happen."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    return problems


# ---------------------------------------------------------------- in-process


def test_the_page_catalog_holds_the_pages_texts_in_its_language() -> None:
    pt = catalog("pt-BR")
    assert pt["lang"] == "pt-BR"
    # gettext's (n > 1) is CLDR's one/other; a million is pt's "many", which reads as other
    assert pt["plural"] == {"one": 0, "other": 1, "many": 1}
    messages = pt["messages"]
    assert messages["Name"] == "Nome" and messages["Send"] == "Enviar"
    assert messages["{n} member"] == ["{n} membro", "{n} membros"]
    assert messages["today"] == "hoje"  # shared with the server's texts
    assert "there is no user named {name}" not in messages  # only what the page itself says
    en = catalog("en")
    assert en["messages"]["Name"] == "Name" and en["plural"] == {"one": 0, "other": 1}


def test_every_text_the_script_writes_is_in_its_catalog() -> None:
    """Each t("...")/tn("...") of app.js was extracted (a call nested in another's is not)."""
    script = (resources.files("papo") / "web" / "app.js").read_text()
    used = set(re.findall(r'\btn?\("((?:[^"\\]|\\.)*)"', script))
    assert len(used) > 50
    for lang in LANGUAGES:
        missing = used - catalog(lang)["messages"].keys()
        assert not missing, (lang, missing)


def test_index_html_has_no_words_of_its_own() -> None:
    class Words(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.words: list[str] = []
            self.skip = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag in ("option", "noscript"):  # languages' own names; a no-script note in both
                self.skip += 1
            for name, value in attrs:
                assert name not in ("aria-label", "placeholder", "title"), (tag, name, value)

        def handle_endtag(self, tag: str) -> None:
            if tag in ("option", "noscript"):
                self.skip -= 1

        def handle_data(self, data: str) -> None:
            if not self.skip and data.strip():
                self.words.append(data.strip())

    parser = Words()
    parser.feed((resources.files("papo") / "web" / "index.html").read_text())
    assert parser.words == ["papo", "papo"]  # the <title> and the <h1>: the program's name


def test_the_language_switch_offers_every_language() -> None:
    html = (resources.files("papo") / "web" / "index.html").read_text()
    assert set(re.findall(r"<option value=\"([^\"]+)\"", html)) == set(LANGUAGES)


# ---------------------------------------------------------------- in the browser


async def test_a_portuguese_browser_gets_the_page_and_the_server_in_portuguese(
    browser: Browser, server: ServerProcess
) -> None:
    context = await context_in(browser, "pt-BR")
    page = await context.new_page()
    problems = watch(page)
    await page.goto(server.http + "/")
    for label in ("Nome", "Senha"):
        await expect(page.get_by_label(label, exact=True)).to_be_visible()
    await expect(page.get_by_role("button", name="Entrar", exact=True)).to_be_visible()
    await expect(page.locator("html")).to_have_attribute("lang", "pt-BR")
    await expect(page.get_by_role("status")).to_have_text("")  # nothing to warn about yet
    await assert_no_english(page)

    beto = await JsonClient.open(server.url, "beto")
    await join_in_portuguese(page, server, "ana")
    await expect(page.get_by_role("button", name="Enviar", exact=True)).to_be_visible()
    await expect(page.get_by_role("navigation", name="Salas")).to_contain_text("#geral")
    await expect(page.get_by_label("Online", exact=True)).to_contain_text("beto")
    await beto.say("oi, ana")
    await expect(log(page)).to_contain_text("beto:oi, ana")
    time = await log(page).locator(".msg .time").last.text_content()
    assert time is not None and CLOCK.match(time), time
    await expect(log(page).locator(".day").first).to_have_text("hoje")

    await say(page, "Mensagem", "/msg ninguem olá")  # the server's error, in Portuguese
    await expect(log(page).locator(".notice.error")).to_have_text(
        "erro: não existe usuário chamado ninguem"
    )
    await say(page, "Mensagem", "/entrar #sala")  # a Portuguese command, and a count
    await expect(log(page)).to_contain_text("você entrou em #sala (1 membro)")
    await assert_no_english(page)
    assert problems == []


async def test_an_english_browser_gets_the_page_in_english(
    browser: Browser, server: ServerProcess
) -> None:
    context = await context_in(browser, "en-US")
    page = await context.new_page()
    await page.goto(server.http + "/")
    for label in ("Name", "Password"):
        await expect(page.get_by_label(label, exact=True)).to_be_visible()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.get_by_label("Name").fill("ana")
    await page.get_by_role("button", name="Join", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("connected as ana")
    await expect(page.get_by_label("Message", exact=True)).to_be_focused()
    await expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()
    await expect(page.get_by_role("navigation", name="Rooms")).to_contain_text("#geral")
    await expect(page.get_by_label("Online", exact=True)).to_contain_text("ana")
    await say(page, "Message", "/msg nobody hi")
    await expect(log(page).locator(".notice.error")).to_have_text(
        "error: there is no user named nobody"
    )
    await say(page, "Message", "hello")
    await expect(log(page).locator(".msg.own:not(.pending)")).to_contain_text("ana:hello")
    await expect(log(page).locator(".day").first).to_have_text("today")
    time = await log(page).locator(".msg .time").last.text_content()
    # 12-hour English writes 6:05 PM (no leading zero), as the terminal client does
    assert time is not None and re.match(r"^\d{1,2}:\d{2}\s?[AP]M$", time), time


async def test_the_language_switch_is_remembered_and_reaches_the_server(
    browser: Browser, server: ServerProcess
) -> None:
    context = await context_in(browser, "pt-BR")
    page = await context.new_page()
    await page.goto(server.http + "/")
    await expect(page.get_by_label("Nome", exact=True)).to_be_visible()
    await page.get_by_label("Idioma").select_option("en")
    await expect(page.get_by_label("Name", exact=True)).to_be_visible()  # at once, no reload
    await page.reload()
    await expect(page.get_by_label("Name", exact=True)).to_be_visible()  # remembered
    await expect(page.get_by_label("Language")).to_have_value("en")

    beto = await JsonClient.open(server.url, "beto")
    await page.get_by_label("Name").fill("ana")
    await page.get_by_role("button", name="Join", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("connected as ana")
    # the browser's Accept-Language says pt-BR; the page's ?lang=en is what the server follows
    await say(page, "Message", "/msg ninguem olá")
    errors = log(page).locator(".notice.error")
    await expect(errors.last).to_have_text("error: there is no user named ninguem")
    await beto.say("antes da troca")
    await expect(log(page)).to_contain_text("beto:antes da troca")
    await beto.quiet(0.5)  # ana's arrival, seen

    # switched while joined: the page at once, the server's words from the new connection on
    await page.get_by_label("Language").select_option("pt-BR")
    await expect(page.get_by_role("status")).to_have_text("conectado como ana")
    await expect(page.get_by_role("button", name="Enviar", exact=True)).to_be_visible()
    await expect(errors.first).to_have_text("erro: there is no user named ninguem")  # redrawn
    await say(page, "Mensagem", "/msg ninguem olá")
    await expect(errors.last).to_have_text("erro: não existe usuário chamado ninguem")
    await beto.say("depois da troca")
    await expect(log(page)).to_contain_text("beto:depois da troca")
    await expect(log(page).get_by_text("antes da troca")).to_have_count(1)  # nothing twice
    seen = await beto.quiet(1.0)  # past the presence grace (0.3 s): ana never left
    assert not [e for e in seen if e["type"] == "presence" and e.get("event") == "leave"], seen


async def test_the_reconnecting_status_is_translated(
    browser: Browser, server: ServerProcess
) -> None:
    page = await (await context_in(browser, "pt-BR")).new_page()
    await join_in_portuguese(page, server, "ana")
    await asyncio.to_thread(server.kill)
    await expect(page.get_by_role("status")).to_contain_text(re.compile(r"reconectando em \d+ s"))
    await asyncio.to_thread(server.restart)
    await expect(page.get_by_role("status")).to_have_text("conectado como ana", timeout=20_000)


async def test_no_console_errors_and_a_favicon(browser: Browser, server: ServerProcess) -> None:
    context = await context_in(browser, "en-US")
    page = await context.new_page()
    problems = watch(page)
    await page.goto(server.http + "/")
    await page.get_by_label("Name").fill("ana")
    await page.get_by_role("button", name="Join", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("connected as ana")
    await say(page, "Message", "olá")
    await expect(page.locator(".msg.own:not(.pending)")).to_have_count(1)
    icon = await page.locator('link[rel="icon"]').get_attribute("href")
    assert icon is not None
    for path in (icon, "/favicon.ico"):
        response = await context.request.get(server.http + path)
        assert response.status == 200 and response.headers["content-type"] == "image/svg+xml"
    assert problems == []


async def test_history_is_marked_off_and_names_read_as_the_server_spells_them(
    browser: Browser, server: ServerProcess
) -> None:
    beatriz = await JsonClient.open(server.url, "Beatriz")
    await beatriz.say("de antes")
    page = await (await context_in(browser, "en-US")).new_page()
    await page.goto(server.http + "/")
    await page.get_by_label("Name").fill("ana")
    await page.get_by_role("button", name="Join", exact=True).click()
    await expect(log(page)).to_contain_text("Beatriz:de antes")
    await beatriz.say("de agora")
    await expect(log(page)).to_contain_text("Beatriz:de agora")
    order = await log(page).evaluate(
        "el => [...el.children].map(c => c.className.split(' ')[0] + ':' + c.textContent)"
    )
    divider = order.index("divider:earlier messages above")
    before = [i for i, line in enumerate(order) if line.endswith("Beatriz:de antes")]
    after = [i for i, line in enumerate(order) if line.endswith("Beatriz:de agora")]
    assert before[0] < divider < after[0], order
    assert order[0] == "day:today", order

    await expect(page.get_by_label("Online")).to_contain_text("Beatriz")
    await say(page, "Message", "/msg beatriz psiu")  # typed in lower case
    private = log(page).locator(".msg.private")
    await expect(private.locator(".tag")).to_have_text("private to Beatriz")
    await expect(page.get_by_role("navigation", name="Rooms")).to_contain_text("Beatriz")
    assert (await beatriz.expect("message"))["text"] == "psiu"
    await beatriz.say("oi de volta", to="ana")
    answer = private.filter(has_text="oi de volta")
    await expect(answer.locator(".tag")).to_have_text("private")  # the sender is shown once
    await expect(answer.locator(".from")).to_have_text("Beatriz:")


async def test_phone_width_keeps_the_newest_message_above_the_input(
    browser: Browser, server: ServerProcess
) -> None:
    beto = await JsonClient.open(server.url, "beto")
    for i in range(40):
        await beto.say(f"linha {i}")
    context = await context_in(browser, "pt-BR", viewport=PHONE)
    page = await context.new_page()
    await page.goto(server.http + "/")
    await expect(page.get_by_label("Nome", exact=True)).to_be_focused()
    status = page.get_by_role("status")
    await expect(status).to_have_text("")  # no red "offline" before trying to join
    assert await status.evaluate("el => getComputedStyle(el, '::before').content") in ("none", "")
    await page.keyboard.type("ana")
    await page.keyboard.press("Enter")
    await expect(log(page)).to_contain_text("beto:linha 39")

    async def newest_is_above_the_input(text: str) -> None:
        newest = log(page).locator(".msg", has_text=text)
        await expect(newest).to_be_in_viewport()
        await page.wait_for_function(
            """text => {
                const msgs = [...document.querySelectorAll('#log .msg')];
                const last = msgs[msgs.length - 1].getBoundingClientRect();
                const box = document.getElementById('log').getBoundingClientRect();
                const input = document.getElementById('send').getBoundingClientRect();
                return msgs[msgs.length - 1].textContent.includes(text)
                    && last.bottom <= input.top + 1 && last.bottom <= box.bottom + 1
                    && last.top >= box.top;
            }""",
            arg=text,
        )

    await newest_is_above_the_input("linha 39")
    await page.set_viewport_size({"width": 375, "height": 480})  # a phone's keyboard opens
    await newest_is_above_the_input("linha 39")
    await beto.say("depois")
    await newest_is_above_the_input("depois")
    await page.set_viewport_size(PHONE)
    await newest_is_above_the_input("depois")
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
