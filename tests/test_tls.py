"""wss:// and https:// without a proxy: ``--tls-cert``/``--tls-key``, reloaded on SIGHUP.

Each test makes its own certificate authority and a server certificate for
127.0.0.1 with the ``cryptography`` package, then talks to the real server:
a JSON client and the terminal client (``--ca``, in a pseudo-terminal) over
wss, the page in Chromium over https with the CA trusted by its key, a renewed
certificate picked up on SIGHUP without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from papo import tls
from papo.config import parse_settings
from tests.chromium import chromium_missing, launched
from tests.conftest import StartServer
from tests.helpers import ROOT, JsonClient, ServerProcess, need

# Without playwright the browser fixture says what is missing (and CI fails).
with contextlib.suppress(ImportError):
    from playwright.async_api import Browser, expect

ENV = {"TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1", "NO_COLOR": "1"}


@dataclass(frozen=True)
class Pki:
    """A private CA and a server certificate it signed, as PEM files."""

    ca: Path
    cert: Path
    key: Path
    spki: str  # base64 SHA-256 of the CA's and the server's public keys, as Chromium takes them


def make_pki(directory: Path, name: str = "papo test CA") -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
        ",".join(_spki(k.public_key()) for k in (ca_key, key)),
    )
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


def _spki(public: ec.EllipticCurvePublicKey) -> str:
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def trusting(pki: Pki) -> ssl.SSLContext:
    return tls.client_context(pki.ca)


def fetch(url: str, context: ssl.SSLContext) -> tuple[int, str]:
    with urllib.request.urlopen(url, context=context, timeout=10) as reply:
        return reply.status, reply.read().decode()


def tls_server(start_server: StartServer, pki: Pki, *flags: str) -> ServerProcess:
    return start_server("--tls-cert", str(pki.cert), "--tls-key", str(pki.key), *flags)


async def test_wss_round_trip_and_https_on_one_port(
    start_server: StartServer, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    server = tls_server(start_server, pki, "--rate-limit", "0")
    assert server.url.startswith("wss://127.0.0.1:")
    ana = await JsonClient.open(server.url, "ana", ssl=trusting(pki))
    beto = await JsonClient.open(server.url, "beto", ssl=trusting(pki))
    await ana.quiet(0.2)
    ack = await beto.say("oi por tls")
    assert ack["type"] == "ack"
    assert (await ana.expect("message"))["text"] == "oi por tls"
    assert (await asyncio.to_thread(fetch, server.http + "/healthz", trusting(pki)))[0] == 200
    _, how = await asyncio.to_thread(fetch, server.http + "/ws", trusting(pki))
    assert f"wss://{server.address}/" in how
    with pytest.raises(ssl.SSLCertVerificationError):  # nobody trusts a private CA unasked
        await JsonClient.open(server.url, "carla", ssl=ssl.create_default_context())
    await ana.close()
    await beto.close()


def test_the_terminal_client_joins_over_wss_with_ca(
    start_server: StartServer, tmp_path: Path, children: list[pexpect.spawn]
) -> None:
    pki = make_pki(tmp_path / "pki")
    server = tls_server(start_server, pki, "--rate-limit", "0")

    def client(*args: str) -> pexpect.spawn:
        child = pexpect.spawn(
            sys.executable,
            ["client.py", "--url", server.url, *args],
            cwd=str(ROOT),
            env={**os.environ, **ENV},
            encoding="utf-8",
            timeout=15,
            dimensions=(24, 120),
        )
        children.append(child)
        return child

    ana = client("--name", "ana", "--ca", str(pki.ca))
    ana.expect("you are ana")
    beto = client("--name", "beto", "--ca", str(pki.ca))
    beto.expect("you are beto")
    ana.expect("beto joined")
    beto.sendline("olá por wss")
    ana.expect("beto: olá por wss")
    untrusted = client("--name", "carla")  # the system's CAs do not know this one
    untrusted.expect("is not trusted")
    untrusted.expect(pexpect.EOF)
    wrong = pexpect.run(
        f"{sys.executable} client.py --url ws://127.0.0.1:1/ --ca {pki.ca}",
        cwd=str(ROOT),
        encoding="utf-8",
        timeout=15,
    )
    assert "--ca is for wss://" in wrong


async def test_sighup_reloads_a_renewed_certificate(
    start_server: StartServer, tmp_path: Path
) -> None:
    first = make_pki(tmp_path / "first", "first CA")
    server = tls_server(start_server, first)
    ana = await JsonClient.open(server.url, "ana", ssl=trusting(first))
    renewed = make_pki(tmp_path / "renewed", "renewed CA")
    first.cert.write_bytes(renewed.cert.read_bytes())  # the renewal replaces the files
    first.key.write_bytes(renewed.key.read_bytes())
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while not server.logged("reloaded"):
        assert time.monotonic() < deadline, "".join(server.log)
        await asyncio.sleep(0.05)
    beto = await JsonClient.open(server.url, "beto", ssl=trusting(renewed))
    with pytest.raises(ssl.SSLCertVerificationError):
        await JsonClient.open(server.url, "carla", ssl=trusting(first))
    assert (await ana.say("ainda aqui"))["type"] == "ack"  # open connections keep theirs
    assert (await beto.expect("message"))["text"] == "ainda aqui"
    first.key.write_text("not a key\n")  # a broken renewal is refused, the old one stays
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while not server.logged("still serving"):
        assert time.monotonic() < deadline, "".join(server.log)
        await asyncio.sleep(0.05)
    carla = await JsonClient.open(server.url, "carla", ssl=trusting(renewed))
    await carla.close()
    await ana.close()
    await beto.close()


def test_tls_flags_go_together_and_bad_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        parse_settings(["--tls-cert", "c.pem"], environ={})
    settings = parse_settings([], environ={"PAPO_TLS_CERT": "c.pem", "PAPO_TLS_KEY": "k.pem"})
    assert settings.tls_cert == Path("c.pem") and settings.tls_key == Path("k.pem")
    missing = tmp_path / "missing.pem"
    result = subprocess.run(
        [sys.executable, "server.py", "--port", "0", "--memory",
         "--tls-cert", str(missing), "--tls-key", str(missing)],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot use the certificate {missing}" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- the page, in Chromium


@pytest.fixture
async def browser_trusting(tmp_path: Path) -> AsyncIterator[tuple[Browser, Pki]]:
    """Chromium that trusts a fresh private CA and its server certificate (by the SHA-256
    of their public keys: Chromium's way to trust a certificate it cannot chain)."""
    need(chromium_missing(), "browser tests")
    pki = make_pki(tmp_path / "pki")
    async with launched([f"--ignore-certificate-errors-spki-list={pki.spki}"]) as chromium:
        yield chromium, pki


async def test_the_page_over_https_chats_over_wss(
    browser_trusting: tuple[Browser, Pki], start_server: StartServer
) -> None:
    browser, pki = browser_trusting
    server = tls_server(start_server, pki, "--rate-limit", "0")
    page = await (await browser.new_context()).new_page()
    await page.goto(server.http + "/")
    assert page.url.startswith("https://")
    await page.get_by_label("Name").fill("ana")
    await page.get_by_role("button", name="Join").click()
    await expect(page.get_by_role("status")).to_contain_text("connected as ana")
    beto = await JsonClient.open(server.url, "beto", ssl=trusting(pki))
    await beto.say("oi, página segura")
    await expect(page.get_by_role("log")).to_contain_text("oi, página segura")
    box = page.get_by_label("Message")
    await box.fill("daqui também")
    await box.press("Enter")
    assert (await beto.expect("message"))["text"] == "daqui também"
    await beto.close()
