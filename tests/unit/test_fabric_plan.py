"""The fabric's BGP in the plan (`model.phases.fabric` through `build_plan`): routers that
speak BGP (BIRD 2), their sessions with nodes and with each other, and the routes everyone ends
up with.

Covers: eBGP per rack (every node reaches every block; inside a rack straight to the
originating node, because BIRD keeps the next hop between single-hop sessions on one interface;
across racks through the ToR; the ToR's and the spine's kernel routes); Calico's own "AS per
rack" (nodes in the ToR's AS over iBGP, the ToR a route reflector with `next hop self ebgp`);
two ToRs per rack (two paths, one chosen by router ID); a route reflector outside the cluster,
one hop away (multihop sessions, next hops resolved through static routes); sessions that stay
down (router passwords that differ, a node BGPPeer with the wrong AS) and what they take with
them; the located refusals of bad router input; the plan's JSON with router BGP.

BIRD behaviour the expectations follow (CZ-NIC/bird v2.0.12): `proto/bgp/packets.c`
`bgp_use_next_hop` (kept for internal peers; "Keep it when forwarded between single-hop BGPs on
the same iface"; else the session's own address), `proto/bgp/attrs.c` `bgp_rte_better` (after
AS path length and eBGP over iBGP: lower router ID, or ORIGINATOR_ID, then cluster list length,
then lower peer address); docs/research/fabric/bird-router.md sections 3 and 4.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshemu.cli import main
from meshemu.errors import ConfigError, LabError
from meshemu.model.labplan import LabPlan, NodePlan, RibEntry, RouterPlan, RouterRoute
from meshemu.model.load import load_topology, load_topology_text
from meshemu.model.plan import build_plan
from meshemu.model.routes import FibRoute

# --- topologies ----------------------------------------------------------------------------------

# eBGP per rack, as topologies/as-per-rack.yaml: one AS per rack for the nodes, each rack's
# ToR in its own AS, one spine; nodes accept their own rack's AS once (numAllowedLocalASNumbers).
EBGP_PER_RACK = """
name: ebgprack
subnets:
  rack1: {ipv4: 10.71.1.0/24, ipv6: "fd00:71:1::/64"}
  rack2: {ipv4: 10.71.2.0/24, ipv6: "fd00:71:2::/64"}
  up1: {ipv4: 10.71.254.0/29, ipv6: "fd00:71:fe01::/125"}
  up2: {ipv4: 10.71.254.8/29, ipv6: "fd00:71:fe02::/125"}
routers:
  tor1: {subnets: [rack1, up1], bgp: {asNumber: 65101, peers: [{router: spine}]}}
  tor2: {subnets: [rack2, up2], bgp: {asNumber: 65102, peers: [{router: spine}]}}
  spine: {subnets: [up1, up2], bgp: {asNumber: 65000}}
nodes:
  n1: {subnet: rack1, labels: {rack: r1}, asNumber: 65001}
  n2: {subnet: rack1, labels: {rack: r1}, asNumber: 65001}
  n3: {subnet: rack2, labels: {rack: r2}, asNumber: 65002}
  n4: {subnet: rack2, labels: {rack: r2}, asNumber: 65002}
pools:
  v4: {cidr: 172.30.0.0/16, ipipMode: Never}
  v6: {cidr: "fd00:71:beef::/64"}
bgp:
  nodeToNodeMeshEnabled: false
  peers:
    rack1-tor: {nodeSelector: "rack == 'r1'", peerRouter: tor1, numAllowedLocalASNumbers: 1}
    rack2-tor: {nodeSelector: "rack == 'r2'", peerRouter: tor2, numAllowedLocalASNumbers: 1}
"""

# Calico's "AS per rack" (l3-interconnect-fabric.md): each rack's nodes in its ToR's AS over
# iBGP, the ToR a route reflector; eBGP between ToRs and the spine. tor1 has an explicit router
# ID (its cluster ID), tor2 takes its first IPv4 address.
IBGP_RR_TOR = """
name: ibgprack
subnets:
  rack1: {ipv4: 10.72.1.0/24, ipv6: "fd00:72:1::/64"}
  rack2: {ipv4: 10.72.2.0/24, ipv6: "fd00:72:2::/64"}
  up1: {ipv4: 10.72.254.0/29, ipv6: "fd00:72:fe01::/125"}
  up2: {ipv4: 10.72.254.8/29, ipv6: "fd00:72:fe02::/125"}
routers:
  tor1:
    subnets: [rack1, up1]
    bgp: {asNumber: 65101, routerID: 10.255.0.1, routeReflector: true, peers: [{router: spine}]}
  tor2:
    subnets: [rack2, up2]
    bgp: {asNumber: 65102, routeReflector: true, peers: [{router: spine}]}
  spine: {subnets: [up1, up2], bgp: {asNumber: 65000}}
nodes:
  n1: {subnet: rack1, labels: {rack: r1}, asNumber: 65101}
  n2: {subnet: rack1, labels: {rack: r1}, asNumber: 65101}
  n3: {subnet: rack2, labels: {rack: r2}, asNumber: 65102}
  n4: {subnet: rack2, labels: {rack: r2}, asNumber: 65102}
pools:
  v4: {cidr: 172.30.0.0/16, ipipMode: Never}
  v6: {cidr: "fd00:72:beef::/64"}
bgp:
  nodeToNodeMeshEnabled: false
  peers:
    rack1-tor: {nodeSelector: "rack == 'r1'", peerRouter: tor1}
    rack2-tor: {nodeSelector: "rack == 'r2'", peerRouter: tor2}
