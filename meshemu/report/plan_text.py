"""The plan as text a person learning BGP can read: per node, its sessions and routes, with why.

Owns formatting only; every fact comes from the `LabPlan`.
"""

from __future__ import annotations

from meshemu.model.ipam import Borrowed, node_borrowed
from meshemu.model.plan import LabPlan, NodePlan, RouterPlan
from meshemu.report.services_text import render_services


def _join(*parts: str | None) -> str:
    return ", ".join(p for p in parts if p)


def plan_summary(plan: LabPlan) -> str:
    sessions = sum(len(n.sessions) for n in plan.nodes)
    pods = sum(len(n.pods) for n in plan.nodes)
    blocks = sum(len(n.blocks) for n in plan.nodes)
    bgp = (
        f"{sessions} BGP sessions (node-to-node mesh {'on' if plan.mesh else 'off'}, "
        f"AS {plan.as_number})"
        if any(n.speaker != "none" for n in plan.nodes)
        else "BGP off (no speakers: Felix programs every route)"
    )
    return (
        f"lab {plan.name}: {len(plan.nodes)} nodes, {len(plan.subnets)} subnets, "
        f"{len(plan.routers)} routers, {len(plan.pools)} pools, {blocks} blocks, {pods} pods, "
        + bgp
    )


def render_router(router: RouterPlan) -> list[str]:
    """A router: its interfaces and static routes; with BGP, its sessions and what BIRD
    should install."""
    joined = "; ".join(f"{i.subnet} {_join(i.ipv4, i.ipv6)}" for i in router.interfaces)
    bgp = router.bgp
    what = (
        "forwards between subnets, knows no pod routes"
        if bgp is None
        else f"BIRD, AS {bgp.as_number}, router ID {bgp.router_id}"
        + (f", route reflector (cluster {bgp.cluster_id})" if bgp.cluster_id else "")
        + (f", your configuration {bgp.config_file}" if bgp.config_file else "")
    )
    lines = [f"router {router.name} ({what}): {joined}"]
    lines += [f"  static {route.prefix} via {route.via}" for route in router.routes]
    if bgp is None:
        return lines
    up = set(bgp.expected_up)
    lines.append(f"  BGP sessions ({len(bgp.sessions)}):")
    for s in bgp.sessions:
        flags = ["eBGP" if s.ebgp else "iBGP", "direct" if s.interface else "multihop"]
        if s.rr_client:
            flags.append("rr client")
        if s.password is not None:
            flags.append("password")
        if s.peer_ip not in up:
            flags.append("stays down")
        lines.append(
            f"    {s.peer_ip:<24} AS {s.peer_as:<6} {s.peer_kind} {s.peer_name}, {', '.join(flags)}"
        )
        lines.append(f"      why: {s.reason}")
    lines.append(f"  expected BGP routes in its FIB ({len(bgp.routes)}):")
    for route in bgp.routes:
        lines.append(f"    {route.prefix} via {route.via} dev {route.dev}")
        lines.append(f"      why: {route.reason}")
    return lines


def render_plan(plan: LabPlan, only_node: str | None = None) -> str:
    lines = [plan_summary(plan)]
    if plan.description:
        lines.append(plan.description)
    if only_node is None:
        lines.append("")
        lines.append("subnets (L2 segments):")
        for subnet in plan.subnets:
            lines.append(f"  {subnet.name:<14} {_join(subnet.ipv4, subnet.ipv6)}")
        for router in plan.routers:
            lines += render_router(router)
        if plan.outside is not None:
            out = plan.outside
            lines.append(
                f"outside host (a stand-in for the Internet) on subnet {out.subnet}: "
                f"{_join(out.ipv4, out.ipv6)}, default router {_join(out.gateway4, out.gateway6)}"
            )
        lines.append("")
        lines.append("pools:")
        for pool in plan.pools:
            flags = [f"blockSize {pool.block_size}", f"nodeSelector {pool.node_selector!r}"]
            if pool.nat_outgoing:
                flags.append("natOutgoing (to outside every pool: the node's address, nftables)")
            if pool.disable_bgp_export:
                flags.append("disableBGPExport (not advertised)")
            if pool.disabled:
                flags.append("disabled")
            lines.append(f"  {pool.name:<14} {pool.cidr:<26} {pool.rule}; {', '.join(flags)}")
    for node in plan.nodes:
        if only_node is not None and node.name != only_node:
            continue
        lines.append("")
        lines += render_node(plan, node)
    if only_node is None and plan.services is not None:
        lines += render_services(plan.services)
    if only_node is None and plan.notes:
        lines.append("")
        lines.append("notes:")
        lines += [f"  - {note}" for note in plan.notes]
    if only_node is None and plan.unsupported:
        lines.append("")
        lines.append("read but not emulated:")
        lines += [f"  - {loc}: {why}" for loc, why in plan.unsupported]
    return "\n".join(lines)


