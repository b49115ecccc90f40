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
) -> RouteContext:
    return RouteContext(
        node_subnet={
            f: p
            for f, p in ((4, subnet.ipv4), (6, subnet.ipv6))
            if p is not None and addresses.of(node, f) is not None
        },
        gateway={f: g for f in FAMILIES if (g := gateways.get((subnet.name, f))) is not None},
        vteps=vteps,
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
) -> dict[str, tuple[FibRoute, ...]]:
    rules: list[PoolRule] = [p.route_rule() for p in pools]
    by_name = {s.name: s for s in subnets}
    # (subnet prefixes, default routers) -> (prefix, next hop) -> route: what a node programs
    # for a learned route depends on nothing else of the node.
    shared: dict[tuple[object, ...], dict[tuple[str, str], FibRoute]] = {}
    out = {}
    for name, spec in topo.nodes.items():
        ctx = route_context(by_name[spec.subnet], name, addresses, gateways, vteps)
        seen = shared.setdefault(
            (tuple(sorted(ctx.node_subnet.items())), tuple(sorted(ctx.gateway.items()))), {}
        )
        fib = []
        for entry in ribs[name]:
            if entry.learned_from is None:
                continue
            route = seen.get((entry.prefix, entry.next_hop))
            if route is None:
                route = route_for(entry.prefix, entry.next_hop, rules, ctx)
                seen[(entry.prefix, entry.next_hop)] = route
            fib.append(route)
        fib += _own_routes(ipam[name])
        fib.sort(key=lambda r: (prefix_sort_key(r.prefix), r.type))
        out[name] = tuple(fib)
    return out
