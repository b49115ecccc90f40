"""Tests of meshemu.controlplane.events: ExaBGP 5.0 JSON API lines in, API commands out.

The messages below are ExaBGP's own output, not hand-written guesses: the `state`,
`notification` and `keepalive` lines come from ExaBGP 5.0.15's encoder
(`exabgp/reactor/api/response/json.py`, class `JSON`: `up`, `connected`, `down`, `shutdown`,
`notification`, `keepalive`), and the `update` lines from `exabgp decode -f "ipv4 unicast ipv6
unicast" <hex>` on BGP UPDATE packets built byte by byte (ORIGIN, AS_PATH, NEXT_HOP,
LOCAL_PREF, ORIGINATOR_ID, CLUSTER_LIST, MP_REACH/MP_UNREACH). Only `host`, `pid` and `time`
were shortened. The round-trip tests at the end drive ExaBGP's own command parser and encoder
in-process, so a change on either side of the wire shows here.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshemu.controlplane.events import (
    OtherEvent,
    RecordedPath,
    StateEvent,
    UpdateEvent,
    announce_command,
    coalesce_commands,
    parse_message,
    path_from_json,
    path_to_json,
    withdraw_command,
)
from meshemu.model.bgp import Path

HEAD = '{ "exabgp": "5.0.0", "time": 1795926166.02, "host" : "vm", "pid" : 7976, "ppid" : 7973, '
NEIGHBOR = (
    '"neighbor": { "address": { "local": "10.30.1.2", "peer": "10.30.1.4" }, '
    '"asn": { "local": 64512, "peer": 64512 }, "router-id": "10.30.1.2" '
)

STATE_UP = HEAD + '"counter": 1, "type": "state", ' + NEIGHBOR + ', "state": "up" } }'
STATE_CONNECTED = HEAD + '"counter": 2, "type": "state", ' + NEIGHBOR + ', "state": "connected" } }'
STATE_DOWN = (
    HEAD
    + '"counter": 3, "type": "state", '
    + NEIGHBOR
    + ', "state": "down", "reason": "peer reset, message [closing connection] error[the TCP '
    'connection was closed by the remote end]" } }'
)
SHUTDOWN = HEAD + '"type": "notification", "notification": "shutdown" }'
KEEPALIVE = (
    HEAD + '"counter": 4, "type": "keepalive", ' + NEIGHBOR + ', "direction": "receive"  } }'
)
NOTIFICATION = (
    HEAD
    + '"counter": 5, "type": "notification", '
    + NEIGHBOR
    + ', "direction": "receive", "notification": { "code": 6, "subcode": 2, "data": '
    '"0x41646D696E6973747261746976652053687574646F776E", "message": "Administrative Shutdown" }'
    "  } }"
)

# `exabgp decode` answers as if the peer were 127.0.0.1.
DECODE_HEAD = (
    HEAD + '"counter": 1, "type": "update", "neighbor": { "address": { "local": "127.0.0.1", '
    '"peer": "127.0.0.1" }, "asn": { "local": 65533, "peer": 65533 }, "router-id": "10.0.0.2" , '
    '"direction": "in", '
)
# Reflected IPv4 route: iBGP, no AS_PATH segment, LOCAL_PREF, ORIGINATOR_ID, one cluster.
UPDATE_RR4 = (
    DECODE_HEAD + '"message": { "update": { "attribute": { "origin": "igp", "local-preference": '
    '100, "originator-id": "10.30.1.4", "cluster-list": [ "244.0.0.1" ] }, "announce": { "ipv4 '
    'unicast": { "10.30.1.4": [ { "nlri": "172.20.1.0/26" } ] } } } } } }'
)
# The same with `exabgp.api.compact=true`: NLRIs as bare strings.
UPDATE_RR4_COMPACT = (
    DECODE_HEAD + '"message": { "update": { "attribute": { "origin": "igp", "local-preference": '
    '100, "originator-id": "10.30.1.4", "cluster-list": [ "244.0.0.1" ] }, "announce": { "ipv4 '
    'unicast": { "10.30.1.4": [ "172.20.1.0/26" ] } } } } } }'
)
# eBGP: an AS_SEQUENCE of two, no LOCAL_PREF, two prefixes for one next hop.
UPDATE_EBGP4 = (
    DECODE_HEAD + '"message": { "update": { "attribute": { "origin": "igp", "as-path": {"0": '
    '{"element": "as-sequence", "value": [64513, 64514]}} }, "announce": { "ipv4 unicast": { '
    '"10.10.2.2": [ { "nlri": "172.16.5.0/26" }, { "nlri": "172.16.5.64/26" } ] } } } } } }'
)
# Reflected IPv6 route through two clusters (MP_REACH_NLRI).
UPDATE_RR6 = (
    DECODE_HEAD + '"message": { "update": { "attribute": { "origin": "igp", "local-preference": '
    '100, "originator-id": "10.30.2.3", "cluster-list": [ "244.0.0.1", "244.0.0.2" ] }, '
    '"announce": { "ipv6 unicast": { "fd00:30:2::3": [ { "nlri": '
    '"fd00:dead:beef:0:1234::/122" } ] } } } } } }'
)
WITHDRAW4 = (
    DECODE_HEAD + '"message": { "update": { "withdraw": { "ipv4 unicast": [ { "nlri": '
    '"172.20.1.0/26" }, { "nlri": "172.20.1.64/26" } ] } } } } }'
)
WITHDRAW6 = (
    DECODE_HEAD + '"message": { "update": { "withdraw": { "ipv6 unicast": [ { "nlri": '
    '"fd00:dead:beef:0:1234::/122" } ] } } } } }'
)
EOR4 = DECODE_HEAD + '"message": { "eor": { "afi" : "ipv4", "safi" : "unicast" } } } }'
EOR6 = DECODE_HEAD + '"message": { "eor": { "afi" : "ipv6", "safi" : "unicast" } } } }'
# One UPDATE that withdraws one prefix and announces another.
UPDATE_MIXED = (
    DECODE_HEAD + '"message": { "update": { "attribute": { "origin": "igp", "local-preference": '
    '100, "originator-id": "10.30.1.4", "cluster-list": [ "244.0.0.1" ] }, "announce": { "ipv4 '
    'unicast": { "10.30.1.4": [ { "nlri": "172.20.1.0/26" } ] } }, "withdraw": { "ipv4 unicast": '
    '[ { "nlri": "172.20.9.0/26" } ] } } } } }'
)

REAL_MESSAGES = [
    STATE_UP,
    STATE_CONNECTED,
    STATE_DOWN,
    SHUTDOWN,
    KEEPALIVE,
    NOTIFICATION,
    UPDATE_RR4,
    UPDATE_RR4_COMPACT,
    UPDATE_EBGP4,
    UPDATE_RR6,
    WITHDRAW4,
    WITHDRAW6,
    EOR4,
    EOR6,
    UPDATE_MIXED,
]


def test_every_captured_message_is_json() -> None:
    for line in REAL_MESSAGES:
        assert isinstance(json.loads(line), dict)


# --- state ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "state"), [(STATE_UP, "up"), (STATE_CONNECTED, "connected"), (STATE_DOWN, "down")]
)
def test_state_messages(line: str, state: str) -> None:
    event = parse_message(line)
    assert isinstance(event, StateEvent)
    assert (event.peer, event.local, event.state) == ("10.30.1.4", "10.30.1.2", state)


def test_state_down_keeps_the_reason() -> None:
    event = parse_message(STATE_DOWN)
    assert isinstance(event, StateEvent)
    assert event.reason.startswith("peer reset")
    assert "closed by the remote end" in event.reason


def test_state_up_has_no_reason() -> None:
    event = parse_message(STATE_UP)
    assert isinstance(event, StateEvent)
    assert event.reason == ""


# --- updates -------------------------------------------------------------------------------------


@pytest.mark.parametrize("line", [UPDATE_RR4, UPDATE_RR4_COMPACT])
def test_reflected_ipv4_announce(line: str) -> None:
    event = parse_message(line)
    assert isinstance(event, UpdateEvent)
    assert (event.peer, event.local) == ("127.0.0.1", "127.0.0.1")
    assert event.withdrawn == ()
    assert not event.end_of_rib
    assert event.announced == (
        Path(
            prefix="172.20.1.0/26",
            next_hop="10.30.1.4",
            as_path=(),
            local_pref=100,
            originator_id="10.30.1.4",
            cluster_list=("244.0.0.1",),
        ),
    )


def test_ebgp_announce_with_as_path_and_two_prefixes() -> None:
    event = parse_message(UPDATE_EBGP4)
    assert isinstance(event, UpdateEvent)
    assert [(p.prefix, p.next_hop) for p in event.announced] == [
        ("172.16.5.0/26", "10.10.2.2"),
        ("172.16.5.64/26", "10.10.2.2"),
    ]
    for path in event.announced:
        assert path.as_path == (64513, 64514)
        assert path.local_pref == 100  # absent on eBGP: the default
        assert path.originator_id is None
        assert path.cluster_list == ()
        assert path.learned_from is None  # the agent stamps where it came from


def test_reflected_ipv6_announce_through_two_clusters() -> None:
    event = parse_message(UPDATE_RR6)
    assert isinstance(event, UpdateEvent)
    (path,) = event.announced
    assert path.prefix == "fd00:dead:beef:0:1234::/122"
    assert path.next_hop == "fd00:30:2::3"
    assert path.originator_id == "10.30.2.3"
    assert path.cluster_list == ("244.0.0.1", "244.0.0.2")  # order kept: nearest first


@pytest.mark.parametrize(
    ("line", "prefixes"),
    [
        (WITHDRAW4, ("172.20.1.0/26", "172.20.1.64/26")),
        (WITHDRAW6, ("fd00:dead:beef:0:1234::/122",)),
    ],
)
def test_withdraw(line: str, prefixes: tuple[str, ...]) -> None:
    event = parse_message(line)
    assert isinstance(event, UpdateEvent)
    assert event.withdrawn == prefixes
    assert event.announced == ()
    assert not event.end_of_rib


@pytest.mark.parametrize("line", [EOR4, EOR6])
def test_end_of_rib(line: str) -> None:
    event = parse_message(line)
    assert isinstance(event, UpdateEvent)
    assert event.end_of_rib
    assert (event.announced, event.withdrawn) == ((), ())


def test_one_update_announcing_and_withdrawing() -> None:
    event = parse_message(UPDATE_MIXED)
    assert isinstance(event, UpdateEvent)
    assert [p.prefix for p in event.announced] == ["172.20.1.0/26"]
    assert event.withdrawn == ("172.20.9.0/26",)


def test_as_path_segments_in_order() -> None:
    """Two segments (keys "0", "1", ... and "10" after "9"): concatenated in numeric order."""
    data = json.loads(UPDATE_EBGP4)
    segments = {str(i): {"element": "as-sequence", "value": [65000 + i]} for i in range(12)}
    data["neighbor"]["message"]["update"]["attribute"]["as-path"] = segments
    event = parse_message(json.dumps(data))
    assert isinstance(event, UpdateEvent)
    assert event.announced[0].as_path == tuple(65000 + i for i in range(12))


def test_as_path_as_a_plain_list() -> None:
    data = json.loads(UPDATE_EBGP4)
    data["neighbor"]["message"]["update"]["attribute"]["as-path"] = [64513, 64514]
    event = parse_message(json.dumps(data))
    assert isinstance(event, UpdateEvent)
    assert event.announced[0].as_path == (64513, 64514)


def test_local_preference_is_read() -> None:
    event = parse_message(UPDATE_RR4.replace('"local-preference": 100', '"local-preference": 250'))
    assert isinstance(event, UpdateEvent)
    assert event.announced[0].local_pref == 250


# --- other messages and non-messages -------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "kind"),
    [(KEEPALIVE, "keepalive"), (NOTIFICATION, "notification"), (SHUTDOWN, "notification")],
)
def test_other_messages(line: str, kind: str) -> None:
    event = parse_message(line)
    assert isinstance(event, OtherEvent)
    assert event.kind == kind
    assert event.raw == json.loads(line)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "\n",
        "done",
        "error",
        "shutdown in progress",
        "neighbor 10.0.0.1 announce route 10.0.0.0/24 next-hop self",
        "[1, 2, 3]",
        '"just a string"',
        "{",
        '{ "exabgp": "5.0.0", "type": "state", ',
        "{ not json at all }",
        "{'type': 'state'}",  # Python repr, not JSON
        "\x00\x01\x02",
        "\ufffd\ufffd{",
    ],
)
def test_non_messages_are_none(line: str) -> None:
    assert parse_message(line) is None


@pytest.mark.parametrize("line", REAL_MESSAGES)
def test_every_truncation_of_a_real_message_is_ignored(line: str) -> None:
    """A line cut anywhere (a crash, a partial read) is not JSON: None, never an exception."""
    for end in range(len(line) - 1):
        assert parse_message(line[:end]) is None, line[:end]


def test_surrounding_whitespace_is_ignored() -> None:
    assert isinstance(parse_message(f"  {STATE_UP}  \r\n"), StateEvent)


# --- garbage never raises ------------------------------------------------------------------------


def _update(update: object = None, attribute: object = None, **neighbor: object) -> str:
    body: dict[str, Any] = {}
    if update is not None:
        body["update"] = update
    if attribute is not None:
        body.setdefault("update", {})["attribute"] = attribute
    message: dict[str, Any] = {"address": {"peer": "10.0.0.2", "local": "10.0.0.1"}}
    message["message"] = body
    message.update(neighbor)
    return json.dumps({"type": "update", "neighbor": message})


def _announce(
    attribute: dict[str, Any], nlri: object = "10.1.0.0/24", hop: str = "10.0.0.2"
) -> str:
    return _update({"attribute": attribute, "announce": {"ipv4 unicast": {hop: [nlri]}}})


# Valid JSON in the wrong shape. The parser's contract (the agent calls it on every line ExaBGP
# writes and has no handler around it): it never raises, and what it returns is usable.
GARBAGE_OK_TODAY = {
    "empty object": "{}",
    "type only": '{"type": "update"}',
    "unknown type": '{"type": "operational", "neighbor": {}}',
    "type is a list": '{"type": [1]}',
    "state without neighbor": '{"type": "state"}',
    "update without message": '{"type": "update", "neighbor": {}}',
    "huge number": '{"type": "update", "x": ' + "9" * 5000 + "}",
}
# Each of these raised before events.parse_message checked shapes (AttributeError, TypeError,
# ValueError, RecursionError): the agent died on such a line. Now each is an OtherEvent.
GARBAGE_MALFORMED = {
    "neighbor is a string": '{"type": "update", "neighbor": "x"}',
    "address is a string": '{"type": "state", "neighbor": {"address": "x", "state": "up"}}',
    "message is a list": '{"type": "update", "neighbor": {"message": [1]}}',
    "update is a string": _update("x"),
    "announce is a string": _update({"announce": "x"}),
    "announce family is a list": _update({"announce": {"ipv4 unicast": [1]}}),
    "nlri list is a number": _update({"announce": {"ipv4 unicast": {"10.0.0.2": 5}}}),
    "withdraw family is a number": _update({"withdraw": {"ipv4 unicast": 3}}),
    "attribute is a list": _update(
        {"attribute": [1], "announce": {"ipv4 unicast": {"10.0.0.2": ["10.1.0.0/24"]}}}
    ),
    "as-path holds text": _announce({"as-path": ["x"]}),
    "as-path segment key is not a number": _announce({"as-path": {"a": {"value": [1]}}}),
    "as-path segment value is a number": _announce({"as-path": {"0": {"value": 5}}}),
    "local-preference is text": _announce({"local-preference": "high"}),
    "local-preference is null": _announce({"local-preference": None}),
    "cluster-list is a number": _announce({"cluster-list": 5}),
    "nested 100000 deep": '{"a":' * 100_000 + "1" + "}" * 100_000,
}


@pytest.mark.parametrize("line", list(GARBAGE_OK_TODAY.values()), ids=list(GARBAGE_OK_TODAY))
def test_garbage_shapes_do_not_raise(line: str) -> None:
    event = parse_message(line)
    assert event is None or isinstance(event, StateEvent | UpdateEvent | OtherEvent)


@pytest.mark.parametrize("line", list(GARBAGE_MALFORMED.values()), ids=list(GARBAGE_MALFORMED))
def test_garbage_shapes_are_ignored(line: str) -> None:
    event = parse_message(line)
    assert event is None or isinstance(event, StateEvent | UpdateEvent | OtherEvent)
    if isinstance(event, UpdateEvent):
        assert all(_usable(p) for p in event.announced), event.announced


def _usable(path: Path) -> bool:
    texts = [path.prefix, path.next_hop, *path.cluster_list]
    if path.originator_id is not None:
        texts.append(path.originator_id)
    if not all(isinstance(t, str) for t in texts):
        return False
    try:
        prefix = ipaddress.ip_network(path.prefix)
        hop = ipaddress.ip_address(path.next_hop)
        if path.originator_id is not None:
            ipaddress.IPv4Address(path.originator_id)
        for cluster in path.cluster_list:
            ipaddress.IPv4Address(cluster)
    except (ValueError, TypeError):
        return False
    return prefix.version == hop.version and all(isinstance(a, int) for a in path.as_path)


@pytest.mark.parametrize(
    "line",
    [
        _announce({}, nlri="garbage"),
        _announce({}, nlri={}),
        _announce({"originator-id": 5}),
        _announce({}, nlri="10.1.0.0/24", hop="not-an-address"),
        _announce({"cluster-list": "244.0.0.1"}),  # a string, iterated letter by letter
    ],
    ids=["prefix-garbage", "nlri-without-key", "originator-int", "next-hop-garbage", "cluster-str"],
)
def test_announced_paths_are_usable(line: str) -> None:
    """Garbage never passes through as a Path (AgentCore.on_update would raise on it): the
    message is ignored as an OtherEvent that says what was wrong."""
    event = parse_message(line)
    assert isinstance(event, UpdateEvent | OtherEvent | type(None))
    if isinstance(event, UpdateEvent):
        assert all(_usable(p) for p in event.announced), event.announced
    if isinstance(event, OtherEvent):
        assert event.kind == "update" and event.problem


# More shapes ExaBGP never writes; each is checked by a small helper in events.py.
MALFORMED_ANNOUNCES = {
    "prefix with host bits": _announce({}, nlri="10.1.0.1/24"),
    "prefix is a number": _announce({}, nlri=5),
    "prefix 'None'": _announce({}, nlri="None"),
    "prefix with a scope": _announce({}, nlri="fe80::%eth0/64", hop="fe80::1"),
    "ipv4 prefix, ipv6 next hop": _announce({}, nlri="10.1.0.0/24", hop="fd00::1"),
    "next hop with a scope": _announce({}, nlri="fd00:1::/64", hop="fe80::1%eth0"),
    "local-preference true": _announce({"local-preference": True}),
    "local-preference negative": _announce({"local-preference": -1}),
    "local-preference above 32 bits": _announce({"local-preference": 2**32}),
    "local-preference a float": _announce({"local-preference": 100.0}),
    "as number above 32 bits": _announce({"as-path": [2**32]}),
    "as-path segment not an object": _announce({"as-path": {"0": [1]}}),
    "as-path is text": _announce({"as-path": "64512"}),
    "originator-id ipv6": _announce({"originator-id": "fd00::1"}),
    "cluster-list holds a number": _announce({"cluster-list": [1]}),
    "withdrawn garbage": _update({"withdraw": {"ipv4 unicast": ["garbage"]}}),
    "state is a number": json.dumps(
        {"type": "state", "neighbor": {"address": {"peer": "10.0.0.2"}, "state": 5}}
    ),
    "peer is a number": json.dumps(
        {"type": "state", "neighbor": {"address": {"peer": 5}, "state": "up"}}
    ),
}


@pytest.mark.parametrize("line", list(MALFORMED_ANNOUNCES.values()), ids=list(MALFORMED_ANNOUNCES))
def test_malformed_messages_are_other_events_with_a_problem(line: str) -> None:
    event = parse_message(line)
    assert isinstance(event, OtherEvent), event
    assert event.kind in ("update", "state")
    assert event.problem
    assert event.raw == json.loads(line)


def test_the_problem_names_the_field() -> None:
    event = parse_message(_announce({"local-preference": "high"}))
    assert isinstance(event, OtherEvent)
    assert "local-preference" in event.problem


def test_addresses_are_read_in_their_canonical_form() -> None:
    event = parse_message(_announce({}, nlri="fd00:0:0:1::/64", hop="fd00:0:0:0:0:0:0:2"))
    assert isinstance(event, UpdateEvent)
    assert [(p.prefix, p.next_hop) for p in event.announced] == [("fd00:0:0:1::/64", "fd00::2")]


def test_nlri_with_a_path_id_is_read() -> None:
    """ADD-PATH: ExaBGP writes `{"nlri": ..., "path-information": ...}` (nlri/inet.py)."""
    line = _announce({}, nlri={"nlri": "10.1.0.0/24", "path-information": "0.0.0.1"})
    event = parse_message(line)
    assert isinstance(event, UpdateEvent)
    assert [p.prefix for p in event.announced] == ["10.1.0.0/24"]


def test_null_attributes_are_absent() -> None:
    event = parse_message(_announce({"originator-id": None, "as-path": None}))
    assert isinstance(event, UpdateEvent)
    (path,) = event.announced
    assert (path.originator_id, path.as_path, path.local_pref) == (None, (), 100)


def test_an_unknown_type_keeps_its_kind() -> None:
    event = parse_message('{"type": "fsm", "neighbor": "x"}')
    assert isinstance(event, OtherEvent)
    assert (event.kind, event.problem) == ("fsm", "")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "neighbor",
                    "address",
                    "peer",
                    "local",
                    "state",
                    "reason",
                    "message",
                    "update",
                    "eor",
                    "attribute",
                    "announce",
                    "withdraw",
                    "as-path",
                    "local-preference",
                    "originator-id",
                    "cluster-list",
                    "ipv4 unicast",
                    "10.0.0.2",
                    "nlri",
                    "value",
                    "0",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(JSON_VALUES)
def test_any_json_never_raises(value: object) -> None:
    document = {"type": "update", "neighbor": value} if not isinstance(value, dict) else value
    event = parse_message(json.dumps(document))
    if isinstance(event, UpdateEvent):
        assert all(_usable(p) for p in event.announced), event.announced


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=200))
def test_any_text_that_is_not_an_object_is_none(text: str) -> None:
    if text.strip().startswith("{"):
        text = "x" + text
    assert parse_message(text) is None


# --- commands ------------------------------------------------------------------------------------


def test_announce_command_own_route() -> None:
    path = Path(prefix="192.168.4.0/26", next_hop="10.10.1.2")
    assert (
        announce_command("10.10.1.3", path)
        == "neighbor 10.10.1.3 announce route 192.168.4.0/26 next-hop 10.10.1.2 "
        "local-preference 100"
    )


def test_announce_command_reflected_route() -> None:
    path = Path(
        prefix="fd80::40/122",
        next_hop="fd00:10:2::3",
        as_path=(64513, 64514),
        local_pref=120,
        originator_id="10.10.2.3",
        cluster_list=("244.0.0.1", "244.0.0.2"),
    )
    assert announce_command("fd00:10:1::2", path) == (
        "neighbor fd00:10:1::2 announce route fd80::40/122 next-hop fd00:10:2::3 "
        "local-preference 120 as-path [ 64513 64514 ] originator-id 10.10.2.3 "
        "cluster-list [ 244.0.0.1 244.0.0.2 ]"
    )


def test_withdraw_command() -> None:
    path = Path(prefix="192.168.4.0/26", next_hop="10.10.1.2", as_path=(1,), local_pref=5)
    assert (
        withdraw_command("10.10.1.3", path)
        == "neighbor 10.10.1.3 withdraw route 192.168.4.0/26 next-hop 10.10.1.2"
    )


# --- round trip through ExaBGP itself ------------------------------------------------------------


class _Neighbor(dict[str, object]):
    """What ExaBGP's JSON encoder reads of a neighbor."""

    uid = "1"


