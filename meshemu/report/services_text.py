"""The plan's Services as text: addresses, ports, endpoints and what each node advertises.

Owns formatting only; every fact comes from the plan's `ServicesPlan`.
"""

from __future__ import annotations

from meshemu.model.services import ServicesPlan


def render_services(services: ServicesPlan) -> list[str]:
    lines = ["", f"services ({len(services.services)}; kube-proxy nftables rules on every node):"]
    for service in services.services:
        addresses = ", ".join(service.cluster_ips)
        extra = ", ".join(service.external_addresses())
        lines.append(
            f"  {service.ref} {service.type} {addresses}"
            + (f"; external {extra}" if extra else "")
            + f"; externalTrafficPolicy {service.external_traffic_policy}"
        )
        for port in service.ports:
            node_port = f" nodePort {port.node_port}" if port.node_port else ""
            ends = ", ".join(
                f"{e.node}/{e.pod} "
                + (f"[{e.address}]" if ":" in e.address else e.address)
                + f":{e.port}"
                for e in port.endpoints
            )
            lines.append(
                f"    {port.protocol}/{port.port} -> {port.target}{node_port}: "
                + (ends or "no endpoints (probes expected to fail)")
            )
    if services.advertised:
        lines.append("  advertised over BGP (BGPConfiguration service CIDRs, Local host routes):")
        for node, prefixes in services.advertised.items():
            lines.append(f"    {node}: {', '.join(prefixes)}")
    return lines
