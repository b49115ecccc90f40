"""Pass 6: the expected RIB of every node, by running BGP over the sessions that come up.

Owns what each node originates (its blocks of pools that export to BGP, and a host route per
pod address it borrowed from another node's block of such a pool, next hop itself), running
`model.bgp.propagate` (the same rules the agents apply live), and turning each node's best paths
into `RibEntry`s sorted by prefix. Entries that are equal (every node of a mesh holds the same
best path to a block) are one shared object: the plan's memory grows with the number of
distinct routes, plus a reference per node and route.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from meshemu.model.bgp import Path, Speaker, propagate_prefixes, router_id_for
from meshemu.model.ipam import Borrowed, borrowed_addresses
from meshemu.model.labplan import PoolPlan, RibEntry
from meshemu.model.phases.addresses import NodeAddresses
from meshemu.model.phases.allocation import NodeIpam
from meshemu.model.phases.peering import Peering
from meshemu.model.routes import prefix_sort_key


@dataclass(frozen=True)
class Ribs:
    """Pass 6's result: per node, its RIB entries sorted by prefix."""

    entries: Mapping[str, tuple[RibEntry, ...]]
    router_ids: Mapping[str, str]
    # BGP router -> prefix -> its candidate paths, best first (BIRD's `merge paths` may
    # install several: `phases.fabric.router_routes`)
    routers: Mapping[str, Mapping[str, tuple[Path, ...]]]


def speakers(addresses: NodeAddresses, peering: Peering) -> dict[str, Speaker]:
    return {
        name: Speaker(
            name=name,
            router_id=router_id_for(addresses.of(name, 4), name),
            as_number=node.as_number,
            cluster_id=node.cluster_id,
            addresses=addresses.by_node[name],
        )
        for name, node in peering.nodes.items()
    }


def originated(
    ipam: Mapping[str, NodeIpam],
    pools: Sequence[PoolPlan],
    addresses: NodeAddresses,
    services: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[Path]]:
    """Each node's own paths: its blocks of pools that export to BGP, the host routes of the
    pod addresses it borrowed in such pools (`exported_borrowed`), and the Service prefixes it
    advertises (`model.services`: confd's static routes), next hop itself."""
    exported = {p.name for p in pools if not p.disable_bgp_export}
    out: dict[str, list[Path]] = {}
    for name, prefixes in (services or {}).items():
        for prefix in prefixes:
            family = 6 if ":" in prefix else 4
            if addresses.of(name, family) is not None:
                out.setdefault(name, []).append(
                    Path(prefix=prefix, next_hop=addresses.of(name, family) or "")
                )
    for name, node in ipam.items():
        for block in node.blocks:
            if block.pool in exported:
                family = 6 if ":" in block.cidr else 4
                out.setdefault(name, []).append(
                    Path(prefix=block.cidr, next_hop=addresses.of(name, family) or "")
                )
    for name, paths in borrowed_paths(ipam, pools, addresses).items():
        out.setdefault(name, []).extend(paths)
    return out


def borrowed_paths(
    ipam: Mapping[str, NodeIpam], pools: Sequence[PoolPlan], addresses: NodeAddresses
) -> dict[str, list[Path]]:
    """Per borrowing node, a /32 (/128) path, next hop itself, for each address it borrowed
    that `exported_borrowed` keeps."""
    out: dict[str, list[Path]] = {}
    for name, held in borrowed_addresses(ipam, pools).items():
        for borrowed in exported_borrowed(held, pools):
            hop = addresses.of(name, 6 if ":" in borrowed.address else 4)
            if hop is not None:
                out.setdefault(name, []).append(Path(prefix=borrowed.prefix, next_hop=hop))
    return out


def exported_borrowed(borrowed: Iterable[Borrowed], pools: Sequence[PoolPlan]) -> list[Borrowed]:
    """The borrowed addresses whose host route the borrower's BIRD exports to every peer,
    whoever programs the pool's routes (docs/research/felix/cluster-routes.md section 7): a
    pod's, in a pool without disableBGPExport. BIRD learns the pod's kernel route (`learn`,
    bird.cfg.template); inside a pool but outside the node's own blocks, `calico_aggr` (which
    matches only those, bird_aggr.cfg.template) lets it through to the pool's `accept`
    (bird_ipam.cfg.template). A borrowed tunnel address (tunl0, a VTEP: rare) is left out: BIRD
    sees it only as a `direct` route, which its export to iBGP peers rejects on VXLAN devices,
    and on tunl0 unless BIRD programs IPIP pools (bgp_processor.go
    IBGPExportFilterForTunnelRoutes); not emulated."""
    silent = {p.name for p in pools if p.disable_bgp_export}
    return [b for b in borrowed if b.kind == "pod" and b.pool not in silent]


def plan_ribs(
    ipam: Mapping[str, NodeIpam],
    pools: Sequence[PoolPlan],
    addresses: NodeAddresses,
    peering: Peering,
    routers: Mapping[str, Speaker] | None = None,
    services: Mapping[str, Sequence[str]] | None = None,
) -> Ribs:
    """Raises PlanError when BGP does not settle (see `model.bgp.propagate`).
    `routers`: the routers that speak BGP, as speakers beside the nodes; `services`: node ->
    the Service prefixes it originates (several nodes may originate one)."""
    lab = speakers(addresses, peering)
    everyone = {**lab, **(routers or {})}
    router_best: dict[str, dict[str, tuple[Path, ...]]] = {name: {} for name in routers or {}}
    origins = originated(ipam, pools, addresses, services) if peering.bgp else {}
    owner = {block.cidr: name for name, node in ipam.items() for block in node.blocks}
    # A Service prefix has as many origins as nodes advertise it: the chosen path's next hop
    # names its node (BGP keeps the originator's next hop inside the AS).
    at_address = {a: name for name in ipam for f in (4, 6) if (a := addresses.of(name, f))}
    # Each prefix's entries go to their place in each node's list as its propagation ends,
    # and the rest of that propagation goes (a 1,000-node mesh: two thousand prefixes of a
    # thousand entries each, which together would double the memory this pass needs).
    order = sorted(
        {path.prefix for name, paths in origins.items() if name in lab for path in paths},
        key=prefix_sort_key,
    )
    rank = {prefix: i for i, prefix in enumerate(order)}
    slots: dict[str, list[RibEntry | None]] = {name: [None] * len(order) for name in lab}
    for prefix, ribs in propagate_prefixes(everyone, peering.links, origins):
        at = rank[prefix]
        made: dict[int, RibEntry] = {}  # nodes holding the same candidates share one entry
        for name, candidates in ribs.items():
            if name in router_best:
                router_best[name][prefix] = candidates
                continue
            entry = made.get(id(candidates))
            if entry is None:
                chosen = candidates[0]
                entry = made[id(candidates)] = RibEntry(
                    prefix=prefix,
                    next_hop=chosen.next_hop,
                    origin_node=owner.get(prefix)
                    or (name if chosen.learned_from is None else None)
                    or at_address.get(chosen.next_hop, "?"),
                    learned_from=chosen.learned_from,
                    as_path=chosen.as_path,
                    originator_id=chosen.originator_id,
                    cluster_list=chosen.cluster_list,
                    paths=len(candidates),
                )
            slots[name][at] = entry
    entries = {
        name: tuple([entry for entry in held if entry is not None]) for name, held in slots.items()
    }
    return Ribs(entries, {name: s.router_id for name, s in lab.items()}, router_best)
