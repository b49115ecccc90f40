"""Pass 6: the expected RIB of every node, by running BGP over the sessions that come up.

Owns what each node originates (its blocks of pools that export to BGP, next hop itself),
running `model.bgp.propagate` (the same rules the agents apply live), and turning each node's
best paths into `RibEntry`s sorted by prefix. Entries that are equal (every node of a mesh
holds the same best path to a block) are one shared object: the plan's memory grows with the
number of distinct routes, plus a reference per node and route.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from meshemu.model.bgp import Path, Speaker, propagate_links, router_id_for
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
    ipam: Mapping[str, NodeIpam], pools: Sequence[PoolPlan], addresses: NodeAddresses
) -> dict[str, list[Path]]:
    """Each node's own paths: its blocks of pools that export to BGP, next hop itself."""
    exported = {p.name for p in pools if not p.disable_bgp_export}
    out: dict[str, list[Path]] = {}
    for name, node in ipam.items():
        for block in node.blocks:
            if block.pool in exported:
                family = 6 if ":" in block.cidr else 4
                out.setdefault(name, []).append(
                    Path(prefix=block.cidr, next_hop=addresses.of(name, family) or "")
                )
    return out


def plan_ribs(
    ipam: Mapping[str, NodeIpam],
    pools: Sequence[PoolPlan],
    addresses: NodeAddresses,
    peering: Peering,
) -> Ribs:
    """Raises PlanError when BGP does not settle (see `model.bgp.propagate`)."""
    lab = speakers(addresses, peering)
    ribs = propagate_links(lab, peering.links, originated(ipam, pools, addresses))
    owner = {block.cidr: name for name, node in ipam.items() for block in node.blocks}
    order = sorted(ribs, key=prefix_sort_key)
    shared: dict[int, RibEntry] = {}
    entries = {}
    for name in lab:
        out = []
        for prefix in order:
            found = ribs[prefix].get(name)
            if found is None:
                continue
            entry = shared.get(id(found))  # nodes holding the same pair share one entry
            if entry is None:
                chosen, candidates = found
                entry = shared[id(found)] = RibEntry(
                    prefix=prefix,
                    next_hop=chosen.next_hop,
                    origin_node=owner.get(prefix, "?"),
                    learned_from=chosen.learned_from,
                    as_path=chosen.as_path,
                    originator_id=chosen.originator_id,
                    cluster_list=chosen.cluster_list,
                    paths=len(candidates),
                )
            out.append(entry)
        entries[name] = tuple(out)
    return Ribs(entries, {name: s.router_id for name, s in lab.items()})
