"""kube-proxy's nftables mode, per node: the ruleset that makes Service addresses answer.

Owns rendering a node's `kube-proxy` tables (one `ip`, one `ip6`) from the plan's Services, in
the shape of kubernetes pkg/proxy/nftables/proxier.go, kept to what the lab needs:
- `services`: a verdict map from (destination, protocol, port) to a Service's chain, entered
  from the nat prerouting and output hooks; node ports through `fib daddr type local`;
- `service-<id>`: one chain per Service port and family choosing an endpoint at random
  (`numgen random mod N vmap`), each `endpoint-<id>-<i>` a DNAT to the pod's address and port;
  traffic from outside the pod CIDRs to a cluster IP is marked for masquerade (kube-proxy's
  "masquerade off-cluster traffic to a ClusterIP");
- `external-<id>`: what arrives for a node port, an external IP or a LoadBalancer address:
  with `externalTrafficPolicy: Cluster` marked for masquerade (so that replies come back
  through this node) and sent to any endpoint; with `Local` only to this node's endpoints,
  source kept, and dropped where there is none (pods and the node itself still use every
  endpoint, as kube-proxy short-circuits them);
- hairpin (a pod reaching itself through its Service) masqueraded; Service ports without
  endpoints rejected (`no-endpoint-services`, checked in the filter hooks for new flows).
The table is deleted and created again in the same transaction, so a reload is atomic. Pure:
text out, no kernel (`dataplane.services` loads it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from meshemu.model.labplan import LabPlan, NodePlan
from meshemu.model.services import Endpoint, ServicePlan, ServicePortPlan

TABLE = "kube-proxy"
MASQ_MARK = "0x4000"  # kube-proxy's masquerade bit
_FAMILY = {4: ("ip", "ipv4_addr", "ip", "127.0.0.0/8"), 6: ("ip6", "ipv6_addr", "ip6", "::1")}


def _id(service: ServicePlan, port: ServicePortPlan) -> str:
    """A stable chain name part per Service port (kube-proxy hashes too)."""
    text = f"{service.ref}/{port.protocol}/{port.port}"
    return hashlib.sha256(text.encode()).hexdigest()[:8].upper()


def _addr(family: int, address: str) -> str:
    return f"[{address}]" if family == 6 else address


def _proto(protocol: str) -> str:
    return protocol.lower()


def _chain(name: str, lines: Sequence[str]) -> str:
    return f"  chain {name} {{\n" + "".join(f"    {line}\n" for line in lines) + "  }"


def _pick(targets: Sequence[str]) -> str:
    """A random choice among endpoint chains (a single one: a plain goto)."""
    if len(targets) == 1:
        return f"goto {targets[0]}"
    choices = ", ".join(f"{i} : goto {t}" for i, t in enumerate(targets))
    return f"numgen random mod {len(targets)} vmap {{ {choices} }}"


def family_ruleset(plan: LabPlan, node: NodePlan, family: int) -> str:
    """One family's `kube-proxy` table of `node` (deleted and made again)."""
    table, addr_type, match, loopback = _FAMILY[family]
    services = plan.services.services if plan.services is not None else ()
    pod_cidrs = [p.cidr for p in plan.pools if (":" in p.cidr) == (family == 6) and not p.disabled]
    pods_set = "{ " + ", ".join(pod_cidrs) + " }" if pod_cidrs else None
    chains: list[str] = []
    service_ips: list[str] = []
    node_ports: list[str] = []
    no_endpoints: list[str] = []
    for service in services:
        cluster_ip = service.cluster_ip(family)
        if cluster_ip is None:
            continue
        external = [a for a in service.external_addresses() if (":" in a) == (family == 6)]
        for port in service.ports:
            ident = _id(service, port)
            proto = _proto(port.protocol)
            endpoints = port.endpoints_of(family)
            keys = [cluster_ip, *external]
            if not endpoints:
                no_endpoints += [f"{a} . {proto} . {port.port}" for a in keys]
                continue
            comment = f'comment "{service.ref}:{port.name or port.port}"'
            names = [f"endpoint-{ident}-{i}" for i in range(len(endpoints))]
            for name, endpoint in zip(names, endpoints, strict=True):
                chains.append(_endpoint_chain(name, endpoint, family, match, proto))
            lines = [comment]
            if pods_set:
                lines.append(f"{match} saddr != {pods_set} jump mark-for-masquerade")
            chains.append(_chain(f"service-{ident}", [*lines, _pick(names)]))
            service_ips.append(f"{cluster_ip} . {proto} . {port.port} : goto service-{ident}")
            if not external and port.node_port is None:
                continue
            local = [(n, e) for n, e in zip(names, endpoints, strict=True) if e.node == node.name]
            lines = [comment]
            if service.external_traffic_policy == "Local":
                # Pods and the node itself are cluster traffic: every endpoint.
                if pods_set:
                    lines.append(f"{match} saddr {pods_set} goto service-{ident}")
                lines.append("fib saddr type local jump mark-for-masquerade")
                lines.append(f"fib saddr type local goto service-{ident}")
                lines.append(_pick([n for n, _ in local]) if local else "drop")
            else:
                lines.append("jump mark-for-masquerade")
                lines.append(f"goto service-{ident}")
            chains.append(_chain(f"external-{ident}", lines))
            service_ips += [
                f"{a} . {proto} . {port.port} : goto external-{ident}" for a in external
            ]
            if port.node_port is not None:
                node_ports.append(f"{proto} . {port.node_port} : goto external-{ident}")
    out = [
        f"table {table} {TABLE}",
        f"delete table {table} {TABLE}",
        f"table {table} {TABLE} {{",
        f"  map service-ips {{\n    type {addr_type} . inet_proto . inet_service : verdict"
        + _elements(service_ips)
        + "\n  }",
        "  map service-nodeports {\n    type inet_proto . inet_service : verdict"
        + _elements(node_ports)
        + "\n  }",
        f"  set no-endpoint-services {{\n    type {addr_type} . inet_proto . inet_service"
        + _elements(no_endpoints)
        + "\n  }",
        "  chain services {\n"
        f"    {match} daddr . meta l4proto . th dport vmap @service-ips\n"
        f"    fib daddr type local {match} daddr != {loopback} "
        "meta l4proto . th dport vmap @service-nodeports\n  }",
        "  chain nat-prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n"
        "    jump services\n  }",
        "  chain nat-output {\n    type nat hook output priority -100; policy accept;\n"
        "    jump services\n  }",
        "  chain nat-postrouting {\n    type nat hook postrouting priority srcnat; "
        "policy accept;\n"
        f"    meta mark & {MASQ_MARK} == 0 return\n"
        f"    meta mark set meta mark ^ {MASQ_MARK}\n    masquerade fully-random\n  }}",
        f"  chain mark-for-masquerade {{\n    meta mark set meta mark | {MASQ_MARK}\n  }}",
        "  chain endpoints-check {\n"
        f"    {match} daddr . meta l4proto . th dport @no-endpoint-services reject\n  }}",
        "  chain filter-forward {\n    type filter hook forward priority -110; policy accept;\n"
        "    ct state new jump endpoints-check\n  }",
        "  chain filter-output {\n    type filter hook output priority -110; policy accept;\n"
        "    ct state new jump endpoints-check\n  }",
        *chains,
        "}",
    ]
    return "\n".join(out) + "\n"


def _endpoint_chain(name: str, endpoint: Endpoint, family: int, match: str, proto: str) -> str:
    # Hairpin: a pod reaching itself through the Service is masqueraded, or its own reply
    # would go straight back to itself from the wrong address.
    return (
        f"  chain {name} {{\n"
        f"    {match} saddr {endpoint.address} jump mark-for-masquerade\n"
        f"    meta l4proto {proto} dnat to {_addr(family, endpoint.address)}:{endpoint.port}\n"
        "  }"
    )


def _elements(items: Sequence[str]) -> str:
    if not items:
        return ""
    return "\n    elements = { " + ",\n      ".join(items) + " }"


def services_ruleset(plan: LabPlan, node: NodePlan) -> str:
    """Both families' tables of `node`: what `nft -f` loads into its namespace. Without
    Services the tables are still made (empty), which clears what a live change removed."""
    families = [f for f in (4, 6) if node.address(f) is not None]
    return "".join(family_ruleset(plan, node, f) for f in families)
