"""Calico's IPAM as meshemu's allocator follows it (model/ipam.py; docs/research/felix/ipam.md)."""

from __future__ import annotations

import ipaddress

import pytest
import yaml

from meshemu.errors import ConfigError
from meshemu.model.ipam import (
    Assigned,
    Borrowed,
    IpamConfig,
    NodeInput,
    PoolInput,
    allocate,
    node_borrowed,
    plan_borrowed,
)
from meshemu.model.labplan import LabPlan, Sticky
from meshemu.model.plan import build_plan
from meshemu.model.topology import Topology


def pool(
    name: str, cidr: str, block: int = 29, selector: str = "", ipip: bool = False
) -> PoolInput:
    return PoolInput(name, ipaddress.ip_network(cidr), block, selector, ipip, False, False)


def node(name: str, pods: int, labels: dict[str, str] | None = None) -> NodeInput:
    return NodeInput(name, labels or {}, pods, frozenset({4}))


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def ips(alloc: object) -> list[str]:
    return [str(p[4].address) for p in alloc.pod_addresses]  # type: ignore[attr-defined]


def test_tunnel_takes_ordinal_zero_before_any_pod() -> None:
    """allocateip runs before the node is Ready, and a block's free list starts at ordinal 0
    (ipam_block.go newBlock): tunl0 gets the block's first address, pods the next ones."""
    out = allocate([pool("p", "10.0.0.0/24", 29, ipip=True)], [node("a", 2), node("b", 1)])
    assert str(out["a"].ipip_tunnel) == "10.0.0.0"
    assert str(out["b"].ipip_tunnel) == "10.0.0.8"  # every tunnel before any pod
    assert ips(out["a"]) == ["10.0.0.1", "10.0.0.2"]
    assert ips(out["b"]) == ["10.0.0.9"]


def test_affine_block_fills_before_a_new_block() -> None:
    out = allocate([pool("p", "10.0.0.0/24", 30)], [node("a", 6)])
    assert [str(b) for _, b in out["a"].blocks] == ["10.0.0.0/30", "10.0.0.4/30"]
    assert ips(out["a"]) == [f"10.0.0.{i}" for i in range(6)]


def test_pools_by_name_not_round_robin() -> None:
    """The first pool by name gives every address until it has no block left; input order
    does not matter (GetEnabledPools lists by key)."""
    pools = [pool("zeta", "10.9.0.0/24", 29), pool("alpha", "10.1.0.0/29", 29)]
    out = allocate(pools, [node("a", 10)])
    assert ips(out["a"])[:8] == [f"10.1.0.{i}" for i in range(8)]
    assert ips(out["a"])[8:] == ["10.9.0.0", "10.9.0.1"]
    assert [p[4].pool for p in out["a"].pod_addresses] == ["alpha"] * 8 + ["zeta"] * 2


def test_a_node_fills_its_block_in_a_later_pool_before_the_first_pool() -> None:
    """Affine blocks in any candidate pool come before a new block of the first pool."""
    pools = [pool("a1", "10.1.0.0/24", 29, selector="x == 'y'"), pool("b2", "10.2.0.0/24", 29)]
    before = allocate(pools, [node("n", 2)])
    assert ips(before["n"]) == ["10.2.0.0", "10.2.0.1"]
    # Now the node is selected by a1 too: its b2 block still has room, so it is used first.
    after = allocate(
        pools,
        [node("n", 4, {"x": "y"})],
        affinity={"n": [("b2", "10.2.0.0/29")]},
        pods_before={"n": [{4: ("b2", "10.2.0.0")}, {4: ("b2", "10.2.0.1")}]},
    )
    assert ips(after["n"]) == ["10.2.0.0", "10.2.0.1", "10.2.0.2", "10.2.0.3"]


def test_tunnel_only_from_pools_of_its_kind() -> None:
    """allocateip requests the IPIP pools only, even when a pool before them by name exists."""
    pools = [pool("a-plain", "10.1.0.0/24", 29), pool("b-ipip", "10.2.0.0/24", 29, ipip=True)]
    out = allocate(pools, [node("n", 1)])
    assert str(out["n"].ipip_tunnel) == "10.2.0.0"
    assert ips(out["n"]) == ["10.2.0.1"]  # the affine IPIP block has room: no a-plain block


def test_one_address_blocks() -> None:
    out = allocate([pool("p", "10.0.0.0/30", 32)], [node("a", 3)])
    assert [str(b) for _, b in out["a"].blocks] == ["10.0.0.0/32", "10.0.0.1/32", "10.0.0.2/32"]
    assert ips(out["a"]) == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]


