"""The planner's passes one by one, the gates between them, and inputs that used to break them.

Covers: each pass alone with its frozen result; a problem stops planning at the gate after its
pass (later passes never see undecided data); one-address IPAM blocks (`blockSize: 32` and
`128`, legal in Calico) plan without a blackhole; a /16 subnet holds more than 1,024 nodes;
durations and references that only `build_plan` sees are located problems; a stale record of a
running lab is ignored where it no longer fits; and for random inputs that pass
`load_topology`, `build_plan` returns a plan or raises ConfigError / PlanError, nothing else.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshemu.errors import ConfigError, PlanError
from meshemu.model.agent_config import agent_config_of
from meshemu.model.load import load_topology_text
from meshemu.model.phases import addresses, allocation, fib, notes, peering, rib
from meshemu.model.phases.fabric import installed_routes
from meshemu.model.plan import LabPlan, Sticky, build_plan
from meshemu.model.topology import Topology


def topo_of(text: str) -> Topology:
    return load_topology_text(text, "test.yaml", "test")


def plan_of(text: str) -> LabPlan:
    return build_plan(topo_of(text))


TWO_RACKS = """
name: racks
subnets:
  rack1: {ipv4: 10.0.1.0/24, ipv6: "fd00:1::/64"}
  rack2: {ipv4: 10.0.2.0/24}
routers:
  spine: {subnets: [rack1, rack2]}
nodes:
  a: {subnet: rack1}
  b: {subnet: rack1, ipv4: 10.0.1.2}
  c: {subnet: rack2}
pools:
  p4: {cidr: 192.168.0.0/16, ipipMode: CrossSubnet}
  p6: {cidr: "fd80::/48", vxlanMode: Always}
