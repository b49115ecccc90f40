"""Calico-style IPAM, decided without the kernel: blocks by affinity, pod and tunnel addresses.

Owns cutting each IPPool into blocks (`blockSize`), giving each node the blocks it needs (a node
may need several), and handing out addresses from them: first the node's tunnel addresses
(the IPIP `tunl0` address and the VXLAN VTEP address, as Calico's IPAM does), then pods.
Pods take addresses round-robin over the pools of their family that select the node.
Offset 0 of a block is left unused so no pod gets a network-looking address, except in a
one-address block (/32, /128), whose only address is the pod's: Calico reserves nothing in a
block (projectcalico/calico libcalico-go/lib/ipam/ipam_block.go, `newBlock`).
Addresses are handed out lazily from the blocks, so memory grows with nodes and pods, not with
block sizes. Problems (a pool too small for its nodes) are returned, not raised.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from meshemu.errors import Problem
from meshemu.model.addressing import IPAddress, IPNetwork
from meshemu.model.selector import parse_selector

TUNNEL_KINDS = ("ipip", "vxlan")


@dataclass(frozen=True)
class PoolInput:
    name: str
    cidr: IPNetwork
    block_size: int
    node_selector: str
    ipip: bool
    vxlan: bool
    disabled: bool

    def encapsulates(self, kind: str) -> bool:
        return self.ipip if kind == "ipip" else self.vxlan

    @property
    def usable_per_block(self) -> int:
        size: int = 2 ** (self.cidr.max_prefixlen - self.block_size)
        return 1 if size == 1 else size - 1

    @property
    def block_count(self) -> int:
        count: int = 2 ** (self.block_size - self.cidr.prefixlen)
        return count


@dataclass(frozen=True)
class NodeInput:
    name: str
    labels: Mapping[str, str]
    pods: int
    families: frozenset[int]


@dataclass(frozen=True)
class NodeAllocation:
    blocks: tuple[tuple[str, IPNetwork], ...] = ()  # (pool, block)
    pod_addresses: tuple[Mapping[int, tuple[str, IPAddress]], ...] = ()  # family -> (pool, ip)
    ipip_tunnel: IPAddress | None = None
    vxlan_tunnel: Mapping[int, IPAddress] = field(default_factory=dict)  # family -> VTEP address


def usable_addresses(block: IPNetwork) -> Iterator[IPAddress]:
    """The addresses of a block IPAM hands out, in order (see the module docstring)."""
    base = int(block.network_address)
    first = base if block.num_addresses == 1 else base + 1
    make = ipaddress.IPv4Address if block.version == 4 else ipaddress.IPv6Address
    for value in range(first, base + block.num_addresses):
        yield make(value)


class _Free:
    """The free addresses of one node in one pool: its blocks' usable addresses, in order."""

    def __init__(self, blocks: Sequence[IPNetwork]) -> None:
        self.blocks = blocks
        self.used: set[IPAddress] = set()
        self._cursor: Iterator[IPAddress] | None = None

    def __contains__(self, address: IPAddress) -> bool:
        return address not in self.used and any(
            address in block and (block.num_addresses == 1 or address != block.network_address)
            for block in self.blocks
        )

    def take(self, address: IPAddress) -> None:
        self.used.add(address)

    def first(self, avoid: set[IPAddress] | frozenset[IPAddress] = frozenset()) -> IPAddress:
        """The first free address not in `avoid`. Callers that avoid the same set throughout
        may walk on from where the last call stopped (`restart` starts over)."""
        if self._cursor is None:
            self._cursor = (a for block in self.blocks for a in usable_addresses(block))
        for address in self._cursor:
            if address not in self.used and address not in avoid:
                self.used.add(address)
                return address
        raise LookupError("no free address")  # callers size blocks so this cannot happen

    def restart(self) -> None:
        self._cursor = None


@dataclass(frozen=True)
class _Demand:
    """What one node asks of IPAM: per pod its pool per family, and its tunnels' pools."""

    pods: tuple[Mapping[int, str], ...]  # family -> pool
    tunnels: Mapping[tuple[str, int], str]  # (kind, family) -> pool
    count: Mapping[str, int]  # pool -> addresses needed


