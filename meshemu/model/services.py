"""Pods as workloads (namespace, labels, named ports) and Kubernetes Services over them.

Owns the checks Kubernetes makes on the pods a topology lists (names unique in their
namespace, label syntax, container ports) and on Services (names, addresses outside every pool
and node subnet, cluster IPs inside serviceClusterIPRange, IP families, ports and node ports);
the Services' part of the plan (`ServicesPlan`): cluster IPs and node ports allocated, the
endpoints (the pods of the Service's namespace its selector matches, at their target ports),
and what each node's BGP speaker originates for them (decided by `model.phases.services`).
The nftables rules are `model.services_nft`'s. Pure: no kernel, no processes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from meshemu.errors import Problem
from meshemu.model.addressing import IPAddress, IPNetwork
from meshemu.model.rules import _check_labels
from meshemu.model.topology import (
    DNS_LABEL,
    PodSpec,
    ServiceSpec,
    Topology,
    loc_part,
)
from meshemu.model.wire import OneOf, Wire


def check_pods(topo: Topology) -> list[Problem]:
    """What Kubernetes would refuse in the pods of a topology's `pods:` lists."""
    problems: list[Problem] = []
    seen: dict[tuple[str, str], str] = {}  # (namespace, name) -> where
    for node_name, node in topo.nodes.items():
        if isinstance(node.pods, int):
            continue
        on_node: set[str] = set()
        for index, spec in enumerate(node.pods):
            where = f"nodes.{loc_part(node_name)}.pods[{index}]"
            problems += _check_pod(spec, where)
            for name in spec.names():
                if not DNS_LABEL.fullmatch(name):
                    problems.append(
                        Problem(
                            f"{where}.replicas",
                            f"pod name {name!r} (name and replica number) is longer than 63 "
                            "characters",
                            "use a shorter name",
                        )
                    )
                    break
                key = (spec.namespace, name)
                if name in on_node or key in seen:
                    problems.append(
                        Problem(
                            f"{where}.name",
                            f"pod {spec.namespace}/{name} is also "
                            f"{seen.get(key, f'nodes.{loc_part(node_name)}')}",
                            "a pod's name is unique in its namespace, and on its node (it names "
                            "the pod's network namespace)",
                        )
                    )
                    break
                on_node.add(name)
                seen[key] = where
    return problems


def _check_pod(spec: PodSpec, where: str) -> list[Problem]:
    problems = _check_labels(spec.labels, f"{where}.labels")
    names: set[str] = set()
    ports: set[tuple[int, str]] = set()
    for index, port in enumerate(spec.ports):
        at = f"{where}.ports[{index}]"
        if port.name is not None:
            if port.name in names:
                problems.append(Problem(f"{at}.name", f"port name {port.name!r} is used twice", ""))
            names.add(port.name)
        if (port.port, port.protocol) in ports:
            problems.append(
                Problem(
                    f"{at}.port",
                    f"{port.port}/{port.protocol} is listed twice",
                    "list each port and protocol once",
                )
            )
        ports.add((port.port, port.protocol))
    return problems


# --------------------------------------------------------------------------------------------
# Services: the plan's part, its checks and its resolution.

# A Service's name is a DNS-1035 label (starts with a letter): apimachinery ValidateServiceName.
SERVICE_NAME = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?\Z")
FAMILY_NAMES = {4: "IPv4", 6: "IPv6"}
# The first addresses of a range: .1 is the `kubernetes` Service, .10 conventionally DNS;
# meshemu hands out the rest in Service order from here (Kubernetes picks at random).
FIRST_ALLOCATED = 20


@dataclass(frozen=True)
class Endpoint(Wire):
    """A ready endpoint of a Service port: a selected pod's address and its target port."""

    node: str
    pod: str
    address: str
    port: int


@dataclass(frozen=True)
class ServicePortPlan(Wire):
    name: str | None
    protocol: Annotated[str, OneOf("TCP", "UDP")]
    port: int
    target: str  # targetPort as written: a number or a container port name
    node_port: int | None
    endpoints: tuple[Endpoint, ...]  # both families; a family's are those of its addresses

    def endpoints_of(self, family: int) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if (":" in e.address) == (family == 6))


