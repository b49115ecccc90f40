"""Calico's IPAM as meshemu's allocator follows it (model/ipam.py; docs/research/felix/ipam.md)."""

from __future__ import annotations

import ipaddress

import pytest
import yaml

from meshemu.errors import ConfigError
from meshemu.model.ipam import IpamConfig, NodeInput, PoolInput, allocate
from meshemu.model.plan import build_plan
from meshemu.model.topology import Topology


def pool(
    name: str, cidr: str, block: int = 29, selector: str = "", ipip: bool = False
) -> PoolInput:
    return PoolInput(name, ipaddress.ip_network(cidr), block, selector, ipip, False, False)


def node(name: str, pods: int, labels: dict[str, str] | None = None) -> NodeInput:
    return NodeInput(name, labels or {}, pods, frozenset({4}))


def ips(alloc: object) -> list[str]:
    return [str(p[4][1]) for p in alloc.pod_addresses]  # type: ignore[attr-defined]


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
    assert [p[4][0] for p in out["a"].pod_addresses] == ["alpha"] * 8 + ["zeta"] * 2


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


def test_strict_affinity_and_borrowing_refusals() -> None:
    nodes = [node("a", 4), node("b", 1)]
    strict = allocate([pool("p", "10.0.0.0/30", 30)], nodes, config=IpamConfig(True))
    assert ips(strict["a"]) == [f"10.0.0.{i}" for i in range(4)]
    (refusal,) = strict["b"].refused
    assert refusal.kind == "strict" and "strict affinity enabled" in refusal.message
    loose = allocate([pool("p", "10.0.0.0/30", 30)], nodes)
    assert [r.kind for r in loose["b"].refused] == ["borrow"]


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
    assert problem.location == "nodes.b.pods" and "strictAffinity: false" in problem.hint
    # The same pool without strict affinity: Calico would borrow; a note, not an error.
    plan = build_plan(_topo("", "192.168.0.0/30"))
    assert plan.node("b").pods == ()
    assert any("b: pod1 is not created" in n and "would borrow" in n for n in plan.notes)
    # Not the note for a node no pool selects: p does select b.
    assert not any("no enabled IP pool selects" in n for n in plan.notes), plan.notes


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
