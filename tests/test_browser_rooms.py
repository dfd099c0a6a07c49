"""Rooms and conversations in the web page, in real headless Chromium (Debian's).

Same setup as ``tests/test_browser.py``: a real server, Debian's ``/usr/bin/chromium``
driven by Playwright; in CI (``CI=true``) a missing Chromium fails, elsewhere it skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from tests.helpers import JsonClient, ServerProcess
from tests.test_browser import join, log, say

# Without playwright the browser fixture says what is missing (and CI fails).
with contextlib.suppress(ImportError):
    from playwright.async_api import Browser, Locator, Page, expect


def rooms(page: Page) -> Locator:
    return page.get_by_role("navigation", name="Rooms")


def conversation(page: Page, name: str) -> Locator:
    """The button of a room or direct conversation in the room list."""
    return rooms(page).get_by_role("button", name=name)


def badge(page: Page, name: str) -> Locator:
    return conversation(page, name).locator(".badge")


def title(page: Page) -> Locator:
    return page.locator("#conv-title")


async def join_room(page: Page, room: str) -> None:
    """Join ``room`` with the page's "Join room" button; the room becomes the current one."""
    await page.get_by_role("button", name="Join room").click()
    field = page.get_by_label("Room name")
    await expect(field).to_be_focused()
    await field.fill(room)
    await field.press("Enter")
    await expect(title(page)).to_have_text(room)
    await expect(conversation(page, room)).to_have_attribute("aria-current", "true")


async def json_join(client: JsonClient, room: str) -> dict[str, Any]:
    await client.send({"type": "join", "room": room})
    return await client.expect("room")


async def json_say(client: JsonClient, room: str, text: str, cid: str) -> dict[str, Any]:
    await client.send({"type": "say", "room": room, "text": text, "cid": cid})
    event = await client.expect("ack", "error")
    assert event["type"] == "ack", event
    return event


async def test_a_rooms_messages_reach_its_members_only(
    browser: Browser, server: ServerProcess
) -> None:
    ana = await join(browser, server, "ana")
    beto = await join(browser, server, "beto")
    carla = await join(browser, server, "carla")  # never joins #sala

    await join_room(ana, "#sala")
    await say(beto, "/join #sala")  # the typed command works too
    await expect(title(beto)).to_have_text("#sala")
    await expect(log(ana)).to_contain_text("beto joined #sala")  # a member notice

    await say(ana, "segredo da sala")
    await expect(log(beto)).to_contain_text("ana:segredo da sala")
    await expect(ana.get_by_label("Message")).to_be_focused()

    # in #geral (everyone's room), a later message reaches carla; the room's did not
    await conversation(ana, "#geral").click()
    await expect(title(ana)).to_have_text("#geral")
    await say(ana, "para todos")
    await expect(log(carla)).to_contain_text("ana:para todos")
    await expect(log(carla)).not_to_contain_text("segredo")
    await expect(rooms(carla)).not_to_contain_text("#sala")
    await expect(log(ana)).not_to_contain_text("segredo")  # #geral's view holds #geral's only

    # beto reads #geral in its own view; #sala's message stays in #sala's
    await expect(badge(beto, "#geral")).to_have_text("1")
    await conversation(beto, "#geral").click()
    await expect(log(beto)).to_contain_text("ana:para todos")
    await expect(log(beto)).not_to_contain_text("segredo da sala")
    await expect(badge(beto, "#geral")).to_be_hidden()
    await conversation(beto, "#sala").click()
    await expect(log(beto)).to_contain_text("ana:segredo da sala")


async def test_unread_badge_is_shared_by_the_sessions_of_one_user(
    browser: Browser, server: ServerProcess
) -> None:
    first = await join(browser, server, "ana", password="senha1")
    second = await join(browser, server, "ana", password="senha1")  # another browser context
    beto = await JsonClient.open(server.url, "beto")

    await join_room(first, "#sala")
    await expect(conversation(second, "#sala")).to_be_visible()  # joined on every session
    await conversation(first, "#geral").click()
    await expect(title(first)).to_have_text("#geral")

    await json_join(beto, "#sala")
    await json_say(beto, "#sala", "novidade", "1")
    for page in (first, second):  # #sala is shown in neither
        await expect(badge(page, "#sala")).to_have_text("1")
        await expect(conversation(page, "#sala")).to_have_accessible_name("#sala, 1 unread")

    await conversation(first, "#sala").click()  # read in the first context...
    await expect(log(first)).to_contain_text("beto:novidade")
    await expect(badge(first, "#sala")).to_be_hidden()
    await expect(badge(second, "#sala")).to_be_hidden()  # ...clears the badge in the second
    await expect(conversation(second, "#sala")).to_have_accessible_name("#sala")

    await second.reload()  # the server keeps the read marker
    await expect(second.get_by_role("status")).to_contain_text("connected as ana")
    await expect(conversation(second, "#sala")).to_be_visible()
    await expect(badge(second, "#sala")).to_be_hidden()


