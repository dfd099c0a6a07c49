"""Sending again, by itself, a message the server could not store just now.

The server answers ``store_unavailable`` when its store failed (Redis
unreachable or failing over, a locked database) or could not confirm the
write (Redis replicas late with ``WAIT``: the message may still arrive); in
either case the same message sent again under the same ``cid`` is stored
once (docs/protocol.md). So the terminal client does not drop it: it waits a
short, growing, jittered while and sends it again, up to ``tries`` times,
saying so once in the user's language; then it gives up, says so, and the
server's error is shown. Used by :class:`~papo.client_session.ChatSession`,
which keeps the message until it is acknowledged; the page does the same in
``papo/web/app.js``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable

from papo.i18n import Text, t
from papo.protocol import Say

log = logging.getLogger("papo.client_session")

#: Times a refused message is sent again before giving up, and the cap of the wait
#: before each time, in seconds (from 0.25-0.5 up to 2.5-5 s: 12.5 s in all at most).
RESEND_TRIES = 5
RESEND_CAP = 5.0
#: How long a message being re-sent may still take to be acknowledged: the waits
#: (12.5 s at most) plus a server's own wait for replicas (``--redis-wait``, up to
#: 2 s) on each try, with room to spare.
RESEND_WINDOW = 30.0


def resend_delay(attempt: int, cap: float = RESEND_CAP) -> float:
    """Seconds before re-send ``attempt`` (1, 2, ...): exponential from 0.5, jittered."""
    ceiling = min(cap, 0.5 * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


class Resends:
    """The messages refused with ``store_unavailable``, each waiting to be sent again.

    ``send(cid)`` sends the message of ``cid`` again if it is still unacknowledged
    (the session's outbox decides); ``status`` tells the user; ``sleep`` waits (the
    event loop's, or a test's clock).
    """

    def __init__(
        self,
        send: Callable[[str], Awaitable[object]],
        status: Callable[[Text], None],
        *,
        tries: int = RESEND_TRIES,
        cap: float = RESEND_CAP,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._send = send
        self._status = status
        self.tries = tries
        self.cap = cap
        self._sleep = sleep
        self._refused: dict[str, int] = {}  # cid → refusals so far
        self.refusals = 0  # every store_unavailable heard, for the log and tests
        self._waiting: dict[str, asyncio.Task[None]] = {}  # cid → its re-send

    def refused(self, cid: str, say: Say) -> bool:
        """The server refused ``say``: True when it will be sent again, False when this
        was its last try (the user is told; the server's error is to be shown)."""
        self.refusals += 1
        tries = self._refused.get(cid, 0) + 1
        if tries > self.tries:
            self.settled(cid)
            self._status(
                t("gave up sending your message after {n} tries: {text}", n=tries, text=say.text)
            )
            return False
        self._refused[cid] = tries
        delay = resend_delay(tries, self.cap)
        log.info(
            "message %s: store_unavailable; sending it again (%d) in %.1f s", cid, tries, delay
        )
        if tries == 1:
            self._status(
                t(
                    "your message is not confirmed yet; sending it again in {seconds} s…",
                    seconds=max(1, math.ceil(delay)),
                )
            )
        old = self._waiting.get(cid)
        if old is not None:
            old.cancel()
        self._waiting[cid] = asyncio.get_running_loop().create_task(self._later(cid, delay))
        return True

    def settled(self, cid: str) -> None:
        """The server acknowledged ``cid`` (or it was given up): nothing more to send."""
        self._refused.pop(cid, None)
        task = self._waiting.pop(cid, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    @property
    def retrying(self) -> int:
        """How many refused messages are still being sent again (waiting or sent)."""
        return len(self._refused)

    @property
    def waiting(self) -> int:
        """Messages waiting to be sent again."""
        return len(self._waiting)

    def stop(self) -> None:
        """The conversation ended: send nothing more."""
        for task in self._waiting.values():
            task.cancel()
        self._waiting.clear()

    async def _later(self, cid: str, delay: float) -> None:
        try:
            await self._sleep(delay)
            await self._send(cid)
        finally:
            if self._waiting.get(cid) is asyncio.current_task():
                del self._waiting[cid]