def test_block_limit_default_20_and_max_blocks_per_host() -> None:
    out = allocate([pool("p", "10.0.0.0/24", 32)], [node("a", 22)])
    assert len(out["a"].pod_addresses) == 20
    assert [(r.pod, r.kind) for r in out["a"].refused] == [(20, "limit"), (21, "limit")]
    assert "limit of 20 blocks reached for this node" in out["a"].refused[0].message
    out = allocate(
        [pool("p", "10.0.0.0/24", 30)], [node("a", 9)], config=IpamConfig(max_blocks_per_host=2)
    )
    assert len(out["a"].pod_addresses) == 8 and len(out["a"].refused) == 1


def test_strict_affinity_refuses_where_calico_would_borrow() -> None:
    nodes = [node("a", 4), node("b", 1)]
    strict = allocate([pool("p", "10.0.0.0/30", 30)], nodes, config=IpamConfig(True))
    assert ips(strict["a"]) == [f"10.0.0.{i}" for i in range(4)]
    (refusal,) = strict["b"].refused
    assert refusal.kind == "strict" and refusal.message == (
        "Assigned 0 out of 1 requested IPv4 addresses; "
        "No more free affine blocks and strict affinity enabled"
    )
    assert strict["b"].pod_addresses == ()
    # Without strict affinity the pool is full all the same: nothing to borrow either.
    loose = allocate([pool("p", "10.0.0.0/30", 30)], nodes)
    (refusal,) = loose["b"].refused
    assert refusal.kind == "exhausted" and refusal.message == (
        "Assigned 0 out of 1 requested IPv4 addresses; No IPs available in pools: [10.0.0.0/30]"
    )


def test_a_node_without_a_free_block_borrows_from_another_nodes_block() -> None:
    """strictAffinity false: no block left for c, so the address comes from the first
    existing block with room (ipam.go:876-950), a's; the block stays a's."""
    out = allocate([pool("p", "10.0.0.0/29", 30)], [node("a", 3), node("b", 2), node("c", 2)])
    assert [str(b) for _, b in out["a"].blocks] == ["10.0.0.0/30"]
    assert [str(b) for _, b in out["b"].blocks] == ["10.0.0.4/30"]
    assert out["c"].blocks == () and out["c"].refused == ()
    first, second = (pod[4] for pod in out["c"].pod_addresses)
    assert first == Assigned("p", ip("10.0.0.3"), net("10.0.0.0/30"), "a")
    # a's block is full now: the next borrow walks on to b's.
    assert second == Assigned("p", ip("10.0.0.6"), net("10.0.0.4/30"), "b")
    assert first.borrowed_by("c") and not out["a"].pod_addresses[0][4].borrowed_by("a")
    # b's own pods are not borrowed, and .7 is left for the next one.
    assert [pod[4].affinity for pod in out["b"].pod_addresses] == ["b", "b"]


def test_borrowing_follows_pool_name_order() -> None:
    """Every pool of the node is exhausted of blocks: the first pool by name with a free
    address in an existing block lends it, even if a later pool has more room."""
    pools = [pool("b-second", "10.2.0.0/30", 30), pool("a-first", "10.1.0.0/30", 30)]
    out = allocate(pools, [node("x", 3), node("y", 2), node("z", 1)])
    # x fills a-first's only block but one address; y takes b-second's, two left there.
    assert ips(out["x"]) == ["10.1.0.0", "10.1.0.1", "10.1.0.2"]
    assert ips(out["y"]) == ["10.2.0.0", "10.2.0.1"]
    (pod,) = out["z"].pod_addresses
    assert pod[4] == Assigned("a-first", ip("10.1.0.3"), net("10.1.0.0/30"), "x")


def test_block_limit_ends_the_request_without_borrowing() -> None:
    """ErrBlockLimit returns before the non-affine hunt (ipam.go:791-797)."""
    out = allocate(
        [pool("p", "10.0.0.0/29", 30)],
        [node("a", 2), node("b", 5)],
        config=IpamConfig(max_blocks_per_host=1),
    )
    # b fills its one block (its limit); a's block has two free addresses: still refused.
    assert ips(out["b"]) == ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"]
    assert [r.kind for r in out["b"].refused] == ["limit"]


