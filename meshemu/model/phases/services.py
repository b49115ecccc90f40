"""Pass 5b: the Services (`model.services`) over the pods IPAM created.

Owns allocating cluster IPs (from serviceClusterIPRange, in Service order) and node ports,
resolving each Service port's endpoints (the pods of its namespace its selector matches, at
their target port: a number, or the container port of that name), the plan notes of Services
without endpoints, what each node's speaker originates for Services as confd's route generator
decides, and the RIB entries a node's kernel does not get (inside a service CIDR).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import replace

from meshemu.model.labplan import PodPlan, RibEntry
from meshemu.model.services import (
    FIRST_ALLOCATED,
    Endpoint,
    ServicePlan,
    ServicePortPlan,
    ServicesPlan,
    parse_address,
    parse_net,
    service_families,
)
from meshemu.model.topology import NODE_PORT_RANGE, Topology


def plan_services(
    topo: Topology, pods_of: Mapping[str, Sequence[PodPlan]]
) -> tuple[ServicesPlan | None, list[str]]:
    """Cluster IPs, node ports and endpoints of every Service, and what each node advertises;
    with the plan notes (Services without endpoints, target ports no pod has). None when the
    lab has no Service and advertises nothing."""
    bgp = topo.bgp
    if not topo.services and not (
        bgp.service_cluster_ips or bgp.service_external_ips or bgp.service_load_balancer_ips
    ):
        return None, []
    ranges = [n for t in topo.service_ranges() if (n := parse_net(t)) is not None]
    taken = {
        str(a)
        for spec in topo.services.values()
        for t in spec.cluster_ips
        if (a := parse_address(t))
    }
    taken_ports = {p.node_port for s in topo.services.values() for p in s.ports if p.node_port}
    next_host: dict[int, int] = {r.version: FIRST_ALLOCATED for r in ranges}
    next_port = NODE_PORT_RANGE[0]
    pods = [(node, pod) for node, held in pods_of.items() for pod in held]
    notes: list[str] = []
    services = []
    for name, spec in topo.services.items():
        families, _why = service_families(spec, ranges)
        cluster_ips = []
        for family in families:
            given = next((t for t in spec.cluster_ips if (":" in t) == (family == 6)), None)
            if given is not None:
                cluster_ips.append(str(ipaddress.ip_address(given)))
                continue
            net = next(r for r in ranges if r.version == family)
            while True:
                candidate = str(net.network_address + next_host[family])
                next_host[family] += 1
                if candidate not in taken:
                    break
            taken.add(candidate)
            cluster_ips.append(candidate)
        selected = [
            (node, pod)
            for node, pod in pods
            if spec.selector
            and pod.namespace == spec.namespace
            and all(pod.labels.get(k) == v for k, v in spec.selector.items())
        ]
        ports = []
        for port in spec.ports:
            node_port = port.node_port
            if node_port is None and spec.type != "ClusterIP":
                while next_port in taken_ports:
                    next_port += 1
                node_port = next_port
                taken_ports.add(node_port)
            target = port.target_port if port.target_port is not None else port.port
            endpoints = []
            for node, pod in selected:
                number = _target_number(target, port.protocol, pod)
                if number is None:
                    continue
                for family in families:
                    address = pod.address(family)
                    if address is not None:
                        endpoints.append(Endpoint(node, pod.name, address, number))
            ports.append(
                ServicePortPlan(
                    port.name, port.protocol, port.port, str(target), node_port, tuple(endpoints)
                )
            )
            if selected and not endpoints:
                notes.append(
                    f"service {spec.namespace}/{name} port {port.name or port.port}: no "
                    f"selected pod has a {port.protocol} container port named {target!r}, "
                    "so it has no endpoints"
                )
        service = ServicePlan(
            name,
            spec.namespace,
            spec.type,
            tuple(cluster_ips),
            tuple(str(ipaddress.ip_address(a)) for a in spec.external_ips),
            tuple(str(ipaddress.ip_address(a)) for a in spec.load_balancer_ips),
            spec.external_traffic_policy,
            tuple(ports),
        )
        if not any(p.endpoints for p in service.ports):
            notes.append(
                f"service {service.ref} has no endpoints (no pod of namespace "
                f"{spec.namespace} matches its selector "
                f"{_selector_text(spec.selector)}): its probes are expected to fail"
            )
        services.append(service)
    cidrs = {
        key: tuple(str(n) for e in entries if (n := parse_net(e.cidr)) is not None)
        for key, entries in (
            ("cluster", bgp.service_cluster_ips),
            ("external", bgp.service_external_ips),
            ("lb", bgp.service_load_balancer_ips),
        )
    }
    plan = ServicesPlan(
        tuple(services),
        tuple(str(r) for r in ranges),
        cidrs["cluster"],
        cidrs["external"],
        cidrs["lb"],
        {},
    )
    advertised = {node: _advertised(plan, node) for node in pods_of}
    return replace(plan, advertised={n: a for n, a in advertised.items() if a}), notes


def _selector_text(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items()) or "(none: no endpoints)"


def _target_number(target: int | str, protocol: str, pod: PodPlan) -> int | None:
    """A pod's port for a Service's targetPort: a number as it is; a name, the pod's
    container port of that name and protocol (kube-proxy leaves out pods without it)."""
    if isinstance(target, int):
        return target
    found = next((p for p in pod.ports if p.name == target and p.protocol == protocol), None)
    return found.port if found is not None else None


def _within(address: str, cidrs: Sequence[str]) -> bool:
    ip = ipaddress.ip_address(address)
    return (
        any(ip in ipaddress.ip_network(c) for c in cidrs if ":" in c)
        if ip.version == 6
        else (any(ip in ipaddress.ip_network(c) for c in cidrs if ":" not in c))
    )


def _advertised(plan: ServicesPlan, node: str) -> tuple[str, ...]:
    """What `node`'s speaker originates for Services, as confd's route generator decides
    (confd/pkg/backends/calico/routes.go, getAllRoutesForService and advertiseThisService):
    every configured CIDR on every node; a Service's own /32 (/128) cluster IPs (when cluster
    IPs are advertised), external IPs and LoadBalancer addresses within those CIDRs, from the
    nodes with a local endpoint when `externalTrafficPolicy: Local`."""
    out = list(plan.advertised_cidrs())
    for service in plan.services:
        if service.external_traffic_policy != "Local" or node not in service.local_nodes():
            continue
        singles = list(service.cluster_ips) if plan.advertise_cluster else []
        singles += [a for a in service.external_ips if _within(a, plan.advertise_external)]
        singles += [
            a for a in service.load_balancer_ips if _within(a, plan.advertise_load_balancer)
        ]
        out += [f"{a}/{128 if ':' in a else 32}" for a in singles]
    return tuple(dict.fromkeys(out))


def without_service_routes(
    ribs: Mapping[str, tuple[RibEntry, ...]], plan: ServicesPlan | None
) -> Mapping[str, tuple[RibEntry, ...]]:
    """The RIB entries a node's kernel gets routes for: none inside a service CIDR (confd's
    `calico_kernel_programming` filter rejects them; kube-proxy's rules handle the
    addresses on every node). A lab that advertises no Service passes through unchanged."""
    if plan is None or not plan.advertised:
        return ribs
    cidrs = [ipaddress.ip_network(c) for c in plan.advertised_cidrs()]

    def kept(prefix: str) -> bool:
        net = ipaddress.ip_network(prefix)
        return not any(
            net.version == c.version and net.subnet_of(c)  # type: ignore[arg-type]
            for c in cidrs
        )

    return {node: tuple(e for e in held if kept(e.prefix)) for node, held in ribs.items()}
