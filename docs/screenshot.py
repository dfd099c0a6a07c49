#!/usr/bin/env python3
"""Make docs/screenshot.png: two people chatting in the browser client.

Starts a throwaway server (``--memory``), joins ana and beto in two headless
Chromium windows (Debian's /usr/bin/chromium), has them talk, and saves
beto's window next to ana's. Run: ``make screenshot``.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

from playwright.async_api import Page, async_playwright, expect

ROOT = Path(__file__).resolve().parent.parent


async def join(page: Page, url: str, name: str) -> None:
    await page.goto(url)
    await page.get_by_label("Name").fill(name)
    await page.get_by_role("button", name="Join").click()
    await expect(page.get_by_role("status")).to_contain_text("connected")


async def say(page: Page, text: str) -> None:
    await page.get_by_label("Message").fill(text)
    await page.get_by_label("Message").press("Enter")
    await page.wait_for_timeout(150)


async def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = await asyncio.create_subprocess_exec(
        *[sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port), "--memory"],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        await asyncio.sleep(1.0)
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            ana = await (
                await browser.new_context(viewport={"width": 900, "height": 420})
            ).new_page()
            beto = await (
                await browser.new_context(viewport={"width": 900, "height": 420})
            ).new_page()
            await join(ana, url, "ana")
            await join(beto, url, "beto")
            await say(ana, "oi beto! já viste o papo no navegador?")
            await say(beto, "oi ana, estou a ver agora: funciona sem instalar nada")
            await say(ana, "/msg beto e as mensagens privadas também")
            await say(beto, "<b>até o HTML aparece como texto</b>")
            shots = ROOT / "docs"
            await ana.screenshot(path=str(shots / "screenshot-ana.png"))
            await beto.screenshot(path=str(shots / "screenshot.png"))
            await browser.close()
    finally:
        server.terminate()
        await server.wait()
    print("wrote docs/screenshot.png and docs/screenshot-ana.png")


if __name__ == "__main__":
    asyncio.run(main())
