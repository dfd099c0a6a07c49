"""Moderation and the message lifecycle as users act on them (the hub's side).

:class:`ModerationOps` checks each request against the actor's role
(:mod:`papo.moderation`) and carries it out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from papo.directory import Session, User
from papo.errors import Forbidden
from papo.i18n import t
from papo.protocol import ModerationEvent

if TYPE_CHECKING:
    from papo.hub import Hub


class ModerationOps:
    """Moderation requests of users here."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def handle(self, session: Session, user: User, event: ModerationEvent) -> None:
        raise Forbidden(t("you may not do that here"))