@dataclass(frozen=True)
class ServicePlan(Wire):
    name: str
    namespace: str
    type: Annotated[str, OneOf("ClusterIP", "NodePort", "LoadBalancer")]
    cluster_ips: tuple[str, ...]  # one per family, the primary first
    external_ips: tuple[str, ...]
    load_balancer_ips: tuple[str, ...]
    external_traffic_policy: Annotated[str, OneOf("Cluster", "Local")]
    ports: tuple[ServicePortPlan, ...]

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def families(self) -> tuple[int, ...]:
        return tuple(ipaddress.ip_address(a).version for a in self.cluster_ips)

    def cluster_ip(self, family: int) -> str | None:
        return next((a for a in self.cluster_ips if (":" in a) == (family == 6)), None)

    def external_addresses(self) -> tuple[str, ...]:
        """Addresses clients outside the cluster use (externalIPs, LoadBalancer ingress)."""
        return self.external_ips + self.load_balancer_ips

    def local_nodes(self) -> tuple[str, ...]:
        return tuple(sorted({e.node for p in self.ports for e in p.endpoints}))


@dataclass(frozen=True)
class ServicesPlan(Wire):
    """The lab's Services with their endpoints, and what each node advertises of them."""

    services: tuple[ServicePlan, ...]
    cluster_ip_ranges: tuple[str, ...]
    # BGPConfiguration serviceClusterIPs / serviceExternalIPs / serviceLoadBalancerIPs.
    advertise_cluster: tuple[str, ...]
    advertise_external: tuple[str, ...]
    advertise_load_balancer: tuple[str, ...]
    # node -> the prefixes its BGP speaker originates for Services (confd's static routes).
    advertised: dict[str, tuple[str, ...]]

    def advertised_cidrs(self) -> tuple[str, ...]:
        """Every configured service CIDR: no node programs a BGP route inside one into its
        kernel (confd's `calico_kernel_programming` rejects /rejectcidrs)."""
        return self.advertise_cluster + self.advertise_external + self.advertise_load_balancer


def check_services(topo: Topology) -> list[Problem]:
    """What Kubernetes or Calico would refuse in `services:` and the service CIDRs; exit 2."""
    problems: list[Problem] = []
    pools = [(f"pools.{n}", parse_net(p.cidr)) for n, p in topo.pools.items()]
    subnets = [
        (f"subnets.{n}", net)
        for n, s in topo.subnets.items()
        for net in (s.ipv4, s.ipv6)
        if net is not None
    ]
    taken = [(w, n) for w, n in pools + subnets if n is not None]
    ranges: list[IPNetwork] = []
    seen_families: set[int] = set()
    for index, text in enumerate(topo.service_ranges()):
        where = f"serviceClusterIPRange[{index}]"
        net = parse_net(text)
        if net is None:
            problems.append(Problem(where, f"{text!r} is not a CIDR", "like 10.96.0.0/12"))
            continue
        if net.version in seen_families:
            problems.append(Problem(where, f"a second IPv{net.version} range", "one per family"))
        seen_families.add(net.version)
        # The default range matters only to a lab with Services; one written is checked.
        if topo.services or topo.service_cluster_ip_range:
            problems += _clash(where, net, taken, "a service cluster IP range")
        ranges.append(net)
    for key, entries in (
        ("serviceClusterIPs", topo.bgp.service_cluster_ips),
        ("serviceExternalIPs", topo.bgp.service_external_ips),
        ("serviceLoadBalancerIPs", topo.bgp.service_load_balancer_ips),
    ):
        for index, entry in enumerate(entries):
            where = f"bgp.{key}[{index}].cidr"
            net = parse_net(entry.cidr)
            if net is None:
                problems.append(Problem(where, f"{entry.cidr!r} is not a CIDR", ""))
            else:
                problems += _clash(where, net, taken, "a service CIDR")
    node_ports: dict[int, str] = {}
    for name, spec in topo.services.items():
        where = f"services.{loc_part(name)}"
        if not SERVICE_NAME.fullmatch(name):
            problems.append(
                Problem(
                    where,
                    f"{name!r} is not a Service name",
                    "a DNS-1035 label: lower-case letters, digits and '-', starting with a letter",
                )
            )
        problems += _check_labels(spec.selector, f"{where}.selector")
        for index, text in enumerate(spec.cluster_ips):
            at = f"{where}.clusterIPs[{index}]"
            address = parse_address(text)
            if address is None:
                problems.append(Problem(at, f"{text!r} is not an IP address", ""))
                continue
            problems += _clash(at, address, taken, "a Service address")
            if not any(address in r for r in ranges if r.version == address.version):
                problems.append(
                    Problem(
                        at,
                        f"{address} is not in the service cluster IP range "
                        f"({', '.join(map(str, ranges)) or 'none'})",
                        "pick an address inside serviceClusterIPRange, or leave clusterIPs "
                        "out to have one allocated",
                    )
                )
        for key, texts in (
            ("externalIPs", spec.external_ips),
            ("loadBalancerIPs", spec.load_balancer_ips),
        ):
            for index, text in enumerate(texts):
                at = f"{where}.{key}[{index}]"
                address = parse_address(text)
                if address is None:
                    problems.append(Problem(at, f"{text!r} is not an IP address", ""))
                    continue
                problems += _clash(at, address, taken, "a Service address")
        if spec.load_balancer_ips and spec.type != "LoadBalancer":
            problems.append(
                Problem(f"{where}.loadBalancerIPs", "only a LoadBalancer Service has them", "")
            )
        if spec.external_traffic_policy == "Local" and not (
            spec.type != "ClusterIP" or spec.external_ips
        ):
            problems.append(
                Problem(
                    f"{where}.externalTrafficPolicy",
                    "externalTrafficPolicy applies to NodePort and LoadBalancer Services and "
                    "externalIPs (Kubernetes refuses Local on a plain ClusterIP Service)",
                    "use type NodePort or LoadBalancer, or drop externalTrafficPolicy",
                )
            )
        families, why = service_families(spec, ranges)
        if why is not None:
            problems.append(Problem(f"{where}.ipFamilyPolicy", why[0], why[1]))
        seen: set[tuple[int, str]] = set()
        names: set[str] = set()
        for index, port in enumerate(spec.ports):
            at = f"{where}.ports[{index}]"
            if len(spec.ports) > 1 and port.name is None:
                problems.append(
                    Problem(f"{at}.name", "a Service with several ports names each", "")
                )
            if port.name is not None and port.name in names:
                problems.append(Problem(f"{at}.name", f"{port.name!r} is used twice", ""))
            names.add(port.name or "")
            if (port.port, port.protocol) in seen:
                problems.append(Problem(f"{at}.port", f"{port.port}/{port.protocol} twice", ""))
            seen.add((port.port, port.protocol))
            if port.node_port is not None:
                if spec.type == "ClusterIP":
                    problems.append(
                        Problem(f"{at}.nodePort", "a ClusterIP Service has no node port", "")
                    )
                elif port.node_port in node_ports:
                    problems.append(
                        Problem(
                            f"{at}.nodePort",
                            f"{port.node_port} is also {node_ports[port.node_port]}",
                            "each node port belongs to one Service port",
                        )
                    )
                node_ports[port.node_port] = at
        del families
    return problems


