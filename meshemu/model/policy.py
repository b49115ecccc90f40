"""Network policy, checked and converted into the one form Felix enforces (pure).

Owns turning a topology's `policies:` (Kubernetes NetworkPolicy, Calico NetworkPolicy and
GlobalNetworkPolicy, `model.policy_resources`) and `namespaces:` into the plan's `PolicyPlan`,
the way Calico's own pipeline does it:
- kube-controllers / libcalico-go convert a Kubernetes NetworkPolicy into a Calico
  NetworkPolicy named `knp.default.<name>` with order 1000, selector
  `projectcalico.org/orchestrator == 'k8s' && <podSelector>`, one Allow rule per protocol and
  peer, TCP when a port names no protocol, `all()` for an empty namespaceSelector, ipBlock as
  nets/notNets, and types Ingress unless policyTypes says otherwise
  (libcalico-go/lib/backend/k8s/conversion/conversion.go K8sNetworkPolicyToCalico,
  k8sSelectorToCalico, k8sRuleToCalico, k8sPeerToCalicoFields; kube-controllers/pkg/converter/
  networkpolicy_converter.go for the `knp.default.` prefix);
- a Calico policy without `types` gets Ingress, Egress, or both by the rules it has
  (api/pkg/defaults/networkpolicy.go defaultPolicyTypesField);
- the syncer's update processors give every selector its namespace: a namespaced policy's
  selector and its rules' selectors are limited to its namespace unless a rule names a
  namespaceSelector, whose label keys get the `pcns.` prefix, with `all()` meaning any
  namespace and `global()` none (libcalico-go/lib/backend/syncersv1/updateprocessors/
  rules.go getEndpointSelector, networkpolicyprocessor.go, globalnetworkpolicyprocessor.go,
  selectors.go parseSelectorAttachPrefix; pcns./projectcalico.org/name in
  k8s/conversion/constants.go and conversion.go NamespaceToProfile).
Bad input (a selector Calico's parser refuses, a port out of range, a rule Calico's validator
refuses) is a located `Problem` (exit 2); a namespace or a named port that no pod has is a
warning, kept as a plan note. Evaluating policy (`model.policy_eval`) and rendering nftables
(`model.policy_nft`) live beside it. No I/O here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from meshemu.errors import Problem
from meshemu.model.policy_resources import (
    CalicoNetworkPolicy,
    CalicoPolicySpec,
    CalicoRule,
    EntityRule,
    GlobalNetworkPolicy,
    K8sNetworkPolicy,
    K8sPeer,
    K8sPort,
    LabelSelector,
    PolicyObject,
    check_label_key,
    policy_model,
)
from meshemu.model.rules import _check_selector
from meshemu.model.selector import (
    And,
    CompareOp,
    HasLabel,
    LabelCompare,
    LabelInSet,
    MatchAll,
    MatchGlobal,
    Not,
    Or,
    Selector,
    parse_selector,
)
from meshemu.model.topology import problems_from_validation
from meshemu.model.wire import Wire

# Labels Calico gives every Kubernetes workload endpoint, and the prefix of the labels it
# inherits from its namespace's profile (conversion/constants.go, api .../v3/constants.go).
LABEL_NAMESPACE = "projectcalico.org/namespace"
LABEL_ORCHESTRATOR = "projectcalico.org/orchestrator"
LABEL_SERVICE_ACCOUNT = "projectcalico.org/serviceaccount"
LABEL_NAME = "projectcalico.org/name"
NAMESPACE_PREFIX = "pcns."
# The label the API server puts on every namespace (Kubernetes 1.21+).
K8S_NAMESPACE_NAME = "kubernetes.io/metadata.name"
KNP_PREFIX = "knp.default."
KNP_ORDER = 1000.0

# Calico's protocol names (numorstring.Protocol) and their numbers.
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132, "udplite": 136}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}
PORT_PROTOCOLS = (6, 17, 132)  # what `ports` need (Calico's validator: TCP, UDP or SCTP)
ICMP_OF = {4: 1, 6: 58}


@dataclass(frozen=True)
class PortRange(Wire):
    low: int
    high: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def text(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


@dataclass(frozen=True)
class Entity(Wire):
    """A rule's source or destination, as Felix matches it: every given field must hold.

    `selector` / `not_selector` are Calico's final selectors (namespace included); None
    matches any address. Ports are numeric ranges and named ports (a named port matches an
    endpoint that declares that name for the packet's protocol)."""

    nets: tuple[str, ...] = ()
    not_nets: tuple[str, ...] = ()
    selector: str | None = None
    not_selector: str | None = None
    ports: tuple[PortRange, ...] = ()
    named_ports: tuple[str, ...] = ()
    not_ports: tuple[PortRange, ...] = ()
    not_named_ports: tuple[str, ...] = ()

    @property
    def has_ports(self) -> bool:
        return bool(self.ports or self.named_ports)


@dataclass(frozen=True)
class Rule(Wire):
    action: str  # Allow | Deny | Log | Pass
    ip_version: int | None = None
    protocol: int | None = None
    not_protocol: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    not_icmp_type: int | None = None
    not_icmp_code: int | None = None
    source: Entity = field(default_factory=Entity)
    destination: Entity = field(default_factory=Entity)


@dataclass(frozen=True)
class Policy(Wire):
    """One policy in Calico's form, as Felix receives it.

    `kind`: KubernetesNetworkPolicy (converted by kube-controllers), NetworkPolicy or
    GlobalNetworkPolicy. `order` None sorts last (Felix: +Inf). `source` says where the user
    wrote it (`policies[2]`, a bundle document)."""

    name: str
    namespace: str | None
    kind: str
    order: float | None
    selector: str
    types: tuple[str, ...]
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]
    source: str

    @property
    def ident(self) -> str:
        return self.name if self.namespace is None else f"{self.namespace}/{self.name}"

    def sort_key(self) -> tuple[float, str]:
        # Felix's PolKVLess (felix/calc/policy_sorter.go): order, then name/namespace/kind.
        order = float("inf") if self.order is None else self.order
        return (order, f"{self.name}/{self.namespace or ''}/{self.kind}")

    def rules(self, direction: str) -> tuple[Rule, ...]:
        return self.ingress if direction == "ingress" else self.egress

    def governs(self, direction: str) -> bool:
        return direction.capitalize() in self.types