def test_one_address_blocks_have_nothing_to_lend() -> None:
    out = allocate([pool("p", "10.0.0.0/30", 32)], [node("a", 3), node("b", 2)])
    assert ips(out["b"]) == ["10.0.0.3"]
    assert [r.kind for r in out["b"].refused] == ["exhausted"]


def test_tunnel_addresses_borrow_too() -> None:
    """allocateip's request is an AutoAssign like a pod's: no block left for b, so b's tunl0
    address is borrowed from a's block."""
    out = allocate([pool("p", "10.0.0.0/31", 31, ipip=True)], [node("a", 0), node("b", 0)])
    assert str(out["a"].ipip_tunnel) == "10.0.0.0"
    assert out["b"].tunnels[("ipip", 4)] == Assigned("p", ip("10.0.0.1"), net("10.0.0.0/31"), "a")
    assert out["b"].blocks == () and out["b"].tunnel_refused == ()


def test_live_change_keeps_borrowed_addresses_and_borrows_again() -> None:
    p = [pool("p", "10.0.0.0/29", 30)]
    first = allocate(p, [node("a", 3), node("b", 3), node("c", 1)])
    assert ips(first["c"]) == ["10.0.0.3"]
    affinity = {"a": [("p", "10.0.0.0/30")], "b": [("p", "10.0.0.4/30")]}
    before = {
        "a": [{4: ("p", f"10.0.0.{i}")} for i in range(3)],
        "b": [{4: ("p", f"10.0.0.{i}")} for i in range(4, 7)],
        "c": [{4: ("p", "10.0.0.3")}],
    }
    # A new node d and a second pod on c: c keeps .3 in a's block, the newcomers borrow .7.
    grown = allocate(p, [node("a", 3), node("b", 3), node("c", 2), node("d", 1)], affinity, before)
    assert [pod[4] for pod in grown["c"].pod_addresses] == [
        Assigned("p", ip("10.0.0.3"), net("10.0.0.0/30"), "a"),
        Assigned("p", ip("10.0.0.7"), net("10.0.0.4/30"), "b"),
    ]
    assert ips(grown["a"]) == ips(first["a"]) and ips(grown["b"]) == ips(first["b"])
    assert [r.kind for r in grown["d"].refused] == ["exhausted"]
    # a is removed: its block keeps c's address, affine to no node (no one reclaims a block
    # with an allocation in it); a's addresses are free and d borrows the first.
    gone = allocate(p, [node("b", 3), node("c", 1), node("d", 2)], affinity, before)
    (kept,) = gone["c"].pod_addresses
    assert kept[4] == Assigned("p", ip("10.0.0.3"), net("10.0.0.0/30"), None)
    assert [pod[4] for pod in gone["d"].pod_addresses] == [
        Assigned("p", ip("10.0.0.0"), net("10.0.0.0/30"), None),
        Assigned("p", ip("10.0.0.1"), net("10.0.0.0/30"), None),
    ]


def test_live_change_keeps_tunnel_addresses() -> None:
    """A borrowed tunnel address stays with its node when pods are added (allocateip keeps a
    Node's address), although a fresh walk would now find another first free address."""
    p = [pool("p", "10.0.0.0/30", 31, ipip=True)]
    first = allocate(p, [node("a", 0), node("b", 0), node("c", 0)])
    assert [str(first[n].ipip_tunnel) for n in "abc"] == ["10.0.0.0", "10.0.0.2", "10.0.0.1"]
    affinity = {"a": [("p", "10.0.0.0/31")], "b": [("p", "10.0.0.2/31")]}
    tunnels = {n: {("ipip", 4): ("p", str(first[n].ipip_tunnel))} for n in "abc"}
    later = allocate(
        p, [node("a", 0), node("b", 1), node("c", 0)], affinity, {}, tunnels_before=tunnels
    )
    assert [str(later[n].ipip_tunnel) for n in "abc"] == ["10.0.0.0", "10.0.0.2", "10.0.0.1"]
    assert ips(later["b"]) == ["10.0.0.3"]


def test_an_empty_block_of_another_node_is_taken_over() -> None:
    """Every block claimed, one of them empty: Calico reclaims it (rw.go:194-245)."""
    out = allocate(
        [pool("p", "10.0.0.0/29", 30)],
        [node("a", 0), node("b", 6)],
        affinity={"a": [("p", "10.0.0.0/30")], "b": [("p", "10.0.0.4/30")]},
    )
    assert out["a"].blocks == ()
    assert ips(out["b"]) == ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.0", "10.0.0.1"]


