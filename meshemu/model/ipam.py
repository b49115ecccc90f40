"""Calico-style IPAM, decided without the kernel: blocks by affinity, pod and tunnel addresses.

Owns cutting each IPPool into blocks (`blockSize`), giving each node the blocks it needs (a node
may need several), and handing out addresses from them: first the node's tunnel addresses
(the IPIP `tunl0` address and the VXLAN VTEP address, as Calico's IPAM does), then pods.
Pods take addresses round-robin over the pools of their family that select the node.
Problems (a pool too small for its nodes) are returned, not raised.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from meshemu.errors import Problem
from meshemu.model.addressing import IPAddress, IPNetwork
from meshemu.model.selector import parse_selector


@dataclass(frozen=True)
class PoolInput:
    name: str
    cidr: IPNetwork
    block_size: int
    node_selector: str
    ipip: bool
    vxlan: bool
    disabled: bool


@dataclass(frozen=True)
class NodeInput:
    name: str
    labels: dict[str, str]
    pods: int
    families: frozenset[int]


@dataclass
class NodeAllocation:
    blocks: list[tuple[str, IPNetwork]] = field(default_factory=list)  # (pool, block)
    pod_addresses: list[dict[int, tuple[str, IPAddress]]] = field(default_factory=list)
    ipip_tunnel: IPAddress | None = None
    vxlan_tunnel: dict[int, IPAddress] = field(default_factory=dict)


def _blocks(cidr: IPNetwork, size: int) -> Iterator[IPNetwork]:
    return cidr.subnets(new_prefix=size)


def allocate(
    pools: Sequence[PoolInput],
    nodes: Sequence[NodeInput],
    affinity: dict[str, list[tuple[str, str]]] | None = None,
    pods_before: dict[str, list[dict[int, tuple[str, str]]]] | None = None,
) -> tuple[dict[str, NodeAllocation], list[Problem]]:
    """Blocks and addresses for every node, in input order (deterministic).

    `affinity` (node -> [(pool, block)]) is what a running lab already has: like Calico's block
    affinities, a node keeps its blocks across changes, and only new demand takes free blocks.
    """
    affinity = affinity or {}
    # Pods that exist already keep their pool and address (Calico never renumbers a pod).
    pods_before = pods_before or {}
    problems: list[Problem] = []
    selectors = {p.name: parse_selector(p.node_selector) for p in pools}
    # First pass: how many addresses each node needs from each pool.
    demand: dict[tuple[str, str], int] = {}
    pod_pools: dict[str, list[dict[int, str]]] = {}
    tunnel_pool: dict[tuple[str, str], int] = {}  # (node, pool) -> family, for tunnel addrs
    for node in nodes:
        per_family: dict[int, list[PoolInput]] = {}
        for pool in pools:
            if pool.disabled or pool.cidr.version not in node.families:
                continue
            if selectors[pool.name].matches(node.labels):
                per_family.setdefault(pool.cidr.version, []).append(pool)
        # No pool gives this node an address: Calico's CNI could start no pod there, so the
        # node gets none (the planner notes it) rather than pods without addresses.
        pods = node.pods if per_family else 0
        assignments: list[dict[int, str]] = []
        for index in range(pods):
            assignment = {}
            for family, candidates in per_family.items():
                chosen = candidates[index % len(candidates)]
                before = pods_before.get(node.name, [])
                if index < len(before) and family in before[index]:
                    kept_pool = before[index][family][0]
                    chosen = next((c for c in candidates if c.name == kept_pool), chosen)
                assignment[family] = chosen.name
                demand[(node.name, chosen.name)] = demand.get((node.name, chosen.name), 0) + 1
            assignments.append(assignment)
        pod_pools[node.name] = assignments
        # Like calico-node, every node an encapsulating pool selects gets a tunnel address
        # from it (tunl0 for IPIP, the VTEP for VXLAN), pods or not: a route reflector
        # without pods still needs its VTEP to reach the pods of others.
        for family, candidates in per_family.items():
            used = [c for c in candidates if demand.get((node.name, c.name), 0) > 0] + [
                c for c in candidates if demand.get((node.name, c.name), 0) == 0
            ]
            for kind in ("ipip", "vxlan"):
                pool_for_tunnel = next((c for c in used if getattr(c, kind)), None)
                if pool_for_tunnel is not None:
                    key = (node.name, pool_for_tunnel.name)
                    demand[key] = demand.get(key, 0) + 1
                    tunnel_pool[(node.name, f"{kind}{family}")] = 1
                    tunnel_pool[(node.name, f"{kind}{family}:{pool_for_tunnel.name}")] = 1
    # Second pass: claim blocks pool by pool, nodes in order.
    result = {node.name: NodeAllocation() for node in nodes}
    free: dict[tuple[str, str], list[IPAddress]] = {}
    for pool in pools:
        kept = {
            node.name: [
                ipaddress.ip_network(b) for p, b in affinity.get(node.name, []) if p == pool.name
            ]
            for node in nodes
        }
        taken = {str(b) for blocks in kept.values() for b in blocks}
        block_iter = (b for b in _blocks(pool.cidr, pool.block_size) if str(b) not in taken)
        per_block = pool.cidr.num_addresses // (2 ** (pool.block_size - pool.cidr.prefixlen)) - 1
        available = 2 ** (pool.block_size - pool.cidr.prefixlen)
        needed_total = 0
        for node in nodes:
            count = demand.get((node.name, pool.name), 0)
            if count == 0:
                continue
            # Offset 0 of each block is left unused so no pod gets a network-looking address.
            n_blocks = -(-count // max(per_block, 1))
            needed_total += n_blocks
            addresses: list[IPAddress] = []
            reuse = kept[node.name][:n_blocks]
            for index in range(n_blocks):
                block = reuse[index] if index < len(reuse) else next(block_iter, None)
                if block is None:
                    break
                result[node.name].blocks.append((pool.name, block))
                addresses += list(_addresses(block))
            free[(node.name, pool.name)] = addresses
        if needed_total > available:
            problems.append(
                Problem(
                    f"pools.{pool.name}",
                    f"pool {pool.cidr} is too small for its nodes: they need {needed_total} "
                    f"blocks of /{pool.block_size} and it holds {available}",
                    "use a larger cidr, a smaller blockSize (longer prefix) or fewer pods",
                )
            )
    if problems:
        return result, problems
    by_name = {p.name: p for p in pools}
    for node in nodes:
        alloc = result[node.name]
        for kind in ("ipip", "vxlan"):
            for family in (4, 6):
                pool_name = next(
                    (
                        key[1].split(":", 1)[1]
                        for key in tunnel_pool
                        if key[0] == node.name and key[1].startswith(f"{kind}{family}:")
                    ),
                    None,
                )
                if pool_name is None:
                    continue
                address = free[(node.name, pool_name)].pop(0)
                if kind == "ipip":
                    alloc.ipip_tunnel = address
                else:
                    alloc.vxlan_tunnel[family] = address
        before = pods_before.get(node.name, [])
        reserved = {
            (pool_name, address)
            for index, previous in enumerate(before)
            if index < len(pod_pools[node.name])
            for pool_name, address in previous.values()
        }
        for index, assignment in enumerate(pod_pools[node.name]):
            pod: dict[int, tuple[str, IPAddress]] = {}
            for family, pool_name in assignment.items():
                addresses = free[(node.name, pool_name)]
                old = before[index].get(family) if index < len(before) else None
                keep = (
                    ipaddress.ip_address(old[1])
                    if old is not None and old[0] == pool_name
                    else None
                )
                if keep is not None and keep in addresses:
                    addresses.remove(keep)
                    pod[family] = (pool_name, keep)
                    continue
                choice = next(a for a in addresses if (pool_name, str(a)) not in reserved)
                addresses.remove(choice)
                pod[family] = (pool_name, choice)
                assert by_name[pool_name].cidr.version == family
            alloc.pod_addresses.append(pod)
    return result, problems


def _addresses(block: IPNetwork) -> Iterator[IPAddress]:
    first = int(block.network_address) + 1
    last = int(block.network_address) + block.num_addresses - 1
    for value in range(first, last + 1):
        yield ipaddress.ip_address(value) if block.version == 4 else ipaddress.IPv6Address(value)