def render_node(plan: LabPlan, node: NodePlan) -> list[str]:
    prefixes = _join(node.ipv4_prefix, node.ipv6_prefix)
    role = f"route reflector, cluster ID {node.cluster_id}" if node.cluster_id else "node"
    lines = [
        f"node {node.name} ({role}) in subnet {node.subnet} ({prefixes})",
        f"  netns {node.netns}; uplink {node.uplink}; addresses {_join(node.ipv4, node.ipv6)}; "
        f"AS {node.as_number}; router ID {node.router_id}; listens on port {node.listen_port}",
        f"  default routes via {_join(node.gateway4, node.gateway6) or 'none (single subnet)'}",
    ]
    borrowed: dict[str | None, list[Borrowed]] = {}
    for b in node_borrowed(plan, node):
        borrowed.setdefault(b.pod, []).append(b)
    if node.ipip_tunnel_address:
        lines.append(f"  tunl0 address {node.ipip_tunnel_address}")
    for vtep in node.vteps:
        lines.append(f"  VXLAN VTEP (IPv{vtep.family}) {vtep.address} mac {vtep.mac}")
    lines += [f"    {b.text()}" for b in borrowed.get(None, ())]
    lines.append(
        "  blocks (affinity): "
        + (
            ", ".join(f"{b.cidr} ({b.pool})" for b in node.blocks)
            or ("none (borrowed addresses only)" if node.pods else "none (no pods)")
        )
    )
    for pod in node.pods:
        lines.append(f"  pod {pod.name}: {_join(pod.ipv4, pod.ipv6)} on {pod.host_ifname}")
        lines += [f"    {b.text()}" for b in borrowed.get(pod.name, ())]
    lines.append(f"  BGP sessions ({len(node.sessions)}):")
    if not node.sessions:
        lines.append("    none: this node learns no routes and advertises none")
    for s in node.sessions:
        flags = [s.kind, "passive" if s.passive else "active"]
        if s.rr_client:
            flags.append(f"rr-client (cluster {s.cluster_id})")
        if s.password:
            flags.append("md5 password")
        if s.peer_port != 179:
            flags.append(f"port {s.peer_port}")
        who = s.peer_name or "external"
        lines.append(f"    {s.peer_ip:<24} AS {s.peer_as:<6} {who:<12} {', '.join(flags)}")
        lines.append(f"      why: {s.reason}")
    lines.append(f"  expected routes ({len(node.fib)}):")
    rib = {r.prefix: r for r in node.rib}
    for route in node.fib:
        lines.append(f"    {route.text()}  [{route.source or 'unknown'}]")
        learned = rib.get(route.prefix)
        if learned is not None and learned.learned_from is not None and route.type != "blackhole":
            via = f"learned from {learned.learned_from}"
            if learned.originator_id:
                via += (
                    f" (reflected: originator {learned.originator_id}, "
                    f"cluster list {' '.join(learned.cluster_list)})"
                )
            if route.source != "bgp":
                via = f"BGP best path {via}, which BIRD does not write into the kernel"
            lines.append(f"      block of {learned.origin_node}, {via}")
        lines.append(f"      why: {route.reason}")
    return lines