"""

# Two ToRs per rack, each rack's pair in one AS, every ToR eBGP to one spine. The ToR with the
# higher address on rack1 (tor1b) has the lower router ID: BGP's tie-break must pick it.
TWO_TORS = """
name: twotors
subnets:
  rack1: {ipv4: 10.73.1.0/24}
  rack2: {ipv4: 10.73.2.0/24}
  a1: {ipv4: 10.73.254.0/29}
  b1: {ipv4: 10.73.254.8/29}
  a2: {ipv4: 10.73.254.16/29}
  b2: {ipv4: 10.73.254.24/29}
routers:
  tor1a:
    subnets: [rack1, a1]
    addresses: {rack1: {ipv4: 10.73.1.1}}
    bgp: {asNumber: 65101, routerID: 10.255.1.2, peers: [{router: spine}]}
  tor1b:
    subnets: [rack1, b1]
    addresses: {rack1: {ipv4: 10.73.1.2}}
    bgp: {asNumber: 65101, routerID: 10.255.1.1, peers: [{router: spine}]}
  tor2a: {subnets: [rack2, a2], bgp: {asNumber: 65102, peers: [{router: spine}]}}
  tor2b: {subnets: [rack2, b2], bgp: {asNumber: 65102, peers: [{router: spine}]}}
  spine: {subnets: [a1, b1, a2, b2], bgp: {asNumber: 65000}}
nodes:
  n1: {subnet: rack1, ipv4: 10.73.1.11, labels: {rack: r1}, asNumber: 65001}
  n2: {subnet: rack1, ipv4: 10.73.1.12, labels: {rack: r1}, asNumber: 65001}
  n3: {subnet: rack2, ipv4: 10.73.2.11, labels: {rack: r2}, asNumber: 65002}
pools:
  v4: {cidr: 172.30.0.0/16, ipipMode: Never}
bgp:
  nodeToNodeMeshEnabled: false
  peers:
    r1a: {nodeSelector: "rack == 'r1'", peerRouter: tor1a, numAllowedLocalASNumbers: 1}
    r1b: {nodeSelector: "rack == 'r1'", peerRouter: tor1b, numAllowedLocalASNumbers: 1}
    r2a: {nodeSelector: "rack == 'r2'", peerRouter: tor2a, numAllowedLocalASNumbers: 1}
    r2b: {nodeSelector: "rack == 'r2'", peerRouter: tor2b, numAllowedLocalASNumbers: 1}
"""

# A route reflector outside the cluster, one hop away: on its own subnet behind the router
# that joins the racks; every node peers with it by peerIP (a global BGPPeer), multihop.
EXTERNAL_RR = """
name: extrr
subnets:
  rack1: {ipv4: 10.74.1.0/24}
  rack2: {ipv4: 10.74.2.0/24}
  infra: {ipv4: 10.74.100.0/24}
routers:
  core: {subnets: [rack1, rack2, infra]}
  rr:
    subnets: [infra]
    addresses: {infra: {ipv4: 10.74.100.10}}
    bgp: {asNumber: 64512, routeReflector: true}
nodes:
  n1: {subnet: rack1}
  n2: {subnet: rack1}
  n3: {subnet: rack2}
pools:
  v4: {cidr: 172.30.0.0/16, ipipMode: CrossSubnet}
bgp:
  asNumber: 64512
  nodeToNodeMeshEnabled: false
  peers:
    external-rr: {peerIP: 10.74.100.10, asNumber: 64512}
"""


def topo_data(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def plan_of(text: str | dict[str, Any]) -> LabPlan:
    if not isinstance(text, str):
        text = yaml.safe_dump(text, sort_keys=False)
    return build_plan(load_topology_text(text, "fabric.yaml", "fabric"))


def problems_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The located problems the input is refused with (it must be refused)."""
    with pytest.raises(ConfigError) as caught:
        plan_of(data)
    return [(p.location, p.message) for p in caught.value.problems]


def router(plan: LabPlan, name: str) -> RouterPlan:
    return next(r for r in plan.routers if r.name == name)


def address_on(plan: LabPlan, name: str, subnet: str, family: int) -> str:
    interface = router(plan, name).interface_on(subnet)
    assert interface is not None, (name, subnet)
    found = interface.address(family)
    assert found is not None, (name, subnet, family)
    return found


def ifname_on(plan: LabPlan, name: str, subnet: str) -> str:
    interface = router(plan, name).interface_on(subnet)
    assert interface is not None, (name, subnet)
    return interface.ifname


def block(node: NodePlan, family: int) -> str:
    (cidr,) = [b.cidr for b in node.blocks if (":" in b.cidr) == (family == 6)]
    return cidr


def address(node: NodePlan, family: int) -> str:
    found = node.address(family)
    assert found is not None
    return found


def rib(node: NodePlan, prefix: str) -> RibEntry:
    (entry,) = [r for r in node.rib if r.prefix == prefix]
    return entry


def fib(node: NodePlan, prefix: str) -> FibRoute | None:
    found = [r for r in node.fib if r.prefix == prefix]
    assert len(found) <= 1, found
    return found[0] if found else None


def router_route(plan: LabPlan, name: str, prefix: str) -> RouterRoute | None:
    bgp = router(plan, name).bgp
    assert bgp is not None
    found = [r for r in bgp.routes if r.prefix == prefix]
    assert len(found) <= 1, found
    return found[0] if found else None


def expected_up(plan: LabPlan, name: str) -> tuple[str, ...]:
    bgp = router(plan, name).bgp
    assert bgp is not None
    return bgp.expected_up


RACK_OF = {"n1": "rack1", "n2": "rack1", "n3": "rack2", "n4": "rack2"}
TOR_OF = {"rack1": "tor1", "rack2": "tor2"}
UPLINK_OF = {"tor1": "up1", "tor2": "up2"}


