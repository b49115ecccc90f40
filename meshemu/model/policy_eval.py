"""What Felix does with a packet between two pods, and the expected verdict matrix (pure).

Owns the workload endpoints as Felix sees them (a pod's labels plus the ones Calico adds:
`projectcalico.org/namespace`, `projectcalico.org/orchestrator: k8s`, the default service
account, and its namespace's labels as `pcns.<key>` with `pcns.projectcalico.org/name`,
libcalico-go k8s/conversion), and the verdict of a packet, computed the way Felix's chains
decide it (felix/rules/endpoints.go endpointIptablesChain, felix/rules/policy.go):
- a packet from pod A to pod B passes A's egress chain and B's ingress chain (the FORWARD
  chain dispatches both, static.go StaticFilterForwardChains);
- in each, the policies of the default tier that select the endpoint and govern that direction
  run in Felix's order; a rule matches when every field holds; Log logs and goes on; Allow
  accepts for this direction; Deny drops; Pass leaves the tier for the profile;
- no rule matching in any policy: dropped at the end of the tier; no policy at all, or a Pass:
  the namespace's profile (`kns.<ns>`), which allows everything;
- replies of an allowed connection are accepted by conntrack (RELATED,ESTABLISHED) first.
Probes: ICMP echo (type 8 / 128), TCP and UDP to a port. A rule's source ports are compared
with the probe's source port, which is ephemeral: a positive source-port match never holds,
a negative one always (documented in docs/policy.md).
No I/O here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from meshemu.model.labplan import LabPlan, NodePlan, PodPlan
from meshemu.model.policy import (
    ICMP_OF,
    LABEL_NAME,
    LABEL_NAMESPACE,
    LABEL_ORCHESTRATOR,
    LABEL_SERVICE_ACCOUNT,
    NAMESPACE_PREFIX,
    PROTOCOL_NAMES,
    PROTOCOLS,
    Entity,
    Policy,
    PolicyPlan,
    Rule,
)
from meshemu.model.selector import Selector, parse_selector

DIRECTIONS = ("ingress", "egress")
TCP, UDP = PROTOCOLS["tcp"], PROTOCOLS["udp"]
ECHO_REQUEST = {4: 8, 6: 128}


@lru_cache(maxsize=4096)
def _parsed(text: str) -> Selector:
    return parse_selector(text)


@dataclass(frozen=True)
class Endpoint:
    """A pod as Felix's workload endpoint: where it is, its addresses, its labels as selectors
    see them, and its named ports (name, protocol number, port)."""

    ref: str  # node/pod
    node: str
    ifname: str  # the host side of its veth (cali...)
    namespace: str
    labels: Mapping[str, str]
    ipv4: str | None
    ipv6: str | None
    ports: tuple[tuple[str, int, int], ...]

    def address(self, family: int) -> str | None:
        return self.ipv4 if family == 4 else self.ipv6

    def named_port(self, name: str, protocol: int) -> int | None:
        return next((p for n, proto, p in self.ports if n == name and proto == protocol), None)


def endpoint_labels(pod: PodPlan, namespace_labels: Mapping[str, str]) -> dict[str, str]:
    labels = dict(pod.labels)
    namespace = pod.namespace
    labels.update(
        {
            LABEL_NAMESPACE: namespace,
            LABEL_ORCHESTRATOR: "k8s",
            LABEL_SERVICE_ACCOUNT: "default",
            NAMESPACE_PREFIX + LABEL_NAME: namespace,
        }
    )
    labels.update({NAMESPACE_PREFIX + k: v for k, v in namespace_labels.items()})
    return labels


def endpoint_of(node: NodePlan, pod: PodPlan, policy: PolicyPlan) -> Endpoint:
    namespace = pod.namespace
    return Endpoint(
        ref=f"{node.name}/{pod.name}",
        node=node.name,
        ifname=pod.host_ifname,
        namespace=namespace,
        labels=endpoint_labels(pod, policy.namespace_labels(namespace)),
        ipv4=pod.ipv4,
        ipv6=pod.ipv6,
        ports=tuple((p.name, PROTOCOLS[p.protocol.lower()], p.port) for p in pod.ports if p.name),
    )


def endpoints_of(plan: LabPlan, policy: PolicyPlan) -> list[Endpoint]:
    return [endpoint_of(node, pod, policy) for node in plan.nodes for pod in node.pods]


@dataclass(frozen=True)
class Packet:
    family: int
    protocol: int
    port: int | None = None  # TCP/UDP destination port
    icmp_type: int | None = None
    icmp_code: int | None = None

    def text(self) -> str:
        if self.protocol in (TCP, UDP):
            return f"{PROTOCOL_NAMES[self.protocol].upper()} {self.port}"
        if self.icmp_type is not None:
            return f"ICMP{'v6' if self.family == 6 else ''} type {self.icmp_type}"
        return PROTOCOL_NAMES.get(self.protocol, str(self.protocol))


def echo(family: int) -> Packet:
    return Packet(family, ICMP_OF[family], icmp_type=ECHO_REQUEST[family], icmp_code=0)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def _in_nets(ip: str, nets: Iterable[str]) -> bool:
    address = ipaddress.ip_address(ip)
    return any(
        address in net
        for net in (ipaddress.ip_network(n) for n in nets)
        if net.version == address.version
    )


def family_nets(nets: tuple[str, ...], family: int) -> tuple[str, ...] | None:
    """Felix's filterNets: the family's nets; None when every net was of the other family
    (the rule is left out of this family's chains)."""
    if not nets:
        return ()
    mine = tuple(n for n in nets if ipaddress.ip_network(n).version == family)
    return mine or None


def rule_in_family(rule: Rule, family: int) -> bool:
    """FilterRuleToIPVersion: a rule for the other IP version, or whose nets are all of the
    other family, or that negates a catch-all net, is not rendered for `family`."""
    if rule.ip_version is not None and rule.ip_version != family:
        return False
    catch_all = "0.0.0.0/0" if family == 4 else "::/0"
    for entity in (rule.source, rule.destination):
        if family_nets(entity.nets, family) is None:
            return False
        if family_nets(entity.not_nets, family) is None:
            return False
        if catch_all in entity.not_nets:
            return False
    return True


class Verdicts:
    """The policies of one lab against its endpoints: which policies each endpoint has per
    direction (in Felix's order), and the decision for a packet between two endpoints."""

    def __init__(self, policy: PolicyPlan, endpoints: list[Endpoint]) -> None:
        self.policy = policy
        self.endpoints = endpoints
        self.by_ref = {e.ref: e for e in endpoints}
        self.by_ip = {ip: e for e in endpoints for ip in (e.ipv4, e.ipv6) if ip}
        self._selected: dict[str, frozenset[str]] = {}
        self.applied: dict[tuple[str, str], tuple[Policy, ...]] = {
            (e.ref, d): tuple(
                p for p in policy.policies if p.governs(d) and e.ref in self.selected(p.selector)
            )
            for e in endpoints
            for d in DIRECTIONS
        }

    def selected(self, selector: str) -> frozenset[str]:
        """The refs of the endpoints `selector` matches (cached per selector text)."""
        found = self._selected.get(selector)
        if found is None:
            parsed = _parsed(selector)
            found = frozenset(e.ref for e in self.endpoints if parsed.matches(e.labels))
            self._selected[selector] = found
        return found

    def _entity_matches(
        self, entity: Entity, ip: str, ep: Endpoint | None, port: int | None, proto: int
    ) -> bool:
        family = ipaddress.ip_address(ip).version
        nets = family_nets(entity.nets, family) or ()
        if nets and not _in_nets(ip, nets):
            return False
        if entity.not_nets and _in_nets(ip, entity.not_nets):
            return False
        if entity.selector is not None and (
            ep is None or ep.ref not in self.selected(entity.selector)
        ):
            return False
        if (
            entity.not_selector is not None
            and ep is not None
            and ep.ref in self.selected(entity.not_selector)
        ):
            return False
        if entity.has_ports and not self._port_in(
            entity.ports, entity.named_ports, ep, port, proto
        ):
            return False
        negated = entity.not_ports or entity.not_named_ports
        return not (
            negated and self._port_in(entity.not_ports, entity.not_named_ports, ep, port, proto)
        )

    @staticmethod
    def _port_in(
        ranges: Iterable[object],
        names: Iterable[str],
        ep: Endpoint | None,
        port: int | None,
        proto: int,
    ) -> bool:
        if port is None:
            return False
        if any(port in r for r in ranges):  # type: ignore[operator]
            return True
        return ep is not None and any(ep.named_port(n, proto) == port for n in names)

    def rule_matches(
        self,
        rule: Rule,
        pkt: Packet,
        src_ip: str,
        src: Endpoint | None,
        dst_ip: str,
        dst: Endpoint | None,
    ) -> bool:
        if not rule_in_family(rule, pkt.family):
            return False
        if rule.protocol is not None and rule.protocol != pkt.protocol:
            return False
        if rule.not_protocol is not None and rule.not_protocol == pkt.protocol:
            return False
        if rule.icmp_type is not None:
            if pkt.protocol != ICMP_OF[pkt.family] or pkt.icmp_type != rule.icmp_type:
                return False
            if rule.icmp_code is not None and pkt.icmp_code != rule.icmp_code:
                return False
        if (
            rule.not_icmp_type is not None
            and pkt.icmp_type == rule.not_icmp_type
            and rule.not_icmp_code in (None, pkt.icmp_code)
        ):
            return False
        # (The probe's source port is ephemeral: no source-port range is taken to hold.)
        if not self._entity_matches(rule.source, src_ip, src, None, pkt.protocol):
            return False
        return self._entity_matches(rule.destination, dst_ip, dst, pkt.port, pkt.protocol)

    def direction(
        self,
        ep: Endpoint,
        direction: str,
        pkt: Packet,
        src_ip: str,
        src: Endpoint | None,
        dst_ip: str,
        dst: Endpoint | None,
    ) -> Decision:
        """One endpoint chain (`cali-tw-` for ingress, `cali-fw-` for egress)."""
        policies = self.applied[(ep.ref, direction)]
        profile = f"profile kns.{ep.namespace} allows"
        if not policies:
            return Decision(True, f"no policy selects {ep.ref} for {direction}: {profile}")
        for pol in policies:
            for index, rule in enumerate(pol.rules(direction)):
                if not self.rule_matches(rule, pkt, src_ip, src, dst_ip, dst):
                    continue
                where = f"{pol.ident} {direction} rule {index + 1}"
                if rule.action == "Allow":
                    return Decision(True, f"allowed by {where}")
                if rule.action == "Deny":
                    return Decision(False, f"denied by {where}")
                if rule.action == "Pass":
                    return Decision(True, f"passed by {where}: {profile}")
        names = ", ".join(p.ident for p in policies)
        return Decision(
            False, f"{ep.ref} {direction}: no rule of {names} matches (end of tier: drop)"
        )

    def decide(self, src: Endpoint, dst: Endpoint, pkt: Packet) -> Decision:
        """A new connection from `src` to `dst`: egress of the one, then ingress of the other."""
        src_ip, dst_ip = src.address(pkt.family), dst.address(pkt.family)
        assert src_ip is not None and dst_ip is not None
        out = self.direction(src, "egress", pkt, src_ip, src, dst_ip, dst)
        if not out.allowed:
            return out
        into = self.direction(dst, "ingress", pkt, src_ip, src, dst_ip, dst)
        if not into.allowed:
            return into
        return Decision(True, f"{out.reason}; {into.reason}")


@dataclass(frozen=True)
class ExpectedCell:
    """One probe of the policy matrix with the plan's verdict."""

    source: str  # node/pod
    target: str
    family: int
    source_ip: str
    target_ip: str
    packet: Packet
    allowed: bool
    reason: str

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.source, self.target, self.family, self.packet.text())


