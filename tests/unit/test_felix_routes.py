"""Felix's routes in the plan (model.felix through the planner): shapes per pool kind, the
CrossSubnet test on Node addresses, borrowed addresses, and who writes what under each
programClusterRoutes pair."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from meshemu.model.load import load_topology_text
from meshemu.model.plan import LabPlan, NodePlan, build_plan
from meshemu.model.routes import FibRoute

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
RACKS = """
name: fx
subnets:
  rack1: {ipv4: 10.40.1.0/24, ipv6: "fd00:40:1::/64"}
  rack2: {ipv4: 10.40.2.0/24, ipv6: "fd00:40:2::/64"}
routers:
  spine: {subnets: [rack1, rack2]}
nodes:
  a: {subnet: rack1}
  b: {subnet: rack1}
  c: {subnet: rack2}
pools:
  v4: {cidr: 10.240.0.0/16, POOL4}
  v6: {cidr: "fd00:240::/64", vxlanMode: CrossSubnet}
"""


def _plan(text: str, pool4: str = "ipipMode: CrossSubnet", extra: str = "") -> LabPlan:
    return build_plan(load_topology_text(text.replace("POOL4", pool4) + extra, "t.yaml", "fx"))


def _routes(node: NodePlan, other: NodePlan, family: int) -> list[FibRoute]:
    blocks = {b.cidr for b in other.blocks if (":" in b.cidr) == (family == 6)}
    return [r for r in node.fib if r.prefix in blocks]


def test_ipip_crosssubnet_felix_routes_by_node_address() -> None:
    plan = _plan(RACKS)
    a, b, c = (plan.node(n) for n in "abc")
    (inside,) = _routes(a, b, 4)
    assert (inside.via, inside.dev, inside.onlink, inside.source) == (b.ipv4, "eth0", True, "felix")
    (across,) = _routes(a, c, 4)
    assert (across.via, across.dev, across.onlink, across.source) == (
        c.ipv4,
        "tunl0",
        True,
        "felix",
    )
    assert "outside this node's subnet" in across.reason and "Felix" in across.reason


def test_vxlan_routes_go_to_the_remote_vtep_and_are_always_felixs() -> None:
    # Even with BIRD owning everything it may (BGPConfiguration Enabled), VXLAN is Felix's.
    plan = _plan(RACKS, extra="bgp: {programClusterRoutes: Enabled}\n")
    a, c = plan.node("a"), plan.node("c")
    (route,) = _routes(a, c, 6)
    vtep = next(v.address for v in c.vteps if v.family == 6)
    assert (route.via, route.dev, route.onlink, route.source) == (
        vtep,
        "vxlan-v6.calico",
        True,
        "felix",
    )


def test_the_classic_pair_gives_birds_routes_from_the_bgp_next_hop() -> None:
    plan = _plan(RACKS, extra="felix: {programClusterRoutes: Disabled}\n"
                 "bgp: {programClusterRoutes: Enabled}\n")  # fmt: skip
    a, b, c = (plan.node(n) for n in "abc")
    (inside,) = _routes(a, b, 4)
    # BIRD's direct route carries no onlink flag (`gateway recursive`), Felix's does.
    assert (inside.via, inside.dev, inside.onlink, inside.source) == (b.ipv4, "eth0", False, "bgp")
    (across,) = _routes(a, c, 4)
    assert (across.dev, across.source) == ("tunl0", "bgp")
    # The own block's blackhole is BIRD's static route now.
    blackhole = next(r for r in a.fib if r.type == "blackhole" and ":" not in r.prefix)
    assert blackhole.source == "local" and "BIRD" in blackhole.reason
    assert plan.pools[0].bird_programs and "ipip" not in a.felix_programs


# eBGP to a ToR per rack (the shipped as-per-rack lab, with an IPIP pool): BIRD's next hop for
# another rack's block is the ToR; Felix's CrossSubnet test and next hop are the Node's address.
AS_PER_RACK = (
    (TOPOLOGIES / "as-per-rack.yaml").read_text().replace("ipipMode: Never", "ipipMode: Always")
)
CLASSIC = "felix: {programClusterRoutes: Disabled}\n"


def test_felix_tunnels_to_the_node_where_bird_would_tunnel_to_the_tor() -> None:
    current = build_plan(load_topology_text(AS_PER_RACK, "t.yaml", "fxebgp"))
    n1, n3 = current.node("node1"), current.node("node3")
    (felix,) = _routes(n1, n3, 4)
    assert (felix.via, felix.dev, felix.source) == (n3.ipv4, "tunl0", "felix")
    text = AS_PER_RACK.replace("\nbgp:\n", "\nbgp:\n  programClusterRoutes: Enabled\n", 1)
    classic = build_plan(load_topology_text(text + CLASSIC, "t.yaml", "fxebgp"))
    n1 = classic.node("node1")
    (bird,) = _routes(n1, classic.node("node3"), 4)
    assert (bird.via, bird.dev, bird.source) == (n1.gateway4, "tunl0", "bgp")


def test_unencapsulated_felix_routes_are_onlink_whatever_the_subnet() -> None:
    plan = _plan(RACKS, pool4="ipipMode: Never", extra="felix: {programClusterRoutes: Enabled}\n"
                 "bgp: {programClusterRoutes: Disabled}\n")  # fmt: skip
    a, c = plan.node("a"), plan.node("c")
    (route,) = _routes(a, c, 4)
    assert (route.via, route.dev, route.onlink, route.source) == (c.ipv4, "eth0", True, "felix")


@pytest.mark.parametrize(
    ("felix", "bgp", "sources"),
    [
        ("EnabledIPIPOnly", "EnabledNoEncapOnly", {"felix"}),
        ("Disabled", "Enabled", {"bgp"}),
        ("Enabled", "Enabled", {"felix", "bgp"}),  # both: they fight
        ("Disabled", "EnabledNoEncapOnly", set()),  # neither: no cluster routes
        ("EnabledNoEncapOnly", "EnabledIPIPOnly", {"bgp"}),
    ],
)
def test_who_writes_an_ipip_pools_routes(felix: str, bgp: str, sources: set[str]) -> None:
    plan = _plan(RACKS, extra=f"felix: {{programClusterRoutes: {felix}}}\n"
                 f"bgp: {{programClusterRoutes: {bgp}}}\n")  # fmt: skip
    a, c = plan.node("a"), plan.node("c")
    assert {r.source for r in _routes(a, c, 4)} == sources
    blackholes = [r for r in a.fib if r.type == "blackhole" and ":" not in r.prefix]
    assert len(blackholes) == (1 if sources else 0)  # one entry even when both write it
    # IPv6 (VXLAN) is Felix's under every pair.
    assert {r.source for r in _routes(a, c, 6)} == {"felix"}


def test_felix_switched_off_writes_nothing() -> None:
    plan = _plan(RACKS, extra="felix: {routeSyncDisabled: true}\n")
    a, c = plan.node("a"), plan.node("c")
    assert _routes(a, c, 4) == [] and _routes(a, c, 6) == []
    assert plan.node("a").felix_programs == ()
    off = _plan(RACKS, extra="felix: {ipipEnabled: false}\n")
    assert _routes(off.node("a"), off.node("c"), 4) == []
    assert _routes(off.node("a"), off.node("c"), 6) != []


def test_a_nodes_own_felix_configuration_wins_on_that_node_only() -> None:
    text = RACKS.replace(
        "  a: {subnet: rack1}", "  a: {subnet: rack1, felix: {programClusterRoutes: Disabled}}"
    )
    plan = _plan(text)
    assert _routes(plan.node("a"), plan.node("c"), 4) == []  # neither on a
    assert {r.source for r in _routes(plan.node("b"), plan.node("c"), 4)} == {"felix"}


BORROW = """
name: fxb
subnets:
  lan: {ipv4: 10.42.0.0/24}