def _demand(
    node: NodeInput,
    pools: Sequence[PoolInput],
    matches: Mapping[str, bool],
    before: Sequence[Mapping[int, tuple[str, str]]],
) -> _Demand:
    per_family: dict[int, list[PoolInput]] = {}
    for pool in pools:
        if not pool.disabled and pool.cidr.version in node.families and matches[pool.name]:
            per_family.setdefault(pool.cidr.version, []).append(pool)
    count: dict[str, int] = {}
    # No pool gives this node an address: Calico's CNI could start no pod there, so the
    # node gets none (the planner notes it) rather than pods without addresses.
    pods = []
    for index in range(node.pods if per_family else 0):
        assignment = {}
        for family, candidates in per_family.items():
            chosen = candidates[index % len(candidates)]
            if index < len(before) and family in before[index]:
                kept_pool = before[index][family][0]
                chosen = next((c for c in candidates if c.name == kept_pool), chosen)
            assignment[family] = chosen.name
            count[chosen.name] = count.get(chosen.name, 0) + 1
        pods.append(assignment)
    # Like calico-node, every node an encapsulating pool selects gets a tunnel address
    # from it (tunl0 for IPIP, the VTEP for VXLAN), pods or not: a route reflector
    # without pods still needs its VTEP to reach the pods of others. A pool the pods use
    # already is preferred.
    tunnels: dict[tuple[str, int], str] = {}
    for family, candidates in per_family.items():
        used = [c for c in candidates if count.get(c.name, 0) > 0]
        ordered = used + [c for c in candidates if count.get(c.name, 0) == 0]
        for kind in TUNNEL_KINDS:
            tunnel_pool = next((c for c in ordered if c.encapsulates(kind)), None)
            if tunnel_pool is not None:
                count[tunnel_pool.name] = count.get(tunnel_pool.name, 0) + 1
                tunnels[(kind, family)] = tunnel_pool.name
    return _Demand(tuple(pods), tunnels, count)


def _kept_blocks(pool: PoolInput, affinity: Sequence[tuple[str, str]]) -> list[IPNetwork]:
    """A node's blocks of `pool` from before that still are blocks of it (the pool may have
    changed since)."""
    out = []
    for pool_name, text in affinity:
        if pool_name != pool.name:
            continue
        try:
            block = ipaddress.ip_network(text)
        except ValueError:
            continue
        if (
            block.version == pool.cidr.version
            and block.prefixlen == pool.block_size
            and block.subnet_of(pool.cidr)  # type: ignore[arg-type]
        ):
            out.append(block)
    return out