@dataclass(frozen=True)
class NamespacePlan(Wire):
    name: str
    labels: dict[str, str]


@dataclass(frozen=True)
class PolicyPlan(Wire):
    """The lab's policies in Felix's order, and the labels of its namespaces."""

    policies: tuple[Policy, ...]
    namespaces: tuple[NamespacePlan, ...]

    def namespace_labels(self, name: str) -> dict[str, str]:
        for ns in self.namespaces:
            if ns.name == name:
                return ns.labels
        return {K8S_NAMESPACE_NAME: name}


# --------------------------------------------------------------------------------------------
# Selectors.


def with_prefix(selector: Selector, prefix: str) -> Selector:
    """Every label key of `selector` with `prefix` (Calico's parser.PrefixVisitor)."""
    match selector:
        case HasLabel(key):
            return HasLabel(prefix + key)
        case LabelCompare(key, op, value):
            return LabelCompare(prefix + key, op, value)
        case LabelInSet(key, values, negated):
            return LabelInSet(prefix + key, values, negated)
        case Not(operand):
            return Not(with_prefix(operand, prefix))
        case And(operands):
            return And(tuple(with_prefix(o, prefix) for o in operands))
        case Or(operands):
            return Or(tuple(with_prefix(o, prefix) for o in operands))
    return selector


def _namespace_all(selector: Selector) -> Selector:
    """In a namespace selector `all()` is any namespace and `global()` no namespace
    (rules.go: the text replacements after prefixing)."""
    match selector:
        case MatchAll():
            return HasLabel(LABEL_NAMESPACE)
        case MatchGlobal():
            return Not(HasLabel(LABEL_NAMESPACE))
        case Not(operand):
            return Not(_namespace_all(operand))
        case And(operands):
            return And(tuple(_namespace_all(o) for o in operands))
        case Or(operands):
            return Or(tuple(_namespace_all(o) for o in operands))
    return selector