nodes:
  n1: {subnet: lan, pods: 5}
  n2: {subnet: lan, pods: 1}
  n3: {subnet: lan, pods: 2}
  n4: {subnet: lan, pods: 1}
pools:
  small: {cidr: 10.242.0.0/28, blockSize: 30, ipipMode: Always}
"""


def test_borrowed_addresses_get_a_slash_32_to_the_borrower_on_every_other_node() -> None:
    plan = build_plan(load_topology_text(BORROW, "t.yaml", "fxb"))
    n1 = plan.node("n1")
    own = [b.cidr for b in n1.blocks]
    borrowed = [
        p.ipv4
        for p in n1.pods
        if p.ipv4 and not any(ipaddress.ip_address(p.ipv4) in ipaddress.ip_network(b) for b in own)
    ]
    assert borrowed, "the topology must make n1 borrow"
    for other in plan.nodes:
        hosts = {r.prefix: r for r in other.fib if r.prefix.endswith("/32")}
        for address in borrowed:
            route = hosts[f"{address}/32"]
            if other.name == "n1":
                assert route.dev is not None and route.dev.startswith("cali")  # its own pod
            else:
                assert (route.via, route.dev, route.source) == (n1.ipv4, "tunl0", "felix")


def test_every_fib_entry_of_plan_json_names_its_writer() -> None:
    plan = _plan(RACKS)
    for node in json.loads(json.dumps(plan.to_json()))["nodes"]:
        assert node["fib"] and {r["source"] for r in node["fib"]} <= {"felix", "bgp", "local"}
