"""The browser client's files, served by the chat server itself (no CDN, no build step).

The files are read once at start-up from ``papo/web/``. Each has a strong
ETag; browsers revalidate (``no-cache``) and get 304 when nothing changed.
Every page is served with a Content-Security-Policy that allows scripts,
styles and connections from papo's own origin only, and no inline script.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}

#: URL path → file in papo/web/
ROUTES = {
    "/": "index.html",
    "/index.html": "index.html",
    "/static/app.js": "app.js",
    "/static/style.css": "style.css",
}


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


class WebFiles:
    """The page's files in memory, looked up by URL path."""

    def __init__(self) -> None:
        folder = resources.files("papo") / "web"
        self._assets: dict[str, Asset] = {}
        for path, name in ROUTES.items():
            body = (folder / name).read_bytes()
            suffix = name[name.rindex(".") :]
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            self._assets[path] = Asset(body, TYPES[suffix], etag)

    def get(self, path: str) -> Asset | None:
        return self._assets.get(path)