def _through_exabgp(command: str) -> str:
    """A meshemu API command parsed by ExaBGP, then encoded as the UPDATE a receiver reports."""
    from exabgp.bgp.message.update import Update
    from exabgp.configuration.configuration import Configuration
    from exabgp.logger import log
    from exabgp.reactor.api.response.json import JSON

    log.silence()
    words = command.split(" ")
    assert words[:2] == ["neighbor", words[1]]
    action, line = words[2], " ".join(words[3:])
    configuration = Configuration([""], text=True)
    assert configuration.partial("static", line, action), f"ExaBGP refused: {command}"
    configuration.scope.to_context()
    changes = configuration.scope.pop_routes()
    neighbor = _Neighbor(
        {
            "local-address": "10.0.0.1",
            "peer-address": words[1],
            "local-as": 64512,
            "peer-as": 64512,
            "router-id": "10.0.0.1",
        }
    )
    update = Update([c.nlri for c in changes], changes[0].attributes)
    return str(JSON("5.0.0").update(neighbor, "receive", update, None, b"", b""))


IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(str)


@st.composite
def paths(draw: st.DrawFn) -> Path:
    family: Literal[4, 6] = draw(st.sampled_from([4, 6]))
    length = draw(st.integers(8, 32 if family == 4 else 128))
    address = draw(st.ip_addresses(v=family))
    prefix = ipaddress.ip_network(f"{address}/{length}", strict=False)
    return Path(
        prefix=str(prefix),
        next_hop=draw(IPV4 if family == 4 else IPV6),
        as_path=tuple(draw(st.lists(st.integers(1, 4294967295), max_size=4))),
        local_pref=draw(st.integers(0, 4294967295)),
        originator_id=draw(st.none() | IPV4),
        cluster_list=tuple(draw(st.lists(IPV4, max_size=3))),
    )