# --- eBGP per rack -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ebgp() -> LabPlan:
    return plan_of(EBGP_PER_RACK)


@pytest.mark.parametrize("family", [4, 6])
def test_ebgp_per_rack_nodes_reach_every_block(ebgp: LabPlan, family: int) -> None:
    """Inside a rack straight to the originating node (the ToR keeps its next hop); across
    racks through the node's own ToR (eBGP next hop self), with the AS path of the trip."""
    for node in ebgp.nodes:
        rack = RACK_OF[node.name]
        tor = TOR_OF[rack]
        for other in ebgp.nodes:
            if other is node:
                continue
            prefix = block(other, family)
            entry, route = rib(node, prefix), fib(node, prefix)
            assert route is not None and route.type == "unicast", (node.name, prefix)
            assert route.dev == "eth0" and not route.onlink
            assert entry.learned_from == address_on(ebgp, tor, rack, family)
            assert entry.origin_node == other.name and entry.paths == 1
            if RACK_OF[other.name] == rack:
                assert entry.next_hop == address(other, family)
                assert route.via == address(other, family)
                assert entry.as_path == (router_as(tor), other.as_number)
            else:
                assert entry.next_hop == address_on(ebgp, tor, rack, family)
                assert route.via == address_on(ebgp, tor, rack, family)
                other_tor = TOR_OF[RACK_OF[other.name]]
                assert entry.as_path == (
                    router_as(tor),
                    65000,
                    router_as(other_tor),
                    other.as_number,
                )
    assert not ebgp.notes


def router_as(name: str) -> int:
    return {"tor1": 65101, "tor2": 65102, "spine": 65000}[name]


@pytest.mark.parametrize("family", [4, 6])
def test_ebgp_per_rack_tor_routes(ebgp: LabPlan, family: int) -> None:
    """A ToR installs its rack's blocks via their nodes on the rack interface, the other
    rack's via the spine on its uplink: one route per block, nothing else."""
    for rack, tor in TOR_OF.items():
        uplink = UPLINK_OF[tor]
        spine = address_on(ebgp, "spine", uplink, family)
        bgp = router(ebgp, tor).bgp
        assert bgp is not None
        every = {block(n, family) for n in ebgp.nodes}
        assert {r.prefix for r in bgp.routes if (":" in r.prefix) == (family == 6)} == every
        for node in ebgp.nodes:
            route = router_route(ebgp, tor, block(node, family))
            assert route is not None
            if RACK_OF[node.name] == rack:
                assert (route.via, route.dev) == (address(node, family), ifname_on(ebgp, tor, rack))
                assert route.next_hop == route.learned_from == address(node, family)
                assert route.as_path == (node.as_number,)
            else:
                assert (route.via, route.dev) == (spine, ifname_on(ebgp, tor, uplink))
                assert route.learned_from == spine
                assert route.as_path == (
                    65000,
                    router_as(TOR_OF[RACK_OF[node.name]]),
                    node.as_number,
                )
            assert route.paths == 1


@pytest.mark.parametrize("family", [4, 6])
def test_ebgp_per_rack_spine_routes(ebgp: LabPlan, family: int) -> None:
    for node in ebgp.nodes:
        tor = TOR_OF[RACK_OF[node.name]]
        uplink = UPLINK_OF[tor]
        route = router_route(ebgp, "spine", block(node, family))
        assert route is not None
        # The ToR sends its rack's blocks with itself as next hop (the spine is not on the rack).
        assert route.next_hop == route.via == address_on(ebgp, tor, uplink, family)
        assert route.dev == ifname_on(ebgp, "spine", uplink)
        assert route.as_path == (router_as(tor), node.as_number)


def test_ebgp_per_rack_sessions(ebgp: LabPlan) -> None:
    """The ToR answers each node of its rack over eBGP on the rack interface; every session
    of the lab comes up, on both sides."""
    tor1 = router(ebgp, "tor1").bgp
    assert tor1 is not None
    to_nodes = [s for s in tor1.sessions if s.peer_kind == "node"]
    assert sorted((s.peer_name, s.family) for s in to_nodes) == [
        ("n1", 4),
        ("n1", 6),
        ("n2", 4),
        ("n2", 6),
    ]
    for s in to_nodes:
        node = ebgp.node(s.peer_name)
        assert s.ebgp and s.local_as == 65101 and s.peer_as == node.as_number
        assert s.peer_ip == address(node, s.family)
        assert s.local_ip == address_on(ebgp, "tor1", "rack1", s.family)
        assert s.interface == ifname_on(ebgp, "tor1", "rack1")
        assert not s.rr_client and not s.next_hop_self_ebgp
    for r in ebgp.routers:
        assert r.bgp is not None
        assert sorted(r.bgp.expected_up) == sorted(s.peer_ip for s in r.bgp.sessions), r.name
    for node in ebgp.nodes:
        assert sorted(node.expected_up) == sorted(s.peer_ip for s in node.sessions)
        assert {s.peer_router for s in node.sessions} == {TOR_OF[RACK_OF[node.name]]}


# --- Calico's "AS per rack": iBGP to a route-reflecting ToR ---------------------------------------


@pytest.fixture(scope="module")
def ibgp() -> LabPlan:
    return plan_of(IBGP_RR_TOR)


def cluster_of(plan: LabPlan, tor: str) -> str:
    bgp = router(plan, tor).bgp
    assert bgp is not None and bgp.cluster_id is not None
    return bgp.cluster_id


def test_ibgp_tor_cluster_ids(ibgp: LabPlan) -> None:
    """BIRD's `rr cluster id` defaults to the router ID: the configured one, else (as the plan
    chooses it) the first IPv4 address."""
    assert cluster_of(ibgp, "tor1") == "10.255.0.1"
    assert cluster_of(ibgp, "tor2") == address_on(ibgp, "tor2", "rack2", 4)
    spine = router(ibgp, "spine").bgp
    assert spine is not None and spine.cluster_id is None


