"""Pass 7: the expected kernel FIB of every node, and who writes each route.

Owns which routes a node has, with their `source` (`model.cluster_routes` decides per pool
kind who programs): BIRD's (`bgp`: for each learned best path of a pool BIRD owns on the node,
or of a prefix outside every pool, the route `model.routes.route_for` decides from the BGP next
hop), Felix's (`felix`: `model.felix`, from IPAM and Node addresses alone), and the node's own
(`local`: blackholes for its blocks, written by whichever component owns the pool, not for a
one-address block; a host route per own pod on its `cali` interface); sorted by prefix. Nodes
that see a route alike share one `FibRoute` object for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from meshemu.model import cluster_routes
from meshemu.model.cluster_routes import BGP, FELIX, LOCAL
from meshemu.model.felix import FelixNode, felix_routes
from meshemu.model.ipam import borrowed_addresses
from meshemu.model.labplan import PoolPlan, RibEntry, SubnetPlan
from meshemu.model.phases.addresses import FAMILIES, NodeAddresses
from meshemu.model.phases.allocation import NodeIpam
from meshemu.model.routes import (
    KINDS,
    FibRoute,
    PoolRule,
    RouteContext,
    block_has_blackhole,
    pool_kind,
    pool_of,
    prefix_sort_key,
    route_for,
)
from meshemu.model.topology import Topology


def route_context(
    subnet: SubnetPlan,
    node: str,
    addresses: NodeAddresses,
    gateways: Mapping[tuple[str, int], str],
    vteps: Mapping[str, str],
    installed: Mapping[str, frozenset[str]] | None = None,
) -> RouteContext:
    """`installed`: router address -> the prefixes that router installs from BGP."""
    gateway = {f: g for f in FAMILIES if (g := gateways.get((subnet.name, f))) is not None}
    return RouteContext(
        node_subnet={
            f: p
            for f, p in ((4, subnet.ipv4), (6, subnet.ipv6))
            if p is not None and addresses.of(node, f) is not None
        },
        gateway=gateway,
        vteps=vteps,
        gateway_routes=frozenset().union(*((installed or {}).get(g, ()) for g in gateway.values())),
    )


def _own_routes(
    ipam: NodeIpam, bird_kinds: frozenset[str], pools: Mapping[str, str]
) -> list[FibRoute]:
    """The node's pod routes, and BIRD's static blackholes for its blocks of the pools BIRD
    programs (bird_aggr.cfg.template:5-16; they pass the same kernel filter as learned routes).
    Felix's blackholes are `model.felix`'s. `pools`: pool name -> its kind."""
    routes = [
        FibRoute(
            block.cidr,
            "blackhole",
            reason=f"own block of pool {block.pool}, written by BIRD's static protocol: unused "
            "addresses are dropped here, not sent back to the default route",
            source=LOCAL,
        )
        for block in ipam.blocks
        if pools[block.pool] in bird_kinds and block_has_blackhole(block.cidr)
    ]
    for pod in ipam.pods:
        for pod_ip in (pod.ipv4, pod.ipv6):
            if pod_ip is not None:
                plen = 128 if ":" in pod_ip else 32
                routes.append(
                    FibRoute(
                        f"{pod_ip}/{plen}",
                        "unicast",
                        None,
                        pod.host_ifname,
                        False,
                        f"pod {pod.name} on this node (Felix's endpoint manager)",
                        LOCAL,
                    )
                )
    return routes


def plan_fibs(
    topo: Topology,
    subnets: Sequence[SubnetPlan],
    addresses: NodeAddresses,
    gateways: Mapping[tuple[str, int], str],
    vteps: Mapping[str, str],
    pools: Sequence[PoolPlan],
    ipam: Mapping[str, NodeIpam],
    ribs: Mapping[str, tuple[RibEntry, ...]],
    installed: Mapping[str, frozenset[str]] | None = None,
) -> dict[str, tuple[FibRoute, ...]]:
    """`installed`: router address -> the prefixes that router (BIRD) installs from BGP.

    Each node's FIB is what its two programmers write: BIRD (the learned best paths of the
    pools it owns on the node, and of prefixes outside every pool: confd's kernel filter
    accepts those) and Felix (`model.felix`), plus its pod routes."""
    rules: list[PoolRule] = [p.route_rule() for p in pools]
    kinds = {p.name: pool_kind(p.ipip_mode, p.vxlan_mode) for p in pools}
    by_name = {s.name: s for s in subnets}
    ownership = {name: cluster_routes.ownership(topo, name) for name in topo.nodes}
    borrowed = [b for held in borrowed_addresses(ipam, pools).values() for b in held]
    felix = felix_routes(_felix_nodes(topo, subnets, addresses, ipam), pools, ownership, borrowed)
    name_felix = {n: [k for k in KINDS if FELIX in r.owners(k)] for n, r in ownership.items()}
    # (subnet prefixes, default routers, BIRD's pool kinds) -> (prefix, next hop) -> route:
    # what a node programs for a learned route depends on nothing else of the node.
    shared: dict[tuple[object, ...], _Learned] = {}
    out = {}
    for name, spec in topo.nodes.items():
        rule = ownership[name]
        bird = frozenset(k for k in KINDS if BGP in rule.owners(k))
        ctx = route_context(by_name[spec.subnet], name, addresses, gateways, vteps, installed)
        key = (
            tuple(sorted(ctx.node_subnet.items())),
            tuple(sorted(ctx.gateway.items())),
            bird,
            rule.bgp_value,
        )
        seen = shared.get(key)
        if seen is None:
            ctx = replace(
                ctx, programmer=f"BIRD (BGPConfiguration programClusterRoutes {rule.bgp_value}): "
            )
            seen = shared[key] = _Learned(rules, ctx, bird)
        known = seen.by_entry.get  # (inline: a FibRoute is never falsy)
        fib = [
            route
            for entry in ribs[name]
            if entry.learned_from is not None
            and (route := known(id(entry)) or seen.route(entry)) is not _NOT_PROGRAMMED
        ]
        # A blackhole both write is one kernel route (same key): Felix's entry says so.
        own = _own_routes(ipam[name], bird - set(name_felix[name]), kinds) + felix[name]
        # Sorted by prefix, then type; the same order as sorting with that key (stable), with
        # each shared route's key found once for all nodes (two million routes in a mesh).
        keys = [*map(seen.keys.__getitem__, map(id, fib)), *map(_route_sort_key, own)]
        fib += own
        out[name] = tuple(map(fib.__getitem__, sorted(range(len(fib)), key=keys.__getitem__)))
    return out


def _felix_nodes(
    topo: Topology,
    subnets: Sequence[SubnetPlan],
    addresses: NodeAddresses,
    ipam: Mapping[str, NodeIpam],
) -> list[FelixNode]:
    """What Felix reads of every node: Node addresses and their subnets, VTEPs, IPAM."""
    by_name = {s.name: s for s in subnets}
    out = []
    for name, spec in topo.nodes.items():
        subnet, node = by_name[spec.subnet], ipam[name]
        address = {f: a for f in FAMILIES if (a := addresses.of(name, f)) is not None}
        prefix = {
            f: p for f, p in ((4, subnet.ipv4), (6, subnet.ipv6)) if p is not None and f in address
        }
        out.append(
            FelixNode(name, address, prefix, {v.family: v.address for v in node.vteps}, node.blocks)
        )
    return out


def _route_sort_key(route: FibRoute) -> tuple[tuple[int, int, int, str], str]:
    return (prefix_sort_key(route.prefix), route.type)


# What `_Learned.route` gives for a path BIRD does not write into the kernel (a pool Felix
# owns, or nobody): the kernel filter rejects it, the path stays in BIRD's table.
_NOT_PROGRAMMED = FibRoute("0.0.0.0/0", "blackhole", reason="not programmed")


class _Learned:
    """The routes for learned paths of the nodes that see them alike, one per prefix and next
    hop, looked up by the (shared) RIB entry, and each route's sort key."""

    def __init__(self, rules: Sequence[PoolRule], ctx: RouteContext, bird: frozenset[str]) -> None:
        self.rules, self.ctx, self.bird = rules, ctx, bird
        self.by_path: dict[tuple[str, str], FibRoute] = {}
        self.by_entry: dict[int, FibRoute] = {}  # id of an entry of `ribs` (alive throughout)
        self.keys: dict[int, tuple[tuple[int, int, int, str], str]] = {}  # id of a route held

    def route(self, entry: RibEntry) -> FibRoute:
        route = self.by_entry.get(id(entry))
        if route is None:
            route = self.by_path.get((entry.prefix, entry.next_hop))
            if route is None:
                pool = pool_of(entry.prefix, self.rules)
                if pool is not None and pool_kind(pool.ipip_mode, pool.vxlan_mode) not in self.bird:
                    route = _NOT_PROGRAMMED
                else:
                    route = route_for(entry.prefix, entry.next_hop, self.rules, self.ctx)
                self.by_path[(entry.prefix, entry.next_hop)] = route
                self.keys[id(route)] = _route_sort_key(route)
            self.by_entry[id(entry)] = route
        return route
