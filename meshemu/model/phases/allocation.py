"""Pass 4: the IP pools, and Calico IPAM over them (blocks, tunnel addresses, pods).

Owns turning the topology's pools into `PoolPlan`s (effective block size, the route rule in
words) and `model.ipam`'s allocation into each node's blocks, pods (names, namespaces, host
interfaces, addresses) and tunnel addresses (tunl0, VXLAN VTEPs with their MACs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from meshemu.errors import Problem
from meshemu.model import names
from meshemu.model.addressing import parse_network
from meshemu.model.ipam import IpamConfig, NodeAllocation, NodeInput, PoolInput, Refusal, allocate
from meshemu.model.labplan import Block, PodPlan, PodPort, PoolPlan, Sticky, Vtep
from meshemu.model.phases.addresses import NodeAddresses
from meshemu.model.routes import PoolRule
from meshemu.model.rules import block_size_of
from meshemu.model.topology import Pod, Topology


def plan_pools(topo: Topology) -> tuple[PoolPlan, ...]:
    """The pools in input order, with Calico's default block size where none is given."""
    out = []
    for name, pool in topo.pools.items():
        cidr = parse_network(pool.cidr)
        out.append(
            PoolPlan(
                name=name,
                cidr=str(cidr),
                block_size=block_size_of(cidr, pool.block_size),
                ipip_mode=pool.ipip_mode,
                vxlan_mode=pool.vxlan_mode,
                nat_outgoing=pool.nat_outgoing,
                node_selector=pool.node_selector,
                disable_bgp_export=pool.disable_bgp_export,
                disabled=pool.disabled,
                rule=PoolRule(name, pool.cidr, pool.ipip_mode, pool.vxlan_mode).rule_text(),
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class NodeIpam:
    """What IPAM gave one node."""

    blocks: tuple[Block, ...]
    pods: tuple[PodPlan, ...]
    ipip_tunnel_address: str | None
    vteps: tuple[Vtep, ...]
    # Pods IPAM could not give an address, so not created, with Calico's reason (plan notes).
    notes: tuple[str, ...] = ()


def _strict_shortage(allocations: Mapping[str, NodeAllocation]) -> list[Problem]:
    """Pods refused under strictAffinity in a topology as written: bad input, located at the
    pool (the first by name of the pools those pods could use; Calico tries them in order)."""
    short: dict[str, list[tuple[str, Refusal]]] = {}
    for node, allocation in allocations.items():
        for refusal in allocation.refused:
            if refusal.kind == "strict":
                short.setdefault(refusal.pools[0], []).append((node, refusal))
    problems = []
    for pool, refused in short.items():
        nodes: dict[str, int] = {}
        for node, _ in refused:
            nodes[node] = nodes.get(node, 0) + 1
        problems.append(
            Problem(
                f"pools.{pool}",
                f"under ipam.strictAffinity: true, {_pools_have(refused[0][1].pools)} no free "
                f"block left for {len(refused)} pod(s) ("
                + ", ".join(f"{n}: {count}" for n, count in nodes.items())
                + f"), which Calico does not create: {refused[0][1].message}",
                "use a larger pool cidr, a smaller blockSize (longer prefix), fewer pods, or "
                "ipam.strictAffinity: false (then nodes borrow addresses from other nodes' blocks)",
            )
        )
    return problems


def _pools_have(pools: Sequence[str]) -> str:
    return f"pool {pools[0]} has" if len(pools) == 1 else f"pools {', '.join(pools)} have"


def _tunnels_before(sticky: Sticky) -> dict[str, dict[tuple[str, int], tuple[str, str]]]:
    """The running lab's tunnel addresses (`Sticky.tunnels`) as `ipam.allocate` takes them."""
    kinds = {"ipip4": ("ipip", 4), "vxlan4": ("vxlan", 4), "vxlan6": ("vxlan", 6)}
    return {
        node: {kinds[key]: got for key, got in held.items() if key in kinds}
        for node, held in sticky.tunnels.items()
    }


def vtep_mac(lab: str, node: str, family: int) -> str:
    """A stable MAC for a node's VXLAN device (locally administered, unicast)."""
    digest = hashlib.sha1(f"{lab}.{node}.vtep{family}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x66, *digest[:5]))


def plan_ipam(
    topo: Topology,
    pools: Sequence[PoolPlan],
    addresses: NodeAddresses,
    sticky: Sticky | None,
) -> tuple[dict[str, NodeIpam], list[Problem]]:
    """Calico's IPAM over the lab (model.ipam): tunnel addresses, then pods, nodes in order.

    A pod IPAM cannot address is not created and its node's `notes` say why. In a fresh plan
    (no `sticky`: the topology as written) a pod refused under `strictAffinity` is bad input
    instead: the topology asks for more pods than its pools hold under strict affinity (the
    issue's "rather than at run time"); in a live change it is a note, as Calico's CNI fails
    that pod alone.
    """
    allocations = allocate(
        [
            PoolInput(
                p.name,
                parse_network(p.cidr),
                p.block_size,
                p.node_selector,
                p.ipip_mode != "Never",
                p.vxlan_mode != "Never",
                p.disabled,
            )
            for p in pools
        ],
        [
            NodeInput(name, spec.labels, spec.pod_count, addresses.families(name))
            for name, spec in topo.nodes.items()
        ],
        affinity=sticky.affinity if sticky is not None else None,
        pods_before=_pods_before(topo, sticky) if sticky is not None else None,
        config=IpamConfig(topo.ipam.strict_affinity, topo.ipam.max_blocks_per_host),
        tunnels_before=_tunnels_before(sticky) if sticky is not None else None,
    )
    problems = _strict_shortage(allocations) if sticky is None else []
    if problems:
        return {}, problems
    return {
        name: _node_ipam(topo.name, name, allocation, topo.nodes[name].pod_list())
        for name, allocation in allocations.items()
    }, []


def _pods_before(topo: Topology, sticky: Sticky) -> dict[str, list[dict[int, tuple[str, str]]]]:
    """The running pods' addresses in the order of the new topology's pods, matched by name (a
    pod keeps its address, as a pod Calico never renumbers); after them the pods that are gone,
    whose addresses IPAM releases."""
    out = {}
    for name, spec in topo.nodes.items():
        old = sticky.pods_by_name(name)
        wanted = [pod.name for pod in spec.pod_list()]
        out[name] = [old.get(pod, {}) for pod in wanted] + [
            allocation for pod, allocation in old.items() if pod not in set(wanted)
        ]
    return out


def _node_ipam(lab: str, node: str, alloc: NodeAllocation, wanted: list[Pod]) -> NodeIpam:
    pods = []
    # IPAM numbers the pods it created in order, leaving out the ones it refused.
    refused = {r.pod for r in alloc.refused}
    created = [pod for i, pod in enumerate(wanted) if i not in refused]
    for spec, addrs in zip(created, alloc.pod_addresses, strict=False):
        pod = spec.name
        v4, v6 = addrs.get(4), addrs.get(6)
        pods.append(
            PodPlan(
                name=pod,
                node=node,
                netns=names.pod_netns(lab, node, pod),
                host_ifname=names.pod_host_ifname(lab, node, pod),
                ipv4=None if v4 is None else str(v4.address),
                ipv6=None if v6 is None else str(v6.address),
                pool4=None if v4 is None else v4.pool,
                pool6=None if v6 is None else v6.pool,
                block4=None if v4 is None else str(v4.block),
                block6=None if v6 is None else str(v6.block),
                block4_node=None if v4 is None else v4.affinity,
                block6_node=None if v6 is None else v6.affinity,
                namespace=spec.namespace,
                labels=dict(spec.labels),
                ports=tuple(PodPort(p.name, p.port, p.protocol) for p in spec.ports),
            )
        )
    return NodeIpam(
        blocks=tuple(Block(str(block), pool) for pool, block in alloc.blocks),
        pods=tuple(pods),
        ipip_tunnel_address=str(alloc.ipip_tunnel) if alloc.ipip_tunnel else None,
        vteps=tuple(
            Vtep(f, str(a), vtep_mac(lab, node, f)) for f, a in sorted(alloc.vxlan_tunnel.items())
        ),
        notes=(
            *(
                f"{node}: gets no {kind.upper()} tunnel address (IPv{family}), so no tunnel "
                f"device to reach or be reached by other nodes: {message}"
                for kind, family, message in alloc.tunnel_refused
            ),
            *(
                f"{node}: {wanted[r.pod].name} is not created, Calico's IPAM gives it no "
                f"IPv{r.family} address: {r.message}"
                for r in alloc.refused
            ),
        ),
    )


def vtep_by_node_address(ipam: Mapping[str, NodeIpam], addresses: NodeAddresses) -> dict[str, str]:
    """A node's address -> its VTEP address of the same family (where it has both)."""
    out = {}
    for name, node in ipam.items():
        for vtep in node.vteps:
            address = addresses.of(name, vtep.family)
            if address is not None:
                out[address] = vtep.address
    return out
