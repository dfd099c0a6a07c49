"""Debian's Chromium for the browser tests: where it is, how it starts, and whether it can.

Chromium comes from Debian's package (``apt-get install chromium``), never from
a browser download; ``.ci/run`` installs it. The flags keep a headless
Chromium off this machine's closed network (background updates, sync, QUIC).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


@asynccontextmanager
async def launched(extra: Sequence[str] = ()) -> AsyncIterator[Browser]:
    """A headless Chromium with :data:`ARGS` (and ``extra``), closed afterwards."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        chromium = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*ARGS, *extra]
        )
        try:
            yield chromium
        finally:
            await chromium.close()
