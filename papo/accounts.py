"""Accounts: password hashes, signed session tokens, and who may take a name.

Passwords are kept only as salted ``hashlib.scrypt`` hashes and compared in
constant time; hashing runs off the event loop because it is deliberately
slow. Tokens are ``v1.<payload>.<signature>``: a base64url JSON payload
(user key, expiry, token id, the rule that made the key) signed with
HMAC-SHA256 and the server secret, so checking one needs no lookup except
the (small) revocation list.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass

from papo.i18n import t
from papo.limits import AttemptLimiter
from papo.names import KEY_RULE, legacy_key, name_key
from papo.protocol import ProtocolError
from papo.store import Account, Store

# scrypt cost: N=2**14, r=8 (16 MiB, tens of milliseconds): OWASP's minimum.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN, SALT_LEN = 2**14, 8, 1, 32, 16
MIN_PASSWORD_LENGTH = 4

log = logging.getLogger(__name__)


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

    def issue(self, key: str, now: float | None = None) -> str:
        claims = {
            "sub": key,
            "exp": int((time.time() if now is None else now) + self.ttl),
            "jti": secrets.token_hex(12),
            "kr": KEY_RULE,
        }
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
            claims = TokenClaims(
                str(data["sub"]), float(data["exp"]), str(data["jti"]), int(data.get("kr", 1))
            )
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            return None
        if claims.expires < (time.time() if now is None else now):
            return None
        return claims


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a successful join made you: display ``name``, its ``key``, a fresh token."""

    name: str
    key: str
    token: str
    protected: bool
    last_seen: int = 0  # newest message id when this user last left (0: unknown)


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
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.limiter = limiter
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
        if account is None:
            account = await self._adopt_legacy(name, key)
        throttle_key = f"{key}\x00{address}"
        wait = self.limiter.retry_after(throttle_key)
        if wait > 0:
            raise ProtocolError(
                "too_many_attempts",
                t(
                    "too many failed attempts for {name}; try again in {seconds} s",
                    name=name,
                    seconds=round(wait),
                ),
            )
        if token is not None:
            claims = self.tokens.verify(token)
            if (
                claims is None
                or not _token_names(claims, key, account.name if account else name)
                or await self.store.is_revoked(claims.token_id)
            ):
                self.limiter.failed(throttle_key)
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
            if not await asyncio.to_thread(check_password, password, account.password_hash):
                self.limiter.failed(throttle_key)
                raise ProtocolError(
                    "bad_password", t("wrong password for {name}", name=account.name)
                )
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
        return Identity(
            account.name, key, self.tokens.issue(key), account.protected, account.last_seen
        )

    async def _adopt_legacy(self, name: str, key: str) -> Account | None:
        """An account a store kept under the key rule of before (accents not folded).

        The SQLite store makes its keys again when it opens; a store that does
        not (Redis) still has ``João`` under ``joão``. Without this, a hello
        as ``João`` would find no account under ``joao`` and create an open
        one, and a password would no longer protect the name. The account is
        saved under today's key from then on.
        """
        old_key = legacy_key(name)
        if old_key == key:
            return None
        old = await self.store.get_account(old_key)
        if old is None:
            return None
        adopted = Account(key, old.name, old.password_hash, old.created, old.last_seen)
        await self.store.save_account(adopted)
        log.info("account %s moved from the key %r to %r", old.name, old_key, key)
        return adopted

    async def register(self, name: str, password: str) -> None:
        """Protect ``name`` (already joined, so allowed to) with ``password``."""
        key = name_key(name)
        account = await self.store.get_account(key) or Account(key, name, None, time.time())
        if account.protected:
            raise ProtocolError(
                "already_protected", t("{name} already has a password", name=account.name)
            )
        await self._protect(account, password)

    async def _protect(self, account: Account, password: str) -> Account:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise ProtocolError(
                "weak_password",
                t("a password has at least {min} characters", min=MIN_PASSWORD_LENGTH),
            )
        hashed = await asyncio.to_thread(hash_password, password)
        protected = Account(account.key, account.name, hashed, account.created)
        await self.store.save_account(protected)
        return protected

    async def revoke(self, token: str) -> None:
        claims = self.tokens.verify(token)
        if claims is not None:
            await self.store.revoke_token(claims.token_id, claims.expires)
