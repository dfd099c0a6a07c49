"""The moderation rules as pure functions: roles, durations, restrictions, addresses.

The permission matrix is written out by hand here (not derived from
``papo.moderation.PERMISSIONS``), so a change of a rule shows up as a change
of this table.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from papo.moderation import (
    MAX_DURATION,
    ROLES,
    Action,
    AddressBans,
    BadAddress,
    BadDuration,
    ModerationState,
    Restriction,
    Role,
    RoomMode,
    client_address,
    format_duration,
    in_networks,
    iso_time,
    may,
    may_target,
    parse_duration,
    parse_network,
    parse_time,
    restriction_for,
    role_of,
)

A = Action
#: action → (admin, operator, member)
MATRIX: dict[Action, tuple[bool, bool, bool]] = {
    A.EDIT_OWN: (True, True, True),
    A.DELETE_OWN: (True, True, True),
    A.DELETE_ANY: (True, True, False),
    A.KICK: (True, True, False),
    A.MUTE: (True, True, False),
    A.UNMUTE: (True, True, False),
    A.MODE: (True, True, False),
    A.SPEAK_MODERATED: (True, True, False),
    A.TOPIC_LOCKED: (True, True, False),
    A.OP: (True, True, False),
    A.DEOP: (True, True, False),
    A.BAN: (True, False, False),
    A.UNBAN: (True, False, False),
    A.BAN_IP: (True, False, False),
    A.UNBAN_IP: (True, False, False),
    A.PURGE: (True, False, False),
    A.AUDIT: (True, False, False),
}


def test_the_matrix_names_every_action() -> None:
    assert set(MATRIX) == set(Action)


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(role: Role, action: Action) -> None:
    allowed = MATRIX[action][ROLES.index(role)]
    assert may(role, action) is allowed


@given(st.sampled_from(list(Action)))
def test_roles_are_nested(action: Action) -> None:
    """Whatever a member may, an operator may; whatever an operator may, an admin may."""
    if may("member", action):
        assert may("operator", action)
    if may("operator", action):
        assert may("admin", action)


@pytest.mark.parametrize(
    ("actor", "target", "allowed"),
    [
        ("admin", "admin", False),
        ("admin", "operator", True),
        ("admin", "member", True),
        ("operator", "admin", False),
        ("operator", "operator", True),
        ("operator", "member", True),
        ("member", "admin", False),
        ("member", "operator", False),
        ("member", "member", False),
    ],
)
def test_who_may_act_on_whom(actor: Role, target: Role, allowed: bool) -> None:
    assert may_target(actor, target) is allowed


def test_role_of() -> None:
    assert role_of(admin=True, operator=False) == "admin"
    assert role_of(admin=True, operator=True) == "admin"
    assert role_of(admin=False, operator=True) == "operator"
    assert role_of(admin=False, operator=False) == "member"


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("10m", 600),
        ("2h", 7200),
        ("1d", 86400),
        ("1w", 604800),
        ("1h30m", 5400),
        ("1H30M", 5400),
        (" 90s ", 90),
        ("2d3h4m5s", 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "10", "m", "10x", "-5m", "0m", "1.5h", "10 m", "1h 30m", "367d", "abc", "5m!"]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(BadDuration):
        parse_duration(text)


@given(st.integers(1, MAX_DURATION))
def test_a_formatted_duration_reads_back_as_itself(seconds: int) -> None:
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert text == format_duration(parse_duration(text))


@given(st.floats(0, MAX_DURATION, allow_nan=False))
def test_what_is_left_rounds_up_to_a_whole_second(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) >= max(1.0, seconds)


def test_formatted_durations_read_like_people_write_them() -> None:
    assert [format_duration(s) for s in (45, 600, 5400, 86400, 90061)] == [
        "45s",
        "10m",
        "1h30m",
        "1d",
        "1d1h1m1s",
    ]


@given(st.floats(0, 4_000_000_000, allow_nan=False))
def test_iso_times_read_back(moment: float) -> None:
    assert abs(parse_time(iso_time(moment)) - moment) < 0.001


def test_times_without_a_zone_are_utc_and_bad_ones_raise() -> None:
    assert parse_time("1970-01-01T00:01:00") == 60.0
    with pytest.raises(ValueError):
        parse_time("yesterday")


# ---------------------------------------------------------------- restrictions


@given(st.floats(0, 10**9), st.integers(1, MAX_DURATION), st.floats(0, 2 * MAX_DURATION))
def test_a_timed_restriction_ends_by_itself(now: float, seconds: int, later: float) -> None:
    restriction = restriction_for("beto", "ana", "spam", seconds, now)
    assert restriction.active(now)
    assert restriction.active(now + later) is (later < seconds)
    left = restriction.left(now + later)
    assert left is not None and left == pytest.approx(max(0.0, seconds - later))


def test_a_restriction_without_an_end_lasts_until_lifted() -> None:
    restriction = restriction_for("beto", "ana", "", None, 100.0)
    assert restriction.active(10**12) and restriction.left(10**12) is None
    assert restriction.until_iso is None
    assert Restriction("b", "a", until=60.0).until_iso == "1970-01-01T00:01:00.000Z"


# ---------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("text", "network"),
    [
        ("203.0.113.7", "203.0.113.7/32"),
        ("203.0.113.0/24", "203.0.113.0/24"),
        ("203.0.113.9/24", "203.0.113.0/24"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("::ffff:10.0.0.1", "10.0.0.1/32"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("[::1]", "::1/128"),
    ],
)
def test_networks(text: str, network: str) -> None:
    assert str(parse_network(text)) == network


@pytest.mark.parametrize("text", ["", "localhost", "300.1.1.1", "10.0.0.0/33", "1.2.3", "::g"])
def test_bad_networks(text: str) -> None:
    with pytest.raises(BadAddress):
        parse_network(text)


ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


@given(ipv4, st.integers(0, 32), ipv4)
def test_an_address_is_in_a_block_exactly_when_its_prefix_matches(
    base: ipaddress.IPv4Address, prefix: int, address: ipaddress.IPv4Address
) -> None:
    network = parse_network(f"{base}/{prefix}")
    same_prefix = (int(base) >> (32 - prefix)) == (int(address) >> (32 - prefix)) or prefix == 0
    assert in_networks(str(address), [network]) is same_prefix
    # written as IPv6 (a dual-stack socket's view of an IPv4 client): the same answer
    assert in_networks(f"::ffff:{address}", [network]) is same_prefix


def test_address_bans_match_block_and_expire() -> None:
    bans = AddressBans()
    bans.add(parse_network("10.0.0.0/8"), Restriction("10.0.0.0/8", "ana"))
    bans.add(parse_network("2001:db8::/32"), Restriction("2001:db8::/32", "ana", until=50.0))
    assert bans.match("10.1.2.3", 0) is not None
    assert bans.match("11.0.0.1", 0) is None
    assert bans.match("2001:db8::5", 49.0) is not None
    assert bans.match("2001:db8::5", 51.0) is None  # ended by itself, and forgotten
    assert "2001:db8::/32" not in bans.entries
    assert bans.match("not an address", 0) is None
    assert bans.remove(parse_network("10.0.0.0/8")) and bans.match("10.1.2.3", 0) is None
    assert not bans.remove(parse_network("10.0.0.0/8"))


TRUSTED = [parse_network("127.0.0.1"), parse_network("10.0.0.0/8")]


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        # no proxy: the peer, whatever header it sends
        ("198.51.100.1", ["6.6.6.6"], "198.51.100.1"),
        # a trusted proxy: the address it got the request from
        ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        # the client forged a header; nginx appended the real address: the rightmost counts
        ("127.0.0.1", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
        # two trusted proxies in a row
        ("127.0.0.1", ["198.51.100.1, 10.1.1.1"], "198.51.100.1"),
        ("127.0.0.1", ["198.51.100.1", "10.1.1.1"], "198.51.100.1"),
        # a trusted proxy with no header, or a garbled one: the proxy itself
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["garbage"], "127.0.0.1"),
        # every hop trusted: the leftmost one
        ("127.0.0.1", ["10.0.0.2, 10.0.0.3"], "10.0.0.2"),
        # an IPv4 peer seen through a dual-stack socket
        ("::ffff:127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("::ffff:198.51.100.1", [], "198.51.100.1"),
    ],
)
def test_client_address_behind_trusted_proxies(peer: str, headers: list[str], client: str) -> None:
    assert client_address(peer, headers, TRUSTED) == client


@given(st.lists(st.from_regex(r"[0-9a-f.:, ]{0,30}", fullmatch=True), max_size=4))
def test_an_untrusted_peer_is_never_moved_by_its_headers(headers: list[str]) -> None:
    assert client_address("198.51.100.1", headers, TRUSTED) == "198.51.100.1"
    assert client_address("127.0.0.1", headers, []) == "127.0.0.1"


# ---------------------------------------------------------------- the state


def test_a_rooms_creator_is_its_operator_until_deopped() -> None:
    state = ModerationState()
    assert state.is_operator("#sala", "ana", "ana")
    assert not state.is_operator("#sala", "ana", "beto")
    assert not state.is_operator("#geral", "", "")  # the default room has no creator
    state.set_operator("#sala", "beto", "Beto", True)
    assert state.is_operator("#sala", "ana", "beto")
    assert state.operator_names("#sala", "ana", "Ana") == ["Ana", "Beto"]
    state.set_operator("#sala", "ana", "Ana", False)
    assert not state.is_operator("#sala", "ana", "ana")
    assert state.operator_names("#sala", "ana", "Ana") == ["Beto"]
    assert state.operator_names("#outra", "", "") == []


def test_bans_and_mutes_end_by_themselves() -> None:
    state = ModerationState()
    state.bans["beto"] = Restriction("beto", "ana", until=100.0)
    state.mutes[("#sala", "beto")] = Restriction("beto", "ana", until=50.0)
    assert state.ban_of("beto", 99.0) is not None and state.ban_of("carla", 0) is None
    assert state.mute_of("#sala", "beto", 49.0) is not None
    assert state.mute_of("#outra", "beto", 49.0) is None
    assert state.mute_of("#sala", "beto", 50.0) is None and not state.mutes
    assert state.ban_of("beto", 100.0) is None and not state.bans
    assert state.mode_of("#sala") == RoomMode()