@settings(max_examples=60, deadline=None, database=None)
@given(paths())
def test_announce_round_trip_through_exabgp(path: Path) -> None:
    """What the agent sends, ExaBGP parses, and a receiving agent reads back unchanged."""
    peer = "10.0.0.2" if ":" not in path.prefix else "fd00::2"
    event = parse_message(_through_exabgp(announce_command(peer, path)))
    assert isinstance(event, UpdateEvent)
    assert event.announced == (path,)


@settings(max_examples=30, deadline=None, database=None)
@given(paths())
def test_withdraw_round_trip_through_exabgp(path: Path) -> None:
    peer = "10.0.0.2" if ":" not in path.prefix else "fd00::2"
    event = parse_message(_through_exabgp(withdraw_command(peer, path)))
    assert isinstance(event, UpdateEvent)
    assert event.withdrawn == (path.prefix,)
    assert event.announced == ()


# --- the agent's record of the paths it sent -----------------------------------------------------


@settings(max_examples=100, deadline=None, database=None)
@given(paths())
def test_a_recorded_path_reads_back_unchanged(path: Path) -> None:
    assert path_from_json(json.loads(json.dumps(path_to_json(path)))) == path


def test_a_recorded_path_never_equals_a_computed_one() -> None:
    """So an agent that took over sends again what it wants, even what was recorded as sent."""
    path = Path("10.1.0.0/24", "10.0.0.2", as_path=(1,), originator_id="10.0.0.9")
    recorded = RecordedPath.of(path)
    assert recorded != path and path != recorded
    assert recorded == RecordedPath.of(path)
    assert withdraw_command("10.0.0.3", recorded) == withdraw_command("10.0.0.3", path)


