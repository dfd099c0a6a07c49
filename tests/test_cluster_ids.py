"""The cluster id scheme, slot tags and grouping (pure functions), and the cluster ring.

The append script computes ids in Lua; :func:`simulate` does the same steps
in Python (``T = max(last T + 1, now, the stream's newest T + 1)``), so the
properties below are those of the scheme the script implements.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from papo.cluster_ids import (
    EPOCH_MS,
    LAST_ID_TIME,
    MAX_ID,
    SLOTS,
    ClusterUrlError,
    clock_key,
    group_by_node,
    group_by_slot,
    key_slot,
    make_id,
    parse_cluster_url,
    slot_of_id,
    slot_tag,
    tick,
)
from papo.store_cluster_log import ClusterLog
from papo.store_records import Stored


def simulate(appends: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(slot, clock ms) appends, in commit order → (slot, id), as the script gives them."""
    last: dict[int, int] = {}
    out = []
    for slot, now in appends:
        t = tick(last.get(slot, 0), now)
        last[slot] = t
        out.append((slot, make_id(t, slot)))
    return out


appends = st.lists(
    st.tuples(st.integers(0, SLOTS - 1), st.integers(0, 10**12)), min_size=1, max_size=200
)


@given(appends)
def test_ids_are_unique_and_increase_per_slot_in_commit_order(batch: list[tuple[int, int]]) -> None:
    ids = simulate(batch)
    assert len({i for _, i in ids}) == len(ids)
    for slot in {s for s, _ in ids}:
        mine = [i for s, i in ids if s == slot]
        assert mine == sorted(mine) and len(set(mine)) == len(mine)
        assert all(slot_of_id(i) == slot for i in mine)


@given(st.lists(st.integers(0, SLOTS - 1), min_size=1, max_size=100), st.integers(0, 10**12))
def test_a_clock_that_stands_still_or_goes_back_still_gives_new_ids(
    slots: list[int], now: int
) -> None:
    ids = simulate([(slot, now - k) for k, slot in enumerate(slots)])
    assert len({i for _, i in ids}) == len(ids)