def parse_net(text: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        return None


def parse_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _clash(
    where: str,
    item: IPNetwork | IPAddress,
    taken: list[tuple[str, IPNetwork]],
    what: str,
) -> list[Problem]:
    out = []
    for owner, net in taken:
        if net.version != item.version:
            continue
        inside = (
            item in net
            if not isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network)
            else net.overlaps(item)
        )
        if inside:
            kind = "IP pool" if owner.startswith("pools.") else "node subnet"
            out.append(
                Problem(
                    where,
                    f"{item} is {what} inside {owner} ({net}), an {kind}",
                    "Kubernetes and Calico refuse service addresses that pods or nodes use: "
                    "take them from a range of their own, like 10.96.0.0/12 and "
                    "fd00:10:96::/112",
                )
            )
    return out


def service_families(
    spec: ServiceSpec, ranges: Sequence[IPNetwork]
) -> tuple[list[int], tuple[str, str] | None]:
    """The Service's IP families in order, as the apiserver decides them, or why not."""
    have: list[int] = [r.version for r in ranges]
    given: list[int] = [a.version for t in spec.cluster_ips if (a := parse_address(t)) is not None]
    asked: list[int] = given or [4 if f == "IPv4" else 6 for f in spec.ip_families] or have[:1]
    if len(set(asked)) != len(asked):
        return [], ("the same family twice", "one cluster IP per family")
    if spec.ip_family_policy == "SingleStack":
        if len(asked) > 1:
            return [], (
                "two families but ipFamilyPolicy SingleStack",
                "use PreferDualStack or RequireDualStack",
            )
        families = asked
    else:
        families = asked + [f for f in have if f not in asked]
        if spec.ip_family_policy == "RequireDualStack" and len(families) < 2:
            return [], (
                "RequireDualStack, but serviceClusterIPRange has only one family",
                "add a range of the other family, or use PreferDualStack",
            )
    missing = [f for f in families if f not in have]
    if missing:
        return [], (
            f"no IPv{missing[0]} range in serviceClusterIPRange for this Service",
            "add one, or ask for another family",
        )
    return families[:2], None
