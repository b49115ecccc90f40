"""Pass 7: the expected kernel FIB of every node.

Owns which routes a node programs: for each learned best path the route `model.routes.route_for`
decides (the pool's encapsulation, inside or outside the node's subnet), a blackhole for each
own block (not for a one-address block: `routes.block_has_blackhole`), and a host route per own
pod on its `cali` interface; sorted by prefix. Nodes that see a route alike (the same subnet and
default router) share one `FibRoute` object for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from meshemu.model.labplan import PoolPlan, RibEntry, SubnetPlan
from meshemu.model.phases.addresses import FAMILIES, NodeAddresses
from meshemu.model.phases.allocation import NodeIpam
from meshemu.model.routes import (
    FibRoute,
    PoolRule,
    RouteContext,
    block_has_blackhole,
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


def _own_routes(ipam: NodeIpam) -> list[FibRoute]:
    routes = [
        FibRoute(
            block.cidr,
            "blackhole",
            reason=f"own block of pool {block.pool}: unused addresses are dropped here, "
            "not sent back to the default route",
        )
        for block in ipam.blocks
        if block_has_blackhole(block.cidr)
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
                        f"pod {pod.name} on this node",
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
    """`installed`: router address -> the prefixes that router (BIRD) installs from BGP."""
    rules: list[PoolRule] = [p.route_rule() for p in pools]
    by_name = {s.name: s for s in subnets}
    # (subnet prefixes, default routers) -> (prefix, next hop) -> route: what a node programs
    # for a learned route depends on nothing else of the node.
    shared: dict[tuple[object, ...], _Learned] = {}
    out = {}
    for name, spec in topo.nodes.items():
        ctx = route_context(by_name[spec.subnet], name, addresses, gateways, vteps, installed)
        seen = shared.get(
            key := (tuple(sorted(ctx.node_subnet.items())), tuple(sorted(ctx.gateway.items())))
        )
        if seen is None:
            seen = shared[key] = _Learned(rules, ctx)
        known = seen.by_entry.get  # (inline: a FibRoute is never falsy)
        fib = [
            known(id(entry)) or seen.route(entry)
            for entry in ribs[name]
            if entry.learned_from is not None
        ]
        own = _own_routes(ipam[name])
        # Sorted by prefix, then type; the same order as sorting with that key (stable), with
        # each shared route's key found once for all nodes (two million routes in a mesh).
        keys = [*map(seen.keys.__getitem__, map(id, fib)), *map(_route_sort_key, own)]
        fib += own
        out[name] = tuple(map(fib.__getitem__, sorted(range(len(fib)), key=keys.__getitem__)))
    return out


def _route_sort_key(route: FibRoute) -> tuple[tuple[int, int, int, str], str]:
    return (prefix_sort_key(route.prefix), route.type)


class _Learned:
    """The routes for learned paths of the nodes that see them alike, one per prefix and next
    hop, looked up by the (shared) RIB entry, and each route's sort key."""

    def __init__(self, rules: Sequence[PoolRule], ctx: RouteContext) -> None:
        self.rules, self.ctx = rules, ctx
        self.by_path: dict[tuple[str, str], FibRoute] = {}
        self.by_entry: dict[int, FibRoute] = {}  # id of an entry of `ribs` (alive throughout)
        self.keys: dict[int, tuple[tuple[int, int, int, str], str]] = {}  # id of a route held

    def route(self, entry: RibEntry) -> FibRoute:
        route = self.by_entry.get(id(entry))
        if route is None:
            route = self.by_path.get((entry.prefix, entry.next_hop))
            if route is None:
                route = route_for(entry.prefix, entry.next_hop, self.rules, self.ctx)
                self.by_path[(entry.prefix, entry.next_hop)] = route
                self.keys[id(route)] = _route_sort_key(route)
            self.by_entry[id(entry)] = route
        return route