async def test_scrolling_to_the_top_loads_older_messages(
    browser: Browser, server: ServerProcess
) -> None:
    dan = await JsonClient.open(server.url, "dan")
    await json_join(dan, "#velha")
    for i in range(120):
        await json_say(dan, "#velha", f"antiga {i:03}", str(i))

    ana = await join(browser, server, "ana")
    await say(ana, "/join #velha")
    await expect(title(ana)).to_have_text("#velha")
    await expect(log(ana)).to_contain_text("dan:antiga 119")
    messages = log(ana).locator(".msg")

    for _ in range(10):  # each scroll to the top loads one page of older messages
        if await log(ana).get_by_text("antiga 000").count():
            break
        oldest = await messages.first.get_attribute("data-id")
        assert oldest is not None
        await log(ana).evaluate("el => { el.scrollTop = 0; }")
        await expect(messages.first).not_to_have_attribute("data-id", oldest)
        # what was in view stays in view: the message that was first is still on screen
        await expect(log(ana).locator(f'.msg[data-id="{oldest}"]')).to_be_in_viewport()

    await expect(messages.first).to_contain_text("dan:antiga 000")
    await expect(messages).to_have_count(120)  # each once, none missing
    await expect(messages.nth(119)).to_contain_text("dan:antiga 119")
    texts = await messages.evaluate_all("els => els.map(e => e.lastChild.textContent)")
    assert texts == [f"antiga {i:03}" for i in range(120)]  # in order


async def test_topic_mentions_direct_conversations_and_part(
    browser: Browser, server: ServerProcess
) -> None:
    ana = await join(browser, server, "ana")
    beto = await JsonClient.open(server.url, "beto")

    await say(ana, "/join #cozinha")
    await expect(title(ana)).to_have_text("#cozinha")
    await say(ana, "/topic receitas de bolo")
    await expect(ana.locator("#topic")).to_have_text("receitas de bolo")

    await json_join(beto, "#cozinha")
    await expect(log(ana)).to_contain_text("beto joined #cozinha")
    await beto.send({"type": "topic", "room": "#cozinha", "text": "só salgados"})
    await expect(ana.locator("#topic")).to_have_text("só salgados")  # room {event:"topic"}

    # @name, in any case and with or without accents, is a mention; @anabela is not
    await json_say(beto, "#cozinha", "olá @Ána, e @anabela", "m1")
    mention = log(ana).locator(".mention")
    await expect(mention).to_have_count(1)
    await expect(mention).to_have_text("@Ána")

    # a direct message makes a direct conversation appear, with its unread badge
    await beto.say("psiu", to="ana")
    await expect(badge(ana, "beto")).to_have_text("1")
    await expect(log(ana)).not_to_contain_text("psiu")
    await conversation(ana, "beto").click()
    await expect(log(ana)).to_contain_text("privatebeto:psiu")
    await expect(badge(ana, "beto")).to_be_hidden()
    await say(ana, "diga")  # the input sends to the shown conversation
    event = await beto.expect("message")
    assert (event["text"], event.get("to"), event.get("room")) == ("diga", "beto", None)

    await conversation(ana, "#cozinha").click()
    await say(ana, "/rooms")
    await expect(log(ana)).to_contain_text("#cozinha (you): 2 members")
    await say(ana, "/part")
    await expect(title(ana)).to_have_text("#geral")  # back in #geral
    await expect(rooms(ana)).not_to_contain_text("#cozinha")
    await expect(log(ana)).not_to_contain_text("@anabela")  # #cozinha's messages went with it


async def test_rooms_at_phone_width_with_the_keyboard(
    browser: Browser, server: ServerProcess
) -> None:
    context = await browser.new_context(locale="en-US", viewport={"width": 375, "height": 700})
    page = await context.new_page()
    await page.goto(server.http + "/")
    # The form appears once the page's catalog is in: keys typed before that go nowhere.
    await expect(page.get_by_label("Name")).to_be_focused()
    await page.keyboard.type("teclado")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text("connected as teclado")
    await page.get_by_role("button", name="Join room").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_label("Room name")).to_be_focused()
    await page.keyboard.type("uma-sala-de-nome-bem-comprido")
    await page.keyboard.press("Enter")
    await expect(title(page)).to_have_text("#uma-sala-de-nome-bem-comprido")
    await expect(page.get_by_label("Message")).to_be_focused()
    await page.keyboard.type("na sala")
    await page.keyboard.press("Enter")
    await expect(log(page)).to_contain_text("teclado:na sala")
    for part in (rooms(page), log(page), page.get_by_label("Message")):
        await expect(part).to_be_in_viewport()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375  # nothing overflows sideways


