"""TLS without a proxy: the server's context (reloaded on SIGHUP) and the terminal client's.

A small deployment (a classroom server) can serve ``wss://`` and ``https://``
on its one port with the standard library's :mod:`ssl`: ``--tls-cert`` and
``--tls-key`` name PEM files, and the context is
``ssl.create_default_context(Purpose.CLIENT_AUTH)`` (its defaults: TLS 1.2 or
newer, the library's cipher choice), pinned to TLS 1.2+ in case a platform's
defaults are older. A certificate that renews (Let's Encrypt, a school's CA)
is picked up on SIGHUP without dropping anyone: the files are loaded into the
live context, which every new handshake uses; a pair that does not load is
refused first on a context of its own, so a bad file never replaces a good one.

The terminal client trusts the system's certificate authorities, plus the
private one of ``--ca FILE`` when given.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from papo.i18n import Says, t

log = logging.getLogger(__name__)


class TlsError(RuntimeError):
    """A certificate, key or CA file that cannot be used; ``str()`` says which and why
    (``text``: the same for a person, in any language)."""

    def __init__(self, text: Says) -> None:
        super().__init__(str(text))
        self.text = text


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context with ``cert`` (its chain) and ``key`` loaded."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = max(context.minimum_version, ssl.TLSVersion.TLSv1_2)
    _load(context, cert, key)
    return context


def reload(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    """Load ``cert`` and ``key`` again into the live ``context`` (SIGHUP).

    They are tried on a fresh context first: on failure :class:`TlsError` is
    raised and ``context`` keeps serving the certificate it had.
    """
    server_context(cert, key)
    _load(context, cert, key)


def client_context(ca: Path | None = None) -> ssl.SSLContext:
    """A client context that trusts the system's authorities and, when given, ``ca``."""
    context = ssl.create_default_context()
    if ca is not None:
        try:
            context.load_verify_locations(cafile=ca)
        except OSError as exc:  # ssl.SSLError is an OSError too
            raise TlsError(
                t(
                    "cannot use {file} as a certificate authority: {reason}",
                    file=ca,
                    reason=_why(exc),
                )
            ) from None
    return context


def for_url(url: str, ca: Path | None) -> ssl.SSLContext | None:
    """The terminal client's context for ``url``: None for ``ws://`` (no TLS)."""
    if url.lower().startswith("wss://"):
        return client_context(ca)
    if ca is not None:
        raise TlsError(t("--ca is for wss:// addresses; {url} is not one", url=url))
    return None


def _load(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        context.load_cert_chain(cert, key)
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise TlsError(
            f"cannot use the certificate {cert} with the key {key}: {_why(exc)}"
        ) from None


def _why(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return str(exc.strerror or exc)