def namespace_selector(text: str) -> Selector:
    return _namespace_all(with_prefix(parse_selector(text), NAMESPACE_PREFIX))


def _and(*parts: Selector | None) -> Selector | None:
    given = [p for p in parts if p is not None]
    if not given:
        return None
    return given[0] if len(given) == 1 else And(tuple(given))


def _in_namespace(ns: str) -> Selector:
    return LabelCompare(LABEL_NAMESPACE, CompareOp.EQ, ns)


def entity_selector(
    selector: str | None, namespace_sel: str | None, not_selector: str | None, ns: str | None
) -> str | None:
    """Calico's getEndpointSelector (updateprocessors/rules.go): the rule's selector limited
    to the namespaces it may match; None when the rule matches any address."""
    if namespace_sel:
        ns_part: Selector | None = namespace_selector(namespace_sel)
    elif ns is not None:
        ns_part = _in_namespace(ns)
    else:
        ns_part = None
    own = parse_selector(selector) if selector else None
    if ns_part is not None and (own is not None or not_selector or namespace_sel):
        combined = _and(ns_part, own)
    else:
        combined = own
    return None if combined is None else str(combined)


# --------------------------------------------------------------------------------------------
# Kubernetes NetworkPolicy -> Calico (conversion.go).


def k8s_selector(sel: LabelSelector | None, pod: bool) -> str:
    """k8sSelectorToCalico: pod selectors also require the k8s orchestrator label; an empty
    namespace selector is `all()`; a missing one is ""."""
    parts = [f"{LABEL_ORCHESTRATOR} == 'k8s'"] if pod else []
    if sel is None:
        return " && ".join(parts)
    if not pod and not sel.match_labels and not sel.match_expressions:
        return "all()"
    parts += [f"{k} == '{sel.match_labels[k]}'" for k in sorted(sel.match_labels)]
    for expr in sel.match_expressions:
        values = "', '".join(expr.values)
        parts.append(
            {
                "In": f"{expr.key} in {{ '{values}' }}",
                "NotIn": f"{expr.key} not in {{ '{values}' }}",
                "Exists": f"has({expr.key})",
                "DoesNotExist": f"! has({expr.key})",
            }[expr.operator]
        )
    return " && ".join(parts)


def _k8s_ports(ports: Sequence[K8sPort]) -> list[tuple[int | None, Entity]]:
    """(protocol, destination ports) per rule to make: one per protocol, all ports together;
    no ports (or a port entry with no port) means that protocol's every port; none at all,
    every protocol (k8sRuleToCalico)."""
    if not ports:
        return [(None, Entity())]
    by_protocol: dict[int, list[PortRange | str] | None] = {}
    for port in ports:
        proto = PROTOCOLS[port.protocol.lower()]
        if port.port is None:
            by_protocol[proto] = None
            continue
        have = by_protocol.setdefault(proto, [])
        if have is None:
            continue  # (every port of the protocol already)
        if isinstance(port.port, str):
            have.append(port.port)
        else:
            have.append(PortRange(port.port, port.end_port or port.port))
    out: list[tuple[int | None, Entity]] = []
    for proto in sorted(by_protocol, key=lambda p: PROTOCOL_NAMES[p].upper()):
        given = by_protocol[proto] or []
        out.append(
            (
                proto,
                Entity(
                    ports=merge_ranges(p for p in given if isinstance(p, PortRange)),
                    named_ports=tuple(p for p in given if isinstance(p, str)),
                ),
            )
        )
    return out