def test_ids_stay_below_two_to_the_53_until_2042() -> None:
    years = (MAX_ID // SLOTS) / (365.25 * 86_400_000)
    assert 17 < years < 18
    assert LAST_ID_TIME.year == 2042
    assert make_id(MAX_ID // SLOTS, SLOTS - 1) <= MAX_ID < make_id(MAX_ID // SLOTS + 1, 0)
    assert EPOCH_MS == 1_735_689_600_000  # 2025-01-01T00:00:00Z


def test_every_slot_has_a_short_tag_of_its_own() -> None:
    tags = [slot_tag(slot) for slot in range(SLOTS)]
    assert all(key_slot(f"{{{tag}}}:clock") == slot for slot, tag in enumerate(tags))
    assert max(map(len, tags)) <= 4
    assert key_slot(clock_key(12_182)) == 12_182


@given(st.lists(st.text(min_size=1, max_size=12), max_size=50))
def test_grouping_by_slot_and_by_node_keeps_every_key_once(names: list[str]) -> None:
    keys = [f"{{r:#{name}}}:messages" for name in names]
    by_slot = group_by_slot(keys)
    assert sorted(k for group in by_slot.values() for k in group) == sorted(keys)
    assert all(key_slot(k) == slot for slot, group in by_slot.items() for k in group)
    by_node = group_by_node(keys, lambda slot: "a" if slot < SLOTS // 2 else "b")
    assert sorted(k for group in by_node.values() for k in group) == sorted(keys)
    assert all(
        (key_slot(k) < SLOTS // 2) == (node == "a") for node, g in by_node.items() for k in g
    )


def test_cluster_urls() -> None:
    nodes, user, password = parse_cluster_url("redis+cluster://u:pw@10.0.0.1:7000,[::1]:7001")
    assert nodes == [("10.0.0.1", 7000), ("::1", 7001)]
    assert (user, password) == ("u", "pw")
    for bad in ("redis://h:1", "redis+cluster://", "redis+cluster://h", "redis+cluster://h:x"):
        try:
            parse_cluster_url(bad)
        except ClusterUrlError:
            continue
        raise AssertionError(f"{bad} was accepted")


# ---------------------------------------------------------------- the ring per conversation


def entry(message_id: int, conv: str) -> Stored:
    return Stored(message_id, "ana", "ana", f"m{message_id}", "2026-01-01T00:00:00Z", conv=conv)


def test_the_ring_answers_per_conversation_in_arrival_order() -> None:
    ring = ClusterLog(retention=100, ring_size=4)
    ring.follow("#a", [entry(50, "#a")], complete_from=0)
    ring.follow("#b", [], complete_from=0)
    ring.commit([entry(70, "#a"), entry(60, "#b"), entry(65, "#b")])  # ids across: not ordered
    assert [m.id for m in ring.since_conv("#a", 0, 10)] == [50, 70]
    assert [m.id for m in ring.since_conv("#b", 60, 10)] == [65]
    assert ring.covers_conv("#a", 0) and not ring.covers_conv("#c", 0)
    ring.commit([entry(80, "#b")])  # the ring is full: #a's oldest (50) goes
    assert not ring.covers_conv("#a", 0) and ring.covers_conv("#a", 50)
    assert ring.since_conv("#a", 0, 10) == []
    assert [m.id for m in ring.recent("ana", {"#a", "#b"}, 3)] == [65, 70, 80]
    assert ring.find(65) is not None and ring.find(50) is None
    ring.commit([entry(65, "#b")])  # delivered twice: kept once
    assert [m.id for m in ring.since_conv("#b", 0, 10)] == [60, 65, 80]
    ring.forget("#b")
    assert [m.id for m in ring.ring] == [70]


@given(st.lists(st.tuples(st.sampled_from(["#a", "#b", "#c"]), st.integers(1, 5)), max_size=80))
def test_since_conv_returns_exactly_what_the_ring_covers(arrivals: list[tuple[str, int]]) -> None:
    ring = ClusterLog(retention=1000, ring_size=20)
    for conv in ("#a", "#b", "#c"):
        ring.follow(conv, [], complete_from=0)
    newest = {"#a": 0, "#b": 0, "#c": 0}
    delivered: dict[str, list[int]] = {"#a": [], "#b": [], "#c": []}
    for conv, step in arrivals:
        newest[conv] += step
        ring.commit([entry(newest[conv] * 4 + "abc".index(conv[1]), conv)])
        delivered[conv].append(newest[conv] * 4 + "abc".index(conv[1]))
    for conv, ids in delivered.items():
        for after in [0, *ids]:
            if ring.covers_conv(conv, after):
                assert [m.id for m in ring.since_conv(conv, after, 1000)] == [
                    i for i in ids if i > after
                ]


def test_each_conversation_is_complete_to_its_own_newest_id_not_the_chat_wide_one() -> None:
    ring = ClusterLog(retention=100, ring_size=10)
    ring.follow("#a", [entry(50, "#a")], complete_from=0)
    ring.follow("#b", [], complete_from=0)
    ring.commit([entry(900, "#b")])  # another slot, far ahead: #a may still get 60
    assert ring.committed == 900
    assert ring.complete_to("#a") == 50 and ring.complete_to("#b") == 900
    assert ring.complete_to("#c") == 0  # not followed: nothing delivered here
    ring.commit([entry(60, "#a")])
    assert ring.complete_to("#a") == 60
    assert not ring.ordered  # one id is no position in every conversation


def test_recent_in_and_the_direct_conversations_followed_for_a_user() -> None:
    ring = ClusterLog(retention=100, ring_size=10)
    ring.follow("#a", [entry(i, "#a") for i in (5, 9, 12)], complete_from=0)
    ring.follow("@ana|beto", [entry(3, "@ana|beto")], complete_from=0)
    ring.follow("@beto|carla", [entry(4, "@beto|carla")], complete_from=0)
    recent = ring.recent_in(["#a", "@ana|beto", "#none"], 2)
    assert {c: [m.id for m in ms] for c, ms in recent.items()} == {
        "#a": [9, 12],
        "@ana|beto": [3],
        "#none": [],
    }
    # a new direct conversation's ids may be below any id the hello saw: all are named
    assert ring.directs_after("ana", 1000) == ({"@ana|beto"}, 1000)
    assert ring.directs_after("beto", 0) == ({"@ana|beto", "@beto|carla"}, 0)