def test_live_change_keeps_addresses_and_reuses_released_ones_last() -> None:
    p = [pool("p", "10.0.0.0/24", 29)]
    first = allocate(p, [node("a", 3)])
    assert ips(first["a"]) == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]
    affinity = {"a": [("p", "10.0.0.0/29")]}
    # Pod 3 goes away; later six pods come (the record no longer holds .2: it is free again).
    before = {"a": [{4: ("p", "10.0.0.0")}, {4: ("p", "10.0.0.1")}, {4: ("p", "10.0.0.2")}]}
    shrunk = allocate(p, [node("a", 2)], affinity, before)
    assert ips(shrunk["a"]) == ["10.0.0.0", "10.0.0.1"]
    grown = allocate(p, [node("a", 9)], affinity, before | {"a": before["a"][:2]})
    assert ips(grown["a"])[:2] == ["10.0.0.0", "10.0.0.1"]
    assert ips(grown["a"])[2:] == [f"10.0.0.{i}" for i in range(2, 8)] + ["10.0.0.8"]
    released = allocate(p, [node("a", 4)], affinity, before)
    assert ips(released["a"]) == ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_released_ordinals_are_handed_out_last() -> None:
    """a's only pod is removed: its block is empty and b, out of blocks, takes it over; the
    released .0 goes to the end of the free list (ipam_block.go:662-690)."""
    out = allocate(
        [pool("p", "10.0.0.0/29", 30)],
        [node("a", 0), node("b", 8)],
        affinity={"a": [("p", "10.0.0.0/30")], "b": [("p", "10.0.0.4/30")]},
        pods_before={"a": [{4: ("p", "10.0.0.0")}]},
    )
    assert ips(out["b"])[4:] == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.0"]


TOPOLOGY = """
name: strict
subnets: {lan: {ipv4: 10.0.0.0/24}}
nodes: {a: {subnet: lan, pods: 3}, b: {subnet: lan, pods: 1}}
pools: {p: {cidr: 192.168.0.0/29, blockSize: 31}}
"""


def _topo(extra: str = "", cidr: str = "192.168.0.0/29") -> Topology:
    text = TOPOLOGY.replace("192.168.0.0/29", cidr) + extra
    return Topology.model_validate(yaml.safe_load(text))


def test_topology_ipam_section_strict_is_bad_input() -> None:
    with pytest.raises(ConfigError) as err:
        build_plan(_topo("ipam: {strictAffinity: true}\n", "192.168.0.0/30"))
    (problem,) = err.value.problems  # a holds both blocks of two: b is left without
    assert problem.location == "pools.p" and "strictAffinity: false" in problem.hint
    assert "pool p has no free block left for 1 pod(s) (b: 1)" in problem.message
    # The same pool without strict affinity: b borrows a's last address.
    plan = build_plan(_topo("", "192.168.0.0/30"))
    assert [p.ipv4 for p in plan.node("b").pods] == ["192.168.0.3"]
    assert [b.cidr for b in plan.node("a").blocks] == ["192.168.0.0/31", "192.168.0.2/31"]
    assert plan.node("b").blocks == ()
    assert not any("not created" in n for n in plan.notes), plan.notes


def test_topology_max_blocks_per_host_note() -> None:
    plan = build_plan(_topo("ipam: {maxBlocksPerHost: 1}\n"))
    assert [p.ipv4 for p in plan.node("a").pods] == ["192.168.0.0", "192.168.0.1"]
    assert any("a: pod3 is not created" in n and "limit of 1 blocks" in n for n in plan.notes)


def test_topology_ipam_bounds() -> None:
    with pytest.raises(Exception, match=r"maxBlocksPerHost|max_blocks_per_host"):
        _topo("ipam: {maxBlocksPerHost: -1}\n")


def test_a_tunnel_that_gets_no_address_is_noted() -> None:
    """Two IPIP nodes, one block of two addresses: a's tunnel and pod fill it, b's tunnel gets
    none (strict affinity: no borrowing); b has no pods, so the topology is not refused."""
    text = """
name: tunnels
subnets: {lan: {ipv4: 10.0.0.0/24}}
nodes: {a: {subnet: lan, pods: 1}, b: {subnet: lan, pods: 0}}
pools: {p: {cidr: 192.168.0.0/31, blockSize: 31, ipipMode: Always}}
ipam: {strictAffinity: true}
"""
    plan = build_plan(Topology.model_validate(yaml.safe_load(text)))
    assert plan.node("a").ipip_tunnel_address == "192.168.0.0"
    assert plan.node("b").ipip_tunnel_address is None
    assert any(n.startswith("b: gets no IPIP tunnel address") for n in plan.notes), plan.notes


