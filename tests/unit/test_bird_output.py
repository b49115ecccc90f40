"""Parsers of BIRD's show protocols / show route replies.

Inputs: replies captured from BIRD 2.0.12 on loopback (tests/unit/data/bird/*.raw, see its
README), BIRD 1.6.8 output captured by the research (data/bird/bird16-*.txt and
docs/research/fabric/bird-router.md section 5), and lines built from the format strings of BIRD's
source for shapes a loopback run cannot produce (gateways, weights, link-local next hops, AS sets),
each citing the CZ-NIC/bird function it follows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshemu.controlplane.birdc import reply_lines
from meshemu.errors import SpeakerError
from meshemu.verify.bird_output import (
    UNKNOWN_CODE,
    BirdNextHop,
    BirdOutputError,
    BirdProtocol,
    BirdRoute,
    birdc_text_lines,
    parse_protocols,
    parse_routes,
)

DATA = Path(__file__).parent / "data" / "bird"


def _raw(name: str) -> tuple[tuple[int, str], ...]:
    return reply_lines((DATA / name).read_text())


def _text(name: str) -> tuple[tuple[int, str], ...]:
    return birdc_text_lines((DATA / name).read_text())


def _by_name(protocols: tuple[BirdProtocol, ...]) -> dict[str, BirdProtocol]:
    return {p.name: p for p in protocols}


def _routes_of(routes: tuple[BirdRoute, ...], prefix: str) -> list[BirdRoute]:
    return [r for r in routes if r.prefix == prefix]


# -- show protocols, BIRD 2.0.12 (captured) -----------------------------------------------------


def test_bird2_protocols_all_rows_in_order_with_their_kind_table_and_state() -> None:
    protocols = parse_protocols(_raw("rr-show-protocols-all.raw"))
    assert [(p.name, p.proto, p.table, p.state) for p in protocols] == [
        ("device1", "Device", None, "up"),
        ("s4", "Static", "master4", "up"),
        ("s6", "Static", "master6", "up"),
        ("client_b", "BGP", None, "up"),
        ("ebgp_c", "BGP", None, "up"),
        ("down_d", "BGP", None, "down"),
    ]
    assert protocols[0].since == "06:58:51.945"
    assert protocols[0].bgp_state is None and protocols[0].channels == ()


def test_bird2_established_route_reflector_client_session() -> None:
    b = _by_name(parse_protocols(_raw("rr-show-protocols-all.raw")))["client_b"]
    assert b.bgp_state == "Established" and b.established
    assert b.info == "Established"
    assert b.description == "client B"
    assert (b.neighbor_address, b.neighbor_port) == ("127.0.0.22", 12790)
    assert (b.neighbor_as, b.local_as, b.neighbor_id) == (65000, 65000, "10.255.9.2")
    assert b.session_flags == ("internal", "multihop", "route-reflector", "AS4")
    assert b.internal is True and b.route_reflector_client and b.multihop
    assert not b.route_server_client
    assert b.source_address == "127.0.0.21"
    assert (b.hold_time, b.keepalive_time) == (9, 3)
    assert b.last_error is None and not b.neighbor_graceful_restart_active
    # capability lines ("Restart time: 120") are not BGP details
    assert "Restart time" not in dict(b.details)
    assert dict(b.details)["Neighbor AS"] == "65000"


def test_bird2_channels_and_route_counts_summed_over_them() -> None:
    b = _by_name(parse_protocols(_raw("rr-show-protocols-all.raw")))["client_b"]
    v4, v6 = b.channels
    assert (v4.name, v4.state, v4.table, v4.preference) == ("ipv4", "UP", "master4", 100)
    assert (v4.input_filter, v4.output_filter) == ("ACCEPT", "ACCEPT")
    assert (v4.routes_imported, v4.routes_exported, v4.routes_preferred) == (2, 7, 2)
    assert v4.routes_filtered is None
    assert v4.bgp_next_hop == "127.0.0.21"
    assert (v6.name, v6.table, v6.bgp_next_hop) == ("ipv6", "master6", "2001:db8::21")
    assert (v6.routes_imported, v6.routes_exported) == (1, 3)
    assert (b.routes_imported, b.routes_exported, b.routes_preferred) == (3, 10, 3)


def test_bird2_external_session_and_a_static_protocol() -> None:
    protocols = _by_name(parse_protocols(_raw("rr-show-protocols-all.raw")))
    c = protocols["ebgp_c"]
    assert c.internal is False and not c.route_reflector_client and c.multihop
    assert (c.neighbor_as, c.local_as) == (65003, 65000)
    assert (c.routes_imported, c.routes_exported, c.routes_preferred) == (2, 8, 1)
    s4 = protocols["s4"]
    assert s4.channels[0].output_filter == "REJECT"
    assert s4.routes_imported == 6
    assert s4.bgp_state is None and s4.internal is None


def test_bird2_disabled_session_is_down_without_error_or_counts() -> None:
    d = _by_name(parse_protocols(_raw("rr-show-protocols-all.raw")))["down_d"]
    assert (d.state, d.bgp_state, d.info, d.last_error) == ("down", "Down", "", None)
    assert d.neighbor_id is None and d.hold_time is None and d.session_flags == ()
    assert d.channels[0].state == "DOWN"
    assert d.channels[0].routes_imported is None
    assert d.routes_imported is None


def test_plain_show_protocols_agrees_with_show_protocols_all() -> None:
    plain = parse_protocols(_raw("rr-show-protocols.raw"))
    full = parse_protocols(_raw("rr-show-protocols-all.raw"))
    assert [(p.name, p.proto, p.state, p.bgp_state) for p in plain] == [
        (p.name, p.proto, p.state, p.bgp_state) for p in full
    ]
    assert all(p.neighbor_address is None and p.channels == () for p in plain)


def test_bird2_neighbor_in_graceful_restart_has_last_error_and_gr_state() -> None:
    (b,) = parse_protocols(_raw("rr-gr-show-protocols-all-client_b.raw"))
    assert (b.state, b.bgp_state) == ("start", "Active")
    assert b.info == "Active        Socket: Connection closed"
    assert b.last_error == "Socket: Connection closed"
    assert b.neighbor_graceful_restart_active
    assert b.neighbor_id is None and b.hold_time is None
    assert [(c.state, c.neighbor_gr) for c in b.channels] == [
        ("START", "Regular"),
        ("START", "Regular"),
    ]
    assert b.routes_imported == 3  # still kept while the neighbor restarts
    assert all(c.bgp_next_hop is None for c in b.channels)  # printed only while UP


def test_without_all_the_last_error_comes_from_the_info_column() -> None:
    b = _by_name(parse_protocols(_raw("rr-gr-show-protocols.raw")))["client_b"]
    assert (b.bgp_state, b.last_error) == ("Active", "Socket: Connection closed")
    assert _by_name(parse_protocols(_raw("rr-gr-show-protocols.raw")))["ebgp_c"].last_error is None


def test_bird2_long_lived_graceful_restart() -> None:
    (b,) = parse_protocols(_raw("rr-llgr-show-protocols-all-client_b.raw"))
    assert b.last_error == "Socket: Connection refused"
    assert [c.neighbor_gr for c in b.channels] == ["Long-lived", "Long-lived"]


def test_client_side_of_the_reflector_session() -> None:
    (a,) = parse_protocols(_raw("client-show-protocols-all-to_a.raw"))
    assert a.internal is True and not a.route_reflector_client
    assert (a.routes_imported, a.routes_exported) == (10, 3)


# -- show protocols, from the research notes (BIRD 2.0.12) and BIRD 1.6.8 ---------------------

# docs/research/fabric/bird-router.md section 5.2, `birdc show protocols` (no codes)
RESEARCH_SHOW_PROTOCOLS = """\
BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     05:17:54.214
originated Static     master4    up     05:17:54.214
client_b   BGP        ---        up     05:17:58.970  Established
client_d   BGP        ---        up     05:17:58.902  Established
ebgp_c     BGP        ---        down   05:17:54.217  Error: Invalid next hop
md5_e      BGP        ---        start  05:18:08.881  Connect
"""


def test_research_show_protocols_a_down_session_shows_only_its_error() -> None:
    protocols = _by_name(parse_protocols(birdc_text_lines(RESEARCH_SHOW_PROTOCOLS)))
    assert list(protocols) == ["device1", "originated", "client_b", "client_d", "ebgp_c", "md5_e"]
    c = protocols["ebgp_c"]
    assert (c.state, c.bgp_state, c.last_error) == ("down", "Down", "Error: Invalid next hop")
    # a password mismatch: stays in Connect with no error at all (section 5.3)
    e = protocols["md5_e"]
    assert (e.state, e.bgp_state, e.last_error) == ("start", "Connect", None)


def test_bird16_protocols_all_has_counts_at_protocol_level_and_no_local_as() -> None:
    (g,) = parse_protocols(_text("bird16-show-protocols-all.txt"))
    assert (g.name, g.proto, g.table, g.state, g.since) == (
        "Global_127_0_0_1",
        "BGP",
        "master",
        "up",
        "05:23:42",
    )
    assert g.description == "Connection to BGP peer"
    assert (g.bgp_state, g.neighbor_address, g.neighbor_as) == ("Established", "127.0.0.1", 64512)
    assert g.local_as is None  # BIRD 1.6 does not print it
    assert g.neighbor_id == "10.255.1.1"
    assert g.internal is True and g.multihop and not g.route_reflector_client
    assert (g.hold_time, g.keepalive_time) == (240, 80)
    assert (g.routes_imported, g.routes_exported, g.routes_preferred) == (1, 1, 1)
    assert g.channels == ()
    assert "Route change stats" not in dict(g.details)
    assert (
        dict(g.details)["Neighbor caps"] == "refresh enhanced-refresh restart-aware llgr-aware AS4"
    )


def test_bird16_show_protocols_with_a_name_wider_than_its_column() -> None:
    protocols = parse_protocols(_text("bird16-show-protocols.txt"))
    assert [(p.name, p.proto, p.table, p.bgp_state) for p in protocols] == [
        ("device1", "Device", "master", None),
        ("static1", "Static", "master", None),
        ("Global_127_0_0_1", "BGP", "master", "Established"),
    ]


# -- show protocols, shapes from the source ----------------------------------------------------


def test_an_established_session_that_had_an_error_reports_it() -> None:
    # bgp_get_status (proto/bgp/bgp.c): "%-14s%s%s" while not down; bgp_show_proto_info prints
    # "Last error:" whenever the last error is not a manual shutdown.
    lines = [
        (2002, "Name       Proto      Table      State  Since         Info"),
        (
            1002,
            "tor1       BGP        ---        up     2026-11-29 05:17:58  "
            "Established   Received: Hold timer expired",
        ),
        (1006, "  BGP state:          Established"),
        (1006, "    Neighbor address: 10.0.0.1%eth0"),
        (1006, "    Neighbor AS:      65010"),
        (1006, "    Local AS:         65001"),
        (1006, "    Neighbor ID:      10.0.0.1"),
        (1006, "    Session:          external AS4"),
        (1006, "    Hold timer:       170.004/240"),
        (1006, "    Keepalive timer:  12.5/80"),
        (1006, "    Last error:       Received: Hold timer expired"),
        (1006, "  Channel ipv4"),
        (1006, "    State:          UP"),
        (1006, "    Routes:         4 imported, 1 filtered, 2 exported, 3 preferred"),
        (1006, ""),
        (0, ""),
    ]
    (p,) = parse_protocols(lines)
    assert p.since == "2026-11-29 05:17:58"  # `timeformat protocol iso long`
    assert (p.bgp_state, p.last_error) == ("Established", "Received: Hold timer expired")
    assert p.neighbor_address == "10.0.0.1%eth0"
    assert p.internal is False and not p.multihop
    assert (p.hold_time, p.keepalive_time) == (240, 80)
    ch = p.channels[0]
    assert (ch.routes_imported, ch.routes_filtered, ch.routes_exported) == (4, 1, 2)


def test_an_error_reply_raises() -> None:
    with pytest.raises(BirdOutputError, match="8003 No protocols match") as caught:
        parse_protocols(_raw("rr-error-no-protocols-match.raw"))
    assert isinstance(caught.value, SpeakerError)


def test_details_without_a_protocol_row_are_refused() -> None:
    with pytest.raises(BirdOutputError):
        parse_protocols([(1006, "  BGP state:          Established")])


# -- show route, BIRD 2.0.12 (captured) ----------------------------------------------------------


def test_bird2_routes_keep_bird_order_and_their_table() -> None:
    routes = parse_routes(_raw("rr-show-route-all.raw"))
    assert [(r.table, r.prefix) for r in routes] == [
        ("master4", "10.70.0.0/24"),
        ("master4", "10.43.0.0/24"),
        ("master4", "192.0.2.0/24"),
        ("master4", "10.60.0.0/24"),
        ("master4", "10.60.0.0/24"),
        ("master4", "10.41.0.0/24"),
        ("master4", "10.44.0.0/24"),
        ("master4", "10.42.0.0/24"),
        ("master4", "10.50.0.0/24"),
        ("master4", "10.40.0.0/24"),
        ("master6", "2001:db8:41::/48"),
        ("master6", "2001:db8::/64"),
        ("master6", "2001:db8:50::/64"),
        ("master6", "2001:db8:40::/64"),
    ]


def test_bird2_destinations_of_static_routes() -> None:
    routes = {r.prefix: r for r in parse_routes(_raw("rr-show-route-all.raw"))}
    assert routes["10.40.0.0/24"].destination == "blackhole"
    assert routes["10.41.0.0/24"].destination == "unreachable"
    assert routes["10.42.0.0/24"].destination == "prohibited"
    assert routes["10.40.0.0/24"].next_hops == ()
    dev = routes["10.43.0.0/24"]
    assert dev.destination == "unicast"
    assert dev.next_hops == (BirdNextHop(gateway=None, interface="lo"),)
    assert (dev.source, dev.scope, dev.preference) == ("static", "univ", 200)
    assert dev.as_path is None and dev.from_address is None
    # two next hops (multipath); `\tdev` lines carry no weight (rt_show_rte's format)
    assert len(routes["10.44.0.0/24"].next_hops) == 2


def test_bird2_alternatives_belong_to_the_prefix_above_them() -> None:
    best, other = _routes_of(parse_routes(_raw("rr-show-route-all.raw")), "10.60.0.0/24")
    assert (best.protocol, best.selected, best.from_address) == ("client_b", True, "127.0.0.22")
    assert (other.protocol, other.selected, other.from_address) == ("ebgp_c", False, "127.0.0.23")
    assert other.as_path == (65003, 65003)
    assert other.bgp_next_hop == "192.0.2.23"
    assert other.next_hops == (BirdNextHop(gateway=None, interface="lo"),)


def test_bird2_bgp_attributes() -> None:
    (r,) = _routes_of(parse_routes(_raw("rr-show-route-all.raw")), "10.50.0.0/24")
    assert (r.source, r.origin, r.as_path) == ("BGP", "IGP", ())
    assert (r.bgp_next_hop, r.bgp_next_hop_link_local) == ("192.0.2.22", None)
    assert (r.local_pref, r.med) == (100, 50)
    assert r.communities == ((65000, 100), (65000, 200))
    assert r.large_communities == ((65000, 1, 2),)
    assert r.info == " (100/?) [i]"
    assert (r.preference, r.igp_metric, r.stale) == (100, "?", False)
    assert r.attribute("BGP.med") == "50" and r.attribute("BGP.aggregator") is None


def test_bird2_ipv6_bgp_route() -> None:
    (r,) = _routes_of(parse_routes(_raw("rr-show-route-all.raw")), "2001:db8:50::/64")
    assert (r.table, r.destination, r.protocol) == ("master6", "unicast", "client_b")
    assert r.bgp_next_hop == "2001:db8::22"


def test_plain_show_route_agrees_with_show_route_all() -> None:
    def key(r: BirdRoute) -> tuple[object, ...]:
        return (r.table, r.prefix, r.destination, r.protocol, r.selected, r.next_hops, r.info)

    plain = parse_routes(_raw("rr-show-route.raw"))
    full = parse_routes(_raw("rr-show-route-all.raw"))
    assert [key(r) for r in plain] == [key(r) for r in full]
    assert all(r.source is None and r.as_path is None for r in plain)


def test_one_table_and_one_prefix() -> None:
    routes = parse_routes(_raw("rr-show-route-all-table-master6.raw"))
    assert {r.table for r in routes} == {"master6"} and len(routes) == 4
    found = parse_routes(_raw("rr-show-route-for-all.raw"))
    assert [(r.prefix, r.protocol) for r in found] == [
        ("10.60.0.0/24", "client_b"),
        ("10.60.0.0/24", "ebgp_c"),
    ]


def test_regular_graceful_restart_keeps_routes_unmarked() -> None:
    # BIRD marks `s` only for long-lived stale routes (rte_stale: LLGR_STALE community).
    routes = parse_routes(_raw("rr-gr-show-route-all.raw"))
    kept = _routes_of(routes, "10.50.0.0/24")
    assert [(r.protocol, r.selected, r.stale) for r in kept] == [("client_b", True, False)]


def test_long_lived_stale_routes_are_marked_and_lose_to_fresh_ones() -> None:
    routes = parse_routes(_raw("rr-llgr-show-route-all.raw"))
    (stale,) = _routes_of(routes, "10.50.0.0/24")
    assert stale.stale and stale.selected
    assert stale.info == " (100s/?) [i]"
    assert (65535, 6) in stale.communities
    fresh, kept = _routes_of(routes, "10.60.0.0/24")
    assert (fresh.protocol, fresh.selected, fresh.stale) == ("ebgp_c", True, False)
    assert (kept.protocol, kept.selected, kept.stale) == ("client_b", False, True)
    (v6,) = _routes_of(routes, "2001:db8:50::/64")
    assert v6.stale and v6.communities == ((65535, 6),)


def test_client_sees_reflected_routes() -> None:
    routes = parse_routes(_raw("client-show-route-all.raw"))
    (r,) = _routes_of(routes, "10.70.0.0/24")
    assert (r.protocol, r.from_address, r.as_path) == ("to_a", "127.0.0.21", (65003, 65003))
    assert r.destination == "unreachable"  # 192.0.2.23 does not resolve at B


# -- show route, from the research notes and BIRD 1.6.8 -------------------------------------------

# docs/research/fabric/bird-router.md section 5.4 (BIRD 2.0.12, a client of the reflector)
RESEARCH_SHOW_ROUTE_ALL = """\
Table master4:
10.3.0.0/24          unreachable [to_a 05:18:13.377 from 127.0.0.1] * (100) [AS65003i]
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 65003
\tBGP.next_hop: 127.0.0.3
\tBGP.local_pref: 100
10.4.0.0/24          blackhole [originated 05:17:54.215] * (200)
\tType: static univ
10.2.0.0/24          unreachable [to_a 05:17:59.014 from 127.0.0.1] * (100) [i]
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path:
\tBGP.next_hop: 127.0.0.2
\tBGP.local_pref: 100
\tBGP.originator_id: 10.255.0.2
\tBGP.cluster_list: 10.255.0.1
"""


def test_research_reflected_route_has_originator_and_cluster_list() -> None:
    routes = parse_routes(birdc_text_lines(RESEARCH_SHOW_ROUTE_ALL))
    assert [r.prefix for r in routes] == ["10.3.0.0/24", "10.4.0.0/24", "10.2.0.0/24"]
    reflected = routes[2]
    assert (reflected.originator_id, reflected.cluster_list) == ("10.255.0.2", ("10.255.0.1",))
    assert reflected.as_path == ()
    assert routes[0].as_path == (65003,) and routes[0].originator_id is None


def test_bird16_routes_have_no_table_and_their_cast_in_type() -> None:
    routes = parse_routes(_text("bird16-show-route-all.txt"))
    static, learned = routes
    assert (static.prefix, static.table, static.destination) == ("10.6.0.0/26", None, "blackhole")
    assert (static.source, static.scope) == ("static", "univ")  # "static unicast univ"
    assert (learned.prefix, learned.destination) == ("10.7.0.0/26", "unreachable")
    assert (learned.protocol, learned.from_address) == ("Global_127_0_0_1", "127.0.0.1")
    assert (learned.preference, learned.igp_metric) == (100, "-")
    assert (learned.originator_id, learned.cluster_list) == ("10.255.1.7", ("10.255.1.1",))
    assert learned.bgp_next_hop == "127.0.0.7"


def test_bird16_next_hop_on_the_header_line_and_alternatives() -> None:
    # nest/rt-table.c v1.6.8 rt_show_rte: "%-18s %s [%s %s%s]%s%s", rt_format_via gives
    # "via <gw> on <iface>" / "dev <iface>" / "multipath" (then "\tvia %I on %s weight %d").
    text = (
        "10.65.0.0/26       via 192.168.1.2 on eth0 [Mesh_192_168_1_2 05:23:42] * (100/0) [i]\n"
        "                   via 192.168.1.3 on eth0 [Mesh_192_168_1_3 05:23:43] (100/0) [i]\n"
        "10.65.0.4/32       dev cali12345 [kernel1 05:23:40] * (10)\n"
        "10.66.0.0/26       multipath [static1 05:23:40] * (200)\n"
        "\tvia 192.168.1.2 on eth0 weight 1\n"
        "\tvia 192.168.2.2 on eth1 weight 2\n"
    )
    routes = parse_routes(birdc_text_lines(text))
    first, second, device, multi = routes
    assert (first.prefix, first.destination, first.selected) == ("10.65.0.0/26", "unicast", True)
    assert first.next_hops == (BirdNextHop("192.168.1.2", "eth0"),)
    assert (second.prefix, second.selected, second.protocol) == (
        "10.65.0.0/26",
        False,
        "Mesh_192_168_1_3",
    )
    assert second.next_hops == (BirdNextHop("192.168.1.3", "eth0"),)
    assert (first.igp_metric, first.from_address) == ("0", None)  # from = gateway: not printed
    assert device.next_hops == (BirdNextHop(None, "cali12345"),)
    assert device.destination == "unicast" and device.preference == 10
    assert multi.destination == "unicast"
    assert multi.next_hops == (
        BirdNextHop("192.168.1.2", "eth0", weight=1),
        BirdNextHop("192.168.2.2", "eth1", weight=2),
    )


# -- show route, shapes from the source (BIRD 2.0.12) -------------------------------------------


def test_bird2_gateways_weights_onlink_and_sync_error() -> None:
    # nest/rt-show.c v2.0.12 rt_show_rte: "\tvia %I on %s%s%s%s" (mpls, onlink, weight).
    lines = [
        (1007, "Table master4:"),
        (1007, "10.20.0.0/24         unicast [tor_a 05:30:00.100] ! (100) [AS65010i]"),
        (1007, "\tvia 10.0.0.1 on eth0 weight 1"),
        (1007, "\tvia 10.0.1.1 on eth1 weight 3"),
        (1007, "10.21.0.0/24         unicast [s1 05:30:00.100] * (200)"),
        (1007, "\tvia 10.0.0.9 on eth0 onlink"),
        (0, ""),
    ]
    ecmp, onlink = parse_routes(lines)
    assert ecmp.selected and ecmp.sync_error
    assert ecmp.next_hops == (
        BirdNextHop("10.0.0.1", "eth0", weight=1),
        BirdNextHop("10.0.1.1", "eth1", weight=3),
    )
    assert not onlink.sync_error
    assert onlink.next_hops == (BirdNextHop("10.0.0.9", "eth0", onlink=True),)


def test_bird2_long_ipv6_prefix_link_local_next_hop_as_set_and_continued_sets() -> None:
    # "%-20s" pads but never cuts; bgp_format_next_hop prints "%I %I" with a link-local
    # address; as_path_format writes sets as {..}; ea_show_int_set continues on "\t\t" lines.
    lines = [
        (1007, "Table master6:"),
        (
            1007,
            "2001:db8:1234:5678::/64 unicast [tor_a 05:30:00.100 from fe80::1] * (100/10) "
            "[AS65020?]",
        ),
        (1007, "\tvia fe80::1 on eth0"),
        (1008, "\tType: BGP univ"),
        (1012, "\tBGP.origin: Incomplete"),
        (1012, "\tBGP.as_path: 65010 65020 {65030 65040}"),
        (1012, "\tBGP.next_hop: 2001:db8::1 fe80::1"),
        (1012, "\tBGP.local_pref: 100"),
        (1012, "\tBGP.community: (65000,1) (65000,2)"),
        (1012, "\t\t(65000,3)"),
        (1012, "\tBGP.cluster_list: 10.0.0.1 10.0.0.2"),
        (0, ""),
    ]
    (r,) = parse_routes(lines)
    assert (r.prefix, r.table, r.from_address) == ("2001:db8:1234:5678::/64", "master6", "fe80::1")
    assert r.next_hops == (BirdNextHop("fe80::1", "eth0"),)
    assert r.origin == "Incomplete"
    assert r.as_path == (65010, 65020, 65030, 65040)
    assert (r.bgp_next_hop, r.bgp_next_hop_link_local) == ("2001:db8::1", "fe80::1")
    assert r.communities == ((65000, 1), (65000, 2), (65000, 3))
    assert r.cluster_list == ("10.0.0.1", "10.0.0.2")
    assert r.igp_metric == "10"


def test_a_new_table_does_not_lend_its_prefix_to_an_alternative() -> None:
    lines = [
        (1007, "Table master4:"),
        (1007, "10.1.0.0/24          blackhole [s1 05:00:00.000] * (200)"),
        (1007, ""),
        (1007, "Table t2:"),
        (1007, "                     blackhole [s2 05:00:00.000] * (200)"),
    ]
    with pytest.raises(BirdOutputError, match="no route above it"):
        parse_routes(lines)


def test_lines_that_are_not_routes_are_refused() -> None:
    with pytest.raises(BirdOutputError):
        parse_routes(_raw("rr-show-status.raw"))
    with pytest.raises(BirdOutputError, match="route details before any route"):
        parse_routes([(1008, "\tType: static univ")])
    with pytest.raises(BirdOutputError, match="8001 Network not found"):
        parse_routes(_raw("rr-error-network-not-found.raw"))


def test_birdc_text_lines_have_no_code_and_the_welcome_is_skipped() -> None:
    lines = birdc_text_lines(
        "BIRD 1.6.8 ready.\n10.6.0.0/26        blackhole [static1 05:23:40] * (200)\n"
    )
    assert lines[0] == (UNKNOWN_CODE, "BIRD 1.6.8 ready.")
    assert [r.prefix for r in parse_routes(lines)] == ["10.6.0.0/26"]
