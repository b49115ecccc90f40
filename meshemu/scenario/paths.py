"""Which paths (local, direct, ipip, vxlan, router) traffic between two pods can never take.

Owns the one rule an expected path is checked against before a run: what is certain from the
plan whatever BGP does (Calico's encapsulation modes and the nodes' subnets).
"""

from __future__ import annotations

from meshemu.model.plan import LabPlan, PodPlan, PoolPlan


def impossible_path(
    path: str, family: int, source: PodPlan, target: PodPlan, plan: LabPlan
) -> str | None:
    """Why `path` can never be seen from `source` to `target`, or None if it can.

    Only what is certain whatever BGP does: the encapsulation of a route is decided by the
    pool of the target's block and whether the next hop shares the source's subnet
    (`model.routes.route_for`; Calico: calico/networking/vxlan-ipip.md in projectcalico/calico,
    "CrossSubnet" encapsulates only traffic that crosses a subnet boundary, and there is no
    IP-in-IP for IPv6); traffic inside one node never leaves it. VXLAN Always is not taken as
    certain: `route_for` routes natively to a node without a VTEP.
    """
    if source.node == target.node:
        return None if path == "local" else f"both pods are on {source.node}: the path is local"
    if path == "local":
        return f"the pods are on two nodes ({source.node}, {target.node}): the path is not local"
    src, dst = plan.node(source.node), plan.node(target.node)
    same = src.subnet == dst.subnet
    between = f"{src.name} and {dst.name} are in the same subnet {src.subnet}"
    pool_name = target.pool4 if family == 4 else target.pool6
    pool: PoolPlan | None = next((p for p in plan.pools if p.name == pool_name), None)
    ipip = pool.ipip_mode if pool is not None and family == 4 else "Never"
    vxlan = pool.vxlan_mode if pool is not None else "Never"
    where = f"pool {pool_name} of {target.node}/{target.name}"
    if path == "ipip":
        if family == 6:
            return "Calico has no IPIP (IP-in-IP) for IPv6"
        if ipip == "Never":
            return f"{where} does not use IPIP (ipipMode Never)"
        if ipip == "CrossSubnet" and same:
            return f"{where} uses IPIP CrossSubnet, and {between}"
    if path == "vxlan":
        if vxlan == "Never":
            return f"{where} does not use VXLAN for IPv{family} (vxlanMode Never)"
        if vxlan == "CrossSubnet" and same:
            return f"{where} uses VXLAN CrossSubnet, and {between}"
    if path in ("direct", "router") and (ipip == "Always" or (ipip == "CrossSubnet" and not same)):
        return f"{where} encapsulates with IPIP ({ipip}) between these nodes"
    if path == "router" and same:
        return f"{between}: no router between them"
    return None
