"""A throwaway store (``--memory``): everything in this process, gone when it stops.

For trying papo out, for tests that need no disk, and as the baseline the
durable store is measured against.
"""

from __future__ import annotations

import secrets

from papo.store import DEFAULT_RETENTION, Account, LocalPresence, MessageLog, Page, Stored


class MemoryStore(LocalPresence):
    """The :class:`~papo.store.Store` interface kept in dictionaries."""

    def __init__(self, retention: int = DEFAULT_RETENTION) -> None:
        super().__init__()
        # The ring is the whole history here: it holds `retention` messages.
        self.log = MessageLog(retention, ring_size=retention)
        self._secret = secrets.token_bytes(32)
        self._accounts: dict[str, Account] = {}
        self._revoked: set[str] = set()

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def secret(self) -> bytes:
        return self._secret

    async def get_account(self, key: str) -> Account | None:
        return self._accounts.get(key)

    async def save_account(self, account: Account) -> None:
        self._accounts[account.key] = account

    async def set_last_seen(self, key: str, message_id: int) -> None:
        account = self._accounts.get(key)
        if account is not None:
            self._accounts[key] = Account(
                account.key, account.name, account.password_hash, account.created, message_id
            )

    async def revoke_token(self, token_id: str, expires: float) -> None:
        self._revoked.add(token_id)

    async def is_revoked(self, token_id: str) -> bool:
        return token_id in self._revoked

    async def append(self, message: Stored, origin: int | None = None) -> tuple[Stored, bool]:
        earlier = self.log.duplicate(message.sender_key, message.cid)
        if isinstance(earlier, Stored):
            return earlier, False
        stored = self.log.assign(message)
        self.log.commit([stored])
        ring = self.log.ring
        if len(ring) == ring.maxlen:
            self.log.trimmed(ring[0].id)
        self.on_message(stored, origin)
        return stored, True

    async def page(self, key: str, after: int, limit: int) -> Page:
        messages, scanned = self.log.since(key, after, limit)
        return Page(messages, scanned, self.log.oldest)

    async def ping(self) -> None:
        pass
