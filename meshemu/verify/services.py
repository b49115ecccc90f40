"""Service checks (pure): what to probe, and the verdict on what the probes saw.

Owns `service_probes` (from one pod of each node, every Service port on each family's cluster
IP; from the outside host, every LoadBalancer and external address the nodes advertise) and
`check_services`: a port with endpoints must answer, from one of its endpoints; one without
must not (kube-proxy rejects it). From the outside, `externalTrafficPolicy: Local` keeps the
client's address and `Cluster` masquerades it to a node's. No I/O (`verify.services_probe`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from meshemu.model.plan import LabPlan
from meshemu.model.services import ServicePlan, ServicePortPlan
from meshemu.verify.connect import ConnectResult
from meshemu.verify.results import FAIL, PASS, CheckResult


@dataclass(frozen=True)
class ServiceProbe:
    source: str  # "node/pod", or "outside"
    netns: str
    service: ServicePlan
    port: ServicePortPlan
    family: int
    address: str  # the Service address probed
    external: bool  # an address from outside the cluster (LoadBalancer, external IP)


def _advertised(plan: LabPlan, address: str) -> bool:
    services = plan.services
    if services is None:
        return False
    ip = ipaddress.ip_address(address)
    prefixes = {p for held in services.advertised.values() for p in held}
    return any(ip in ipaddress.ip_network(p) for p in prefixes)


def service_probes(plan: LabPlan) -> list[ServiceProbe]:
    if plan.services is None:
        return []
    clients = [(f"{n.name}/{n.pods[0].name}", n.pods[0]) for n in plan.nodes if n.pods]
    out = []
    for service in plan.services.services:
        for port in service.ports:
            for family in service.families():
                address = service.cluster_ip(family)
                assert address is not None
                for source, pod in clients:
                    if pod.address(family) is not None:
                        out.append(
                            ServiceProbe(source, pod.netns, service, port, family, address, False)
                        )
            if plan.outside is None:
                continue
            for address in service.external_addresses():
                family = ipaddress.ip_address(address).version
                if plan.outside.address(family) is not None and _advertised(plan, address):
                    out.append(
                        ServiceProbe(
                            "outside", plan.outside.netns, service, port, family, address, True
                        )
                    )
    return out


def check_services(
    plan: LabPlan, probes: list[ServiceProbe], seen: list[ConnectResult]
) -> list[CheckResult]:
    results = []
    node_addresses = {a for n in plan.nodes for f in (4, 6) if (a := n.address(f))}
    for probe, got in zip(probes, seen, strict=True):
        endpoints = probe.port.endpoints_of(probe.family)
        name = (
            f"service {probe.service.ref} {probe.port.protocol}/{probe.port.port} "
            f"ipv{probe.family} {probe.source} -> {probe.address}"
        )
        owners = {f"{e.node}/{e.pod}" for e in endpoints}
        expected = (
            f"answered by one of {', '.join(sorted(owners))}"
            if endpoints
            else "no answer (no endpoints: kube-proxy rejects it)"
        )
        observed = (
            f"answered by {got.answered_by or '?'} (saw {got.seen_from or '?'})"
            if got.ok
            else ("refused" if got.refused else "no answer")
            + (f": {got.error}" if got.error else "")
        )
        problem = None
        if endpoints and not got.ok:
            problem = "the Service does not answer on this address"
        elif not endpoints and got.ok:
            problem = "a Service without endpoints answered"
        elif endpoints and got.answered_by not in owners:
            problem = f"answered by {got.answered_by}, which is no endpoint of the Service"
        elif probe.external and got.seen_from is not None:
            outside = plan.outside.address(probe.family) if plan.outside else None
            if probe.service.external_traffic_policy == "Local" and got.seen_from != outside:
                problem = f"the client's address {outside} was not kept (Local)"
            if (
                probe.service.external_traffic_policy == "Cluster"
                and got.seen_from not in node_addresses
            ):
                problem = "the client was not masqueraded to a node's address (Cluster)"
        results.append(
            CheckResult(
                "services",
                name,
                FAIL if problem else PASS,
                expected,
                observed,
                problem or "",
                details={
                    "service": probe.service.ref,
                    "family": probe.family,
                    "address": probe.address,
                    "port": probe.port.port,
                    "protocol": probe.port.protocol,
                    "source": probe.source,
                    "result": got.to_json(),
                },
            )
        )
    return results