@pytest.mark.parametrize("family", [4, 6])
def test_ibgp_nodes_learn_rack_blocks_reflected(ibgp: LabPlan, family: int) -> None:
    """A rack's blocks reach its other nodes reflected: next hop the originating node,
    ORIGINATOR_ID its router ID, CLUSTER_LIST the ToR's cluster ID, no AS path."""
    for node in ibgp.nodes:
        rack = RACK_OF[node.name]
        tor = TOR_OF[rack]
        for other in ibgp.nodes:
            if other is node or RACK_OF[other.name] != rack:
                continue
            entry = rib(node, block(other, family))
            assert entry.next_hop == address(other, family)
            assert entry.learned_from == address_on(ibgp, tor, rack, family)
            assert entry.originator_id == other.router_id
            assert entry.cluster_list == (cluster_of(ibgp, tor),)
            assert entry.as_path == ()
            route = fib(node, block(other, family))
            assert route is not None and (route.via, route.dev) == (address(other, family), "eth0")


@pytest.mark.parametrize("family", [4, 6])
def test_ibgp_nodes_learn_other_racks_via_tor(ibgp: LabPlan, family: int) -> None:
    """Other racks' blocks come over eBGP to the ToR, which passes them to its clients with
    itself as next hop (`next hop self ebgp`): not reflected, so no ORIGINATOR_ID."""
    for node in ibgp.nodes:
        rack = RACK_OF[node.name]
        tor = TOR_OF[rack]
        mine = address_on(ibgp, tor, rack, family)
        for other in ibgp.nodes:
            if RACK_OF[other.name] == rack:
                continue
            entry = rib(node, block(other, family))
            assert entry.next_hop == entry.learned_from == mine
            assert entry.originator_id is None and entry.cluster_list == ()
            assert entry.as_path == (65000, router_as(TOR_OF[RACK_OF[other.name]]))
            route = fib(node, block(other, family))
            assert route is not None and (route.via, route.dev) == (mine, "eth0")
    assert not ibgp.notes


def test_ibgp_tor_sessions_and_routes(ibgp: LabPlan) -> None:
    tor1 = router(ibgp, "tor1").bgp
    assert tor1 is not None
    for s in tor1.sessions:
        if s.peer_kind == "node":
            # iBGP clients: reflected to, and sent eBGP routes with the ToR as next hop.
            assert not s.ebgp and s.rr_client and s.next_hop_self_ebgp, s
        else:
            assert s.ebgp and not s.rr_client and not s.next_hop_self_ebgp, s
    assert sorted(tor1.expected_up) == sorted(s.peer_ip for s in tor1.sessions)
    n1, n3 = ibgp.node("n1"), ibgp.node("n3")
    own = router_route(ibgp, "tor1", block(n1, 4))
    assert own is not None
    assert (own.via, own.dev, own.as_path) == (n1.ipv4, ifname_on(ibgp, "tor1", "rack1"), ())
    far = router_route(ibgp, "tor1", block(n3, 4))
    assert far is not None
    spine_up1 = address_on(ibgp, "spine", "up1", 4)
    assert (far.via, far.dev, far.as_path) == (
        spine_up1,
        ifname_on(ibgp, "tor1", "up1"),
        (65000, 65102),
    )
    # The spine hears the rack's blocks from the ToR over eBGP, ToR as next hop.
    at_spine = router_route(ibgp, "spine", block(n1, 4))
    assert at_spine is not None
    assert (at_spine.via, at_spine.as_path) == (address_on(ibgp, "tor1", "up1", 4), (65101,))


# --- sessions that stay down ---------------------------------------------------------------------


def with_router_peers(
    tor1_peer: dict[str, Any], spine_peers: list[dict[str, Any]] | None
) -> dict[str, Any]:
    data = topo_data(EBGP_PER_RACK)
    data["routers"]["tor1"]["bgp"]["peers"] = [tor1_peer]
    if spine_peers is not None:
        data["routers"]["spine"]["bgp"]["peers"] = spine_peers
    return data


@pytest.mark.parametrize(
    ("tor1_peer", "spine_peers", "up"),
    [
        # Both name each other, each with its own password: TCP MD5 fails, the session too.
        ({"router": "spine", "password": "one"}, [{"router": "tor1", "password": "two"}], False),
        # tor1 has a password, the spine names tor1 without one: still a mismatch.
        ({"router": "spine", "password": "one"}, [{"router": "tor1"}], False),
        # The same password on both ends, or named on one side only (the other is implied).
        ({"router": "spine", "password": "one"}, [{"router": "tor1", "password": "one"}], True),
        ({"router": "spine", "password": "one"}, None, True),
    ],
    ids=["different", "one-side-missing", "same", "implied"],
)
def test_router_passwords(tor1_peer: dict[str, Any], spine_peers: Any, up: bool) -> None:
    plan = plan_of(with_router_peers(tor1_peer, spine_peers))
    tor1_at_spine = {address_on(plan, "tor1", "up1", f) for f in (4, 6)}
    spine_at_tor1 = {address_on(plan, "spine", "up1", f) for f in (4, 6)}
    tor1 = router(plan, "tor1").bgp
    assert tor1 is not None
    to_spine = [s for s in tor1.sessions if s.peer_name == "spine"]
    assert {s.peer_ip for s in to_spine} == spine_at_tor1  # planned either way
    assert {s.password for s in to_spine} == {"one"}
    assert (spine_at_tor1 <= set(expected_up(plan, "tor1"))) is up
    assert not spine_at_tor1 & set(expected_up(plan, "tor1")) or up
    assert (tor1_at_spine <= set(expected_up(plan, "spine"))) is up
    assert not tor1_at_spine & set(expected_up(plan, "spine")) or up
    # tor2's session with the spine is not affected.
    assert {address_on(plan, "tor2", "up2", f) for f in (4, 6)} <= set(expected_up(plan, "spine"))
    n1, n2, n3 = plan.node("n1"), plan.node("n2"), plan.node("n3")
    for family in (4, 6):
        # Across the broken session nothing passes, either way; inside the rack all is well.
        assert (fib(n3, block(n1, family)) is not None) is up
        assert (fib(n1, block(n3, family)) is not None) is up
        assert (router_route(plan, "spine", block(n1, family)) is not None) is up
        assert (router_route(plan, "tor1", block(n3, family)) is not None) is up
        assert fib(n1, block(n2, family)) is not None
        assert router_route(plan, "spine", block(n3, family)) is not None
    assert any("learns no routes from n1" in note for note in plan.notes) is not up


