"""Tests of meshemu.model.plan: sessions, blocks and the expected FIB of the example labs."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from meshemu.model.load import load_topology, load_topology_text
from meshemu.model.names import IFNAME_MAX, lab_owns_netns
from meshemu.model.plan import LabPlan, NodePlan, build_plan

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


def plan_file(name: str, lab: str | None = None) -> LabPlan:
    return build_plan(load_topology(TOPOLOGIES / name, name=lab))


def plan_text(text: str) -> LabPlan:
    return build_plan(load_topology_text(text, "test.yaml", "test"))


def fib_lines(node: NodePlan) -> list[str]:
    return [route.text() for route in node.fib]


def by_prefix(node: NodePlan) -> dict[str, tuple[str, str | None, str | None, bool]]:
    return {r.prefix: (r.type, r.via, r.dev, r.onlink) for r in node.fib}


@pytest.fixture(scope="module")
def flagship() -> LabPlan:
    return plan_file("flagship.yaml")


@pytest.fixture(scope="module")
def rr() -> LabPlan:
    return plan_file("route-reflectors.yaml")


# --- flagship -----------------------------------------------------------------------------------


def test_flagship_nodes_and_addresses(flagship: LabPlan) -> None:
    assert [n.name for n in flagship.nodes] == ["node1", "node2", "node3", "node4"]
    assert [(n.subnet, n.ipv4, n.ipv6) for n in flagship.nodes] == [
        ("rack1", "10.10.1.2", "fd00:10:1::2"),
        ("rack1", "10.10.1.3", "fd00:10:1::3"),
        ("rack2", "10.10.2.2", "fd00:10:2::2"),
        ("rack2", "10.10.2.3", "fd00:10:2::3"),
    ]
    for node in flagship.nodes:
        assert node.gateway4 == ("10.10.1.1" if node.subnet == "rack1" else "10.10.2.1")
        assert node.router_id == node.ipv4
        assert node.as_number == 64512


def test_flagship_six_sessions_per_node(flagship: LabPlan) -> None:
    for node in flagship.nodes:
        assert len(node.sessions) == 6, node.name
        assert sorted(s.family for s in node.sessions) == [4, 4, 4, 6, 6, 6]
        others = {n.name for n in flagship.nodes} - {node.name}
        for family in (4, 6):
            peers = {s.peer_node for s in node.sessions if s.family == family}
            assert peers == others
        for s in node.sessions:
            assert s.kind == "mesh"
            assert s.local_as == s.peer_as == 64512
            assert s.local_ip == node.address(s.family)
            assert not s.rr_client and s.cluster_id is None and s.password is None


def test_flagship_exactly_one_side_passive(flagship: LabPlan) -> None:
    pairs = 0
    for node in flagship.nodes:
        for s in node.sessions:
            assert s.peer_node is not None
            other = flagship.node(s.peer_node)
            back = [b for b in other.sessions if b.peer_ip == s.local_ip]
            assert len(back) == 1
            assert s.passive != back[0].passive, (node.name, s.peer_ip)
            # Calico: the side whose peer address is higher as text waits.
            assert s.passive == (s.peer_ip > s.local_ip)
            pairs += 1
    assert pairs == 24
    # node1 has the lowest addresses: it waits for everyone; node4 connects to everyone.
    assert all(s.passive for s in flagship.node("node1").sessions)
    assert not any(s.passive for s in flagship.node("node4").sessions)


def test_flagship_blocks(flagship: LabPlan) -> None:
    assert [[b.cidr for b in n.blocks] for n in flagship.nodes] == [
        ["192.168.0.0/26", "fd80:24e2:f998:72d7::/122"],
        ["192.168.0.64/26", "fd80:24e2:f998:72d7::40/122"],
        ["192.168.0.128/26", "fd80:24e2:f998:72d7::80/122"],
        ["192.168.0.192/26", "fd80:24e2:f998:72d7::c0/122"],
    ]
    for node in flagship.nodes:
        blocks = [ipaddress.ip_network(b.cidr) for b in node.blocks]
        assert len(node.pods) == 2
        for pod in node.pods:
            for address in (pod.ipv4, pod.ipv6):
                assert address is not None
                assert any(ipaddress.ip_address(address) in b for b in blocks)
        # IPIP CrossSubnet needs a tunl0 address; VXLAN needs an IPv6 VTEP.
        assert node.ipip_tunnel_address is not None
        assert ipaddress.ip_address(node.ipip_tunnel_address) in blocks[0]
        assert [v.family for v in node.vteps] == [6]
        assert ipaddress.ip_address(node.vteps[0].address) in blocks[1]


def test_flagship_node1_fib_exactly(flagship: LabPlan) -> None:
    node = flagship.node("node1")
    pods = {p.name: p for p in node.pods}
    assert fib_lines(node) == [
        "blackhole 192.168.0.0/26",
        # Calico's IPAM hands out ordinal 0 first: tunl0 has 192.168.0.0, the pods .1 and .2.
        f"192.168.0.1/32 dev {pods['pod1'].host_ifname}",
        f"192.168.0.2/32 dev {pods['pod2'].host_ifname}",
        # Felix's routes (v3.33 defaults: IPIP and VXLAN pools are Felix's): the same-subnet
        # route is onlink too (felix/routetable/defs.go: TargetTypeNoEncap sets it).
        "192.168.0.64/26 via 10.10.1.3 dev eth0 onlink",
        "192.168.0.128/26 via 10.10.2.2 dev tunl0 onlink",
        "192.168.0.192/26 via 10.10.2.3 dev tunl0 onlink",
        "blackhole fd80:24e2:f998:72d7::/122",
        f"fd80:24e2:f998:72d7::1/128 dev {pods['pod1'].host_ifname}",
        f"fd80:24e2:f998:72d7::2/128 dev {pods['pod2'].host_ifname}",
        "fd80:24e2:f998:72d7::40/122 via fd00:10:1::3 dev eth0 onlink",
        # The VTEPs, too, are ordinal 0 of their node's block.
        "fd80:24e2:f998:72d7::80/122 via fd80:24e2:f998:72d7::80 dev vxlan-v6.calico onlink",
        "fd80:24e2:f998:72d7::c0/122 via fd80:24e2:f998:72d7::c0 dev vxlan-v6.calico onlink",
    ]


@pytest.mark.parametrize("name", ["node1", "node2", "node3", "node4"])
def test_flagship_fib_rules_per_node(flagship: LabPlan, name: str) -> None:
    node = flagship.node(name)
    routes = by_prefix(node)
    for block in node.blocks:
        assert routes[block.cidr] == ("blackhole", None, None, False)
    for other in flagship.nodes:
        if other is node:
            continue
        v4_block, v6_block = (b.cidr for b in other.blocks)
        same = other.subnet == node.subnet
        if same:
            assert routes[v4_block] == ("unicast", other.ipv4, "eth0", True)
            assert routes[v6_block] == ("unicast", other.ipv6, "eth0", True)
        else:
            assert routes[v4_block] == ("unicast", other.ipv4, "tunl0", True)
            vtep = other.vteps[0].address
            assert routes[v6_block] == ("unicast", vtep, "vxlan-v6.calico", True)
    # Nothing else: own blocks, own pods (2 x 2 families), and 3 x 2 remote blocks.
    assert len(node.fib) == 2 + 4 + 6
    # The RIB knows every remote block, learned straight from its owner (full mesh).
    learned = {r.prefix: r for r in node.rib if r.learned_from is not None}
    assert len(learned) == 6
    for entry in learned.values():
        owner = flagship.node(entry.origin_node)
        assert entry.learned_from in (owner.ipv4, owner.ipv6)
        assert entry.next_hop in (owner.ipv4, owner.ipv6)
        assert entry.originator_id is None and entry.cluster_list == ()
        assert entry.paths == 1


def test_flagship_route_reasons(flagship: LabPlan) -> None:
    routes = {r.prefix: r for r in flagship.node("node1").fib}
    assert "outside this node's subnet" in routes["192.168.0.128/26"].reason
    assert "IP-in-IP" in routes["192.168.0.128/26"].reason
    assert "inside this node's subnet" in routes["192.168.0.64/26"].reason
    assert "VXLAN" in routes["fd80:24e2:f998:72d7::80/122"].reason
    assert all(r.reason for r in routes.values())


def test_flagship_deterministic(flagship: LabPlan) -> None:
    again = plan_file("flagship.yaml")
    assert again == flagship
    assert json.dumps(again.to_json(), sort_keys=False) == json.dumps(
        flagship.to_json(), sort_keys=False
    )


def _ifnames(plan: LabPlan) -> list[str]:
    names = [s.bridge for s in plan.subnets]
    for router in plan.routers:
        names += [i.ifname for i in router.interfaces]
        names += [i.fabric_ifname for i in router.interfaces]
    for node in plan.nodes:
        names += [node.uplink, node.fabric_ifname]
        names += [p.host_ifname for p in node.pods]
        names += [r.dev for r in node.fib if r.dev is not None]
    return names


def _netns(plan: LabPlan) -> list[str]:
    names = [plan.fabric_netns]
    names += [r.netns for r in plan.routers]
    for node in plan.nodes:
        names.append(node.netns)
        names += [p.netns for p in node.pods]
    return names


@pytest.mark.parametrize(
    "name", sorted(p.name for p in TOPOLOGIES.glob("*.yaml")) or ["flagship.yaml"]
)
def test_interface_names_fit(name: str) -> None:
    plan = plan_file(name)
    names = _ifnames(plan)
    assert names
    for ifname in names:
        assert 0 < len(ifname) <= IFNAME_MAX, ifname
        assert ifname.isascii() and "/" not in ifname and " " not in ifname
    # Pod host interfaces are unique inside their node.
    for node in plan.nodes:
        pod_ifs = [p.host_ifname for p in node.pods]
        assert len(set(pod_ifs)) == len(pod_ifs)
        assert all(i.startswith("cali") and len(i) == 15 for i in pod_ifs)


def test_namespace_names_carry_lab_name(flagship: LabPlan) -> None:
    netns = _netns(flagship)
    assert len(netns) == 1 + 1 + 4 + 8
    assert len(set(netns)) == len(netns)
    assert flagship.fabric_netns == "meshemu.flagship"
    for name in netns:
        assert name == "meshemu.flagship" or name.startswith("meshemu.flagship."), name
    assert flagship.node("node2").netns == "meshemu.flagship.node2"
    assert flagship.node("node2").pods[0].netns == "meshemu.flagship.node2.pod1"


def test_two_labs_have_disjoint_names() -> None:
    one = plan_file("flagship.yaml", lab="laba")
    two = plan_file("flagship.yaml", lab="labb")
    assert one.name == "laba" and two.name == "labb"
    assert all(n.startswith("meshemu.laba") for n in _netns(one))
    assert set(_netns(one)).isdisjoint(_netns(two))
    # Pod veths are hashed with the lab name too.
    pods_one = {p.host_ifname for n in one.nodes for p in n.pods}
    pods_two = {p.host_ifname for n in two.nodes for p in n.pods}
    assert pods_one.isdisjoint(pods_two)
    # Same lab otherwise: the routes are identical apart from pod interfaces.
    assert [r.prefix for r in one.node("node1").fib] == [r.prefix for r in two.node("node1").fib]


def test_lab_name_prefix_does_not_claim_other_labs() -> None:
    """A lab named `lab` must not own namespaces of a lab named `lab2` (the dot separates)."""
    lab2 = _netns(plan_file("flagship.yaml", lab="lab2"))
    assert all(lab_owns_netns("lab2", n) for n in lab2)
    assert not any(lab_owns_netns("lab", n) for n in lab2)


# --- route reflectors ---------------------------------------------------------------------------

REFLECTORS = ("rr1", "rr2")
CLIENTS = ("node1", "node2", "node3", "node4")
CLUSTER_ID = "244.0.0.1"


def test_rr_reflectors_have_no_mesh_sessions(rr: LabPlan) -> None:
    assert rr.mesh is False
    for node in rr.nodes:
        assert all(s.kind != "mesh" for s in node.sessions), node.name
    for name in REFLECTORS:
        node = rr.node(name)
        assert node.cluster_id == CLUSTER_ID
        # No pods, but like calico-node it holds tunnel addresses (tunl0 and the VXLAN VTEP),
        # so it owns one block per encapsulating pool.
        assert node.pods == ()
        assert [b.pool for b in node.blocks] == ["ipv4-pool", "ipv6-pool"]
        assert node.ipip_tunnel_address is not None and len(node.vteps) == 1
        # 4 clients + the other reflector, in both families.
        assert len(node.sessions) == 10
        assert {s.peer_node for s in node.sessions} == {*CLIENTS, *(set(REFLECTORS) - {name})}


def test_rr_clients_peer_with_both_reflectors(rr: LabPlan) -> None:
    for name in CLIENTS:
        node = rr.node(name)
        assert len(node.sessions) == 4
        assert sorted((s.family, s.peer_node) for s in node.sessions) == [
            (4, "rr1"),
            (4, "rr2"),
            (6, "rr1"),
            (6, "rr2"),
        ]
        for s in node.sessions:
            assert s.kind == "node"
            assert not s.rr_client and s.cluster_id is None
            assert s.peer_ip == rr.node(s.peer_node or "").address(s.family)


def test_rr_reflectors_mark_clients(rr: LabPlan) -> None:
    for name in REFLECTORS:
        for s in rr.node(name).sessions:
            if s.peer_node in CLIENTS:
                assert s.rr_client and s.cluster_id == CLUSTER_ID, (name, s.peer_node)
                assert "route-reflector client" in s.reason
            else:
                # Reflectors of the same cluster are not each other's clients.
                assert not s.rr_client and s.cluster_id is None


def test_rr_every_client_learns_every_other_client(rr: LabPlan) -> None:
    for name in CLIENTS:
        node = rr.node(name)
        learned = {r.prefix: r for r in node.rib if r.learned_from is not None}
        expected = {b.cidr for other in rr.nodes if other.name != name for b in other.blocks}
        assert set(learned) == expected
        reflector_ips = {rr.node(r).address(f) for r in REFLECTORS for f in (4, 6)}
        for entry in learned.values():
            origin = rr.node(entry.origin_node)
            if origin.name in REFLECTORS:
                # A reflector's own block: best straight from it; the copy reflected by the
                # other reflector carries ORIGINATOR_ID and CLUSTER_LIST and loses.
                assert entry.originator_id is None and entry.cluster_list == ()
                assert entry.learned_from in (origin.ipv4, origin.ipv6)
                assert entry.paths == 2
                continue
            assert entry.originator_id == origin.router_id
            assert entry.cluster_list == (CLUSTER_ID,)
            assert entry.learned_from in reflector_ips
            # The reflector keeps the originator's next hop.
            assert entry.next_hop in (origin.ipv4, origin.ipv6)
            # Both reflectors send it.
            assert entry.paths == 2


def test_rr_reflectors_learn_clients_directly(rr: LabPlan) -> None:
    for name in REFLECTORS:
        node = rr.node(name)
        learned = {r.prefix: r for r in node.rib if r.learned_from is not None}
        others = [*CLIENTS, *(set(REFLECTORS) - {name})]
        assert set(learned) == {b.cidr for c in others for b in rr.node(c).blocks}
        for entry in learned.values():
            # Straight from the client: no reflection attributes; the other reflector's copy
            # carries our own cluster ID and is dropped, so one path only.
            assert entry.originator_id is None and entry.cluster_list == ()
            assert entry.paths == 1


def test_rr_fib_ipip_always(rr: LabPlan) -> None:
    node1 = rr.node("node1")
    routes = by_prefix(node1)
    for other in ("node2", "node3", "node4"):
        v4, v6 = (b.cidr for b in rr.node(other).blocks)
        # ipipMode Always: tunnel even inside rack1 (node2).
        assert routes[v4] == ("unicast", rr.node(other).ipv4, "tunl0", True)
        assert routes[v6] == ("unicast", rr.node(other).vteps[0].address, "vxlan-v6.calico", True)
    assert not rr.notes, rr.notes


# --- special cases ------------------------------------------------------------------------------


def test_node_needing_several_blocks() -> None:
    plan = plan_text(
        """