"""


# --- the passes alone ---------------------------------------------------------------------------


def test_address_passes_alone() -> None:
    topo = topo_of(TWO_RACKS)
    subnets = addresses.plan_subnets(topo)
    assert [(s.name, s.bridge) for s in subnets] == [("rack1", "br0"), ("rack2", "br1")]
    routers, problems = addresses.plan_routers(topo, subnets, {})
    assert problems == []
    (spine,) = routers
    assert [(i.subnet, i.ipv4, i.ipv6) for i in spine.interfaces] == [
        ("rack1", "10.0.1.1", "fd00:1::1"),
        ("rack2", "10.0.2.1", None),
    ]
    assert addresses.gateways(routers) == {
        ("rack1", 4): "10.0.1.1",
        ("rack1", 6): "fd00:1::1",
        ("rack2", 4): "10.0.2.1",
    }
    found, problems = addresses.plan_node_addresses(topo, subnets, routers, {})
    assert problems == []
    # b's fixed address is reserved first; a takes the next free one after the router's.
    assert found.by_node == {
        "a": {4: "10.0.1.3", 6: "fd00:1::2"},
        "b": {4: "10.0.1.2", 6: "fd00:1::3"},
        "c": {4: "10.0.2.2"},
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.by_node = {}  # type: ignore[misc]


def test_later_passes_alone() -> None:
    topo = topo_of(TWO_RACKS)
    subnets = addresses.plan_subnets(topo)
    routers, _ = addresses.plan_routers(topo, subnets, {})
    found, _ = addresses.plan_node_addresses(topo, subnets, routers, {})
    pools = allocation.plan_pools(topo)
    assert [(p.name, p.block_size) for p in pools] == [("p4", 26), ("p6", 122)]
    ipam, problems = allocation.plan_ipam(topo, pools, found, None)
    assert problems == []
    assert [b.cidr for b in ipam["c"].blocks] == ["192.168.0.128/26"]  # c is IPv4-only
    assert ipam["c"].vteps == () and ipam["a"].vteps[0].family == 6
    sessions, problems = peering.plan_peering(topo, found)
    assert problems == []
    assert sessions.expected_up["c"] == ("10.0.1.2", "10.0.1.3")
    ribs = rib.plan_ribs(ipam, pools, found, sessions)
    learned = {r.prefix: r.next_hop for r in ribs.entries["c"] if r.learned_from}
    assert learned == {"192.168.0.0/26": "10.0.1.3", "192.168.0.64/26": "10.0.1.2"}
    vteps = allocation.vtep_by_node_address(ipam, found)
    fibs = fib.plan_fibs(
        topo, subnets, found, addresses.gateways(routers), vteps, pools, ipam, ribs.entries
    )
    routes = {r.prefix: r.text() for r in fibs["c"]}
    assert routes["192.168.0.0/26"] == "192.168.0.0/26 via 10.0.1.3 dev tunl0 onlink"
    plan = build_plan(topo)
    assert notes.plan_notes(topo, plan.nodes, installed_routes(plan.routers)) == plan.notes


# --- gates --------------------------------------------------------------------------------------


def test_a_full_subnet_stops_planning_before_ipam(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*args: object) -> None:
        raise AssertionError("IPAM ran on undecided addresses")

    # The input rules refuse a subnet too small for its nodes already; the gate after the
    # address pass is the planner's own guard, so pass 0 is skipped to reach it.
    monkeypatch.setattr("meshemu.model.plan.check_topology", lambda topo: [])
    monkeypatch.setattr("meshemu.model.plan.plan_ipam", must_not_run)
    topo = Topology.model_validate(
        {
            "name": "full",
            "subnets": {"lan": {"ipv4": "10.0.0.0/29"}},
            "routers": {"r": {"subnets": ["lan"]}},
            "nodes": {f"n{i}": {"subnet": "lan"} for i in range(7)},
        }
    )
    with pytest.raises(ConfigError) as err:
        build_plan(topo)
    assert [p.location for p in err.value.problems] == ["nodes.n5", "nodes.n6"]
    assert "no free IPv4 address left" in err.value.problems[0].message


def test_a_small_pool_stops_planning_before_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*args: object) -> None:
        raise AssertionError("peering ran after IPAM failed")

    monkeypatch.setattr("meshemu.model.plan.plan_peering", must_not_run)
    with pytest.raises(ConfigError) as err:
        plan_of(
            "name: small\nsubnets:\n  lan: {ipv4: 10.0.0.0/24}\nnodes:\n"
            "  a: {subnet: lan}\n  b: {subnet: lan}\n"
            "pools:\n  p: {cidr: 192.168.0.0/26, blockSize: 26}\n"
            "ipam: {strictAffinity: true}\n"
        )
    # a holds the pool's only block; under strict affinity b's pods get no address.
    assert [p.location for p in err.value.problems] == ["pools.p"]


def test_a_bad_duration_is_located() -> None:
    """The duration rules were checked only inside the session rules (a ValueError turned
    into a problem at `bgp`); now the field is named."""
    with pytest.raises(ConfigError) as err:
        plan_of(
            "name: dur\nsubnets:\n  lan: {ipv4: 10.0.0.0/24}\nnodes:\n  a: {subnet: lan}\n"
            "bgp:\n  nodeMeshMaxRestartTime: 10x\n  peers:\n"
            "    p: {peerSelector: all(), maxRestartTime: 1h2q}\n"
        )
    assert [p.location for p in err.value.problems] == [
        "bgp.nodeMeshMaxRestartTime",
        "bgp.peers.p.maxRestartTime",
    ]


def test_a_topology_built_in_code_is_checked_first() -> None:
    """A scenario's changed topology is built without `load_topology`: an unknown subnet
    is a located problem, not a KeyError deep in a pass."""
    topo = Topology.model_validate(
        {
            "name": "code",
            "subnets": {"lan": {"ipv4": "10.0.0.0/24"}},
            "nodes": {"a": {"subnet": "x"}},
        }
    )
    with pytest.raises(ConfigError) as err:
        build_plan(topo)
    assert err.value.problems[0].location == "nodes.a.subnet"


# --- one-address blocks -------------------------------------------------------------------------

ONE_ADDRESS_BLOCKS = """
name: single
subnets:
  lan: {ipv4: 10.0.0.0/24, ipv6: "fd00::/64"}