@pytest.mark.parametrize(("as_number", "up"), [(65999, False), (65101, True)])
def test_node_peer_as_must_match_router(as_number: int, up: bool) -> None:
    """A node BGPPeer towards a router with an AS the router does not have: the router still
    answers (with its own AS), the session stays down on both sides."""
    data = topo_data(EBGP_PER_RACK)
    data["bgp"]["peers"]["rack1-tor"]["asNumber"] = as_number
    plan = plan_of(data)
    n1, n2, n3 = plan.node("n1"), plan.node("n2"), plan.node("n3")
    for node in (n1, n2):
        for s in node.sessions:
            assert s.peer_router == "tor1" and s.peer_as == as_number
        assert bool(node.expected_up) is up
    tor1 = router(plan, "tor1").bgp
    assert tor1 is not None
    answers = [s for s in tor1.sessions if s.peer_kind == "node"]
    assert len(answers) == 4 and {s.local_as for s in answers} == {65101}
    node_ips = {address(n, f) for n in (n1, n2) for f in (4, 6)}
    assert (node_ips <= set(tor1.expected_up)) is up
    assert not node_ips & set(tor1.expected_up) or up
    for family in (4, 6):
        assert (fib(n3, block(n1, family)) is not None) is up
        assert (fib(n1, block(n2, family)) is not None) is up
        assert (router_route(plan, "tor1", block(n1, family)) is not None) is up
    down_notes = [note for note in plan.notes if "cannot come up" in note]
    assert len(down_notes) == (0 if up else 4)  # n1 and n2, both families


# --- refused input -------------------------------------------------------------------------------


