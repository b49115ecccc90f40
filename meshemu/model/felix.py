"""Felix's cluster routes: what calico-node's Felix programs on a node, from IPAM and Node
addresses alone, with no BGP involved (pure).

Owns, for every node, the routes Felix's route managers write for the pools Felix owns
(`model.cluster_routes`), following projectcalico/calico release-v3.33:

- a route per block affine to another node (felix/calc/l3_route_resolver.go `routesFromBlock`,
  655-689), and a /32 (/128) per address allocated to a node from a block affine to another
  node (a borrowed address: `NonAffineAllocations`, to the borrowing node, on every node but
  that one: l3_route_resolver.go:754-807);
- its shape by pool kind (felix/dataplane/linux/route_mgr.go:372-463, ipip_mgr.go:168-185,
  vxlan_mgr.go:266-296): IPIP `via <node address> dev tunl0 onlink`; VXLAN `via <remote VTEP>
  dev vxlan.calico onlink` (`vxlan-v6.calico`); a CrossSubnet pool whose destination Node's
  address is inside this Node's subnet (`nodeInOurSubnet`, l3_route_resolver.go:885-919: the
  Node address, never a BGP next hop) and any unencapsulated pool: `via <node address> dev
  <uplink> onlink`, whatever the subnet for the latter (route_mgr.go:448);
- a blackhole for each own block that is not one address (route_mgr.go:266-299, 404-406).

Felix sets no metric (IPv4 0, IPv6 1024 after the kernel's normalisation, route_table.go:
1284-1291); the protocol (80, or the device protocol for VXLAN tunnel routes) is the
dataplane's (`routes.kernel_protocol`). Nodes that see a route alike share one `FibRoute`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from meshemu.model.cluster_routes import BGP, FELIX, LOCAL, Ownership
from meshemu.model.ipam import Borrowed
from meshemu.model.labplan import Block, PoolPlan
from meshemu.model.names import IPIP_DEVICE, UPLINK, VXLAN_DEVICE
from meshemu.model.routes import KINDS, FibRoute, PoolKind, block_has_blackhole, pool_kind


@dataclass(frozen=True)
class FelixNode:
    """What Felix knows of a node from the datastore (its Node resource and IPAM)."""

    name: str
    address: Mapping[int, str]  # family -> the Node's address (spec.bgp.ipv4Address, ...)
    prefix: Mapping[int, str]  # family -> the subnet of that address
    vtep: Mapping[int, str]  # family -> the VXLAN tunnel address
    blocks: tuple[Block, ...]  # affine blocks


@dataclass(frozen=True)
class _Pool:
    plan: PoolPlan
    kind: PoolKind
    network: ipaddress.IPv4Network | ipaddress.IPv6Network


def felix_routes(
    nodes: Sequence[FelixNode],
    pools: Sequence[PoolPlan],
    rules: Mapping[str, Ownership],
    borrowed: Sequence[Borrowed],
) -> dict[str, list[FibRoute]]:
    """Per node: Felix's remote routes (source felix) and its own blocks' blackholes (source
    local) for the pools Felix owns on that node (`rules`: node -> its ownership).
    `borrowed`: every address allocated from a block affine to another node or to none
    (`model.ipam.borrowed_addresses`; Calico's `NonAffineAllocations`, block.go:234-257), each
    routed to the node it was allocated to."""
    by_pool = {
        p.name: _Pool(p, pool_kind(p.ipip_mode, p.vxlan_mode), ipaddress.ip_network(p.cidr))
        for p in pools
    }
    by_name = {n.name: n for n in nodes}
    shared: dict[tuple[object, ...], _Viewpoint] = {}
    # Per set of pool kinds Felix owns: every (destination, pool, node) it routes, computed
    # once (a 1,000-node mesh has two million of them, and none where Felix owns nothing).
    destinations: dict[frozenset[str], list[tuple[str, str, FelixNode]]] = {}
    out: dict[str, list[FibRoute]] = {}
    for node in nodes:
        rule = rules[node.name]
        mine = frozenset(k for k in KINDS if FELIX in rule.owners(k))
        key = (tuple(sorted(node.prefix.items())), mine, rule.why("ipip"))
        view = shared.get(key)
        if view is None:
            view = shared[key] = _Viewpoint(node.prefix, mine, rule, by_pool, by_name)
        wanted = destinations.get(mine)
        if wanted is None:
            wanted = destinations[mine] = [
                (block.cidr, block.pool, other)
                for other in nodes
                for block in other.blocks
                if by_pool[block.pool].kind in mine
            ]
            wanted += [
                (b.prefix, b.pool, by_name[b.node])
                for b in borrowed
                if by_pool[b.pool].kind in mine
            ]
        routes = [
            route
            for prefix, pool, other in wanted
            if other is not node and (route := view.route(prefix, pool, other)) is not None
        ]
        routes += [
            FibRoute(
                block.cidr,
                "blackhole",
                reason=f"own block of pool {block.pool}, written by Felix ({view.why(block.pool)})"
                + (
                    " and by BIRD's static protocol, each replacing the other's"
                    if BGP in rule.owners(by_pool[block.pool].kind)
                    else ""
                )
                + ": unused addresses are dropped here, not sent back to the default route",
                source=LOCAL,
            )
            for block in node.blocks
            if by_pool[block.pool].kind in mine and block_has_blackhole(block.cidr)
        ]
        out[node.name] = routes
    return out


class _Viewpoint:
    """The routes of the nodes that see the cluster alike (the same subnet and ownership),
    one `FibRoute` per destination."""

    def __init__(
        self,
        prefix: Mapping[int, str],
        mine: frozenset[str],
        rule: Ownership,
        pools: Mapping[str, _Pool],
        nodes: Mapping[str, FelixNode],
    ) -> None:
        self.subnets = {f: ipaddress.ip_network(p) for f, p in prefix.items()}
        self.mine, self.rule, self.pools, self.nodes = mine, rule, pools, nodes
        self.cache: dict[tuple[str, str], FibRoute | None] = {}

    def why(self, pool: str) -> str:
        return self.rule.why(self.pools[pool].kind)

    def route(self, prefix: str, pool_name: str, dst: FelixNode) -> FibRoute | None:
        key = (prefix, dst.name)
        if key not in self.cache:
            self.cache[key] = self._route(prefix, pool_name, dst)
        return self.cache[key]

    def _route(self, prefix: str, pool_name: str, dst: FelixNode) -> FibRoute | None:
        pool = self.pools[pool_name]
        if pool.kind not in self.mine:
            return None
        family = pool.network.version
        address = dst.address.get(family)
        if address is None:
            return None  # no Node address of that family: the resolver has no next hop
        mode = pool.plan.vxlan_mode if pool.kind == "vxlan" else pool.plan.ipip_mode
        subnet = self.subnets.get(family)
        inside = subnet is not None and ipaddress.ip_address(address) in subnet
        where = f"{dst.name}'s address {address} is {'inside' if inside else 'outside'} this "
        where += f"node's subnet {subnet}"
        head = f"Felix ({self.why(pool_name)}): pool {pool_name}"
        if pool.kind == "none" or (mode == "CrossSubnet" and inside):
            reason = (
                f"{head} does not encapsulate, so straight to {dst.name} over {UPLINK}"
                if pool.kind == "none"
                else f"{head} {pool.kind}Mode CrossSubnet: {where}, so directly over {UPLINK}"
            )
            return FibRoute(prefix, "unicast", address, UPLINK, True, reason, FELIX)
        if pool.kind == "ipip":
            reason = f"{head} ipipMode {mode}: {where}, so IP-in-IP through {IPIP_DEVICE}"
            return FibRoute(prefix, "unicast", address, IPIP_DEVICE, True, reason, FELIX)
        vtep = dst.vtep.get(family)
        if vtep is None:
            return None  # Felix programs a VXLAN route only once the remote VTEP is known
        reason = f"{head} vxlanMode {mode}: {where}, so VXLAN to its VTEP {vtep}"
        return FibRoute(prefix, "unicast", vtep, VXLAN_DEVICE[family], True, reason, FELIX)
