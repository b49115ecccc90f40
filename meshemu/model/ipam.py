"""Calico IPAM, decided without the kernel: blocks by affinity, tunnel and pod addresses.

Owns the sequence of single allocations Calico's IPAM makes for a lab, following
projectcalico/calico (commit 87c15906, = release-v3.33; docs/research/felix/ipam.md):

- Pools are tried in **name order**: `GetEnabledPools` lists them as the datastore does, by key
  (libcalico-go/lib/ipam/ipam.go:263, libcalico-go/lib/clientv3/client.go:221-271). There is no
  round robin: a pod's address comes from the node's affine blocks of any candidate pool first,
  then from a new block of the first pool (by name) that has one (`autoAssign`,
  ipam.go:692-958; `findOrClaimBlock`, ipam.go:513-561; `findUsableBlock`,
  ipam_block_reader_writer.go:119-249).
- Tunnel addresses come first, for every node, pods or not, before any pod (calico-node's
  allocateip runs before the node is Ready): IPIP (IPv4 pools with ipipMode), then VXLAN v4,
  then VXLAN v6, each requesting exactly the pools of that kind that select the node
  (node/pkg/allocateip/allocateip.go:255, 467-520, `determineEnabledPoolCIDRs` 669-759).
- Inside a block, ordinals are handed out from the head of the free list, **ordinal 0 first**:
  Calico reserves nothing in a block (libcalico-go/lib/ipam/ipam_block.go:55-103 `newBlock`,
  105-157 `autoAssign`). So an IPIP node's tunl0 gets the first address of its first block.
  Released ordinals go to the end of the free list (ipam_block.go:662-690), so a live change
  reuses them last.
- One-address blocks (/32, /128) work as any other: each allocation claims a block.
- A node holds at most `maxBlocksPerHost` affine blocks per family in the candidate pools, 20
  when unset (ipam.go:733-752, 776-779): beyond that the allocation fails with Calico's
  message.
- No free block anywhere: an empty block affine to another node is taken over (Calico waits for
  `EmptyBlockMinReclaimAge`, ipam_block_reader_writer.go:38-42, 194-245; a planned lab's empty
  blocks are old enough). Then `strictAffinity: true` fails the allocation (ipam.go:784-786,
  876); with `strictAffinity: false` Calico borrows from another node's block (ipam.go:876-950),
  which meshemu does not emulate yet: the allocation fails and says so.

A pod whose address cannot be allocated is not created (the CNI plugin's
`PartialFulfillmentError`, cni-plugin/pkg/ipamplugin/ipam_plugin.go:658-674); the reason is
returned per pod.

Deviation (documented, deliberate): Calico walks a pool's blocks from a start index seeded by
the FNV-1 hash of the hostname (`randomBlockGenerator`, ipam_block_reader_writer.go:611-707,
which needs Go's math/rand to reproduce). meshemu walks them from the pool's start, so blocks
are readable and deterministic; `_block_order` is the one place to replace. Affine blocks are
tried in the order they were claimed (Calico: by BlockAffinity name, a string order).

Addresses are handed out lazily, so memory grows with nodes and pods, not with block sizes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from meshemu.model.addressing import IPAddress, IPNetwork
from meshemu.model.selector import parse_selector

TUNNEL_KINDS = ("ipip", "vxlan")

# `autoAssign`'s safeguard when neither the request nor IPAMConfiguration sets a limit
# (libcalico-go/lib/ipam/ipam.go:750-752).
DEFAULT_BLOCK_LIMIT = 20


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
class IpamConfig:
    """Calico's IPAMConfiguration fields that change allocation
    (api/pkg/apis/projectcalico/v3/ipamconfig.go:63-101)."""

    strict_affinity: bool = False
    max_blocks_per_host: int = 0  # 0: Calico's safeguard limit, DEFAULT_BLOCK_LIMIT

    @property
    def block_limit(self) -> int:
        return self.max_blocks_per_host or DEFAULT_BLOCK_LIMIT


@dataclass(frozen=True)
class Refusal:
    """A pod that is not created: no address for it, with Calico's reason.

    `kind`: "strict" (strictAffinity and no free block), "limit" (maxBlocksPerHost) or
    "borrow" (Calico would borrow from another node's block; not emulated)."""

    pod: int  # index among the node's pods
    family: int
    kind: str
    message: str


@dataclass(frozen=True)
class NodeAllocation:
    blocks: tuple[tuple[str, IPNetwork], ...] = ()  # (pool, block)
    pod_addresses: tuple[Mapping[int, tuple[str, IPAddress]], ...] = ()  # family -> (pool, ip)
    ipip_tunnel: IPAddress | None = None
    vxlan_tunnel: Mapping[int, IPAddress] = field(default_factory=dict)  # family -> VTEP address
    refused: tuple[Refusal, ...] = ()
    # Tunnel addresses allocateip could not get: (kind, family, Calico's reason).
    tunnel_refused: tuple[tuple[str, int, str], ...] = ()


class _Block:
    """One claimed block: its affine node and its free ordinals, head first."""

    def __init__(self, cidr: IPNetwork, pool: str, node: str) -> None:
        self.cidr = cidr
        self.pool = pool
        self.node = node
        self.used: set[int] = set()
        self._released: list[int] = []  # ordinals freed by a change: handed out last
        self._next = 0  # ordinals below it were used or released once

    def take(self, ordinal: int) -> None:
        self.used.add(ordinal)

    def release_later(self, ordinal: int) -> None:
        if ordinal not in self.used and ordinal not in self._released:
            self._released.append(ordinal)

    def first_free(self) -> int | None:
        """The head of Calico's `Unallocated` list: never-used ordinals in order, then the
        released ones in the order they were released (ipam_block.go:105-157, 683)."""
        size = self.cidr.num_addresses
        while self._next < size and (self._next in self.used or self._next in self._released):
            self._next += 1
        if self._next < size:
            return self._next
        return next((o for o in self._released if o not in self.used), None)

    def allocate(self) -> IPAddress | None:
        ordinal = self.first_free()
        if ordinal is None:
            return None
        self.used.add(ordinal)
        if ordinal in self._released:
            self._released.remove(ordinal)
        return self.address(ordinal)

    def address(self, ordinal: int) -> IPAddress:
        return self.cidr[ordinal]

    def ordinal(self, address: IPAddress) -> int:
        return int(address) - int(self.cidr.network_address)


@dataclass(frozen=True)
class _Failure:
    kind: str
    message: str


def _block_order(pool: PoolInput) -> Iterator[IPNetwork]:
    """The blocks of a pool in the order a node tries them (see the module docstring)."""
    return pool.cidr.subnets(new_prefix=pool.block_size)


class _State:
    def __init__(self, pools: Sequence[PoolInput], config: IpamConfig) -> None:
        self.pools = {p.name: p for p in pools}
        self.config = config
        self.blocks: dict[IPNetwork, _Block] = {}
        self.affine: dict[str, list[_Block]] = {}
        self._walk: dict[str, Iterator[IPNetwork]] = {}

    def claim(self, cidr: IPNetwork, pool: str, node: str) -> _Block:
        block = self.blocks[cidr] = _Block(cidr, pool, node)
        self.affine.setdefault(node, []).append(block)
        return block

    def _new_block(self, pool: PoolInput) -> IPNetwork | None:
        # Blocks are never unclaimed during one allocation run, so one walk per pool suffices.
        walk = self._walk.setdefault(pool.name, _block_order(pool))
        for cidr in walk:
            if cidr not in self.blocks:
                return cidr
        return None

    def assign(
        self, node: str, family: int, candidates: Sequence[PoolInput]
    ) -> tuple[str, IPAddress] | _Failure:
        """One address for `node` from `candidates` (name order): (pool, address), or why not."""
        names = {p.name for p in candidates}
        mine = [b for b in self.affine.get(node, ()) if b.pool in names]
        for block in mine:
            address = block.allocate()
            if address is not None:
                return block.pool, address
        limit = self.config.block_limit
        if len(mine) >= limit:
            return _Failure(
                "limit",
                "Need to allocate an IPAM block but could not - limit of "
                f"{limit} blocks reached for this node",
            )
        for pool in candidates:
            cidr = self._new_block(pool)
            if cidr is not None:
                address = self.claim(cidr, pool.name, node).allocate()
                assert address is not None  # a fresh block has ordinal 0 free
                return pool.name, address
        for block in list(self.blocks.values()):
            if block.pool in names and block.node != node and not block.used:
                self.affine[block.node].remove(block)
                block.node = node
                self.affine.setdefault(node, []).append(block)
                address = block.allocate()
                if address is not None:
                    return block.pool, address
        pool_names = [p.name for p in candidates]
        if self.config.strict_affinity:
            return _Failure(
                "strict",
                f"Assigned 0 out of 1 requested IPv{family} addresses; "
                "No more free affine blocks and strict affinity enabled",
            )
        return _Failure(
            "borrow",
            f"no free block in pools {pool_names}: Calico would borrow an address from another "
            "node's block (strictAffinity false), which meshemu does not emulate yet",
        )

    def release(self, address: IPAddress) -> None:
        for block in self.affine_blocks_holding(address):
            block.used.discard(block.ordinal(address))
            block.release_later(block.ordinal(address))

    def affine_blocks_holding(self, address: IPAddress) -> list[_Block]:
        return [b for b in self.blocks.values() if address in b.cidr]


def _candidates(
    node: NodeInput, pools: Sequence[PoolInput], matches: Mapping[str, bool], family: int
) -> list[PoolInput]:
    return [
        p
        for p in pools
        if not p.disabled
        and p.cidr.version == family
        and family in node.families
        and matches[p.name]
    ]


def _address(text: str) -> IPAddress | None:
    """An address from a running lab's record; None if the record holds no address there."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _load_kept(
    state: _State,
    nodes: Sequence[NodeInput],
    affinity: Mapping[str, Sequence[tuple[str, str]]],
    pods_before: Mapping[str, Sequence[Mapping[int, tuple[str, str]]]],
    candidates: Mapping[tuple[str, int], Sequence[PoolInput]],
) -> dict[tuple[str, int, int], tuple[str, IPAddress]]:
    """A running lab's affinities and pod addresses, still valid for the new input.

    Returns (node, pod index, family) -> (pool, address) of the pods that keep their address;
    the addresses of removed pods are released to the end of their block's free list."""
    names = {n.name for n in nodes}
    for holder, blocks in affinity.items():
        if holder not in names:
            continue
        for pool_name, text in blocks:
            pool = state.pools.get(pool_name)
            try:
                cidr = ipaddress.ip_network(text)
            except ValueError:
                continue
            if (
                pool is not None
                and cidr.version == pool.cidr.version
                and cidr.prefixlen == pool.block_size
                and cidr.subnet_of(pool.cidr)  # type: ignore[arg-type]
                and cidr not in state.blocks
            ):
                state.claim(cidr, pool_name, holder)
    kept: dict[tuple[str, int, int], tuple[str, IPAddress]] = {}
    released: list[IPAddress] = []
    for node in nodes:
        for index, pod in enumerate(pods_before.get(node.name, ())):
            for family, (pool_name, text) in pod.items():
                address = _address(text)
                if address is None:
                    continue
                allowed = {p.name for p in candidates.get((node.name, family), ())}
                block = next(
                    (
                        b
                        for b in state.affine.get(node.name, ())
                        if address in b.cidr and b.pool == pool_name
                    ),
                    None,
                )
                if index < node.pods and pool_name in allowed and block is not None:
                    block.take(block.ordinal(address))
                    kept[(node.name, index, family)] = (pool_name, address)
                elif block is not None:
                    released.append(address)
    for address in released:
        for block in state.affine_blocks_holding(address):
            block.release_later(block.ordinal(address))
    return kept


def allocate(
    pools: Sequence[PoolInput],
    nodes: Sequence[NodeInput],
    affinity: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    pods_before: Mapping[str, Sequence[Mapping[int, tuple[str, str]]]] | None = None,
    config: IpamConfig | None = None,
) -> dict[str, NodeAllocation]:
    """Blocks and addresses for every node: tunnels of every node first, then the pods, nodes
    in input order (one valid interleaving of Calico's event-driven order; deterministic).

    `affinity` (node -> [(pool, block)]) is what a running lab already has: like Calico's block
    affinities, a node keeps its blocks across changes and fills them before claiming new ones.
    `pods_before` (node -> per pod: family -> (pool, address)): pods that exist already keep
    their address where their pool still gives this node addresses (Calico never renumbers a
    pod); addresses of pods that are gone are reused last.
    """
    config = config or IpamConfig()
    ordered = sorted(pools, key=lambda p: p.name)  # Calico's list order: by name
    state = _State(ordered, config)
    selectors = {p.name: parse_selector(p.node_selector) for p in ordered}
    candidates: dict[tuple[str, int], list[PoolInput]] = {}
    for node in nodes:
        matches = {name: s.matches(node.labels) for name, s in selectors.items()}
        for family in (4, 6):
            candidates[(node.name, family)] = _candidates(node, ordered, matches, family)
    kept = _load_kept(state, nodes, affinity or {}, pods_before or {}, candidates)

    tunnels: dict[str, dict[tuple[str, int], IPAddress]] = {n.name: {} for n in nodes}
    tunnel_refused: dict[str, list[tuple[str, int, str]]] = {n.name: [] for n in nodes}
    for node in nodes:
        # allocateip.go:255: IPIP (IPv4 only, 741-745), then VXLAN v4, then VXLAN v6.
        for kind, family in (("ipip", 4), ("vxlan", 4), ("vxlan", 6)):
            requested = [p for p in candidates[(node.name, family)] if p.encapsulates(kind)]
            if requested:
                got = state.assign(node.name, family, requested)
                if isinstance(got, _Failure):
                    tunnel_refused[node.name].append((kind, family, got.message))
                else:
                    tunnels[node.name][(kind, family)] = got[1]

    pods: dict[str, list[dict[int, tuple[str, IPAddress]]]] = {n.name: [] for n in nodes}
    refused: dict[str, list[Refusal]] = {n.name: [] for n in nodes}
    for node in nodes:
        families = [f for f in (4, 6) if candidates[(node.name, f)]]
        # No pool gives this node an address: Calico's CNI could start no pod there, so the
        # node gets none (the planner notes it) rather than pods without addresses.
        for index in range(node.pods if families else 0):
            pod: dict[int, tuple[str, IPAddress]] = {}
            refusal = None
            for family in families:
                old = kept.get((node.name, index, family))
                if old is not None:
                    pod[family] = old
                    continue
                got = state.assign(node.name, family, candidates[(node.name, family)])
                if isinstance(got, _Failure):
                    refusal = Refusal(index, family, got.kind, got.message)
                    break
                pod[family] = got
            if refusal is None:
                pods[node.name].append(pod)
                continue
            # The CNI plugin releases what it got for a pod it cannot create.
            for family, (_, address) in pod.items():
                if (node.name, index, family) not in kept:
                    state.release(address)
            refused[node.name].append(refusal)

    result = {}
    for node in nodes:
        node_tunnels = tunnels[node.name]
        result[node.name] = NodeAllocation(
            # A block that holds nothing is not the node's any more (Calico releases empty
            # blocks' affinity; a later claim may take it again).
            blocks=tuple((b.pool, b.cidr) for b in state.affine.get(node.name, ()) if b.used),
            pod_addresses=tuple(pods[node.name]),
            ipip_tunnel=node_tunnels.get(("ipip", 4)),
            vxlan_tunnel={f: a for (kind, f), a in node_tunnels.items() if kind == "vxlan"},
            refused=tuple(refused[node.name]),
            tunnel_refused=tuple(tunnel_refused[node.name]),
        )
    return result