def test_peer_router_not_on_node_subnet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A BGPPeer with peerRouter applying to a node whose subnet the router is not on."""
    data = topo_data(EBGP_PER_RACK)
    data["bgp"]["peers"] = {"every-node": {"peerRouter": "tor1"}}  # n3, n4 are on rack2
    found = problems_of(data)
    assert [loc for loc, _ in found] == ["bgp.peers.every-node.peerRouter"] * 2
    assert "n3" in found[0][1] and "rack2" in found[0][1] and "n4" in found[1][1]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    for command in ("validate", "plan"):
        assert main([command, str(path)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and "bgp.peers.every-node.peerRouter" in err


@pytest.mark.parametrize(
    ("router_name", "peers", "index", "words"),
    [
        ("tor1", [{"router": "tor2"}], 0, "share no subnet"),
        ("tor1", [{"router": "spine"}, {"router": "nowhere"}], 1, "unknown router 'nowhere'"),
        ("spine", [{"router": "spine"}], 0, "cannot peer with itself"),
        ("tor1", [{"router": "plain"}], 0, "not a router with bgp"),
    ],
    ids=["no-shared-subnet", "unknown", "itself", "without-bgp"],
)
def test_router_peer_refused(
    router_name: str, peers: list[dict[str, str]], index: int, words: str
) -> None:
    data = topo_data(EBGP_PER_RACK)
    data["routers"]["plain"] = {"subnets": ["up1"]}
    data["routers"][router_name]["bgp"]["peers"] = peers
    found = problems_of(data)
    assert [loc for loc, _ in found] == [f"routers.{router_name}.bgp.peers[{index}].router"]
    assert words in found[0][1]


@pytest.mark.parametrize(
    ("addresses", "location", "words"),
    [
        ({"rack1": {"ipv4": "10.71.2.5"}}, "routers.tor1.addresses.rack1.ipv4", "not a host"),
        ({"rack1": {"ipv4": "10.71.1.255"}}, "routers.tor1.addresses.rack1.ipv4", "not a host"),
        ({"rack1": {"ipv6": "fd00:71:1::"}}, "routers.tor1.addresses.rack1.ipv6", "not a host"),
        ({"rack1": {"ipv4": "10.71.1.50"}}, "routers.tor1.addresses.rack1.ipv4", "nodes.n1"),
        ({"rack2": {"ipv4": "10.71.2.1"}}, "routers.tor1.addresses.rack2", "not on subnet"),
    ],
    ids=["other-subnet", "broadcast", "v6-network", "taken-by-node", "not-its-subnet"],
)
def test_fixed_router_address_refused(addresses: dict[str, Any], location: str, words: str) -> None:
    data = topo_data(EBGP_PER_RACK)
    data["nodes"]["n1"]["ipv4"] = "10.71.1.50"
    data["routers"]["tor1"]["addresses"] = addresses
    found = problems_of(data)
    assert [loc for loc, _ in found] == [location], found
    assert words in found[0][1]


def test_fixed_router_address_is_used() -> None:
    """The ToR takes its fixed address; nodes get others, and peer with and route to it."""
    data = topo_data(EBGP_PER_RACK)
    data["routers"]["tor1"]["addresses"] = {"rack1": {"ipv4": "10.71.1.2", "ipv6": "fd00:71:1::9"}}
    plan = plan_of(data)
    assert address_on(plan, "tor1", "rack1", 4) == "10.71.1.2"
    assert address_on(plan, "tor1", "rack1", 6) == "fd00:71:1::9"
    n1, n2, n3 = plan.node("n1"), plan.node("n2"), plan.node("n3")
    assert "10.71.1.2" not in {n1.ipv4, n2.ipv4} and "fd00:71:1::9" not in {n1.ipv6, n2.ipv6}
    assert (n1.gateway4, n1.gateway6) == ("10.71.1.2", "fd00:71:1::9")
    assert {s.peer_ip for s in n1.sessions} == {"10.71.1.2", "fd00:71:1::9"}
    route = fib(n1, block(n3, 4))
    assert route is not None and route.via == "10.71.1.2"
    assert not plan.notes


# --- two ToRs per rack ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_tors() -> LabPlan:
    return plan_of(TWO_TORS)


def test_two_tors_nodes_hold_two_paths(two_tors: LabPlan) -> None:
    """Each node hears every other block from both ToRs of its rack and picks, in rack1,
    tor1b (router ID 10.255.1.1 below tor1a's 10.255.1.2, although its address is higher), in
    rack2 the ToR with the lower router ID (its first address)."""
    n1, n2, n3 = two_tors.node("n1"), two_tors.node("n2"), two_tors.node("n3")
    far = rib(n1, block(n3, 4))
    assert far.paths == 2
    assert far.next_hop == far.learned_from == "10.73.1.2"  # tor1b
    assert far.as_path == (65101, 65000, 65102, 65002)
    route = fib(n1, block(n3, 4))
    assert route is not None and route.via == "10.73.1.2"
    near = rib(n1, block(n2, 4))
    assert near.paths == 2 and near.next_hop == "10.73.1.12"  # both ToRs keep n2 as next hop
    assert near.learned_from == "10.73.1.2"
    tor2a, tor2b = (address_on(two_tors, t, "rack2", 4) for t in ("tor2a", "tor2b"))
    lower = min((tor2a, tor2b), key=lambda a: tuple(int(x) for x in a.split(".")))
    for prefix in (block(n1, 4), block(n2, 4)):
        entry = rib(n3, prefix)
        assert entry.paths == 2 and entry.next_hop == entry.learned_from == lower
    # Both ToRs of each rack install every block; the spine holds two paths per block and
    # chooses tor1b for rack1's.
    for tor in ("tor1a", "tor1b", "tor2a", "tor2b"):
        assert expected_up(two_tors, tor)
        for node in (n1, n2, n3):
            assert router_route(two_tors, tor, block(node, 4)) is not None, (tor, node.name)
    at_spine = router_route(two_tors, "spine", block(n1, 4))
    assert at_spine is not None and at_spine.paths == 2
    assert at_spine.via == address_on(two_tors, "tor1b", "b1", 4)
    assert not two_tors.notes


def test_two_tors_choice_is_deterministic() -> None:
    """The same input plans to the same choice every time, whatever the order peers are
    written in."""
    first = plan_of(TWO_TORS)
    data = topo_data(TWO_TORS)
    data["bgp"]["peers"] = dict(reversed(list(data["bgp"]["peers"].items())))
    reordered = plan_of(data)
    for plan in (first, plan_of(TWO_TORS), reordered):
        assert [n.rib for n in plan.nodes] == [n.rib for n in first.nodes]
        assert [n.fib for n in plan.nodes] == [n.fib for n in first.nodes]


# --- a route reflector outside the cluster -------------------------------------------------------


def test_external_rr_one_hop_away() -> None:
    """Nodes reach the reflector through their default router (multihop); it reflects each
    block with the originating node as next hop, and installs them resolved through its
    static routes; IPIP CrossSubnet carries pods across racks."""
    plan = plan_of(EXTERNAL_RR)
    rr = router(plan, "rr").bgp
    assert rr is not None and rr.cluster_id == "10.74.100.10"
    assert all(s.interface is None and s.rr_client for s in rr.sessions)
    assert sorted(rr.expected_up) == sorted(n.ipv4 or "" for n in plan.nodes)
    core = address_on(plan, "core", "infra", 4)
    for node in plan.nodes:
        route = router_route(plan, "rr", block(node, 4))
        assert route is not None
        assert (route.next_hop, route.via, route.dev) == (node.ipv4, core, "eth2")
        for other in plan.nodes:
            if other is node:
                continue
            entry = rib(node, block(other, 4))
            assert entry.next_hop == other.ipv4 and entry.learned_from == "10.74.100.10"
            assert entry.originator_id == other.router_id
            assert entry.cluster_list == ("10.74.100.10",)
            fib_route = fib(node, block(other, 4))
            assert fib_route is not None and fib_route.via == other.ipv4
            assert fib_route.dev == ("eth0" if other.subnet == node.subnet else "tunl0")
    assert not plan.notes


# --- the plan's JSON -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_passwords() -> LabPlan:
    data = topo_data(IBGP_RR_TOR)
    data["routers"]["tor1"]["bgp"]["peers"] = [{"router": "spine", "password": "uplink-secret"}]
    data["bgp"]["peers"]["rack2-tor"]["password"] = "rack2-secret"
    return plan_of(data)


def test_plan_json_round_trip_with_router_bgp(with_passwords: LabPlan) -> None:
    data = json.loads(json.dumps(with_passwords.to_json(secrets=True)))
    back = LabPlan.from_json(data)
    assert back == with_passwords
    assert any(r.bgp is not None and r.bgp.routes for r in back.routers)
    passwords = {s.password for r in back.routers if r.bgp for s in r.bgp.sessions}
    assert passwords == {None, "uplink-secret", "rack2-secret"}


def test_plan_public_json_hides_router_passwords(with_passwords: LabPlan) -> None:
    public = with_passwords.to_json()
    text = json.dumps(public)
    assert "uplink-secret" not in text and "rack2-secret" not in text
    for r, plan_router in zip(public["routers"], with_passwords.routers, strict=True):
        if plan_router.bgp is None:
            assert r["bgp"] is None
            continue
        shown = [s["password"] for s in r["bgp"]["sessions"]]
        assert shown == [s.password is not None for s in plan_router.bgp.sessions]
    counted = sum(s["password"] is True for r in public["routers"] for s in r["bgp"]["sessions"])
    assert counted == 2 + 2 + 4  # tor1 and the spine on up1 (both families); tor2 to n3, n4
    # The public form says only whether: it cannot be read back as the plan.
    with pytest.raises(LabError):
        LabPlan.from_json(json.loads(text))


# --- every pod reachable, hop by hop ------------------------------------------------------------

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
SHIPPED = sorted(p for p in TOPOLOGIES.iterdir() if p.suffix in {".yaml", ".yml"})


def _longest_match(routes: list[tuple[str, str]], target: str) -> str | None:
    """The gateway of the most specific route holding `target` (None: no route)."""
    found: tuple[int, str] | None = None
    address = ipaddress.ip_address(target)
    for prefix, via in routes:
        network = ipaddress.ip_network(prefix)
        inside = network.version == address.version and address in network
        if inside and (found is None or network.prefixlen > found[0]):
            found = (network.prefixlen, via)
    return None if found is None else found[1]


def walk(plan: LabPlan, source: str, target: str) -> list[str]:
    """The hops a packet from node `source` to `target` (a pod address) takes by the plan's
    FIBs: the node's routes (and its default routes), then each router's BGP routes
    (`RouterRoute`) and static routes. An encapsulated route (IPIP, VXLAN) jumps to the node
    behind the tunnel's far end (the underlay carries it)."""
    owner: dict[str, str] = {}
    for node in plan.nodes:
        for a in (node.ipv4, node.ipv6, *(v.address for v in node.vteps)):
            if a is not None:
                owner[a] = node.name
    for r in plan.routers:
        for interface in r.interfaces:
            for a in (interface.ipv4, interface.ipv6):
                if a is not None:
                    owner[a] = r.name
    pods = {a: n.name for n in plan.nodes for p in n.pods for a in (p.ipv4, p.ipv6) if a}
    nodes = {n.name for n in plan.nodes}
    hops = [source]
    for _ in range(16):
        here = hops[-1]
        if pods.get(target) == here:
            return hops
        if here in nodes:
            node = plan.node(here)
            routes = [(r.prefix, r.via) for r in node.fib if r.via is not None]
            # (The plan's FIB lists BGP and pod routes; the default routes are the node's.)
            routes += [
                (p, g) for p, g in (("0.0.0.0/0", node.gateway4), ("::/0", node.gateway6)) if g
            ]
        else:
            at = router(plan, here)
            routes = [(s.prefix, s.via) for s in at.routes]
            routes += [(r.prefix, r.via) for r in (at.bgp.routes if at.bgp else ())]
        via = _longest_match(routes, target)
        if via is None or via not in owner:
            return [*hops, "(dropped)"]
        hops.append(owner[via])
    return [*hops, "(loop)"]


def unreachable(plan: LabPlan) -> dict[tuple[str, str], list[str]]:
    """(node, pod address of another node) -> the hops of a packet that does not get there."""
    lost = {}
    for node in plan.nodes:
        for other in plan.nodes:
            targets = [a for p in other.pods for a in (p.ipv4, p.ipv6) if a is not None]
            for target in targets if other is not node else []:
                hops = walk(plan, node.name, target)
                if hops[-1] != other.name:
                    lost[(node.name, target)] = hops
    return lost


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_topology_every_pod_reachable(path: Path) -> None:
    plan = build_plan(load_topology(path))
    assert not unreachable(plan)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (EBGP_PER_RACK, ["n1", "tor1", "spine", "tor2", "n3"]),
        (IBGP_RR_TOR, ["n1", "tor1", "spine", "tor2", "n3"]),
        (TWO_TORS, ["n1", "tor1b", "spine", "tor2a", "n3"]),
        (EXTERNAL_RR, ["n1", "n3"]),  # IPIP straight to n3: the reflector is not on the path
    ],
    ids=["ebgp-per-rack", "ibgp-rr-tor", "two-tors", "external-rr"],
)
def test_inline_topology_every_pod_reachable(text: str, path: list[str]) -> None:
    plan = plan_of(text)
    assert not unreachable(plan)
    (pod4, pod6) = plan.node("n3").pods[0].ipv4, plan.node("n3").pods[0].ipv6
    assert pod4 is not None and walk(plan, "n1", pod4) == path
    assert pod6 is None or walk(plan, "n1", pod6) == path


