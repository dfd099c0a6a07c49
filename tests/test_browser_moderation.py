"""Moderation and the message lifecycle in the web page, in real headless Chromium (Debian's).

Same setup as ``tests/test_browser.py``: a real server, Debian's ``/usr/bin/chromium``
driven by Playwright; in CI (``CI=true``) a missing Chromium fails, elsewhere it skips.
Each message has its own menu (Edit and Delete on one's own; Delete, Mute and Kick for
the room's operators), edits and deletions show in place in every page at once, and
whoever is kicked or muted reads why, by whom and until when.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime

from tests.conftest import StartServer
from tests.helpers import JsonClient, ServerProcess
from tests.test_browser import join, log, say
from tests.test_browser_i18n import context_in, join_in_portuguese
from tests.test_browser_i18n import say as say_in
from tests.test_browser_rooms import conversation, join_room, title

# Without playwright the browser fixture says what is missing (and CI fails).
with contextlib.suppress(ImportError):
    from playwright.async_api import (
        Browser,
        Locator,
        Page,
        WebSocketRoute,
        expect,
    )


def message(page: Page, text: str) -> Locator:
    """The line of the message that reads ``text``."""
    line: Locator = log(page).locator(".msg", has_text=text)
    return line


def actions(line: Locator) -> Locator:
    """A message's menu button (its name: "Actions: NAME, TIME", "Ações: ...")."""
    return line.locator("button.more")


async def choose(page: Page, line: Locator, item: str) -> None:
    """Open ``line``'s menu with the mouse and choose ``item``."""
    await actions(line).click()
    await page.get_by_role("menu").get_by_role("menuitem", name=item).click()


async def menu_items(page: Page, line: Locator) -> list[str]:
    await actions(line).click()
    menu = page.get_by_role("menu")
    await expect(menu).to_be_visible()
    names = await menu.get_by_role("menuitem").all_inner_texts()
    await page.keyboard.press("Escape")
    await expect(menu).to_have_count(0)
    return names


async def test_edit_and_delete_in_place_in_every_page(
    browser: Browser, server: ServerProcess
) -> None:
    ana = await join(browser, server, "ana")
    beto = await join(browser, server, "beto")
    ana_tab = await ana.context.new_page()  # ana's second tab: joins with the kept token
    await ana_tab.goto(server.http + "/")
    await expect(ana_tab.get_by_role("status")).to_contain_text("connected as ana")

    await say(ana, "primeira versão")
    await say(ana, "vou apagar isto")
    for page in (beto, ana_tab):
        await expect(log(page)).to_contain_text("ana:vou apagar isto")
    assert await menu_items(ana, message(ana, "primeira versão")) == ["Edit", "Delete"]
    await expect(actions(message(beto, "primeira versão"))).to_have_count(0)  # not beto's

    # edit in place: a field replaces the text, Enter saves
    await choose(ana, message(ana, "primeira versão"), "Edit")
    field = ana.get_by_role("textbox", name="New text")
    await expect(field).to_be_focused()
    await expect(field).to_have_value("primeira versão")
    await field.fill("segunda versão")
    await field.press("Enter")
    for page in (ana, beto, ana_tab):  # no reload: the server's `edited` reaches every page
        await expect(log(page)).to_contain_text("ana:segunda versão (edited)")
        await expect(log(page)).not_to_contain_text("primeira versão")

    await choose(ana, message(ana, "vou apagar isto"), "Delete")
    for page in (ana, beto, ana_tab):
        await expect(log(page)).not_to_contain_text("vou apagar isto")
        await expect(message(page, "message deleted")).to_have_count(1)

    # a fresh page reads the same from the server's recent messages (a tombstone)
    await beto.reload()
    await expect(beto.get_by_role("status")).to_contain_text("connected as beto")
    await expect(log(beto)).to_contain_text("ana:segunda versão (edited)")
    await expect(message(beto, "message deleted")).to_have_count(1)
    await expect(log(beto)).not_to_contain_text("vou apagar isto")
    await expect(log(beto)).not_to_contain_text("primeira versão")