GOOD_RECORD = path_to_json(Path("10.1.0.0/24", "10.0.0.2", originator_id="10.0.0.9"))


@pytest.mark.parametrize(
    "record",
    [
        None,
        "10.1.0.0/24",
        ["10.1.0.0/24", "10.0.0.2"],
        {},
        {**GOOD_RECORD, "prefix": "garbage"},
        {**GOOD_RECORD, "prefix": "10.1.0.1/24"},
        {**GOOD_RECORD, "next_hop": None},
        {**GOOD_RECORD, "next_hop": "fd00::2"},
        {**GOOD_RECORD, "as_path": "1 2"},
        {**GOOD_RECORD, "as_path": [2**32]},
        {**GOOD_RECORD, "local_pref": None},
        {**GOOD_RECORD, "local_pref": False},
        {**GOOD_RECORD, "originator_id": "fd00::9"},
        {**GOOD_RECORD, "cluster_list": None},
        {key: value for key, value in GOOD_RECORD.items() if key != "local_pref"},
    ],
)
def test_a_record_of_another_shape_is_none(record: object) -> None:
    assert path_from_json(record) is None


def test_the_good_record_reads() -> None:
    assert path_from_json(GOOD_RECORD) == Path("10.1.0.0/24", "10.0.0.2", originator_id="10.0.0.9")