def test_walk_finds_what_a_broken_session_loses() -> None:
    """With tor1-spine down (passwords differ), rack1 and rack2 pods cannot reach each other:
    packets stop at the first ToR without the route."""
    plan = plan_of(
        with_router_peers(
            {"router": "spine", "password": "one"}, [{"router": "tor1", "password": "two"}]
        )
    )
    lost = unreachable(plan)
    owner = {a: n.name for n in plan.nodes for p in n.pods for a in (p.ipv4, p.ipv6) if a}
    pairs = {(source, owner[target]) for source, target in lost}
    racks = (("n1", "n2"), ("n3", "n4"))
    assert pairs == {(a, b) for x, y in (racks, racks[::-1]) for a in x for b in y}
    assert len(lost) == 8 * 2 * 2  # 8 pairs, two pods per node, two families
    for (source, _), hops in lost.items():
        assert hops == [source, TOR_OF[RACK_OF[source]], "(dropped)"]


# --- known bugs ----------------------------------------------------------------------------------

# The default router of a subnet may itself speak BGP and install every block (a route
# reflector joining the racks, pools without encapsulation): pods are reachable through it.
RR_AS_GATEWAY = """
name: rrgw
subnets:
  rack1: {ipv4: 10.75.1.0/24}
  rack2: {ipv4: 10.75.2.0/24}
routers:
  rr:
    subnets: [rack1, rack2]
    bgp: {asNumber: 64512, routeReflector: true}
nodes:
  n1: {subnet: rack1}
  n2: {subnet: rack2}
pools:
  v4: {cidr: 172.30.0.0/16, ipipMode: Never}
bgp:
  nodeToNodeMeshEnabled: false
  peers:
    to-rr: {peerRouter: rr}
"""


