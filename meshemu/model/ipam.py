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
  blocks are old enough). Then `strictAffinity: true` fails the allocation ("No more free affine
  blocks and strict affinity enabled", ipam.go:782-790). With `strictAffinity: false` (Calico's
  default) the node **borrows**: the address comes from the first existing block with a free
  ordinal, affine to another node or to none, pools in name order and blocks in the pool's
  block order (ipam.go:861-950, `assignFromExistingBlock(..., affinityCheck=false)`;
  ipam_block.go:105-117 lets it take any block). The address stays in that block, whose
  affinity does not move: every result records the block and its affine node, so a borrowed
  address (in a block affine to another node) can be routed to its borrower. Nothing left in
  any block: "No IPs available in pools: [...]".
- The block limit (`ErrBlockLimit`) ends the request before any borrowing (ipam.go:792-797).

A pod whose address cannot be allocated is not created (the CNI plugin's
`PartialFulfillmentError`, cni-plugin/pkg/ipamplugin/ipam_plugin.go:658-674); the reason is
returned per pod.

Deviation (documented, deliberate): Calico walks a pool's blocks from a start index seeded by
the FNV-1 hash of the hostname (`randomBlockGenerator`, ipam_block_reader_writer.go:611-707,
which needs Go's math/rand to reproduce). meshemu walks them from the pool's start, so blocks
are readable and deterministic; `_block_order` is the one place to replace. Affine blocks are
tried in the order they were claimed (Calico: by BlockAffinity name, a string order).

Also owns reading borrowing back from a plan (`borrowed_addresses`, `node_borrowed`): which
addresses of a node lie in a block affine to another node (or to none), for the routes Felix
gives every other node to the borrower (felix/calc/l3_route_resolver.go) and for the report.

Addresses are handed out lazily, so memory grows with nodes and pods, not with block sizes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from meshemu.model.addressing import IPAddress, IPNetwork
from meshemu.model.labplan import Block, LabPlan, NodePlan, PodPlan, PoolPlan, Vtep
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
    "exhausted" (no free address in any block of the node's pools, borrowing included)."""

    pod: int  # index among the node's pods
    family: int
    kind: str
    message: str
    pools: tuple[str, ...] = ()  # the pools it was asked from, in the order Calico tries them


@dataclass(frozen=True)
class Assigned:
    """One address IPAM handed out and the block it lies in.

    `affinity` is the block's affine node: the address's own node, or another node when it was
    borrowed (ipam.go:876-950), or None for a block affine to no node (its node was removed)."""

    pool: str
    address: IPAddress
    block: IPNetwork
    affinity: str | None

    def borrowed_by(self, node: str) -> bool:
        return self.affinity != node


@dataclass(frozen=True)
class NodeAllocation:
    blocks: tuple[tuple[str, IPNetwork], ...] = ()  # (pool, block) affine to this node
    pod_addresses: tuple[Mapping[int, Assigned], ...] = ()  # per created pod: family -> address
    # (kind "ipip" or "vxlan", family) -> the node's tunnel address
    tunnels: Mapping[tuple[str, int], Assigned] = field(default_factory=dict)
    refused: tuple[Refusal, ...] = ()
    # Tunnel addresses allocateip could not get: (kind, family, Calico's reason).
    tunnel_refused: tuple[tuple[str, int, str], ...] = ()

    @property
    def ipip_tunnel(self) -> IPAddress | None:
        got = self.tunnels.get(("ipip", 4))
        return None if got is None else got.address

    @property
    def vxlan_tunnel(self) -> dict[int, IPAddress]:
        """family -> VTEP address"""
        return {f: got.address for (kind, f), got in self.tunnels.items() if kind == "vxlan"}


class _Block:
    """One claimed block: its affine node (None: none) and its free ordinals, head first."""

    def __init__(self, cidr: IPNetwork, pool: str, node: str | None) -> None:
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


# What one allocation gives: the block and the address taken in it.
_Got = tuple[_Block, IPAddress]


def _block_order(pool: PoolInput) -> Iterator[IPNetwork]:
    """The blocks of a pool in the order a node tries them (see the module docstring)."""
    return pool.cidr.subnets(new_prefix=pool.block_size)


def _block_position(pool: PoolInput, cidr: IPNetwork) -> int:
    """Where `cidr` comes in `_block_order(pool)` (the two change together): borrowing walks
    the existing blocks in that order without generating every block of the pool."""
    shift = cidr.max_prefixlen - pool.block_size
    return (int(cidr.network_address) - int(pool.cidr.network_address)) >> shift


def _exhausted(family: int, pools: Sequence[PoolInput]) -> str:
    # The CNI plugin's PartialFulfillmentError around ipam.go:947's message; Go prints a
    # []string as [a b].
    cidrs = " ".join(str(p.cidr) for p in pools)
    return (
        f"Assigned 0 out of 1 requested IPv{family} addresses; No IPs available in pools: [{cidrs}]"
    )


class _State:
    def __init__(self, pools: Sequence[PoolInput], config: IpamConfig) -> None:
        self.pools = {p.name: p for p in pools}
        self.config = config
        self.blocks: dict[IPNetwork, _Block] = {}
        self.affine: dict[str, list[_Block]] = {}
        self._walk: dict[str, Iterator[IPNetwork]] = {}
        # pool -> its existing blocks in block order, rebuilt after a claim (for borrowing)
        self._ordered: dict[str, list[_Block]] = {}

    def claim(self, cidr: IPNetwork, pool: str, node: str | None) -> _Block:
        block = self.blocks[cidr] = _Block(cidr, pool, node)
        if node is not None:
            self.affine.setdefault(node, []).append(block)
        self._ordered.pop(pool, None)
        return block

    def _new_block(self, pool: PoolInput) -> IPNetwork | None:
        # Blocks are never unclaimed during one allocation run, so one walk per pool suffices.
        walk = self._walk.setdefault(pool.name, _block_order(pool))
        for cidr in walk:
            if cidr not in self.blocks:
                return cidr
        return None

    def _existing(self, pool: PoolInput) -> list[_Block]:
        ordered = self._ordered.get(pool.name)
        if ordered is None:
            ordered = sorted(
                (b for b in self.blocks.values() if b.pool == pool.name),
                key=lambda b: _block_position(pool, b.cidr),
            )
            self._ordered[pool.name] = ordered
        return ordered

    def assign(self, node: str, family: int, candidates: Sequence[PoolInput]) -> _Got | _Failure:
        """One address for `node` from `candidates` (name order): its block and the address,
        or why not (`autoAssign` for one address, ipam.go:692-958)."""
        names = {p.name for p in candidates}
        mine = [b for b in self.affine.get(node, ()) if b.pool in names]
        for block in mine:
            address = block.allocate()
            if address is not None:
                return block, address
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
                block = self.claim(cidr, pool.name, node)
                address = block.allocate()
                assert address is not None  # a fresh block has ordinal 0 free
                return block, address
        for block in list(self.blocks.values()):
            if block.pool in names and block.node != node and not block.used:
                if block.node is not None:
                    self.affine[block.node].remove(block)
                block.node = node
                self.affine.setdefault(node, []).append(block)
                address = block.allocate()
                if address is not None:
                    return block, address
        if self.config.strict_affinity:
            return _Failure(
                "strict",
                f"Assigned 0 out of 1 requested IPv{family} addresses; "
                "No more free affine blocks and strict affinity enabled",
            )
        # Borrowing (ipam.go:876-950): any existing block with room, whoever it is affine to.
        for pool in candidates:
            for block in self._existing(pool):
                address = block.allocate()
                if address is not None:
                    return block, address
        return _Failure("exhausted", _exhausted(family, candidates))

    def release(self, address: IPAddress) -> None:
        block = self.block_holding(address)
        if block is not None:
            block.used.discard(block.ordinal(address))
            block.release_later(block.ordinal(address))

    def block_holding(self, address: IPAddress) -> _Block | None:
        for pool in self.pools.values():
            if address in pool.cidr:
                prefix = f"{address}/{pool.block_size}"
                return self.blocks.get(ipaddress.ip_network(prefix, strict=False))
        return None

    def assigned(self, got: _Got) -> Assigned:
        block, address = got
        return Assigned(block.pool, address, block.cidr, block.node)


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


def _kept_block(state: _State, address: IPAddress, pool_name: str) -> _Block | None:
    """The block a running lab's address of `pool_name` lies in, or None if it no longer can.

    A block no node holds any more (its node was removed) stays, affine to no node, while it
    holds addresses (Calico keeps a block with allocations when it releases the affinity)."""
    pool = state.pools.get(pool_name)
    if pool is None or address.version != pool.cidr.version or address not in pool.cidr:
        return None
    block = state.block_holding(address)
    if block is None:
        cidr = ipaddress.ip_network(f"{address}/{pool.block_size}", strict=False)
        block = state.claim(cidr, pool_name, None)
    return block if block.pool == pool_name else None


Before = Mapping[str, Sequence[Mapping[int, tuple[str, str]]]]
TunnelsBefore = Mapping[str, Mapping[tuple[str, int], tuple[str, str]]]


def _load_kept(
    state: _State,
    nodes: Sequence[NodeInput],
    affinity: Mapping[str, Sequence[tuple[str, str]]],
    pods_before: Before,
    tunnels_before: TunnelsBefore,
    candidates: Mapping[tuple[str, int], Sequence[PoolInput]],
) -> tuple[dict[tuple[str, int, int], _Got], dict[tuple[str, str, int], _Got]]:
    """A running lab's affinities, pod and tunnel addresses, still valid for the new input.

    Returns (node, pod index, family) -> (block, address) of the pods that keep their address
    (borrowed ones too: the address stays in the other node's block), and (node, kind, family)
    -> (block, address) of the tunnels that keep theirs; the addresses of removed pods are
    released to the end of their block's free list."""
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

    def keep(
        address: IPAddress | None, pool_name: str, allowed: Sequence[PoolInput]
    ) -> _Got | None:
        if address is None or pool_name not in {p.name for p in allowed}:
            return None
        block = _kept_block(state, address, pool_name)
        if block is None or block.ordinal(address) in block.used:
            return None
        block.take(block.ordinal(address))
        return block, address

    kept_tunnels: dict[tuple[str, str, int], _Got] = {}
    for node in nodes:
        for (kind, family), (pool_name, text) in tunnels_before.get(node.name, {}).items():
            requested = [p for p in candidates.get((node.name, family), ()) if p.encapsulates(kind)]
            got = keep(_address(text), pool_name, requested)
            if got is not None:
                kept_tunnels[(node.name, kind, family)] = got
    kept: dict[tuple[str, int, int], _Got] = {}
    released: list[IPAddress] = []
    for node in nodes:
        for index, pod in enumerate(pods_before.get(node.name, ())):
            for family, (pool_name, text) in pod.items():
                address = _address(text)
                got = None
                if index < node.pods:
                    got = keep(address, pool_name, candidates.get((node.name, family), ()))
                if got is not None:
                    kept[(node.name, index, family)] = got
                elif address is not None:
                    released.append(address)
    # A removed node's pods go with it (their addresses are released like a removed pod's).
    for holder, gone in pods_before.items():
        if holder not in names:
            released += [a for pod in gone for _, text in pod.values() if (a := _address(text))]
    for address in released:
        block = state.block_holding(address)
        if block is not None:
            block.release_later(block.ordinal(address))
    return kept, kept_tunnels


def allocate(
    pools: Sequence[PoolInput],
    nodes: Sequence[NodeInput],
    affinity: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    pods_before: Before | None = None,
    config: IpamConfig | None = None,
    tunnels_before: TunnelsBefore | None = None,
) -> dict[str, NodeAllocation]:
    """Blocks and addresses for every node: tunnels of every node first, then the pods, nodes
    in input order (one valid interleaving of Calico's event-driven order; deterministic).

    `affinity` (node -> [(pool, block)]) is what a running lab already has: like Calico's block
    affinities, a node keeps its blocks across changes and fills them before claiming new ones.
    `pods_before` (node -> per pod: family -> (pool, address)): pods that exist already keep
    their address where their pool still gives this node addresses (Calico never renumbers a
    pod), borrowed or not; addresses of pods that are gone are reused last. `tunnels_before`
    (node -> (kind, family) -> (pool, address)): tunnel addresses kept likewise (allocateip
    keeps a Node's tunnel address while a pool of its kind still selects the node).
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
    kept, kept_tunnels = _load_kept(
        state, nodes, affinity or {}, pods_before or {}, tunnels_before or {}, candidates
    )

    tunnels: dict[str, dict[tuple[str, int], _Got]] = {n.name: {} for n in nodes}
    tunnel_refused: dict[str, list[tuple[str, int, str]]] = {n.name: [] for n in nodes}
    for node in nodes:
        # allocateip.go:255: IPIP (IPv4 only, 741-745), then VXLAN v4, then VXLAN v6.
        for kind, family in (("ipip", 4), ("vxlan", 4), ("vxlan", 6)):
            requested = [p for p in candidates[(node.name, family)] if p.encapsulates(kind)]
            if not requested:
                continue
            got = kept_tunnels.get((node.name, kind, family)) or state.assign(
                node.name, family, requested
            )
            if isinstance(got, _Failure):
                tunnel_refused[node.name].append((kind, family, got.message))
            else:
                tunnels[node.name][(kind, family)] = got

    pods: dict[str, list[dict[int, _Got]]] = {n.name: [] for n in nodes}
    refused: dict[str, list[Refusal]] = {n.name: [] for n in nodes}
    for node in nodes:
        families = [f for f in (4, 6) if candidates[(node.name, f)]]
        # No pool gives this node an address: Calico's CNI could start no pod there, so the
        # node gets none (the planner notes it) rather than pods without addresses.
        for index in range(node.pods if families else 0):
            pod: dict[int, _Got] = {}
            refusal = None
            for family in families:
                old = kept.get((node.name, index, family))
                if old is not None:
                    pod[family] = old
                    continue
                got = state.assign(node.name, family, candidates[(node.name, family)])
                if isinstance(got, _Failure):
                    asked = tuple(p.name for p in candidates[(node.name, family)])
                    refusal = Refusal(index, family, got.kind, got.message, asked)
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
        node_tunnels = {key: state.assigned(got) for key, got in tunnels[node.name].items()}
        result[node.name] = NodeAllocation(
            # A block that holds nothing is not the node's any more (Calico releases empty
            # blocks' affinity; a later claim may take it again).
            blocks=tuple((b.pool, b.cidr) for b in state.affine.get(node.name, ()) if b.used),
            pod_addresses=tuple(
                {f: state.assigned(got) for f, got in pod.items()} for pod in pods[node.name]
            ),
            tunnels=node_tunnels,
            refused=tuple(refused[node.name]),
            tunnel_refused=tuple(tunnel_refused[node.name]),
        )
    return result


# --- Borrowed addresses, read from a plan ----------------------------------------------------


@dataclass(frozen=True)
class Borrowed:
    """An address a node uses that lies in a block affine to another node, or to none."""

    node: str  # the borrower: where the address lives (a pod or a tunnel device)
    kind: str  # "pod", "ipip" (tunl0's address) or "vxlan" (a VTEP's address)
    pod: str | None  # the pod's name for kind "pod"
    address: str
    pool: str
    block: str
    owner: str | None  # the block's affine node; None: affine to no node

    @property
    def prefix(self) -> str:
        """The host route other nodes need for it (/32, /128)."""
        return f"{self.address}/{128 if ':' in self.address else 32}"

    def text(self) -> str:
        owner = f"{self.owner}'s block" if self.owner else "a block affine to no node,"
        return (
            f"{self.address} borrowed from {owner} {self.block} (pool {self.pool}): Felix on "
            f"every other node routes {self.prefix} to {self.node}, not to the block"
        )


class AddressHolder(Protocol):
    """What a node's IPAM result has in a plan (`NodePlan`) and while planning (`NodeIpam`)."""

    @property
    def blocks(self) -> tuple[Block, ...]: ...
    @property
    def pods(self) -> tuple[PodPlan, ...]: ...
    @property
    def ipip_tunnel_address(self) -> str | None: ...
    @property
    def vteps(self) -> tuple[Vtep, ...]: ...


def _held(node: AddressHolder) -> Iterator[tuple[str, str | None, str]]:
    """(kind, pod name, address) of every address IPAM gave the node."""
    for pod in node.pods:
        for address in (pod.ipv4, pod.ipv6):
            if address is not None:
                yield "pod", pod.name, address
    if node.ipip_tunnel_address is not None:
        yield "ipip", None, node.ipip_tunnel_address
    for vtep in node.vteps:
        yield "vxlan", None, vtep.address


def borrowed_addresses(
    nodes: Mapping[str, AddressHolder], pools: Sequence[PoolPlan]
) -> dict[str, tuple[Borrowed, ...]]:
    """Per node that borrows (in `nodes` order), its addresses outside its own blocks: in a
    block of another node (`blocks` of the plan) or of none. Pure; one pass over the plan."""
    owners = {b.cidr: name for name, node in nodes.items() for b in node.blocks}
    networks = [(p, ipaddress.ip_network(p.cidr)) for p in pools]
    out = {}
    for name, node in nodes.items():
        found = []
        for kind, pod, text in _held(node):
            address = ipaddress.ip_address(text)
            pool = next((p for p, n in networks if address in n), None)
            if pool is None:
                continue
            block = str(ipaddress.ip_network(f"{address}/{pool.block_size}", strict=False))
            owner = owners.get(block)
            if owner != name:
                found.append(Borrowed(name, kind, pod, text, pool.name, block, owner))
        if found:
            out[name] = tuple(found)
    return out


def plan_borrowed(plan: LabPlan) -> dict[str, tuple[Borrowed, ...]]:
    """`borrowed_addresses` of a whole plan."""
    return borrowed_addresses({n.name: n for n in plan.nodes}, plan.pools)


def node_borrowed(plan: LabPlan, node: NodePlan) -> tuple[Borrowed, ...]:
    """One node's borrowed addresses; cheap when it borrows none (the usual case)."""
    own = [ipaddress.ip_network(b.cidr) for b in node.blocks]
    if all(any(ipaddress.ip_address(a) in b for b in own) for _, _, a in _held(node)):
        return ()
    return plan_borrowed(plan).get(node.name, ())