# --- borrowing in a plan ----------------------------------------------------------------------

# topologies/ipam-borrow.yaml's allocation: each node's tunl0 claims one of the four blocks;
# node1's pods 4 and 5 borrow .5 and .6 from node2's block.
BORROW_TOPOLOGY = """
name: ipam-borrow
subnets: {lan: {ipv4: 10.21.0.0/24}}
nodes:
  node1: {subnet: lan, pods: 5}
  node2: {subnet: lan, pods: 1}
  node3: {subnet: lan, pods: 2}
  node4: {subnet: lan, pods: 1}
pools: {small: {cidr: 10.250.0.0/28, blockSize: 30, ipipMode: Always}}
"""


def _borrow_topo(extra: str = "", **pods: int) -> Topology:
    data = yaml.safe_load(BORROW_TOPOLOGY + extra)
    for name, count in pods.items():
        data["nodes"].setdefault(name, {"subnet": "lan"})["pods"] = count
    return Topology.model_validate(data)


def test_a_plan_records_the_block_and_its_node_per_pod_address() -> None:
    plan = build_plan(_borrow_topo())
    node1 = plan.node("node1")
    assert [(p.ipv4, p.block4, p.block4_node) for p in node1.pods] == [
        ("10.250.0.1", "10.250.0.0/30", "node1"),
        ("10.250.0.2", "10.250.0.0/30", "node1"),
        ("10.250.0.3", "10.250.0.0/30", "node1"),
        ("10.250.0.5", "10.250.0.4/30", "node2"),
        ("10.250.0.6", "10.250.0.4/30", "node2"),
    ]
    assert [b.cidr for b in node1.blocks] == ["10.250.0.0/30"]
    assert [b.cidr for b in plan.node("node2").blocks] == ["10.250.0.4/30"]  # still node2's
    assert [p.ipv4 for p in plan.node("node2").pods] == ["10.250.0.7"]
    assert plan_borrowed(plan) == {
        "node1": (
            Borrowed("node1", "pod", "pod4", "10.250.0.5", "small", "10.250.0.4/30", "node2"),
            Borrowed("node1", "pod", "pod5", "10.250.0.6", "small", "10.250.0.4/30", "node2"),
        )
    }
    assert node_borrowed(plan, node1)[1].prefix == "10.250.0.6/32"
    assert node_borrowed(plan, plan.node("node2")) == ()
    assert not any("not created" in n for n in plan.notes), plan.notes


def test_the_borrow_records_survive_the_plan_json() -> None:
    plan = build_plan(_borrow_topo())
    data = plan.to_json(secrets=True)
    pod = data["nodes"][0]["pods"][3]
    assert (pod["block4"], pod["block4_node"], pod["block6"]) == ("10.250.0.4/30", "node2", None)
    assert LabPlan.from_json(data) == plan
    # A plan written before pods recorded their blocks still reads back, without them.
    for node in data["nodes"]:
        for old in node["pods"]:
            for key in ("block4", "block6", "block4_node", "block6_node"):
                del old[key]
    assert LabPlan.from_json(data).node("node1").pods[3].block4 is None


def test_strict_affinity_refuses_the_borrow_topology_at_the_pool() -> None:
    with pytest.raises(ConfigError) as err:
        build_plan(_borrow_topo("ipam: {strictAffinity: true}\n"))
    (problem,) = err.value.problems
    assert problem.location == "pools.small"
    assert "pool small has no free block left for 2 pod(s) (node1: 2)" in problem.message
    assert "No more free affine blocks and strict affinity enabled" in problem.message
    assert "larger pool cidr" in problem.hint