async def test_an_operator_deletes_anothers_message_and_kicks_them(
    browser: Browser, server: ServerProcess
) -> None:
    ana = await join(browser, server, "ana")
    beto = await join(browser, server, "beto")
    await join_room(ana, "#sala")  # ana made the room: its operator
    await join_room(beto, "#sala")

    await say(ana, "regras da sala")
    await say(beto, "compre já!!!")
    await expect(log(ana)).to_contain_text("beto:compre já!!!")
    await expect(log(beto)).to_contain_text("ana:regras da sala")
    await expect(actions(message(beto, "regras da sala"))).to_have_count(0)  # beto: a member
    assert await menu_items(ana, message(ana, "compre já")) == ["Delete", "Mute beto", "Kick beto"]

    await choose(ana, message(ana, "compre já"), "Delete")
    for page in (ana, beto):
        await expect(log(page)).not_to_contain_text("compre já")
        await expect(message(page, "message deleted")).to_have_count(1)

    await say(beto, "mais spam")
    await choose(ana, message(ana, "mais spam"), "Kick beto")
    reason = ana.get_by_role("textbox", name="Reason (optional)")
    await expect(reason).to_be_focused()
    await reason.fill("chega de propaganda")
    await reason.press("Enter")

    # beto is out of #sala, and reads who removed him and why
    await expect(log(beto)).to_contain_text("ana removed you from #sala: chega de propaganda")
    await expect(conversation(beto, "#sala")).to_have_count(0)
    await expect(title(beto)).to_have_text("#geral")
    await expect(log(ana)).to_contain_text("beto left #sala")


async def test_a_muted_user_reads_until_when_in_portuguese(
    browser: Browser, server: ServerProcess
) -> None:
    ana = await (await context_in(browser, "pt-BR")).new_page()
    await join_in_portuguese(ana, server, "ana")
    beto = await (await context_in(browser, "pt-BR")).new_page()
    await join_in_portuguese(beto, server, "beto")
    await say_in(ana, "Mensagem", "/entrar #sala")
    await expect(title(ana)).to_have_text("#sala")
    await say_in(beto, "Mensagem", "/entrar #sala")
    await expect(title(beto)).to_have_text("#sala")

    await say_in(beto, "Mensagem", "oi, gente")
    await expect(log(ana)).to_contain_text("beto:oi, gente")
    await choose(beto, message(beto, "oi, gente"), "Editar")  # the menu in Portuguese
    await beto.get_by_role("textbox", name="Novo texto").fill("oi, pessoal")
    await beto.get_by_role("textbox", name="Novo texto").press("Enter")
    await expect(log(ana)).to_contain_text("beto:oi, pessoal (editada)")
    await choose(ana, message(ana, "oi, pessoal"), "Silenciar beto")
    how_long = ana.get_by_role("combobox", name="Silenciar por")
    await expect(how_long).to_be_focused()
    await expect(how_long.locator("option:checked")).to_have_text("10 minutos")
    await ana.get_by_role("textbox", name="Motivo (opcional)").fill("calma")
    await ana.get_by_role("button", name="Silenciar beto").click()
    asked = datetime.now(UTC)

    # the server's words: by whom, where, for how long, why
    told_why = re.compile(r"ana silenciou você em #sala por \d+m\S*: calma")
    await expect(log(beto)).to_contain_text(told_why)
    box = beto.get_by_label("Mensagem")
    await box.fill("posso falar?")
    await box.press("Enter")
    told = log(beto).locator(".notice", has_text="você está silenciado até")
    await expect(told).to_have_count(1)
    until = await told.locator("time").get_attribute("datetime")
    assert until is not None
    ends = datetime.fromisoformat(until.replace("Z", "+00:00"))
    assert 500 < (ends - asked).total_seconds() <= 601, (ends, asked)
    shown = await beto.evaluate(
        """(iso) => new Intl.DateTimeFormat("pt-BR", {dateStyle: "medium", timeStyle: "short"})
                      .format(new Date(iso))""",
        until,
    )
    await expect(told).to_have_text("você está silenciado até " + shown)
    await expect(box).to_have_value("posso falar?")  # not lost: it can be sent later
    await expect(log(ana)).not_to_contain_text("posso falar?")