def _k8s_peer(peer: K8sPeer | None, ns: str) -> Entity:
    """k8sPeerToCalicoFields, then getEndpointSelector for the policy's namespace."""
    if peer is None:
        return Entity()
    if peer.ip_block is not None:
        return Entity(
            nets=(_net_text(peer.ip_block.cidr),),
            not_nets=tuple(_net_text(e) for e in peer.ip_block.except_),
        )
    ns_sel = k8s_selector(peer.namespace_selector, pod=False) if peer.namespace_selector else ""
    return Entity(
        selector=entity_selector(k8s_selector(peer.pod_selector, pod=True), ns_sel, None, ns)
    )


def _peers(peers: list[K8sPeer]) -> list[K8sPeer | None]:
    """No peers: one rule for any peer."""
    return [*peers] if peers else [None]


def convert_k8s(obj: K8sNetworkPolicy, source: str) -> Policy:
    ns = obj.metadata.namespace
    spec = obj.spec
    ingress = [
        Rule(
            "Allow",
            protocol=proto,
            source=_k8s_peer(peer, ns),
            destination=ports,
        )
        for rule in spec.ingress
        for proto, ports in _k8s_ports(rule.ports)
        for peer in _peers(rule.from_)
    ]
    egress = [
        Rule(
            "Allow",
            protocol=proto,
            destination=replace(
                _k8s_peer(peer, ns), ports=ports.ports, named_ports=ports.named_ports
            ),
        )
        for rule in spec.egress
        for proto, ports in _k8s_ports(rule.ports)
        for peer in _peers(rule.to)
    ]
    declared = spec.policy_types or []
    types = tuple(t for t in ("Ingress", "Egress") if t in declared) or ("Ingress",)
    selector = _and(parse_selector(k8s_selector(spec.pod_selector, pod=True)), _in_namespace(ns))
    return Policy(
        name=KNP_PREFIX + obj.metadata.name,
        namespace=ns,
        kind="KubernetesNetworkPolicy",
        order=KNP_ORDER,
        selector=str(selector),
        types=types,
        # (Egress rules of a policy whose types lack Egress are kept, as Calico keeps them;
        # they apply to nothing.)
        ingress=tuple(ingress),
        egress=tuple(egress),
        source=source,
    )


# --------------------------------------------------------------------------------------------
# Calico NetworkPolicy / GlobalNetworkPolicy.