# BIRD sends an IPv6 next hop of two addresses to a peer on its link (RFC 2545: global, then
# link-local); ExaBGP's JSON lists the NLRI under each.
UPDATE_BIRD6 = (
    DECODE_HEAD + '"message": { "update": { "attribute": { "origin": "igp", "as-path": '
    '[ 65101, 65000, 65102, 65002 ] }, "announce": { "ipv6 unicast": { "fd00:41:1::1": [ { '
    '"nlri": "fd00:41:beef::80/122" } ], "fe80::48:fbff:fe21:cd94": [ { "nlri": '
    '"fd00:41:beef::80/122" } ] } } } } } }'
)


def test_an_ipv6_next_hop_with_a_link_local_part_is_its_global_address() -> None:
    event = parse_message(UPDATE_BIRD6)
    assert isinstance(event, UpdateEvent)
    assert [(p.prefix, p.next_hop) for p in event.announced] == [
        ("fd00:41:beef::80/122", "fd00:41:1::1")
    ]


def test_a_link_local_next_hop_alone_is_kept() -> None:
    alone = UPDATE_BIRD6.replace('"fd00:41:1::1": [ { "nlri": "fd00:41:beef::80/122" } ], ', "")
    event = parse_message(alone)
    assert isinstance(event, UpdateEvent)
    assert [p.next_hop for p in event.announced] == ["fe80::48:fbff:fe21:cd94"]