async def test_the_message_menu_works_by_keyboard_only(
    browser: Browser, server: ServerProcess
) -> None:
    ana = await join(browser, server, "ana")
    beto = await join(browser, server, "beto")
    await say(ana, "pelo teclado")
    await expect(log(beto)).to_contain_text("ana:pelo teclado")
    line = message(ana, "pelo teclado")
    await expect(line).not_to_have_class(re.compile("pending"))
    button = actions(line)
    await expect(button).to_have_attribute("aria-haspopup", "menu")

    keys = ana.keyboard
    await keys.press("Shift+Tab")  # from the message field back to the newest message's menu
    await expect(button).to_be_focused()
    await expect(button).to_have_attribute("aria-expanded", "false")
    await keys.press("Enter")
    menu = ana.get_by_role("menu")
    edit = menu.get_by_role("menuitem", name="Edit")
    delete = menu.get_by_role("menuitem", name="Delete")
    await expect(edit).to_be_focused()
    await expect(button).to_have_attribute("aria-expanded", "true")
    await keys.press("ArrowDown")
    await expect(delete).to_be_focused()
    await keys.press("ArrowDown")  # round again
    await expect(edit).to_be_focused()
    await keys.press("End")
    await expect(delete).to_be_focused()
    await keys.press("Escape")
    await expect(menu).to_have_count(0)
    await expect(button).to_be_focused()

    # Space opens it too; Edit, then Escape cancels the edit and leaves the text as it was
    await keys.press(" ")
    await expect(edit).to_be_focused()
    await keys.press("Enter")
    field = ana.get_by_role("textbox", name="New text")
    await expect(field).to_be_focused()
    await keys.type(" e mais")
    await keys.press("Escape")
    await expect(field).to_have_count(0)
    await expect(line).to_contain_text("ana:pelo teclado")
    await expect(line).not_to_contain_text("e mais")
    await expect(button).to_be_focused()

    # ArrowDown opens the menu; Enter on Edit; the new text with Enter
    await keys.press("ArrowDown")
    await expect(edit).to_be_focused()
    await keys.press("Enter")
    await expect(field).to_be_focused()
    await keys.press("End")
    await keys.type(", editado")
    await keys.press("Enter")
    edited = message(ana, "pelo teclado, editado")
    await expect(edited).to_contain_text("(edited)")
    await expect(log(beto)).to_contain_text("ana:pelo teclado, editado (edited)")
    await expect(actions(edited)).to_be_focused()  # still there after the server's `edited`

    # ArrowUp opens it on its last item: Delete
    await keys.press("ArrowUp")
    await expect(delete).to_be_focused()
    await keys.press("Enter")
    await expect(message(beto, "message deleted")).to_have_count(1)
    await expect(message(ana, "message deleted")).to_have_count(1)
    await expect(ana.get_by_label("Message")).to_be_focused()


async def test_a_page_that_was_away_gets_the_edit_and_the_deletion_on_resume(
    browser: Browser, server: ServerProcess
) -> None:
    """While ana's page is cut off, beto edits one message and deletes another; the page's
    resume brings both, in place, and never the deleted text."""
    held = False
    sockets: list[WebSocketRoute] = []

    async def route(ws: WebSocketRoute) -> None:
        if held:  # the network is "down": refused, the page tries again later
            await ws.close(code=1011)
            return
        ws.connect_to_server()
        sockets.append(ws)

    context = await browser.new_context(locale="en-US")
    ana = await context.new_page()
    await ana.route_web_socket(re.compile(r"/ws"), route)
    await ana.goto(server.http + "/")
    await ana.get_by_label("Name").fill("ana")
    await ana.get_by_role("button", name="Join").click()
    await expect(ana.get_by_role("status")).to_contain_text("connected as ana")

    beto = await JsonClient.open(server.url, "beto")
    changed = (await beto.say("vai mudar"))["id"]
    gone = (await beto.say("vai sumir"))["id"]
    await expect(log(ana)).to_contain_text("beto:vai sumir")

    held = True
    await sockets[-1].close(code=1011)
    await expect(ana.get_by_role("status")).to_contain_text("reconnecting in")
    await beto.send({"type": "edit", "id": changed, "text": "mudou"})
    assert (await beto.expect("edited", "error"))["type"] == "edited"
    await beto.send({"type": "delete", "id": gone})
    assert (await beto.expect("deleted", "error"))["type"] == "deleted"
    held = False

    await expect(ana.get_by_role("status")).to_contain_text("connected as ana", timeout=20_000)
    await expect(log(ana)).to_contain_text("beto:mudou (edited)")
    await expect(message(ana, "message deleted")).to_have_count(1)
    await expect(log(ana)).not_to_contain_text("vai sumir")
    await expect(log(ana)).not_to_contain_text("vai mudar")


async def test_a_banned_user_reads_why_and_until_when(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server("--rate-limit", "0", "--admin", "ana")
    ana = await JsonClient.open(server.url, "ana", password="segredo-da-ana")  # a protected admin
    beto = await join(browser, server, "beto")

    await ana.send({"type": "ban", "name": "beto", "seconds": 3600, "reason": "propaganda"})
    await expect(log(beto)).to_contain_text("beto is banned for 1h: propaganda")
    told = log(beto).locator(".notice", has_text="you are banned until")
    await expect(told).to_have_count(1)
    until = await told.locator("time").get_attribute("datetime")
    assert until is not None
    shown = await beto.evaluate(
        """(iso) => new Intl.DateTimeFormat("en", {dateStyle: "medium", timeStyle: "short"})
                      .format(new Date(iso))""",
        until,
    )
    await expect(told).to_have_text("you are banned until " + shown)
    await expect(log(beto)).to_contain_text("Disconnected:")  # closed with 1008: no retrying
    await expect(beto.get_by_role("status")).to_have_text("offline")

    # joining again is refused, next to the form, with the end of the ban
    await beto.reload()
    await expect(beto.locator("#join-error")).to_contain_text("propaganda")
    await expect(beto.locator("#join-error")).to_contain_text("(until " + shown + ")")