def _protocol(value: int | str | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return PROTOCOLS[value.lower()]


def _ports(values: Sequence[int | str]) -> tuple[tuple[PortRange, ...], tuple[str, ...]]:
    ranges, names = [], []
    for value in values:
        if isinstance(value, int):
            ranges.append(PortRange(value, value))
        elif ":" in value:
            low, high = value.split(":", 1)
            ranges.append(PortRange(int(low), int(high)))
        elif value.isdigit():
            ranges.append(PortRange(int(value), int(value)))
        else:
            names.append(value)
    return merge_ranges(ranges), tuple(names)


def _entity(er: EntityRule, ns: str | None) -> Entity:
    ports, named = _ports(er.ports)
    not_ports, not_named = _ports(er.not_ports)
    return Entity(
        nets=tuple(_net_text(n) for n in er.nets),
        not_nets=tuple(_net_text(n) for n in er.not_nets),
        selector=entity_selector(er.selector, er.namespace_selector, er.not_selector, ns),
        not_selector=str(parse_selector(er.not_selector)) if er.not_selector else None,
        ports=ports,
        named_ports=named,
        not_ports=not_ports,
        not_named_ports=not_named,
    )


def _rule(rule: CalicoRule, ns: str | None) -> Rule:
    return Rule(
        rule.action,
        ip_version=rule.ip_version,
        protocol=_protocol(rule.protocol),
        not_protocol=_protocol(rule.not_protocol),
        icmp_type=rule.icmp.type if rule.icmp else None,
        icmp_code=rule.icmp.code if rule.icmp else None,
        not_icmp_type=rule.not_icmp.type if rule.not_icmp else None,
        not_icmp_code=rule.not_icmp.code if rule.not_icmp else None,
        source=_entity(rule.source, ns),
        destination=_entity(rule.destination, ns),
    )


def default_types(spec: CalicoPolicySpec) -> tuple[str, ...]:
    """defaultPolicyTypesField: Ingress without egress rules, Egress with egress rules only,
    both with both."""
    if spec.types:
        return tuple(t for t in ("Ingress", "Egress") if t in spec.types)
    if not spec.egress:
        return ("Ingress",)
    if not spec.ingress:
        return ("Egress",)
    return ("Ingress", "Egress")


def convert_calico(obj: CalicoNetworkPolicy | GlobalNetworkPolicy, source: str) -> Policy:
    spec = obj.spec
    ns = obj.metadata.namespace if isinstance(obj, CalicoNetworkPolicy) else None
    selector: Selector = parse_selector(spec.selector)
    if ns is not None:
        # networkpolicyprocessor.go: `(<selector>) && projectcalico.org/namespace == '<ns>'`.
        selector = And((selector, _in_namespace(ns)))
    elif spec.namespace_selector:
        selector = And((selector, namespace_selector(spec.namespace_selector)))
    return Policy(
        name=obj.metadata.name,
        namespace=ns,
        kind=obj.kind,
        order=None if spec.order is None else float(spec.order),
        selector=str(selector),
        types=default_types(spec),
        ingress=tuple(_rule(r, ns) for r in spec.ingress),
        egress=tuple(_rule(r, ns) for r in spec.egress),
        source=source,
    )


# --------------------------------------------------------------------------------------------
# Checks.


def _net_text(text: str) -> str:
    return str(ipaddress.ip_network(text.strip(), strict=False))


def merge_ranges(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """Sorted, overlapping and adjacent ranges joined (Calico's SimplifyPorts)."""
    out: list[PortRange] = []
    for r in sorted(ranges, key=lambda r: (r.low, r.high)):
        if out and r.low <= out[-1].high + 1:
            out[-1] = PortRange(out[-1].low, max(out[-1].high, r.high))
        else:
            out.append(r)
    return tuple(out)


def _selector_problem(text: str | None, where: str) -> list[Problem]:
    return _check_selector(text or None, where)


def _net_problems(values: Sequence[str], where: str) -> list[Problem]:
    problems = []
    for i, text in enumerate(values):
        try:
            ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            problems.append(
                Problem(
                    f"{where}[{i}]", f"{text!r} is not a CIDR", "write a prefix like 10.0.0.0/8"
                )
            )
    return problems


def _port_problems(values: Sequence[int | str], where: str) -> list[Problem]:
    problems = []
    for i, value in enumerate(values):
        if not isinstance(value, str) or (":" not in value and not value.isdigit()):
            if isinstance(value, str) and not value:
                problems.append(Problem(f"{where}[{i}]", "empty port", "write a port or a name"))
            continue
        low, _, high = value.partition(":")
        if not low.isdigit() or (high and not high.isdigit()):
            problems.append(
                Problem(f"{where}[{i}]", f"{value!r} is not a port range", "write it as 80:90")
            )
        elif int(low) > 65535 or (high and int(high) > 65535):
            problems.append(
                Problem(f"{where}[{i}]", f"port {value} is out of range", "ports are 0-65535")
            )
        elif high and int(high) < int(low):
            problems.append(
                Problem(f"{where}[{i}]", f"range {value} ends below its start", "write low:high")
            )
    return problems


def _entity_problems(er: EntityRule, where: str, protocol: int | None) -> list[Problem]:
    problems = _selector_problem(er.selector, f"{where}.selector")
    problems += _selector_problem(er.not_selector, f"{where}.notSelector")
    problems += _selector_problem(er.namespace_selector, f"{where}.namespaceSelector")
    problems += _net_problems(er.nets, f"{where}.nets")
    problems += _net_problems(er.not_nets, f"{where}.notNets")
    problems += _port_problems(er.ports, f"{where}.ports")
    problems += _port_problems(er.not_ports, f"{where}.notPorts")
    if (er.ports or er.not_ports) and protocol not in PORT_PROTOCOLS:
        problems.append(
            Problem(
                where,
                "ports need the rule's protocol to be TCP, UDP or SCTP",
                "set `protocol: TCP` (or UDP, SCTP) on the rule",
            )
        )
    return problems


def _protocol_problem(value: int | str | None, where: str) -> list[Problem]:
    if isinstance(value, str) and value.lower() not in PROTOCOLS:
        return [
            Problem(
                where,
                f"unknown protocol {value!r}",
                "write TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255",
            )
        ]
    return []


def _rule_problems(rule: CalicoRule, where: str) -> list[Problem]:
    problems = _protocol_problem(rule.protocol, f"{where}.protocol")
    problems += _protocol_problem(rule.not_protocol, f"{where}.notProtocol")
    if problems:
        return problems
    protocol = _protocol(rule.protocol)
    for name, er in (("source", rule.source), ("destination", rule.destination)):
        problems += _entity_problems(er, f"{where}.{name}", protocol)
    for name, icmp in (("icmp", rule.icmp), ("notICMP", rule.not_icmp)):
        if icmp is not None and protocol not in (1, 58):
            problems.append(
                Problem(f"{where}.{name}", "ICMP matches need protocol ICMP or ICMPv6", "")
            )
    if rule.ip_version is not None and protocol == ICMP_OF[10 - rule.ip_version]:
        problems.append(
            Problem(
                f"{where}.ipVersion",
                f"protocol {PROTOCOL_NAMES[protocol]} does not exist in IPv{rule.ip_version}",
                "use ICMP with ipVersion 4 and ICMPv6 with ipVersion 6",
            )
        )
    for nets_where, nets in (
        ("source.nets", rule.source.nets + rule.source.not_nets),
        ("destination.nets", rule.destination.nets + rule.destination.not_nets),
    ):
        for text in nets:
            try:
                version = ipaddress.ip_network(text.strip(), strict=False).version
            except ValueError:
                continue
            if rule.ip_version is not None and version != rule.ip_version:
                problems.append(
                    Problem(
                        f"{where}.{nets_where}",
                        f"{text} is IPv{version} in an IPv{rule.ip_version} rule",
                        "drop ipVersion or the net",
                    )
                )
    return problems


def _k8s_problems(obj: K8sNetworkPolicy, where: str) -> list[Problem]:
    problems: list[Problem] = []
    rules = [(f"ingress[{i}].from", r.from_) for i, r in enumerate(obj.spec.ingress)]
    rules += [(f"egress[{i}].to", r.to) for i, r in enumerate(obj.spec.egress)]
    for rule_where, peers in rules:
        for j, peer in enumerate(peers):
            if peer.ip_block is None:
                continue
            at = f"{where}.spec.{rule_where}[{j}].ipBlock"
            problems += _net_problems([peer.ip_block.cidr], f"{at}.cidr")
            problems += _net_problems(peer.ip_block.except_, f"{at}.except")
            if problems:
                continue
            cidr = ipaddress.ip_network(peer.ip_block.cidr, strict=False)
            for k, text in enumerate(peer.ip_block.except_):
                net = ipaddress.ip_network(text, strict=False)
                if net.version != cidr.version or not net.subnet_of(cidr):  # type: ignore[arg-type]
                    problems.append(
                        Problem(
                            f"{at}.except[{k}]",
                            f"{net} is not inside {cidr}",
                            "an except CIDR must lie within the ipBlock's cidr",
                        )
                    )
    return problems


def _calico_problems(obj: CalicoNetworkPolicy | GlobalNetworkPolicy, where: str) -> list[Problem]:
    spec = obj.spec
    problems = _selector_problem(spec.selector, f"{where}.spec.selector")
    problems += _selector_problem(spec.namespace_selector, f"{where}.spec.namespaceSelector")
    if isinstance(obj, CalicoNetworkPolicy):
        for name, given in (
            ("namespaceSelector", spec.namespace_selector),
            ("doNotTrack", spec.do_not_track),
            ("preDNAT", spec.pre_dnat),
            ("applyOnForward", spec.apply_on_forward),
        ):
            if given:
                problems.append(
                    Problem(
                        f"{where}.spec.{name}",
                        f"{name} is a GlobalNetworkPolicy field",
                        "use a GlobalNetworkPolicy, or drop it",
                    )
                )
    if spec.tier != "default":
        problems.append(
            Problem(
                f"{where}.spec.tier",
                f"tier {spec.tier!r}: meshemu emulates the default tier only",
                "drop `tier` (the default tier)",
            )
        )
    for name, given in (
        ("doNotTrack", spec.do_not_track),
        ("preDNAT", spec.pre_dnat),
        ("serviceAccountSelector", spec.service_account_selector),
    ):
        if given and isinstance(obj, GlobalNetworkPolicy):
            problems.append(
                Problem(
                    f"{where}.spec.{name}",
                    f"{name} is not emulated (it concerns host endpoints or service accounts, "
                    "which the lab has none of)",
                    "drop it",
                )
            )
    for direction in ("ingress", "egress"):
        for i, rule in enumerate(getattr(spec, direction)):
            at = f"{where}.spec.{direction}[{i}]"
            problems += _rule_problems(rule, at)
            for name, er in (("source", rule.source), ("destination", rule.destination)):
                if er.service_accounts is not None or er.services is not None:
                    problems.append(
                        Problem(
                            f"{at}.{name}",
                            "serviceAccounts and services matches are not emulated",
                            "match the pods by selector instead",
                        )
                    )
            if rule.http is not None:
                problems.append(
                    Problem(f"{at}.http", "HTTP matches are not emulated (no Envoy)", "drop it")
                )
    return problems


def read_policy(data: object, where: str) -> tuple[PolicyObject | None, list[Problem]]:
    """One `policies:` item (or bundle resource) validated as its kind, with its problems."""
    if not isinstance(data, dict):
        return None, [
            Problem(where, "a policy is a mapping", "write apiVersion, kind, metadata, spec")
        ]
    model = policy_model(data)
    try:
        obj: PolicyObject = model.model_validate(data)
    except ValidationError as err:
        return None, problems_from_validation(err, where)
    if isinstance(obj, K8sNetworkPolicy):
        problems = _k8s_problems(obj, where)
    else:
        problems = _calico_problems(obj, where)
    return (None if problems else obj), problems


def _namespace_problems(namespaces: Mapping[str, Any]) -> list[Problem]:
    problems = []
    for name, spec in namespaces.items():
        labels = getattr(spec, "labels", {}) or {}
        for key in labels:
            try:
                check_label_key(key)
            except ValueError as err:
                problems.append(Problem(f"namespaces.{name}.labels", str(err), ""))
    return problems


def check_policies(topo: Any) -> list[Problem]:
    """Every problem of the topology's `policies:` and `namespaces:` (exit 2)."""
    problems = _namespace_problems(getattr(topo, "namespaces", {}) or {})
    seen: dict[tuple[str, str | None], str] = {}
    for i, data in enumerate(getattr(topo, "policies", []) or []):
        where = f"policies[{i}]"
        obj, found = read_policy(data, where)
        problems += found
        if obj is None:
            continue
        policy = to_calico(obj, where)
        key = (policy.name, policy.namespace)
        if key in seen:
            problems.append(
                Problem(
                    f"{where}.metadata.name",
                    f"{policy.ident} is defined twice (also {seen[key]})",
                    "give each policy its own name (per namespace)",
                )
            )
        seen[key] = where
    return problems


def to_calico(obj: PolicyObject, source: str) -> Policy:
    if isinstance(obj, K8sNetworkPolicy):
        return convert_k8s(obj, source)
    return convert_calico(obj, source)


def plan_policy(topo: Any) -> PolicyPlan | None:
    """The lab's `PolicyPlan`; None when it has no policy (then the lab loads no rules).
    The topology must have passed `check_policies`."""
    policies = []
    for i, data in enumerate(getattr(topo, "policies", []) or []):
        obj, _problems = read_policy(data, f"policies[{i}]")
        if obj is not None:
            policies.append(to_calico(obj, f"policies[{i}]"))
    if not policies:
        return None
    declared = getattr(topo, "namespaces", {}) or {}
    names = set(declared) | set(pod_namespaces(topo))
    namespaces = tuple(
        NamespacePlan(
            name,
            {**dict(getattr(declared.get(name), "labels", {}) or {}), K8S_NAMESPACE_NAME: name},
        )
        for name in sorted(names)
    )
    return PolicyPlan(tuple(sorted(policies, key=Policy.sort_key)), namespaces)


def pod_namespaces(topo: Any) -> list[str]:
    """The namespaces of the topology's pods."""
    return [pod.namespace for node in topo.nodes.values() for pod in node.pod_list()]


def _named_ports(policy: Policy) -> set[str]:
    names: set[str] = set()
    for rule in (*policy.ingress, *policy.egress):
        for entity in (rule.source, rule.destination):
            names.update(entity.named_ports, entity.not_named_ports)
    return names


def policy_notes(topo: Any, plan: PolicyPlan | None) -> list[str]:
    """Warnings (plan notes, not errors): a policy in a namespace no pod is in and no
    `namespaces:` entry declares, a namespaceSelector that selects no namespace, a named port
    no pod declares. Such a policy is valid in Kubernetes; it just selects nothing (yet)."""
    if plan is None:
        return []
    pods = [pod for node in topo.nodes.values() for pod in node.pod_list()]
    declared = set(getattr(topo, "namespaces", {}) or {}) | {pod.namespace for pod in pods}
    port_names = {port.name for pod in pods for port in pod.ports if port.name}
    # Each namespace as a profile's labels, the way a rule's namespace part sees it.
    profiles = [
        {NAMESPACE_PREFIX + k: v for k, v in ns.labels.items()}
        | {NAMESPACE_PREFIX + LABEL_NAME: ns.name, LABEL_NAMESPACE: ns.name}
        for ns in plan.namespaces
    ]
    notes = []
    for pol in plan.policies:
        where = f"{pol.source} ({pol.ident})"
        if pol.namespace is not None and pol.namespace not in declared:
            notes.append(
                f"warning: {where}: namespace {pol.namespace} exists nowhere (no pod is in it, "
                "`namespaces:` does not declare it): the policy selects no pod"
            )
        for rule in (*pol.ingress, *pol.egress):
            for entity in (rule.source, rule.destination):
                text = entity.selector
                if text is None or NAMESPACE_PREFIX not in text:
                    continue
                if not any(_namespace_part_matches(text, labels) for labels in profiles):
                    notes.append(
                        f"warning: {where}: namespaceSelector of {text!r} selects no namespace"
                    )
        for name in sorted(_named_ports(pol) - port_names):
            notes.append(
                f"warning: {where}: named port {name!r} is declared by no pod: the rule "
                "matches nothing by it"
            )
    return sorted(set(notes), key=notes.index)


def _namespace_part_matches(text: str, profile: Mapping[str, str]) -> bool:
    """Whether the namespace part of a rule's selector (the operand using `pcns.` labels or the
    namespace label) can hold for a namespace with `profile`'s labels."""
    selector = parse_selector(text)
    parts = selector.operands if isinstance(selector, And) else (selector,)
    return all(part.matches(profile) for part in parts if NAMESPACE_PREFIX in str(part))


def policy_key(data: Any) -> tuple[str, str, str | None, str]:
    """(apiVersion, kind, namespace, name) of a policy object; a GlobalNetworkPolicy (and a
    GlobalNetworkPolicy's apiVersion is Calico's) has no namespace."""
    meta = data.get("metadata") if isinstance(data, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    kind = str(data.get("kind", "")) if isinstance(data, dict) else ""
    api = str(data.get("apiVersion", "")) if isinstance(data, dict) else ""
    namespace = None if kind == "GlobalNetworkPolicy" else str(meta.get("namespace", "default"))
    return (api, kind, namespace, str(meta.get("name", "")))