name: multi
subnets:
  lan: {ipv4: 10.0.0.0/24}
nodes:
  big: {subnet: lan, pods: 10}
  small: {subnet: lan, pods: 1}
pools:
  p: {cidr: 192.168.0.0/24, blockSize: 29}
"""
    )
    big, small = plan.node("big"), plan.node("small")
    assert [b.cidr for b in big.blocks] == ["192.168.0.0/29", "192.168.0.8/29"]
    assert [b.cidr for b in small.blocks] == ["192.168.0.16/29"]
    assert len(big.pods) == 10
    pod_ips = [ipaddress.ip_address(p.ipv4 or "") for p in big.pods]
    assert len(set(pod_ips)) == 10
    blocks = [ipaddress.ip_network(b.cidr) for b in big.blocks]
    assert all(any(ip in b for b in blocks) for ip in pod_ips)
    assert any(ip in blocks[1] for ip in pod_ips)
    # Both blocks are blackholed on big and routed on small.
    assert by_prefix(big)["192.168.0.0/29"][0] == "blackhole"
    assert by_prefix(big)["192.168.0.8/29"][0] == "blackhole"
    routes = by_prefix(small)
    assert routes["192.168.0.0/29"] == ("unicast", big.ipv4, "eth0", False)
    assert routes["192.168.0.8/29"] == ("unicast", big.ipv4, "eth0", False)


def test_ipip_always_inside_one_subnet() -> None:
    plan = plan_text(
        """
