"""External peers of a Calico bundle become BIRD routers (issue 8, part 2): a ToR at its
address on the node subnet, a route server behind the fabric on a new subnet, a spine that
joins them, and the plan says what was placed and why."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from meshemu.cli import main
from meshemu.errors import ConfigError
from meshemu.model.calico_fabric import _free_prefix
from meshemu.model.load import load_topology, load_topology_text
from meshemu.model.plan import LabPlan, RouterPlan, build_plan
from meshemu.model.topology import Topology
from meshemu.report.plan_text import render_plan

AS_PER_RACK = Path(__file__).resolve().parents[2] / "topologies" / "calico-as-per-rack.yaml"


def _doc(kind: str, name: str, spec: str, labels: str = "") -> str:
    meta = f"{{name: {name}{', labels: ' + labels if labels else ''}}}"
    return f"---\napiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {meta}\nspec: {spec}\n"


def _node(name: str, v4: str, v6: str | None = None, extra: str = "", labels: str = "") -> str:
    addresses = f"ipv4Address: {v4}" + (f", ipv6Address: '{v6}'" if v6 else "")
    return _doc("Node", name, f"{{bgp: {{{addresses}{extra}}}}}", labels)


def _bundle(*docs: str, mesh: bool = False, pools: str = "") -> str:
    config = _doc("BGPConfiguration", "default", f"{{nodeToNodeMeshEnabled: {str(mesh).lower()}}}")
    pool = pools or _doc("IPPool", "v4", "{cidr: 172.30.0.0/16, ipipMode: Never}")
    return config + "".join(docs) + pool


def _topology(text: str) -> Topology:
    return load_topology_text(text, "bundle.yaml", "t")


def _router(plan: LabPlan, name: str) -> RouterPlan:
    return next(r for r in plan.routers if r.name == name)


# Two racks, eBGP per rack: the nodes of rack N in AS 6500N, their ToR in AS 65100 in both
# racks (so the ToRs share an AS), the nodes accepting their own AS once from the ToR.
EBGP_RACKS = _bundle(
    _node("a1", "10.61.1.11/24", extra=", asNumber: 65001", labels="{rack: r1}"),
    _node("a2", "10.61.1.12/24", extra=", asNumber: 65001", labels="{rack: r1}"),
    _node("b1", "10.61.2.11/24", extra=", asNumber: 65002", labels="{rack: r2}"),
    _doc(
        "BGPPeer",
        "r1-tor",
        "{nodeSelector: rack == 'r1', peerIP: 10.61.1.1, asNumber: 65100, "
        "numAllowedLocalASNumbers: 1}",
    ),
    _doc(
        "BGPPeer",
        "r2-tor",
        "{nodeSelector: rack == 'r2', peerIP: 10.61.2.1, asNumber: 65100, "
        "numAllowedLocalASNumbers: 1}",
    ),
)


@pytest.fixture(scope="module")
def as_per_rack() -> tuple[Topology, LabPlan]:
    topo = load_topology(AS_PER_RACK)
    return topo, build_plan(topo)


# --- a ToR in the node subnet -------------------------------------------------------------------


def test_a_tor_peer_becomes_one_router_at_its_addresses_with_its_as(
    as_per_rack: tuple[Topology, LabPlan],
) -> None:
    topo, plan = as_per_rack
    spec = topo.routers["tor-10-50-1-1"]
    # One router for the rack's IPv4 and IPv6 BGPPeers, at both addresses, in the peers' AS.
    assert spec.subnets[0] == "net-10-50-1-0-24"
    fixed = spec.addresses["net-10-50-1-0-24"]
    assert (str(fixed.ipv4), str(fixed.ipv6)) == ("10.50.1.1", "fd00:50:1::1")
    assert spec.bgp is not None and spec.bgp.as_number == 65001
    # The rack's nodes peer over iBGP: the router reflects between them.
    assert spec.bgp.route_reflector
    router = _router(plan, "tor-10-50-1-1")
    rack = router.interface_on("net-10-50-1-0-24")
    assert rack is not None and (rack.ipv4, rack.ipv6) == ("10.50.1.1", "fd00:50:1::1")
    assert router.bgp is not None and router.bgp.as_number == 65001
    # It answers both nodes of its rack, in both families, and nobody else's.
    nodes = {s.peer_name for s in router.bgp.sessions if s.peer_kind == "node"}
    assert nodes == {"rack1-node1", "rack1-node2"}
    assert set(router.bgp.expected_up) >= {"10.50.1.11", "fd00:50:1::11", "10.50.1.12"}


def test_the_nodes_sessions_to_the_tor_are_expected_up(
    as_per_rack: tuple[Topology, LabPlan],
) -> None:
    _topo, plan = as_per_rack
    node = plan.node("rack1-node1")
    assert {s.peer_ip: s.peer_router for s in node.sessions} == {
        "10.50.1.1": "tor-10-50-1-1",
        "fd00:50:1::1": "tor-10-50-1-1",
    }
    assert set(node.expected_up) == {"10.50.1.1", "fd00:50:1::1"}
    assert not plan.notes, plan.notes


def test_rack1_blocks_reach_rack2_through_the_tors_and_the_spine(
    as_per_rack: tuple[Topology, LabPlan],
) -> None:
    _topo, plan = as_per_rack
    origin = plan.node("rack1-node1")
    block = next(b.cidr for b in origin.blocks if ":" not in b.cidr)
    far = plan.node("rack2-node1")
    entry = next(r for r in far.rib if r.prefix == block)
    # Learned from rack 2's ToR, across the spine's AS and rack 1's (iBGP inside each rack).
    spine = _router(plan, "spine")
    assert spine.bgp is not None
    assert entry.learned_from == "10.50.2.1" and entry.next_hop == "10.50.2.1"
    assert entry.as_path == (spine.bgp.as_number, 65001)
    route = next(r for r in far.fib if r.prefix == block)
    assert route.via == "10.50.2.1" and route.dev == "eth0"
    # The ToRs and the spine install it. Rack 2's ToR learns it from the spine, with rack 1's
    # ToR as next hop: the spine keeps a next hop on the subnet it sends on (BIRD
    # bgp_use_next_hop), so traffic crosses the fabric subnet ToR to ToR; rack 1's ToR sends
    # it to the node.
    fabric = {r.name: r.interface_on("fabric") for r in plan.routers}
    tor2, tor1 = _router(plan, "tor-10-50-2-1"), _router(plan, "tor-10-50-1-1")
    assert tor2.bgp is not None and tor1.bgp is not None
    spine_fabric, tor1_fabric = fabric["spine"], fabric["tor-10-50-1-1"]
    assert spine_fabric is not None and tor1_fabric is not None
    at_tor2 = next(r for r in tor2.bgp.routes if r.prefix == block)
    assert (at_tor2.learned_from, at_tor2.via) == (spine_fabric.ipv4, tor1_fabric.ipv4)
    assert at_tor2.as_path == (spine.bgp.as_number, 65001)
    assert {r.prefix: r.via for r in spine.bgp.routes}[block] == tor1_fabric.ipv4
    assert {r.prefix: r.via for r in tor1.bgp.routes}[block] == origin.ipv4


def test_the_spine_joins_every_placed_router_on_a_fabric_subnet_of_its_own(
    as_per_rack: tuple[Topology, LabPlan],
) -> None:
    topo, plan = as_per_rack
    spine = topo.routers["spine"]
    assert spine.bgp is not None
    assert {p.router for p in spine.bgp.peers} == {"tor-10-50-1-1", "tor-10-50-2-1"}
    # A private AS no resource of the bundle uses.
    used = {topo.bgp.as_number, 65001, 65002}
    assert spine.bgp.as_number not in used and 64512 <= spine.bgp.as_number <= 65534
    fabric = topo.subnets["fabric"]
    assert str(fabric.ipv4) == "10.255.255.248/29"
    assert str(fabric.ipv6) == "fdff:ffff:ffff:ffff::/64"
    # The ToRs are their racks' default routers.
    assert plan.node("rack1-node1").gateway4 == "10.50.1.1"
    assert plan.node("rack2-node2").gateway6 == "fd00:50:2::1"


# --- what plan and validate say -------------------------------------------------------------------


def test_plan_says_what_was_placed_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(AS_PER_RACK)]) == 0
    out = capsys.readouterr().out
    assert (
        "placed BIRD router tor-10-50-1-1 at 10.50.1.1, fd00:50:1::1 (AS 65001) on subnet "
        "net-10-50-1-0-24: BGPPeers rack1-tor, rack1-tor-v6 name it and no node has that "
        "address" in out
    )
    assert "added BIRD router spine (AS 64999" in out
    assert "on new subnet fabric (10.255.255.248/29" in out


def test_the_placement_is_in_the_plan_description(as_per_rack: tuple[Topology, LabPlan]) -> None:
    _topo, plan = as_per_rack
    lines = plan.description.splitlines()
    assert lines[0] == "converted from a Calico resource bundle"
    assert [line.split(" at ")[0] for line in lines[1:3]] == [
        "placed BIRD router tor-10-50-1-1",
        "placed BIRD router tor-10-50-2-1",
    ]
    assert plan.to_json()["description"] == plan.description


# --- behind the fabric ----------------------------------------------------------------------------

ROUTE_SERVER = _bundle(
    _node("n1", "10.62.0.11/24", "fd00:62::11/64"),
    _node("n2", "10.62.0.12/24", "fd00:62::12/64"),
    _node("n3", "10.62.0.13/24", "fd00:62::13/64"),
    _doc("BGPPeer", "rs", "{peerIP: 192.168.77.5, asNumber: 64512}"),
    _doc("BGPPeer", "rs-v6", "{peerIP: 'fd00:77::5', asNumber: 64512}"),
)


def test_a_peer_outside_the_node_subnets_is_placed_behind_the_fabric() -> None:
    topo = _topology(ROUTE_SERVER)
    router = topo.routers["ext-192-168-77-5"]
    assert router.subnets == ["net-192-168-77-0-29"]
    subnet = topo.subnets["net-192-168-77-0-29"]
    assert (str(subnet.ipv4), str(subnet.ipv6)) == ("192.168.77.0/29", "fd00:77::/125")
    fixed = router.addresses["net-192-168-77-0-29"]
    assert (str(fixed.ipv4), str(fixed.ipv6)) == ("192.168.77.5", "fd00:77::5")
    # The spine joins the new subnet and the node subnet (no router was placed on it).
    assert topo.routers["spine"].subnets == ["net-192-168-77-0-29", "net-10-62-0-0-24"]
    assert "fabric" not in topo.subnets


def test_the_sessions_behind_the_fabric_are_multihop_and_come_up() -> None:
    plan = build_plan(_topology(ROUTE_SERVER))
    router = _router(plan, "ext-192-168-77-5")
    assert router.bgp is not None
    to_nodes = [s for s in router.bgp.sessions if s.peer_kind == "node"]
    assert len(to_nodes) == 6
    assert all(s.interface is None for s in to_nodes)  # multihop: no shared subnet
    for node in plan.nodes:
        assert set(node.expected_up) == {"192.168.77.5", "fd00:77::5"}
        # iBGP to a reflector: the other nodes' blocks, with the originating node as next hop.
        learned = {r.prefix: r.next_hop for r in node.rib if r.learned_from is not None}
        others = {
            b.cidr: (o.ipv4 if ":" not in b.cidr else o.ipv6)
            for o in plan.nodes
            if o is not node
            for b in o.blocks
        }
        assert learned == others
    # The reflector reaches the nodes' next hops through its static routes via the spine.
    spine_side = _router(plan, "spine").interface_on("net-192-168-77-0-29")
    assert spine_side is not None
    assert router.bgp.routes
    for route in router.bgp.routes:
        assert route.via in (spine_side.ipv4, spine_side.ipv6)
        assert "resolves through the static route" in route.reason
    assert not plan.notes, plan.notes


def test_the_behind_the_fabric_placement_is_said() -> None:
    plan = build_plan(_topology(ROUTE_SERVER))
    assert (
        "placed BIRD router ext-192-168-77-5 at 192.168.77.5, fd00:77::5 (AS 64512) behind the "
        "fabric on new subnet net-192-168-77-0-29 (192.168.77.0/29, fd00:77::/125), reached "
        "through spine: BGPPeers rs, rs-v6 name it, outside every node subnet; its sessions "
        "with the nodes are multihop" in plan.description
    )
    assert "joins node subnet net-10-62-0-0-24 (their default router)" in plan.description


def test_a_broadcast_end_widens_the_behind_the_fabric_subnet() -> None:
    # 192.168.77.7 is the broadcast address of its /29: the /28 holds it as a host.
    topo = _topology(ROUTE_SERVER.replace("192.168.77.5", "192.168.77.7"))
    assert str(topo.subnets["net-192-168-77-0-28"].ipv4) == "192.168.77.0/28"


# --- the spine, the AS-loop check and names -------------------------------------------------------


def test_routers_sharing_an_as_accept_it_once_from_the_spine() -> None:
    topo = _topology(EBGP_RACKS)
    for name in ("tor-10-61-1-1", "tor-10-61-2-1"):
        bgp = topo.routers[name].bgp
        assert bgp is not None
        assert [(p.router, p.allow_local_as) for p in bgp.peers] == [("spine", 1)]
    plan = build_plan(topo)
    tor2 = _router(plan, "tor-10-61-2-1")
    assert tor2.bgp is not None
    uplink = [s for s in tor2.bgp.sessions if s.peer_name == "spine"]
    assert uplink and all(s.allow_local_as == 1 for s in uplink)
    # Without it the spine's routes (AS path: spine, 65100, 65001) would be dropped by tor2.
    rack1 = {b.cidr for n in plan.nodes if n.name.startswith("a") for b in n.blocks}
    assert rack1 <= {r.prefix for r in tor2.bgp.routes}
    b1 = plan.node("b1")
    assert rack1 <= {r.prefix for r in b1.rib if r.learned_from == "10.61.2.1"}
    assert "placed routers tor-10-61-1-1, tor-10-61-2-1 share AS 65100" in plan.description
    assert not plan.notes, plan.notes


def test_one_tor_on_the_only_subnet_needs_no_spine() -> None:
    text = _bundle(
        _node("n1", "10.63.0.11/24"),
        _node("n2", "10.63.0.12/24"),
        _doc("BGPPeer", "tor", "{peerIP: 10.63.0.1, asNumber: 65000}"),
    )
    topo = _topology(text)
    assert list(topo.routers) == ["tor-10-63-0-1"] and list(topo.subnets) == ["net-10-63-0-0-24"]


def test_the_spine_takes_a_free_name_as_and_prefix() -> None:
    # A node called spine, the spine's first AS taken, a pool where the fabric would go.
    text = _bundle(
        _node("spine", "10.64.1.11/24", extra=", asNumber: 64999"),
        _node("n2", "10.64.2.11/24"),
        _doc("BGPPeer", "t1", "{node: spine, peerIP: 10.64.1.1, asNumber: 65001}"),
        _doc("BGPPeer", "t2", "{node: n2, peerIP: 10.64.2.1, asNumber: 65002}"),
        pools=_doc("IPPool", "p", "{cidr: 10.255.0.0/16, ipipMode: Never}"),
    )
    topo = _topology(text)
    spine = topo.routers["spine-2"]
    assert spine.bgp is not None and spine.bgp.as_number == 64998
    assert str(topo.subnets["fabric"].ipv4) == "10.254.255.248/29"
    build_plan(topo)


def test_without_placed_routers_one_plain_router_joins_the_subnets() -> None:
    text = _bundle(_node("n1", "10.65.1.11/24"), _node("n2", "10.65.2.11/24"), mesh=True)
    topo = _topology(text)
    assert {name: r.bgp for name, r in topo.routers.items()} == {"router": None}
    assert topo.description == "converted from a Calico resource bundle"


# --- what is not placed ---------------------------------------------------------------------------


def test_a_peer_in_a_special_range_stays_planned_but_unreachable() -> None:
    text = _bundle(
        _node("n1", "10.66.0.11/24", "fd00:66::11/64"),
        _doc("BGPPeer", "mc", "{peerIP: 'ffee::10', asNumber: 65000}"),
    )
    topo = _topology(text)
    assert topo.routers == {}
    plan = build_plan(topo)
    assert any("ffee::10 is a multicast address" in n for n in plan.notes)


def test_a_peer_inside_a_pool_is_still_exit_2() -> None:
    text = _bundle(
        _node("n1", "10.67.0.11/24"),
        _doc("BGPPeer", "bad", "{peerIP: 172.30.1.1, asNumber: 65000}"),
    )
    with pytest.raises(ConfigError) as err:
        _topology(text)
    assert [p.location for p in err.value.problems] == ["BGPPeer/bad.spec.peerIP"]
    assert "inside IP pool" in err.value.problems[0].message


def test_a_peer_no_node_has_a_session_with_is_not_placed_and_said() -> None:
    text = _bundle(
        _node("n1", "10.68.0.11/24"),
        _doc("BGPPeer", "v6", "{peerIP: 'fd00:68::1', asNumber: 65000}"),
    )
    topo = _topology(text)
    assert topo.routers == {}
    assert "BGPPeer v6 (fd00:68::1): no router placed, no node has a session with it" in (
        topo.description
    )


def test_a_peer_at_the_subnet_broadcast_address_is_not_placed() -> None:
    text = _bundle(
        _node("n1", "10.69.0.11/24"),
        _doc("BGPPeer", "edge", "{peerIP: 10.69.0.255, asNumber: 65000}"),
    )
    topo = _topology(text)
    assert topo.routers == {}
    assert "10.69.0.255 is not a host address of node subnet" in topo.description


def test_a_port_bird_does_not_listen_on_is_said() -> None:
    text = _bundle(
        _node("n1", "10.70.0.11/24"),
        _doc("BGPPeer", "odd", "{peerIP: '10.70.0.1:1790', asNumber: 65000}"),
    )
    plan = build_plan(_topology(text))
    assert "BGPPeer odd names port 1790 but BIRD listens on 179" in plan.description
    # The node connects to 1790 where nothing listens; BIRD connects to the node's 179.
    assert plan.node("n1").expected_up == ("10.70.0.1",)
    # With the node listening on 1790 too, neither side reaches the other.
    listen = _doc("BGPConfiguration", "node.n1", "{listenPort: 1790}")
    plan = build_plan(_topology(text + listen))
    assert plan.node("n1").expected_up == ()
    assert any("cannot come up" in n for n in plan.notes)


# --- one address, two AS numbers -----------------------------------------------------------------


def test_one_address_with_two_as_numbers_is_exit_2_at_the_bgppeer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _bundle(
        _node("n1", "10.71.0.11/24", labels="{rack: r1}"),
        _node("n2", "10.71.0.12/24", labels="{rack: r2}"),
        _doc("BGPPeer", "first", "{nodeSelector: rack == 'r1', peerIP: 10.71.0.1, asNumber: 1}"),
        _doc("BGPPeer", "second", "{nodeSelector: rack == 'r2', peerIP: 10.71.0.1, asNumber: 2}"),
    )
    with pytest.raises(ConfigError) as err:
        _topology(text)
    (problem,) = err.value.problems
    assert problem.location == "BGPPeer/second.spec.asNumber"
    assert "AS 2 for peer 10.71.0.1, which BGPPeer first" in problem.message
    assert "gives AS 1" in problem.message and problem.hint
    path = tmp_path / "bundle.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    assert "BGPPeer/second.spec.asNumber" in capsys.readouterr().err


def test_a_peering_confd_drops_under_a_global_one_is_no_conflict() -> None:
    # confd keeps the global peering to 10.72.0.1 for n1 and drops the node-specific one:
    # only AS 1 reaches a session, so the router there has AS 1.
    text = _bundle(
        _node("n1", "10.72.0.11/24"),
        _doc("BGPPeer", "all", "{peerIP: 10.72.0.1, asNumber: 1}"),
        _doc("BGPPeer", "one", "{node: n1, peerIP: 10.72.0.1, asNumber: 2}"),
    )
    bgp = _topology(text).routers["tor-10-72-0-1"].bgp
    assert bgp is not None and bgp.as_number == 1


# --- the fabric prefix ----------------------------------------------------------------------------


def test_free_prefix_is_the_highest_one_that_overlaps_nothing() -> None:
    net = ipaddress.ip_network
    within = net("10.0.0.0/8")
    assert _free_prefix(within, 29, []) == net("10.255.255.248/29")
    assert _free_prefix(within, 29, [net("10.255.255.250/32")]) == net("10.255.255.240/29")
    assert _free_prefix(within, 29, [net("10.128.0.0/9")]) == net("10.127.255.248/29")
    assert _free_prefix(within, 29, [net("10.0.0.0/8")]) is None
    assert _free_prefix(within, 29, [net("fd00::/8")]) == net("10.255.255.248/29")


def test_every_placed_subnet_overlaps_no_prefix_of_the_bundle() -> None:
    for text in (EBGP_RACKS, ROUTE_SERVER, AS_PER_RACK.read_text()):
        topo = _topology(text)
        prefixes = [
            (name, p) for name, s in topo.subnets.items() for p in (s.ipv4, s.ipv6) if p is not None
        ]
        pools = [ipaddress.ip_network(p.cidr) for p in topo.pools.values()]
        for index, (name, prefix) in enumerate(prefixes):
            for other_name, other in prefixes[index + 1 :]:
                assert not (prefix.version == other.version and prefix.overlaps(other)), (
                    name,
                    other_name,
                )
            assert not any(prefix.version == p.version and prefix.overlaps(p) for p in pools)


def test_render_plan_shows_the_description_lines() -> None:
    plan = build_plan(_topology(ROUTE_SERVER))
    text = render_plan(plan)
    assert text.splitlines()[2].startswith("placed BIRD router ext-192-168-77-5")