# Stands in for the Notification API and for document.hidden, which a headless page
# cannot otherwise be made to have: it records what the page would show.
FAKE_NOTIFICATIONS = """
window.__shown = [];
window.__asked = 0;
window.__hidden = false;
Object.defineProperty(Document.prototype, "hidden", { get: () => window.__hidden });
window.Notification = class {
  static permission = "default";
  static requestPermission() {
    window.__asked += 1;
    window.Notification.permission = "granted";
    return Promise.resolve("granted");
  }
  constructor(title, options) { window.__shown.push([title, options.body]); }
  close() {}
};
"""


async def test_mentions_and_direct_messages_notify_when_the_tab_is_hidden(
    browser: Browser, server: ServerProcess
) -> None:
    context = await browser.new_context(locale="en-US")
    await context.add_init_script(FAKE_NOTIFICATIONS)
    ana = await context.new_page()
    await ana.goto(server.http + "/")
    await ana.get_by_label("Name").fill("ana")
    await ana.get_by_role("button", name="Join").click()  # a gesture: permission asked once
    await expect(ana.get_by_role("status")).to_contain_text("connected as ana")
    await say(ana, "oi")
    assert await ana.evaluate("window.__asked") == 1

    beto = await JsonClient.open(server.url, "beto")
    await ana.evaluate("window.__hidden = true")  # the user went to another tab
    await beto.say("sem menção")
    await json_say(beto, "#geral", "@ANA, vem cá", "m")
    await beto.say("psiu", to="ana")
    await ana.wait_for_function("window.__shown.length >= 2")
    assert await ana.evaluate("window.__shown") == [
        ["beto in #geral", "@ANA, vem cá"],
        ["beto (private)", "psiu"],
    ]
    # nothing is read while hidden: the shown conversation counts its unread messages too
    await expect(badge(ana, "#geral")).to_have_text("2")
    await ana.evaluate(
        "window.__hidden = false; document.dispatchEvent(new Event('visibilitychange'))"
    )
    await expect(badge(ana, "#geral")).to_be_hidden()
    await expect(badge(ana, "beto")).to_have_text("1")  # not shown: still unread

    # a /msg to nobody leaves no conversation behind, and says why
    await say(ana, "/msg ninguem olá")
    await expect(log(ana)).to_contain_text("error:")
    await expect(conversation(ana, "ninguem")).to_have_count(0)
    await expect(title(ana)).to_have_text("#geral")


async def test_a_page_resumes_each_conversation_after_a_server_crash(
    browser: Browser, server: ServerProcess
) -> None:
    """The page keeps one position per conversation and sends them all (``resume``)
    with the newest id (``resume_from``); what it missed shows once, each in its place."""
    ana = await join(browser, server, "ana")
    hellos: list[dict[str, Any]] = []

    def watch(ws: Any) -> None:
        def sent(payload: str | bytes) -> None:
            event = json.loads(payload)
            if event.get("type") == "hello":
                hellos.append(event)

        ws.on("framesent", sent)

    ana.on("websocket", watch)
    beto = await JsonClient.open(server.url, "beto")
    await join_room(ana, "#sala")
    await json_join(beto, "#sala")
    in_sala = await json_say(beto, "#sala", "na sala, antes", "1")
    await expect(log(ana)).to_contain_text("beto:na sala, antes")
    direct = await beto.say("psiu, antes", to="ana")
    await expect(conversation(ana, "beto")).to_be_visible()
    token = beto.welcome["token"]

    await asyncio.to_thread(server.kill)
    await expect(ana.get_by_role("status")).to_contain_text("reconnecting in")
    await asyncio.to_thread(server.restart)
    beto = await JsonClient.open(server.url, "beto", token=token)
    await json_say(beto, "#sala", "na sala, enquanto estavas fora", "2")
    await beto.say("psiu, enquanto estavas fora", to="ana")
    await beto.say("no geral, enquanto estavas fora")
    await expect(ana.get_by_role("status")).to_contain_text("connected as ana", timeout=20_000)
    await expect(log(ana)).to_contain_text("beto:na sala, enquanto estavas fora")
    hello = hellos[-1]
    assert hello["resume"]["#sala"] == in_sala["id"]
    assert hello["resume"]["@beto"] == direct["id"]
    assert hello["resume_from"] >= direct["id"]
    for text in ("na sala, antes", "na sala, enquanto estavas fora"):
        await expect(log(ana).get_by_text(text)).to_have_count(1)
    await conversation(ana, "beto").click()
    await expect(log(ana)).to_contain_text("psiu, enquanto estavas fora")
    for text in ("psiu, antes", "psiu, enquanto estavas fora"):
        await expect(log(ana).get_by_text(text)).to_have_count(1)
    await conversation(ana, "#geral").click()
    await expect(log(ana).get_by_text("no geral, enquanto estavas fora")).to_have_count(1)
    await beto.close()