name: always
subnets:
  lan: {ipv4: 10.0.0.0/24}
nodes:
  a: {subnet: lan}
  b: {subnet: lan}
pools:
  p: {cidr: 192.168.0.0/16, ipipMode: Always}
"""
    )
    a, b = plan.node("a"), plan.node("b")
    route = next(r for r in a.fib if r.prefix == b.blocks[0].cidr)
    assert (route.via, route.dev, route.onlink) == (b.ipv4, "tunl0", True)
    assert "inside this node's subnet" in route.reason and "Always" in route.reason
    assert a.ipip_tunnel_address is not None


def test_never_across_subnets_goes_via_router() -> None:
    plan = plan_text(
        """
name: never
subnets:
  rack1: {ipv4: 10.0.1.0/24}
  rack2: {ipv4: 10.0.2.0/24}
routers:
  spine: {subnets: [rack1, rack2]}
nodes:
  a: {subnet: rack1}
  b: {subnet: rack1}
  c: {subnet: rack2}
pools:
  p: {cidr: 192.168.0.0/16, ipipMode: Never}
"""
    )
    a, b, c = plan.node("a"), plan.node("b"), plan.node("c")
    routes = {r.prefix: r for r in a.fib}
    cross = routes[c.blocks[0].cidr]
    assert (cross.via, cross.dev, cross.onlink) == ("10.0.1.1", "eth0", False)
    assert a.gateway4 == "10.0.1.1"
    assert "default router 10.0.1.1" in cross.reason
    assert "knows no pod routes" in cross.reason
    inside = routes[b.blocks[0].cidr]
    assert (inside.via, inside.dev, inside.onlink) == (b.ipv4, "eth0", False)
    assert a.ipip_tunnel_address is None and a.vteps == ()
    # The plan's notes warn that these routes end at a router without pod routes.
    a_notes = [n for n in plan.notes if n.startswith("a:")]
    assert any(c.blocks[0].cidr in n and "10.0.1.1" in n for n in a_notes), plan.notes
    assert not any(n.startswith("b:") and b.blocks[0].cidr in n for n in plan.notes)
    assert not any(b.blocks[0].cidr in n for n in a_notes)


def test_mesh_off_without_peers_learns_nothing() -> None:
    plan = plan_text(
        """
