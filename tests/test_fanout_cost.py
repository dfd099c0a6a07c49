"""A room message costs work for the room's members only, whatever the connections.

In-process, with 10 000 sessions that count what they are written: work is
counted (frames written, sessions visited while iterating the hub's own
session tables), never timed, so the test does not depend on the machine.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, ValuesView
from typing import Any

from papo.directory import Session
from papo.hub import Hub
from papo.limits import AttemptLimiter
from papo.protocol import Join, Say
from tests.fakes import CountingLink, make_hub

CONNECTIONS = 10_000
ROOM = "#small"
MEMBERS = 10


class CountingDict(dict[int, Session]):
    """A dict of sessions that counts the entries any iteration over it visits."""

    visited = 0

    def __iter__(self) -> Iterator[int]:
        for key in super().__iter__():
            CountingDict.visited += 1
            yield key

    def values(self) -> ValuesView[Session]:  # type: ignore[override]
        return _Counted(super().values())  # type: ignore[return-value]

    def items(self) -> ItemsView[int, Session]:  # type: ignore[override]
        return _Counted(super().items())  # type: ignore[return-value]


class _Counted:
    def __init__(self, view: Any) -> None:
        self.view = view

    def __iter__(self) -> Iterator[Any]:
        for entry in self.view:
            CountingDict.visited += 1
            yield entry

    def __len__(self) -> int:
        return len(self.view)


async def crowded_hub() -> tuple[Hub, list[Session]]:
    """A hub with CONNECTIONS guests in the default room; the first MEMBERS also in ROOM."""
    hub = await make_hub(joins_per_address=0, room_creations=AttemptLimiter(0, 60))
    # The hub's tables of every session and of every joined session: count who walks them.
    hub.pool = hub.catchup.pool = CountingDict()
    hub.members = CountingDict()
    sessions = []
    for _ in range(CONNECTIONS):
        session = hub.attach(CountingLink())
        await hub.presence.join_guest(session)
        sessions.append(session)
    await hub.settle()
    for session in sessions[:MEMBERS]:
        await hub.handle(session, Join(ROOM))
    await hub.settle()
    assert all(s.user is not None for s in sessions)
    return hub, sessions


def writes(sessions: list[Session]) -> list[int]:
    counts = []
    for session in sessions:
        assert isinstance(session.link, CountingLink)
        counts.append(session.link.writes)
    return counts


async def test_a_room_message_visits_its_members_only() -> None:
    hub, sessions = await crowded_hub()
    assert len(hub.pool) == CONNECTIONS
    assert len(hub.members) == CONNECTIONS
    before = writes(sessions)
    CountingDict.visited = 0

    for n in range(5):
        await hub.handle(sessions[n], Say(f"hello {n}", room=ROOM))
    await hub.settle()

    after = writes(sessions)
    delta = [a - b for a, b in zip(after, before, strict=True)]
    # Each message reaches the other 9 members once; nobody else is written to.
    assert delta[:MEMBERS] == [4] * 5 + [5] * (MEMBERS - 5)
    assert sum(delta[MEMBERS:]) == 0
    # And nobody else is even looked at: no walk over every session or every member.
    assert CountingDict.visited <= 5 * MEMBERS
    assert hub.stats.deliveries >= 5 * (MEMBERS - 1)


async def test_a_default_room_message_still_reaches_every_session() -> None:
    """The contrast: a message to everyone's room costs one write per session."""
    hub, sessions = await crowded_hub()
    before = writes(sessions)
    CountingDict.visited = 0
    await hub.handle(sessions[-1], Say("hello everyone"))
    await hub.settle()
    delta = [a - b for a, b in zip(writes(sessions), before, strict=True)]
    assert delta == [1] * (CONNECTIONS - 1) + [0]
    assert CountingDict.visited >= CONNECTIONS  # the counter does see a walk over everyone