def test_a_live_change_keeps_borrowed_addresses_and_the_lender_borrows_in_turn() -> None:
    """A new node5 and a second pod on node2, whose block is full (its tunl0, node1's two, its
    pod): node1 keeps its borrowed addresses; every tunnel comes before any pod, so node5's
    tunl0 borrows first (node3's last address), then node2 and node5's pod borrow node4's."""
    running = build_plan(_borrow_topo())
    sticky = Sticky.from_json(Sticky.of(running).to_json())
    changed = build_plan(_borrow_topo(node2=2, node5=1), sticky=sticky)
    assert changed.node("node1").pods == running.node("node1").pods
    assert [(p.ipv4, p.block4_node) for p in changed.node("node2").pods] == [
        ("10.250.0.7", "node2"),
        ("10.250.0.14", "node4"),
    ]
    node5 = changed.node("node5")
    assert node5.blocks == ()
    assert (node5.ipip_tunnel_address, [p.ipv4 for p in node5.pods]) == (
        "10.250.0.11",
        ["10.250.0.15"],
    )
    assert [(b.kind, b.owner) for b in plan_borrowed(changed)["node5"]] == [
        ("pod", "node4"),
        ("ipip", "node3"),
    ]
    # One more pod anywhere: the pool is full, so Calico creates it not; a note (run time).
    full = build_plan(_borrow_topo(node2=2, node5=1, node3=3), previous=changed)
    assert [p.ipv4 for p in full.node("node3").pods] == ["10.250.0.9", "10.250.0.10"]
    assert any(
        n.startswith("node3: pod3 is not created")
        and "No IPs available in pools: [10.250.0.0/28]" in n
        for n in full.notes
    ), full.notes


def test_removed_pods_free_borrowed_addresses_for_the_next_borrower() -> None:
    running = build_plan(_borrow_topo())
    changed = build_plan(_borrow_topo(node1=3, node4=3), previous=running)
    assert [p.ipv4 for p in changed.node("node1").pods] == [
        "10.250.0.1",
        "10.250.0.2",
        "10.250.0.3",
    ]
    # node4 fills its own block (.14, .15), then borrows node2's first free address again.
    assert [(p.ipv4, p.block4_node) for p in changed.node("node4").pods] == [
        ("10.250.0.13", "node4"),
        ("10.250.0.14", "node4"),
        ("10.250.0.15", "node4"),
    ]
    more = build_plan(_borrow_topo(node1=3, node4=4), previous=changed)
    assert [(p.ipv4, p.block4_node) for p in more.node("node4").pods][3] == ("10.250.0.5", "node2")


IPIP_TUNNELS = """
name: tunnels
subnets: {lan: {ipv4: 10.0.0.0/24}}
nodes: {a: {subnet: lan, pods: 0}, b: {subnet: lan, pods: 0}, c: {subnet: lan, pods: 0}}
pools: {p: {cidr: 192.168.0.0/30, blockSize: 31, ipipMode: Always}}
"""


def test_a_borrowed_tunnel_address_is_reported_and_kept_live() -> None:
    first = build_plan(Topology.model_validate(yaml.safe_load(IPIP_TUNNELS)))
    assert [first.node(n).ipip_tunnel_address for n in "abc"] == [
        "192.168.0.0",
        "192.168.0.2",
        "192.168.0.1",
    ]
    (borrowed,) = plan_borrowed(first)["c"]
    assert (borrowed.kind, borrowed.pod, borrowed.owner) == ("ipip", None, "a")
    sticky = Sticky.from_json(Sticky.of(first).to_json())
    assert sticky.tunnels["c"] == {"ipip4": ("p", "192.168.0.1")}
    # b gets a pod: a fresh walk would give c's tunnel .3 now; Calico keeps it.
    grown = yaml.safe_load(IPIP_TUNNELS)
    grown["nodes"]["b"]["pods"] = 1
    later = build_plan(Topology.model_validate(grown), sticky=sticky)
    assert later.node("c").ipip_tunnel_address == "192.168.0.1"
    assert [p.ipv4 for p in later.node("b").pods] == ["192.168.0.3"]


def test_one_address_blocks_dual_stack_no_blackhole_nothing_borrowed() -> None:
    text = """
name: ones
subnets: {lan: {ipv4: 10.0.0.0/24, ipv6: "fd00::/64"}}
nodes: {a: {subnet: lan, pods: 2}, b: {subnet: lan, pods: 1}}
pools:
  p4: {cidr: 192.168.0.0/30, blockSize: 32}
  p6: {cidr: "fd10::/126", blockSize: 128}
"""
    plan = build_plan(Topology.model_validate(yaml.safe_load(text)))
    a, b = plan.node("a"), plan.node("b")
    assert [(p.ipv4, p.block4, p.ipv6, p.block6) for p in a.pods] == [
        ("192.168.0.0", "192.168.0.0/32", "fd10::", "fd10::/128"),
        ("192.168.0.1", "192.168.0.1/32", "fd10::1", "fd10::1/128"),
    ]
    assert [p.block6_node for p in b.pods] == ["b"]
    assert not [r for n in plan.nodes for r in n.fib if r.type == "blackhole"]
    assert plan_borrowed(plan) == {}
