"""The web page in real headless Chromium (Debian's), driven by Playwright.

Chromium comes from Debian's package (``apt-get install chromium``), never from
a browser download. ``.ci/run`` installs it; in CI (``CI=true``) a missing
Chromium fails these tests, elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from typing import Any

from tests.conftest import StartServer
from tests.helpers import JsonClient, ServerProcess

# Without playwright the browser fixture says what is missing (and CI fails).
with contextlib.suppress(ImportError):
    from playwright.async_api import Browser, Page, expect


PENDING = re.compile(r"\bpending\b")


async def join(browser: Browser, server: ServerProcess, name: str, password: str = "") -> Page:
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    await page.goto(server.http + "/")
    await page.get_by_label("Name").fill(name)
    if password:
        await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Join").click()
    await expect(page.get_by_role("status")).to_contain_text("connected as " + name)
    await expect(page.get_by_role("button", name="Join", exact=True)).to_be_hidden()
    await expect(page.get_by_label("Message")).to_be_focused()
    return page


async def say(page: Page, text: str) -> None:
    box = page.get_by_label("Message")
    await box.fill(text)
    await box.press("Enter")


def log(page: Page) -> Any:
    return page.get_by_role("log")


async def test_two_browsers_and_a_json_client_chat(browser: Browser, server: ServerProcess) -> None:
    ana = await join(browser, server, "ana")
    beto = await join(browser, server, "beto")
    carla = await JsonClient.open(server.url, "carla")

    await say(ana, "olá do navegador")
    await expect(log(beto)).to_contain_text("ana:olá do navegador")
    assert (await carla.expect("message"))["text"] == "olá do navegador"
    await expect(ana.get_by_label("Message")).to_be_focused()  # the input keeps focus

    await carla.say("olá da linha de comando")
    await expect(log(ana)).to_contain_text("carla:olá da linha de comando")
    await expect(log(beto)).to_contain_text("carla:olá da linha de comando")

    online = ana.get_by_label("Online")
    await expect(online).to_contain_text("ana")
    await expect(online).to_contain_text("beto")
    await expect(online).to_contain_text("carla")
    own = ana.locator(".msg.own")
    await expect(own).to_have_count(1)  # own messages look distinct
    await expect(own).not_to_have_class("pending")


async def test_private_message_reaches_only_the_recipients_tabs(
    browser: Browser, server: ServerProcess
) -> None:
    ana_tab1 = await join(browser, server, "ana")
    ana_tab2 = await ana_tab1.context.new_page()  # a second tab: joins with the saved token
    await ana_tab2.goto(server.http + "/")
    await expect(ana_tab2.get_by_role("status")).to_contain_text("connected as ana")
    beto = await join(browser, server, "beto")
    carla = await JsonClient.open(server.url, "carla")
    await expect(beto.get_by_label("Online")).to_contain_text("ana ×2")  # on two devices

    await carla.say("só para a ana", to="ana")
    for tab in (ana_tab1, ana_tab2):  # in the direct conversation with carla, which appeared
        rooms = tab.get_by_role("navigation", name="Rooms")
        await rooms.get_by_role("button", name="carla").click()
        await expect(log(tab)).to_contain_text("privatecarla:só para a ana")
    await carla.say("para todos")
    await expect(log(beto)).to_contain_text("carla:para todos")
    await expect(log(beto)).not_to_contain_text("só para a ana")

    # clicking a user starts a private message
    await beto.get_by_label("Online").get_by_role("button", name="Private chat with carla").click()
    await expect(beto.get_by_label("Message")).to_have_value("/msg carla ")
    await beto.get_by_label("Message").press_sequentially("psiu")
    await beto.get_by_role("button", name="Send").click()
    event = await carla.expect("message")
    assert (event["text"], event["to"]) == ("psiu", "carla")


async def test_html_from_others_shows_as_text_and_runs_nothing(
    browser: Browser, server: ServerProcess
) -> None:
    ana = await join(browser, server, "ana")
    dialogs: list[str] = []
    ana.on("dialog", lambda d: dialogs.append(d.message))
    evil = await JsonClient.open(server.url, "evil")
    payload = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    await evil.say(payload)
    await expect(log(ana)).to_contain_text("evil:" + payload)
    assert await log(ana).locator("img, script").count() == 0
    await asyncio.sleep(0.5)
    assert dialogs == []
    response = await ana.request.get(server.http + "/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


async def test_reload_resumes_without_duplicates(browser: Browser, server: ServerProcess) -> None:
    ana = await join(browser, server, "ana")
    beto = await JsonClient.open(server.url, "beto")
    for i in range(5):
        await beto.say(f"mensagem {i}")
    await expect(log(ana)).to_contain_text("mensagem 4")
    await ana.reload()
    await expect(ana.get_by_role("status")).to_contain_text("connected as ana")
    await expect(log(ana)).to_contain_text("mensagem 4")
    await beto.say("depois do reload")
    await expect(log(ana)).to_contain_text("depois do reload")
    for i in range(5):
        await expect(log(ana).get_by_text(f"mensagem {i}", exact=False)).to_have_count(1)


async def test_a_message_the_store_refused_is_sent_again_by_itself(
    browser: Browser, server: ServerProcess
) -> None:
    """store_unavailable (here: another process holds the database) leaves the message
    pending and the page sends it again under its cid, saying so, until it is stored."""
    ana = await join(browser, server, "ana")
    beto = await JsonClient.open(server.url, "beto")
    locker = sqlite3.connect(server.data_dir / "papo.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        await say(ana, "espera a base")
        await expect(log(ana)).to_contain_text("your message is not confirmed yet", timeout=30_000)
        await expect(ana.locator(".msg.own")).to_have_class(PENDING)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    await expect(ana.locator(".msg.own")).not_to_have_class(PENDING, timeout=30_000)
    assert (await beto.expect("message", timeout=30))["text"] == "espera a base"
    assert [e for e in await beto.quiet(0.3) if e["type"] == "message"] == []  # once
    await expect(log(ana).get_by_text("espera a base")).to_have_count(1)
    await expect(log(ana)).not_to_contain_text("error:")


async def test_page_reconnects_after_a_server_crash_and_shows_what_it_missed(
    browser: Browser, server: ServerProcess
) -> None:
    ana = await join(browser, server, "ana")
    beto = await JsonClient.open(server.url, "beto")
    last = (await beto.say("antes"))["id"]
    await expect(log(ana)).to_contain_text("beto:antes")
    token = beto.welcome["token"]

    await asyncio.to_thread(server.kill)
    await expect(ana.get_by_role("status")).to_contain_text("reconnecting in")
    await say(ana, "escrito sem rede")  # typed while offline: sent after the reconnect
    await asyncio.to_thread(server.restart)
    beto = await JsonClient.open(server.url, "beto", token=token, resume_from=last)
    await beto.say("enquanto estavas fora")
    await expect(ana.get_by_role("status")).to_contain_text("connected as ana", timeout=20_000)
    await expect(log(ana)).to_contain_text("beto:enquanto estavas fora")
    got = [e["text"] for e in await beto.quiet(1.0) if e["type"] == "message"]
    assert got == ["escrito sem rede"]
    await expect(log(ana).get_by_text("enquanto estavas fora")).to_have_count(1)
    await expect(ana.locator(".msg.pending")).to_have_count(0)


async def test_wrong_password_shows_the_servers_error_next_to_the_field(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server("--rate-limit", "0")
    await JsonClient.open(server.url, "dona", password="certa")
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    await page.goto(server.http + "/")
    await page.get_by_label("Name").fill("dona")
    await page.get_by_label("Password").fill("errada")
    await page.get_by_role("button", name="Join").click()
    await expect(page.locator("#join-error")).to_have_text("wrong password for dona")
    await page.get_by_label("Name").fill("bad name")
    await page.get_by_label("Password").fill("")
    await page.get_by_role("button", name="Join").click()
    await expect(page.locator("#join-error")).to_contain_text("bad name")


async def test_leave_logs_out(browser: Browser, server: ServerProcess) -> None:
    ana = await join(browser, server, "ana", password="senha1")
    await ana.get_by_role("button", name="Leave").click()
    await expect(ana.get_by_role("button", name="Join")).to_be_visible()
    await ana.reload()
    await expect(ana.get_by_role("button", name="Join")).to_be_visible()  # no token kept


async def test_static_files_types_and_404(browser: Browser, server: ServerProcess) -> None:
    context = await browser.new_context(locale="en-US")
    for path, kind in [
        ("/", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/style.css", "text/css"),
        ("/static/favicon.svg", "image/svg+xml"),
        ("/i18n/pt-BR.json", "application/json"),
        ("/i18n/en.json", "application/json"),
    ]:
        response = await context.request.get(server.http + path)
        assert response.status == 200 and response.headers["content-type"].startswith(kind)
        assert response.headers["cache-control"] == "no-cache" and response.headers["etag"]
        again = await context.request.get(
            server.http + path, headers={"If-None-Match": response.headers["etag"]}
        )
        assert again.status == 304
    assert (await context.request.get(server.http + "/static/nope.js")).status == 404
    assert (await context.request.get(server.http + "/i18n/fr.json")).status == 404


async def test_phone_width_and_keyboard_only(browser: Browser, server: ServerProcess) -> None:
    context = await browser.new_context(locale="en-US", viewport={"width": 375, "height": 700})
    page = await context.new_page()
    await page.goto(server.http + "/")
    await expect(page.get_by_label("Name")).to_be_focused()  # typing can start at once
    await page.keyboard.type("teclado")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text("connected as teclado")
    await page.keyboard.type("sem rato")
    await page.keyboard.press("Enter")
    await expect(log(page)).to_contain_text("teclado:sem rato")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375  # nothing overflows sideways