def test_default_router_speaking_bgp_installs_the_blocks() -> None:
    """The part that holds: the reflector installs each block via its node, so a node's route
    through its default router reaches the pods."""
    plan = plan_of(RR_AS_GATEWAY)
    n1, n2 = plan.node("n1"), plan.node("n2")
    route = fib(n1, block(n2, 4))
    assert route is not None and route.via == n1.gateway4
    at_rr = router_route(plan, "rr", block(n2, 4))
    assert at_rr is not None and (at_rr.via, at_rr.dev) == (n2.ipv4, ifname_on(plan, "rr", "rack2"))
    assert not unreachable(plan)


def test_no_lost_route_note_when_default_router_has_the_route() -> None:
    plan = plan_of(RR_AS_GATEWAY)
    assert not plan.notes, plan.notes
    n1, n2 = plan.node("n1"), plan.node("n2")
    route = fib(n1, block(n2, 4))
    assert route is not None and "knows no pod routes" not in route.reason


def test_a_routers_node_password_must_match_the_nodes_bgppeer() -> None:
    """routers.<r>.bgp.nodePassword is what the ToR is configured with: a node whose BGPPeer
    has another (or none) cannot open its session; the same one comes up."""
    text = (TOPOLOGIES / "as-per-rack.yaml").read_text()
    mismatched = text.replace(
        "asNumber: 65101\n", 'asNumber: 65101\n      nodePassword: "tor-secret"\n'
    )
    plan = build_plan(load_topology_text(mismatched, "t.yaml", "t"))
    tor1 = next(r for r in plan.routers if r.name == "tor1")
    assert tor1.bgp is not None
    assert not any(
        s.peer_kind == "node" for s in tor1.bgp.sessions if s.peer_ip in tor1.bgp.expected_up
    )
    assert "10.41.1.1" not in plan.node("node1").expected_up
    matched = mismatched.replace(
        "      peerRouter: tor1\n", '      peerRouter: tor1\n      password: "tor-secret"\n'
    )
    plan = build_plan(load_topology_text(matched, "t.yaml", "t"))
    assert "10.41.1.1" in plan.node("node1").expected_up


def _asrack(extra: str = "", replace: tuple[str, str] = ("", "")) -> str:
    text = (TOPOLOGIES / "as-per-rack.yaml").read_text()
    if replace[0]:
        assert replace[0] in text
        text = text.replace(*replace)
    return text + extra


def test_a_second_bgppeer_to_another_address_of_the_same_router_is_not_answered() -> None:
    """BIRD has one protocol per neighbor address: node1's second session towards tor1 (its
    uplink address) gets no answer, and the configuration still renders."""
    from meshemu.model.bird_router import render_router_config

    text = _asrack(
        "    node1-uplink:\n      node: node1\n      peerIP: 10.41.254.1\n      asNumber: 65101\n"
    )
    plan = build_plan(load_topology_text(text, "t.yaml", "t"))
    tor1 = next(r for r in plan.routers if r.name == "tor1")
    assert tor1.bgp is not None
    assert [s.peer_ip for s in tor1.bgp.sessions].count("10.41.1.2") == 1
    assert "10.41.254.1" not in plan.node("node1").expected_up
    assert "10.41.1.1" in plan.node("node1").expected_up
    render_router_config(tor1, plan.hold_time)  # no duplicate neighbor


def test_routers_sharing_two_subnets_listed_in_other_orders_still_peer() -> None:
    text = _asrack(
        replace=(
            "  tor1:\n    subnets: [rack1, uplink1]",
            "  tor1:\n    subnets: [rack1, uplink1, uplink2]",
        )
    ).replace(
        "  spine:\n    subnets: [uplink1, uplink2]", "  spine:\n    subnets: [uplink2, uplink1]"
    )
    plan = build_plan(load_topology_text(text, "t.yaml", "t"))
    tor1 = next(r for r in plan.routers if r.name == "tor1")
    assert tor1.bgp is not None
    to_spine = [s for s in tor1.bgp.sessions if s.peer_name == "spine"]
    assert to_spine and all(s.peer_ip in tor1.bgp.expected_up for s in to_spine)


def test_router_id_zero_is_refused() -> None:
    text = _asrack(
        replace=("      asNumber: 65101\n", "      asNumber: 65101\n      routerID: 0.0.0.0\n")
    )
    with pytest.raises(ConfigError) as caught:
        load_topology_text(text, "t.yaml", "t")
    assert caught.value.problems[0].location == "routers.tor1.bgp.routerID"