def _claim_blocks(
    pool: PoolInput,
    nodes: Sequence[NodeInput],
    demand: Mapping[str, _Demand],
    affinity: Mapping[str, Sequence[tuple[str, str]]],
) -> tuple[dict[str, list[IPNetwork]], Problem | None]:
    """Each node's blocks of `pool`, nodes in order; kept blocks first (Calico's affinity)."""
    kept = {node.name: _kept_blocks(pool, affinity.get(node.name, ())) for node in nodes}
    taken = {block for blocks in kept.values() for block in blocks}
    fresh = (b for b in pool.cidr.subnets(new_prefix=pool.block_size) if b not in taken)
    claimed: dict[str, list[IPNetwork]] = {}
    needed_total = 0
    for node in nodes:
        count = demand[node.name].count.get(pool.name, 0)
        if count == 0:
            continue
        n_blocks = -(-count // pool.usable_per_block)
        needed_total += n_blocks
        reuse = kept[node.name][:n_blocks]
        blocks = claimed[node.name] = list(reuse)
        while len(blocks) < n_blocks:
            block = next(fresh, None)
            if block is None:
                break
            blocks.append(block)
    if needed_total <= pool.block_count:
        return claimed, None
    return claimed, Problem(
        f"pools.{pool.name}",
        f"pool {pool.cidr} is too small for its nodes: they need {needed_total} "
        f"blocks of /{pool.block_size} and it holds {pool.block_count}",
        "use a larger cidr, a smaller blockSize (longer prefix) or fewer pods",
    )


def _addresses(
    demand: _Demand,
    free: Mapping[str, _Free],
    before: Sequence[Mapping[int, tuple[str, str]]],
) -> tuple[dict[tuple[str, int], IPAddress], list[dict[int, tuple[str, IPAddress]]]]:
    """One node's tunnel addresses, then its pods' (a pod keeps its address where it can)."""
    tunnels = {
        (kind, family): free[demand.tunnels[(kind, family)]].first()
        for kind in TUNNEL_KINDS
        for family in (4, 6)
        if (kind, family) in demand.tunnels
    }
    for addresses in free.values():
        addresses.restart()
    # Addresses of existing pods are not handed to new pods, even where their pod moves.
    reserved: dict[str, set[IPAddress]] = {}
    for previous in before[: len(demand.pods)]:
        for pool_name, text in previous.values():
            address = _address(text)
            if address is not None:
                reserved.setdefault(pool_name, set()).add(address)
    pods = []
    for index, assignment in enumerate(demand.pods):
        pod: dict[int, tuple[str, IPAddress]] = {}
        for family, pool_name in assignment.items():
            addresses = free[pool_name]
            old = before[index].get(family) if index < len(before) else None
            if old is not None and old[0] == pool_name:
                keep = _address(old[1])
                if keep is not None and keep in addresses:
                    addresses.take(keep)
                    pod[family] = (pool_name, keep)
                    continue
            pod[family] = (pool_name, addresses.first(reserved.get(pool_name, set())))
        pods.append(pod)
    return tunnels, pods


def _address(text: str) -> IPAddress | None:
    """An address from a running lab's record; None if the record holds no address there."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def allocate(
    pools: Sequence[PoolInput],
    nodes: Sequence[NodeInput],
    affinity: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    pods_before: Mapping[str, Sequence[Mapping[int, tuple[str, str]]]] | None = None,
) -> tuple[dict[str, NodeAllocation], list[Problem]]:
    """Blocks and addresses for every node, in input order (deterministic).

    `affinity` (node -> [(pool, block)]) is what a running lab already has: like Calico's block
    affinities, a node keeps its blocks across changes, and only new demand takes free blocks.
    `pods_before` (node -> per pod: family -> (pool, address)): pods that exist already keep
    their pool and address (Calico never renumbers a pod).
    """
    affinity = affinity or {}
    pods_before = pods_before or {}
    selectors = {p.name: parse_selector(p.node_selector) for p in pools}
    demand = {
        node.name: _demand(
            node,
            pools,
            {name: selector.matches(node.labels) for name, selector in selectors.items()},
            pods_before.get(node.name, ()),
        )
        for node in nodes
    }
    problems: list[Problem] = []
    blocks: dict[str, list[tuple[str, IPNetwork]]] = {node.name: [] for node in nodes}
    free: dict[str, dict[str, _Free]] = {node.name: {} for node in nodes}
    for pool in pools:
        claimed, problem = _claim_blocks(pool, nodes, demand, affinity)
        if problem is not None:
            problems.append(problem)
        for name, node_blocks in claimed.items():
            blocks[name] += [(pool.name, b) for b in node_blocks]
            free[name][pool.name] = _Free(node_blocks)
    if problems:
        return {n.name: NodeAllocation(tuple(blocks[n.name])) for n in nodes}, problems
    result = {}
    for node in nodes:
        tunnels, pods = _addresses(
            demand[node.name], free[node.name], pods_before.get(node.name, ())
        )
        result[node.name] = NodeAllocation(
            blocks=tuple(blocks[node.name]),
            pod_addresses=tuple(pods),
            ipip_tunnel=tunnels.get(("ipip", 4)),
            vxlan_tunnel={f: a for (kind, f), a in tunnels.items() if kind == "vxlan"},
        )
    return result, problems