A, B, C = "10.0.0.2", "10.0.0.3", "10.0.0.4"
ROUTE = "announce route 10.244.1.0/26 next-hop 10.0.0.1 local-preference 100"
GONE = "withdraw route 10.244.2.0/26 next-hop 10.0.0.1"


def test_coalesce_joins_adjacent_commands_that_differ_only_in_the_peer() -> None:
    commands = [f"neighbor {A} {ROUTE}", f"neighbor {B} {ROUTE}", f"neighbor {C} {ROUTE}"]
    assert coalesce_commands(commands) == [f"neighbor {A} , neighbor {B} , neighbor {C} {ROUTE}"]


def test_coalesce_keeps_each_peers_order_and_everything_else() -> None:
    commands = [
        "enable-ack",
        f"neighbor {A} {GONE}",
        f"neighbor {B} {GONE}",
        f"neighbor {A} {ROUTE}",
        f"neighbor {B} {ROUTE}",
        f"neighbor {A} {ROUTE}",  # the same peer twice: a new group, after the first
        f"neighbor {C} announce eor ipv4 unicast",
        f"neighbor {A} announce eor ipv4 unicast",
    ]
    assert coalesce_commands(commands) == [
        "enable-ack",
        f"neighbor {A} , neighbor {B} {GONE}",
        f"neighbor {A} , neighbor {B} {ROUTE}",
        f"neighbor {A} {ROUTE}",
        f"neighbor {C} , neighbor {A} announce eor ipv4 unicast",
    ]


def test_coalesce_leaves_commands_that_are_not_a_peers_route_alone() -> None:
    commands = [f"neighbor {A} teardown 2", f"neighbor {B} teardown 2", "shutdown", ""]
    assert coalesce_commands(commands) == commands
    assert coalesce_commands([]) == []


@settings(max_examples=50, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([A, B, C]), st.sampled_from([ROUTE, GONE, "teardown 2"])),
        max_size=12,
    )
)
def test_coalesce_sends_every_peer_the_same_commands_in_the_same_order(
    sent: list[tuple[str, str]],
) -> None:
    commands = [f"neighbor {peer} {rest}" for peer, rest in sent]

    from exabgp.reactor.api.command.limit import extract_neighbors

    def per_peer(lines: list[str]) -> dict[str, list[str]]:
        told: dict[str, list[str]] = {}
        for line in lines:
            descriptions, rest = extract_neighbors(line)
            for description in descriptions:
                told.setdefault(description[0].split()[1], []).append(rest)
        return told

    assert per_peer(coalesce_commands(commands)) == per_peer(commands)