def probes_to(dst: Endpoint, family: int, pod: PodPlan) -> list[Packet]:
    """What the matrix sends to a pod: an echo, and every port it declares."""
    packets = [echo(family)]
    for port in pod.ports:
        packets.append(Packet(family, PROTOCOLS[port.protocol.lower()], port.port))
    return packets


def expected_matrix(plan: LabPlan, policy: PolicyPlan) -> list[ExpectedCell]:
    """Every pod to every other pod, per family both have, for an echo and each declared port
    of the target: allowed or denied, and why."""
    verdicts = Verdicts(policy, endpoints_of(plan, policy))
    pods = [(f"{n.name}/{p.name}", p) for n in plan.nodes for p in n.pods]
    cells = []
    for src_ref, _src_pod in pods:
        src = verdicts.by_ref[src_ref]
        for dst_ref, dst_pod in pods:
            if dst_ref == src_ref:
                continue
            dst = verdicts.by_ref[dst_ref]
            for family in (4, 6):
                src_ip, dst_ip = src.address(family), dst.address(family)
                if not src_ip or not dst_ip:
                    continue
                for pkt in probes_to(dst, family, dst_pod):
                    decision = verdicts.decide(src, dst, pkt)
                    cells.append(
                        ExpectedCell(
                            src_ref,
                            dst_ref,
                            family,
                            src_ip,
                            dst_ip,
                            pkt,
                            decision.allowed,
                            decision.reason,
                        )
                    )
    return cells
