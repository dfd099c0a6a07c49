"""Accounts: password hashes, signed session tokens, and who may take a name.

Passwords are kept only as salted ``hashlib.scrypt`` hashes and compared in
constant time; hashing runs off the event loop because it is deliberately
slow. Tokens are ``v1.<payload>.<signature>``: a base64url JSON payload
(user key, expiry, token id, device and generation, the rule that made the
key) signed with HMAC-SHA256 and the server secret. A token belongs to a
device (:mod:`papo.devices`): a join with it is checked against the device and
returns the device's next token; ending the device refuses every token of it.
Tokens from before devices (no ``dev`` claim) are checked against the old
revocation list and exchanged once for a device's.

Password tries are throttled per name and address (``--login-attempts`` a
minute) and, so that a spray over many names is held back too, per address
(four times as many).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, replace

from papo.devices import Device, new_device
from papo.i18n import t
from papo.limits import AttemptLimiter
from papo.names import KEY_RULE, legacy_key, name_key
from papo.protocol import ProtocolError
from papo.store import Store
from papo.store_records import Account

# scrypt cost: N=2**14, r=8 (16 MiB, tens of milliseconds): OWASP's minimum.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN, SALT_LEN = 2**14, 8, 1, 32, 16
MIN_PASSWORD_LENGTH = 4


def hash_password(password: str, salt: bytes | None = None) -> bytes:
    """``salt + scrypt(password, salt)`` as one byte string."""
    salt = secrets.token_bytes(SALT_LEN) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_LEN
    )
    return salt + digest


def check_password(password: str, stored: bytes) -> bool:
    """Whether ``password`` matches ``stored``, compared in constant time."""
    return hmac.compare_digest(hash_password(password, stored[:SALT_LEN]), stored)


@dataclass(frozen=True, slots=True)
class TokenClaims:
    key: str
    expires: float
    token_id: str
    device: str | None = None  # None: a token from before devices
    gen: int = 0
    key_rule: int = 1  # papo.names.KEY_RULE when issued; tokens from before it have none


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tokens:
    """Issue and verify signed session tokens."""

    def __init__(self, secret: bytes, ttl: float) -> None:
        self._secret = secret
        self.ttl = ttl

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())

    def issue(
        self, key: str, now: float | None = None, *, device: str | None = None, gen: int = 0
    ) -> str:
        claims: dict[str, str | int] = {
            "sub": key,
            "exp": int((time.time() if now is None else now) + self.ttl),
            "jti": secrets.token_hex(12),
            "kr": KEY_RULE,
        }
        if device is not None:
            claims["dev"] = device
            claims["gen"] = gen
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"v1.{body}.{self._sign(body)}"

    def verify(self, token: str, now: float | None = None) -> TokenClaims | None:
        """The token's claims when its signature is ours and it has not expired."""
        version, _, rest = token.partition(".")
        body, _, signature = rest.partition(".")
        if version != "v1" or not hmac.compare_digest(self._sign(body), signature):
            return None
        try:
            data = json.loads(_unb64(body))
            device = data.get("dev")
            claims = TokenClaims(
                str(data["sub"]),
                float(data["exp"]),
                str(data["jti"]),
                None if device is None else str(device),
                int(data.get("gen", 0)),
                int(data.get("kr", 1)),
            )
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            return None
        if claims.expires < (time.time() if now is None else now):
            return None
        return claims


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a successful join made you: display ``name``, its ``key``, a fresh token
    of the ``device`` (None for a name that is not kept: no device)."""

    name: str
    key: str
    token: str
    protected: bool
    last_seen: int = 0  # newest message id when this user last left (0: unknown)
    device: str | None = None


def _token_names(claims: TokenClaims, key: str, name: str) -> bool:
    """Whether a token lets its holder be ``name`` (keyed ``key``, its account's name).

    A token names the key it was issued for. One issued before accents were
    folded (no ``kr`` claim) names the key of that rule
    (:func:`~papo.names.legacy_key`), which must be the legacy key of the
    account's own name: when two accounts became one name, the token of the
    one set aside (``joao``, while ``João`` was older) names a key that is
    today's key too, but not the survivor's key of before.
    """
    if claims.key_rule == KEY_RULE:
        return claims.key == key
    return name_key(claims.key) == key and claims.key == legacy_key(name)


class Accounts:
    """Decides who may join under which name, and keeps accounts in the store."""

    def __init__(
        self,
        store: Store,
        tokens: Tokens,
        limiter: AttemptLimiter,
        *,
        require_password: bool = False,
        by_address: AttemptLimiter | None = None,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.limiter = limiter
        # Names are free: per address, four times what one name may fail.
        self.by_address = by_address or AttemptLimiter(
            4 * limiter.limit, limiter.window, limiter.clock
        )
        self.require_password = require_password

    async def authenticate(
        self,
        name: str,
        *,
        password: str | None,
        token: str | None,
        address: str,
        remember: bool = True,
    ) -> Identity:
        """Check a join; return the identity or raise :class:`ProtocolError`.

        An unknown name is created (protected when a password is given). A
        protected name needs its password or a valid token for it. With
        ``remember=False`` (guests) an open name is not written to the store.
        """
        key = name_key(name)
        account = await self.store.get_account(key)
        throttle_key = self._throttle(key, name, address)
        device: Device | None = None
        if token is not None:
            claims = self.tokens.verify(token)
            if claims is not None and _token_names(claims, key, account.name if account else name):
                device = await self._token_device(claims, key, address)
            if device is None:
                self._failed(throttle_key, address)
                raise ProtocolError(
                    "bad_token",
                    t("the token is not valid for this name (expired, revoked or forged)"),
                )
            if account is None:  # a token for a guest name that was never saved
                account = Account(key, name, None, time.time())
                await self.store.save_account(account)
        elif account is not None and account.password_hash is not None:
            if password is None:
                raise ProtocolError(
                    "auth_required", t("the name {name} needs its password", name=account.name)
                )
            await self._check(account, password, throttle_key, address, name)
        elif password is not None:
            account = await self._protect(
                account or Account(key, name, None, time.time()), password
            )
        elif self.require_password:
            raise ProtocolError(
                "auth_required", t("this server requires a password for every name")
            )
        elif account is None and remember:
            account = Account(key, name, None, time.time())
            await self.store.save_account(account)
        self.limiter.succeeded(throttle_key)
        if account is None:
            return Identity(name, key, self.tokens.issue(key), False)
        if device is None:  # a password, or an open name: a new device
            device = new_device(key, address, time.time(), self.tokens.ttl)
            await self.store.add_device(device)
        token = self.tokens.issue(key, device=device.id, gen=device.gen)
        return Identity(account.name, key, token, account.protected, account.last_seen, device.id)

    def _throttle(self, key: str, name: str, address: str) -> str:
        """The throttling key of ``name`` from ``address``; refuses when either is held back."""
        throttle_key = f"{key}\x00{address}"
        wait = max(self.limiter.retry_after(throttle_key), self.by_address.retry_after(address))
        if wait > 0:
            raise ProtocolError(
                "too_many_attempts",
                t(
                    "too many failed attempts for {name}; try again in {seconds} s",
                    name=name,
                    seconds=round(wait),
                ),
            )
        return throttle_key

    def _failed(self, throttle_key: str, address: str) -> None:
        self.limiter.failed(throttle_key)
        self.by_address.failed(address)

    async def _check(
        self, account: Account, password: str, throttle_key: str, address: str, typed: str
    ) -> None:
        """Refuse (and count the failure) unless ``password`` is the account's.

        Someone whose own account was set aside when accents stopped counting
        (``joao``, while ``João`` was older) and who gives that account's
        password is told why, rather than "wrong password for João".
        """
        assert account.password_hash is not None
        if await asyncio.to_thread(check_password, password, account.password_hash):
            return
        self._failed(throttle_key, address)
        aside = await self.store.set_aside_account(legacy_key(typed))
        if (
            aside is not None
            and aside.password_hash is not None
            and await asyncio.to_thread(check_password, password, aside.password_hash)
        ):
            raise ProtocolError(
                "name_merged",
                t(
                    "{name} and {kept} are one name now (accents and case no longer count), "
                    "and {kept} had it first; choose another name",
                    name=aside.name,
                    kept=account.name,
                ),
            )
        raise ProtocolError("bad_password", t("wrong password for {name}", name=account.name))

    async def _token_device(self, claims: TokenClaims, key: str, address: str) -> Device | None:
        """The device a valid token for ``key`` joins on (refreshed), or None: refused."""
        now = time.time()
        if claims.device is not None:
            return await self.store.refresh_device(
                key, claims.device, claims.gen, now=now, address=address, ttl=self.tokens.ttl
            )
        # A token from before devices: valid unless revoked, exchanged once for a device.
        if await self.store.is_revoked(claims.token_id):
            return None
        await self.store.revoke_token(claims.token_id, claims.expires)
        device = new_device(key, address, now, self.tokens.ttl)
        await self.store.add_device(device)
        return device

    async def register(self, name: str, password: str) -> None:
        """Protect ``name`` (already joined, so allowed to) with ``password``."""
        key = name_key(name)
        account = await self.store.get_account(key) or Account(key, name, None, time.time())
        if account.protected:
            raise ProtocolError(
                "already_protected", t("{name} already has a password", name=account.name)
            )
        await self._protect(account, password)

    async def change_password(self, name: str, old: str, new: str, address: str) -> None:
        """Replace the password of ``name`` (joined) with ``new``, given the ``old`` one.

        Tries are throttled like joins: a stolen session cannot guess the password.
        """
        key = name_key(name)
        throttle_key = self._throttle(key, name, address)
        account = await self.store.get_account(key)
        if account is None or account.password_hash is None:
            raise ProtocolError(
                "not_protected",
                t("{name} has no password yet: /register PASSWORD sets one", name=name),
            )
        if len(new) < MIN_PASSWORD_LENGTH:
            raise _weak()
        await self._check(account, old, throttle_key, address, account.name)
        self.limiter.succeeded(throttle_key)
        await self._protect(account, new)

    async def _protect(self, account: Account, password: str) -> Account:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise _weak()
        hashed = await asyncio.to_thread(hash_password, password)
        protected = replace(account, password_hash=hashed)
        await self.store.save_account(protected)
        return protected


def _weak() -> ProtocolError:
    return ProtocolError(
        "weak_password", t("a password has at least {min} characters", min=MIN_PASSWORD_LENGTH)
    )