name: lonely
subnets:
  lan: {ipv4: 10.0.0.0/24}
nodes:
  a: {subnet: lan}
  b: {subnet: lan}
  c: {subnet: lan}
pools:
  p: {cidr: 192.168.0.0/16}
bgp:
  nodeToNodeMeshEnabled: false
"""
    )
    for node in plan.nodes:
        assert node.sessions == ()
        assert all(r.learned_from is None for r in node.rib)
        assert all(r.type == "blackhole" or r.dev != "eth0" for r in node.fib)
        assert {r.prefix for r in node.fib if r.type == "blackhole"} == {
            b.cidr for b in node.blocks
        }
    assert "a: learns no routes from b, c" in plan.notes
    assert "b: learns no routes from a, c" in plan.notes
    assert "c: learns no routes from a, b" in plan.notes


def test_pods_zero_node_gets_no_block_and_is_not_missed() -> None:
    plan = plan_text(
        """
name: zero
subnets:
  lan: {ipv4: 10.0.0.0/24}
nodes:
  a: {subnet: lan, pods: 0}
  b: {subnet: lan}
pools:
  p: {cidr: 192.168.0.0/16}
"""
    )
    assert plan.node("a").blocks == ()
    assert [r.prefix for r in plan.node("a").fib] == [
        plan.node("b").blocks[0].cidr
    ]  # only b's block; no blackhole
    assert plan.notes == ()


def test_plan_is_frozen(flagship: LabPlan) -> None:
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        flagship.node("node1").fib[0].via = "x"  # type: ignore[misc]


def test_node_no_pool_selects_gets_no_pods_and_a_note() -> None:
    plan = plan_text(
        """
name: unsel
subnets:
  lan: {ipv4: 10.0.0.0/24}
nodes:
  a: {subnet: lan, labels: {zone: x}}
  b: {subnet: lan}
pools:
  p: {cidr: 192.168.0.0/16, nodeSelector: "zone == 'x'"}
"""
    )
    a, b = plan.node("a"), plan.node("b")
    assert len(a.pods) == 2 and all(p.ipv4 for p in a.pods)
    assert b.pods == () and b.blocks == ()
    assert [r.prefix for r in b.fib] == [a.blocks[0].cidr]
    assert any(n.startswith("b: no enabled IP pool selects this node") for n in plan.notes)