nodes:
  a: {subnet: lan, pods: 2}
  b: {subnet: lan, pods: 1}
pools:
  p4: {cidr: 192.168.0.0/28, blockSize: 32, ipipMode: Always}
  p6: {cidr: "fd80::/120", blockSize: 128, vxlanMode: Always}
"""


def test_one_address_blocks_plan_without_blackholes() -> None:
    """`blockSize: 32` / `128` crashed the planner (no usable address in a block). In Calico
    the block's one address is the pod's, and Felix programs no blackhole for such a block
    (felix/dataplane/linux/route_mgr.go, routeIsLocalBlock)."""
    plan = plan_of(ONE_ADDRESS_BLOCKS)
    a, b = plan.node("a"), plan.node("b")
    # a: tunl0 + 2 pods in IPv4, VTEP + 2 pods in IPv6: three blocks per family. Every node's
    # tunnel addresses come before any pod (calico-node runs before the node is Ready), so
    # b's tunnel holds the second block of each pool.
    assert [x.cidr for x in a.blocks if "." in x.cidr] == [
        "192.168.0.0/32",
        "192.168.0.2/32",
        "192.168.0.3/32",
    ]
    assert a.ipip_tunnel_address == "192.168.0.0"
    assert b.ipip_tunnel_address == "192.168.0.1"
    assert [p.ipv4 for p in a.pods] == ["192.168.0.2", "192.168.0.3"]
    assert [p.ipv6 for p in a.pods] == ["fd80::2", "fd80::3"]
    assert a.vteps[0].address == "fd80::"
    for node in (a, b):
        assert not [r for r in node.fib if r.type == "blackhole"]
        # Each pod address is its block, and its route goes to the pod's interface.
        pod_routes = {r.prefix: r.dev for r in node.fib if r.dev and r.dev.startswith("cali")}
        assert set(pod_routes) == {f"{p.ipv4}/32" for p in node.pods} | {
            f"{p.ipv6}/128" for p in node.pods
        }
        assert len({r.prefix for r in node.fib}) == len(node.fib)
    # b routes to each of a's blocks through the tunnels.
    routes = {r.prefix: r for r in b.fib}
    assert routes["192.168.0.2/32"].text() == "192.168.0.2/32 via 10.0.0.1 dev tunl0 onlink"
    assert routes["fd80::2/128"].dev == "vxlan-v6.calico"
    # The agents, told by the same rule, program none either.
    assert agent_config_of(plan, "a").blackholes() == ()


def test_blocks_of_two_addresses_use_both() -> None:
    """Calico reserves no ordinal of a block (ipam_block.go newBlock): a /31 holds two pods."""
    plan = plan_of(
        "name: pairs\nsubnets:\n  lan: {ipv4: 10.0.0.0/24}\nnodes:\n  a: {subnet: lan, pods: 3}\n"
        "pools:\n  p: {cidr: 192.168.0.0/28, blockSize: 31}\n"
    )
    a = plan.node("a")
    assert [b.cidr for b in a.blocks] == ["192.168.0.0/31", "192.168.0.2/31"]
    assert [p.ipv4 for p in a.pods] == ["192.168.0.0", "192.168.0.1", "192.168.0.2"]
    assert [r.prefix for r in a.fib if r.type == "blackhole"] == [b.cidr for b in a.blocks]


FEW_ONE_ADDRESS_BLOCKS = (
    "name: few\nsubnets:\n  lan: {ipv4: 10.0.0.0/24}\nnodes:\n  a: {subnet: lan, pods: 5}\n"
    "pools:\n  p: {cidr: 192.168.0.0/30, blockSize: 32}\n"
)


def test_one_address_blocks_too_few_strict() -> None:
    with pytest.raises(ConfigError) as err:
        plan_of(FEW_ONE_ADDRESS_BLOCKS + "ipam: {strictAffinity: true}\n")
    assert err.value.problems[0].location == "pools.p"
    assert "no free block left for 1 pod(s) (a: 1)" in err.value.problems[0].message


def test_one_address_blocks_too_few_nothing_to_borrow() -> None:
    """Without strict affinity Calico borrows, but a full one-address block has nothing to
    lend: the fifth pod is not created and the plan says why (ipam.go:947)."""
    plan = plan_of(FEW_ONE_ADDRESS_BLOCKS)
    assert [p.ipv4 for p in plan.node("a").pods] == [f"192.168.0.{i}" for i in range(4)]
    (note,) = [n for n in plan.notes if "pod5" in n]
    assert note.startswith("a: pod5 is not created")
    assert "No IPs available in pools: [192.168.0.0/30]" in note


# --- large subnets ------------------------------------------------------------------------------


def test_a_slash_16_subnet_holds_more_than_1024_nodes() -> None:
    """Addresses came from the first 1,024 hosts of a subnet only: node 1,025 was refused."""
    text = yaml.safe_dump(
        {
            "name": "big",
            "subnets": {"lan": {"ipv4": "10.1.0.0/16"}},
            "nodes": {f"n{i:04d}": {"subnet": "lan", "pods": 0} for i in range(1100)},
            "bgp": {"nodeToNodeMeshEnabled": False},
        }
    )
    plan = plan_of(text)
    addresses_given = [n.ipv4 for n in plan.nodes]
    assert len(set(addresses_given)) == 1100
    assert addresses_given[-1] == str(ipaddress.IPv4Address("10.1.0.0") + 1100)


# --- a running lab's record ---------------------------------------------------------------------


def test_a_stale_record_is_ignored_where_it_no_longer_fits() -> None:
    """After a live change moved a subnet or a pool, kept addresses and blocks outside them
    are dropped instead of planned into the wrong ranges."""
    plan = plan_of(TWO_RACKS)
    sticky = Sticky.of(plan)
    moved = TWO_RACKS.replace("10.0.1.0/24", "10.9.1.0/24").replace(
        "192.168.0.0/16", "172.20.0.0/16"
    )
    moved = moved.replace("b: {subnet: rack1, ipv4: 10.0.1.2}", "b: {subnet: rack1}")
    again = build_plan(topo_of(moved), sticky=sticky)
    assert again.node("a").ipv4 == "10.9.1.2"
    assert again.node("c").ipv4 == "10.0.2.2"  # rack2 did not move: kept
    assert all(b.cidr.startswith("172.20.") for n in again.nodes for b in n.blocks if "." in b.cidr)


def test_a_record_with_garbage_is_ignored_where_it_is_garbage() -> None:
    """The record comes from a state folder: text that is no address or block is skipped."""
    plan = plan_of(TWO_RACKS)
    junk = Sticky(
        addresses={"a": ("rack1", {4: "not-an-ip", 6: "fd00:1::99"})},
        affinity={"a": [("p4", "192.168.0.0/33"), ("p4", "junk"), ("nope", "10.0.0.0/26")]},
        pods={"a": [{4: ("p4", "x.y"), 6: ("p6", "::zz")}]},
    )
    again = build_plan(topo_of(TWO_RACKS), sticky=junk)
    assert again.node("a").ipv6 == "fd00:1::99"
    assert again.node("a").ipv4 == plan.node("a").ipv4
    assert [b.cidr for b in again.node("a").blocks] == [b.cidr for b in plan.node("a").blocks]


def test_a_record_keeps_what_fits() -> None:
    plan = plan_of(TWO_RACKS)
    grown = TWO_RACKS.replace("  c: {subnet: rack2}", "  z: {subnet: rack1}\n  c: {subnet: rack2}")
    again = build_plan(topo_of(grown), previous=plan)
    for name in ("a", "b", "c"):
        before, after = plan.node(name), again.node(name)
        assert (after.ipv4, after.ipv6, after.blocks) == (before.ipv4, before.ipv6, before.blocks)
        assert [p.ipv4 for p in after.pods] == [p.ipv4 for p in before.pods]
    assert again.node("z").ipv4 not in {n.ipv4 for n in plan.nodes}


# --- nothing but ConfigError or PlanError -------------------------------------------------------

names = st.sampled_from(["a", "b", "c", "d", "rr1"])


@st.composite
def topologies(draw: st.DrawFn) -> str:
    subnets = {
        "s0": draw(
            st.sampled_from(
                [
                    {"ipv4": "10.0.0.0/29"},
                    {"ipv4": "10.0.0.0/24"},
                    {"ipv6": "fd00::/125"},
                    {"ipv4": "10.0.0.0/24", "ipv6": "fd00::/64"},
                ]
            )
        ),
        "s1": {"ipv4": "10.1.0.0/24"},
    }
    nodes = {}
    for name in draw(st.lists(names, min_size=1, max_size=5, unique=True)):
        spec: dict[str, object] = {"subnet": draw(st.sampled_from(["s0", "s1"]))}
        spec["pods"] = draw(st.integers(0, 12))
        if draw(st.booleans()):
            spec["routeReflectorClusterID"] = draw(st.sampled_from(["244.0.0.1", "1.2.3.4"]))
        if draw(st.booleans()):
            spec["labels"] = {"rr": draw(st.sampled_from(["yes", "no"]))}
        if draw(st.booleans()):
            spec["asNumber"] = draw(st.sampled_from([64512, 65001]))
        if draw(st.booleans()):
            spec["listenPort"] = draw(st.sampled_from([179, 180]))
        nodes[name] = spec
    pools = {}
    if draw(st.booleans()):
        pools["p4"] = {
            "cidr": draw(st.sampled_from(["192.168.0.0/24", "192.168.0.0/30"])),
            "blockSize": draw(st.sampled_from([24, 26, 30, 31, 32])),
            "ipipMode": draw(st.sampled_from(["Never", "Always", "CrossSubnet"])),
            "disableBGPExport": draw(st.booleans()),
        }
    if draw(st.booleans()):
        pools["p6"] = {
            "cidr": draw(st.sampled_from(["fd80::/120", "fd80::/126"])),
            "blockSize": draw(st.sampled_from([120, 122, 126, 127, 128])),
            "vxlanMode": draw(st.sampled_from(["Never", "Always", "CrossSubnet"])),
        }
    peers: dict[str, dict[str, object]] = {}
    if draw(st.booleans()):
        peers["rr"] = {"nodeSelector": "all()", "peerSelector": "rr == 'yes'"}
    if draw(st.booleans()):
        peers["ip"] = {
            "peerIP": draw(st.sampled_from(["10.0.0.2", "10.1.0.2:180", "[fd00::2]:179"])),
            "asNumber": draw(st.sampled_from([64512, 65001])),
            "password": draw(st.sampled_from(["x", ""])),
        }
    bgp = {"nodeToNodeMeshEnabled": draw(st.booleans()), "peers": peers}
    routers = {"r": {"subnets": ["s0", "s1"]}}
    return yaml.safe_dump(
        {
            "name": "fuzz",
            "subnets": subnets,
            "routers": routers,
            "nodes": nodes,
            "pools": pools,
            "bgp": bgp,
        }
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=topologies())
def test_build_plan_raises_only_config_or_plan_errors(text: str) -> None:
    try:
        topo = topo_of(text)
    except ConfigError:
        return
    try:
        plan = build_plan(topo)
    except (ConfigError, PlanError):
        return
    # What it returns reads back identically.
    assert LabPlan.from_json(plan.to_json(secrets=True)) == plan
