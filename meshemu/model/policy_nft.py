"""Network policy as nftables text, per node, the way Felix programs it (pure).

Owns the ruleset a node loads (`dataplane.policy` runs `nft -f` with it): per family a table
`calico-policy` (meshemu's own name, beside natOutgoing's `calico`) holding Felix's structure
(felix/rules/static.go, endpoints.go, policy.go, rule_defs.go), with meshemu's short names:
- `forward` (hook forward): clears the policy mark bits, then packets from a workload
  interface (`cali*`) go through `from-wl-dispatch`, packets to one through `to-wl-dispatch`
  (StaticFilterForwardChains); what returns is accepted;
- `input` (hook input): from a workload, `wl-to-host`: on IPv6 the neighbour discovery and MLD
  a pod needs, then the pod's egress policy, then Felix's DefaultEndpointToHostAction, ACCEPT
  as the operator and calico.yaml set it (filterWorkloadToHostChain). Traffic from the host to
  its pods is not policed (filterOutputChain: "We don't currently police host -> endpoint");
- per workload interface `tw-<cali>` (to the pod: ingress) and `fw-<cali>` (from it: egress):
  conntrack RELATED,ESTABLISHED accepted, INVALID dropped, the mark bits cleared, the default
  tier's policies in order (a policy sets the accept bit -> return; the pass bit skips the
  rest), the end-of-tier drop unless passed, then the namespace profile, which allows
  (endpointIptablesChain, appendConntrackRules);
- per policy and direction `pi-<n>` / `po-<n>` (n: the policy's place in Felix's order): one
  nft rule per Calico rule (two or more when ports mix numbers and names, which Felix joins in
  match blocks), setting the accept or pass bit and returning, dropping, or logging
  (CombineMatchAndActionsForProtoRule). Selectors and named ports become the addresses
  (address . port pairs) of the endpoints they match, as Felix's IP sets hold them; a rule
  whose selector matches no endpoint cannot match and is left out.
The mark bits are Felix's defaults (MarkAccept 0x10000, MarkPass 0x20000 in the 0xffff0000 mask).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from meshemu.model.labplan import LabPlan, NodePlan
from meshemu.model.policy import ICMP_OF, Entity, Policy, PolicyPlan, PortRange, Rule
from meshemu.model.policy_eval import (
    DIRECTIONS,
    Endpoint,
    Verdicts,
    endpoints_of,
    family_nets,
    rule_in_family,
)

TABLE = "calico-policy"
MARK_ACCEPT = 0x10000
MARK_PASS = 0x20000
_FAMILY = {4: "ip", 6: "ip6"}
_L4 = {6: "tcp", 17: "udp", 1: "icmp", 132: "sctp"}
# Felix's ICMPv6Filter: what a pod must send its host (MLD, router and neighbour discovery).
_ICMP6_TO_HOST = "130, 131, 132, 133, 135, 136"
LOG_PREFIX = "calico-packet: "


def _comment(text: str) -> str:
    clean = "".join(ch if ch.isprintable() and ch != '"' else "?" for ch in text)
    return f'comment "{clean[:120]}"'


def _set(items: Sequence[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def _nets(nets: Sequence[str]) -> list[str]:
    # (One family at a time: the caller filtered them.)
    parsed = [ipaddress.ip_network(n) for n in nets]
    collapsed = ipaddress.collapse_addresses(parsed)  # type: ignore[type-var]
    return [str(n) for n in collapsed]


def _ranges(ranges: Sequence[PortRange]) -> list[str]:
    return [r.text() for r in ranges]


class _Renderer:
    def __init__(self, verdicts: Verdicts, family: int) -> None:
        self.verdicts = verdicts
        self.family = family
        self.ip = _FAMILY[family]

    def addresses(self, selector: str) -> list[str]:
        refs = self.verdicts.selected(selector)
        return sorted(
            {a for e in self.verdicts.endpoints if e.ref in refs if (a := e.address(self.family))},
            key=ipaddress.ip_address,
        )

    def named(self, names: Sequence[str], selector: str | None, proto: int | None) -> list[str]:
        """`address . port` of the endpoints (matching `selector`) that declare a named port."""
        pool: list[Endpoint] = self.verdicts.endpoints
        if selector is not None:
            refs = self.verdicts.selected(selector)
            pool = [e for e in pool if e.ref in refs]
        pairs = set()
        for ep in pool:
            address = ep.address(self.family)
            for name, protocol, port in ep.ports:
                if address and name in names and (proto is None or protocol == proto):
                    pairs.add((ipaddress.ip_address(address), port))
        return [f"{a} . {p}" for a, p in sorted(pairs)]

    def entity(self, ent: Entity, side: str, proto: int | None) -> list[list[str]] | None:
        """The alternatives (each a list of matches) for one side; None: cannot match."""
        addr = f"{self.ip} {side}addr"
        port = f"th {side}port"
        base: list[str] = []
        nets = family_nets(ent.nets, self.family) or ()
        if nets:
            base.append(f"{addr} {_set(_nets(nets))}")
        not_nets = family_nets(ent.not_nets, self.family) or ()
        if not_nets:
            base.append(f"{addr} != {_set(_nets(not_nets))}")
        if ent.selector is not None:
            found = self.addresses(ent.selector)
            if not found:
                return None
            base.append(f"{addr} {_set(found)}")
        if ent.not_selector is not None:
            found = self.addresses(ent.not_selector)
            if found:
                base.append(f"{addr} != {_set(found)}")
        if ent.not_ports:
            base.append(f"{port} != {_set(_ranges(ent.not_ports))}")
        if ent.not_named_ports:
            pairs = self.named(ent.not_named_ports, ent.selector, proto)
            if pairs:
                base.append(f"{addr} . {port} != {_set(pairs)}")
        if not ent.has_ports:
            return [base]
        alternatives = []
        if ent.ports:
            alternatives.append([*base, f"{port} {_set(_ranges(ent.ports))}"])
        if ent.named_ports:
            pairs = self.named(ent.named_ports, ent.selector, proto)
            if pairs:
                alternatives.append([*base, f"{addr} . {port} {_set(pairs)}"])
        return alternatives or None

    def rule(self, rule: Rule) -> list[str]:
        if not rule_in_family(rule, self.family):
            return []
        head: list[str] = []
        if rule.protocol is not None:
            head.append(f"meta l4proto {_L4.get(rule.protocol, rule.protocol)}")
        if rule.not_protocol is not None:
            head.append(f"meta l4proto != {_L4.get(rule.not_protocol, rule.not_protocol)}")
        icmp = "icmp" if self.family == 4 else "icmpv6"
        icmp_match = rule.icmp_type is not None or rule.not_icmp_type is not None
        if icmp_match and rule.protocol != ICMP_OF[self.family]:
            return []  # (ICMP of the other family: no packet of this one matches)
        if rule.icmp_type is not None:
            head.append(f"{icmp} type {rule.icmp_type}")
            if rule.icmp_code is not None:
                head.append(f"{icmp} code {rule.icmp_code}")
        if rule.not_icmp_type is not None:
            if rule.not_icmp_code is None:
                head.append(f"{icmp} type != {rule.not_icmp_type}")
            else:
                pair = f"{rule.not_icmp_type} . {rule.not_icmp_code}"
                head.append(f"{icmp} type . {icmp} code != {{ {pair} }}")
        sources = self.entity(rule.source, "s", rule.protocol)
        dests = self.entity(rule.destination, "d", rule.protocol)
        if sources is None or dests is None:
            return []
        action = {
            "Allow": f"meta mark set meta mark | {MARK_ACCEPT:#x} return",
            "Pass": f"meta mark set meta mark | {MARK_PASS:#x} return",
            "Deny": "drop",
            "Log": f'log prefix "{LOG_PREFIX}" level info',
        }[rule.action]
        return [" ".join([*head, *src, *dst, action]) for src in sources for dst in dests]

    def policy_chain(self, name: str, pol: Policy, direction: str) -> list[str]:
        lines = [f"\tchain {name} {{", f"\t\t{_comment(f'Policy {pol.ident} {direction}')}"]
        for rule in pol.rules(direction):
            lines += [f"\t\t{text}" for text in self.rule(rule)]
        return [*lines, "\t}"]

    def endpoint_chain(
        self, name: str, ep: Endpoint, direction: str, chains: dict[str, str]
    ) -> list[str]:
        clear = (~(MARK_ACCEPT | MARK_PASS)) & 0xFFFFFFFF
        lines = [
            f"\tchain {name} {{",
            "\t\tct state established,related accept",
            "\t\tct state invalid drop",
            f"\t\tmeta mark set meta mark & {clear:#010x}",
        ]
        policies = self.verdicts.applied[(ep.ref, direction)]
        if policies:
            lines.append(
                f"\t\tmeta mark set meta mark & {(~MARK_PASS) & 0xFFFFFFFF:#010x} "
                f"{_comment('Start of tier default')}"
            )
            for pol in policies:
                lines.append(
                    f"\t\tmeta mark & {MARK_PASS:#x} == 0 jump {chains[pol.ident]} "
                    f"{_comment(pol.ident)}"
                )
                lines.append(
                    f"\t\tmeta mark & {MARK_ACCEPT:#x} == {MARK_ACCEPT:#x} return "
                    f"{_comment('Return if policy accepted')}"
                )
            lines.append(
                f"\t\tmeta mark & {MARK_PASS:#x} == 0 drop "
                f"{_comment('End of tier default. Drop if no policies passed packet')}"
            )
        lines.append(
            f"\t\tmeta mark set meta mark | {MARK_ACCEPT:#x} return "
            f"{_comment(f'Profile kns.{ep.namespace} allows')}"
        )
        return [*lines, "\t}"]

    def table(self, node: NodePlan, local: list[Endpoint]) -> list[str]:
        out = [f"table {self.ip} {TABLE} {{"]
        used: dict[str, list[Policy]] = {d: [] for d in DIRECTIONS}
        for ep in local:
            for d in DIRECTIONS:
                for pol in self.verdicts.applied[(ep.ref, d)]:
                    if pol not in used[d]:
                        used[d].append(pol)
        order = {pol.ident: i for i, pol in enumerate(self.verdicts.policy.policies)}
        chain_of: dict[str, dict[str, str]] = {d: {} for d in DIRECTIONS}
        for d, prefix in (("ingress", "pi"), ("egress", "po")):
            for pol in used[d]:
                name = f"{prefix}-{order[pol.ident]}"
                chain_of[d][pol.ident] = name
                out += self.policy_chain(name, pol, d)
        for ep in local:
            out += self.endpoint_chain(f"tw-{ep.ifname}", ep, "ingress", chain_of["ingress"])
            out += self.endpoint_chain(f"fw-{ep.ifname}", ep, "egress", chain_of["egress"])
        for direction, match, prefix in (("from", "iifname", "fw"), ("to", "oifname", "tw")):
            out.append(f"\tchain {direction}-wl-dispatch {{")
            if local:
                vmap = ", ".join(f'"{ep.ifname}" : goto {prefix}-{ep.ifname}' for ep in local)
                out.append(f"\t\t{match} vmap {{ {vmap} }}")
            out += [f"\t\tdrop {_comment('Unknown interface')}", "\t}"]
        clear = (~(MARK_ACCEPT | MARK_PASS)) & 0xFFFFFFFF
        out += [
            "\tchain wl-to-host {",
            *([f"\t\ticmpv6 type {{ {_ICMP6_TO_HOST} }} accept"] if self.family == 6 else []),
            "\t\tjump from-wl-dispatch",
            f"\t\taccept {_comment('Configured DefaultEndpointToHostAction')}",
            "\t}",
            "\tchain forward {",
            "\t\ttype filter hook forward priority filter; policy accept;",
            f"\t\tmeta mark set meta mark & {clear:#010x}",
            '\t\tiifname "cali*" jump from-wl-dispatch',
            '\t\toifname "cali*" jump to-wl-dispatch',
            "\t}",
            "\tchain input {",
            "\t\ttype filter hook input priority filter; policy accept;",
            '\t\tiifname "cali*" goto wl-to-host',
            "\t}",
            "}",
        ]
        return out


def policy_ruleset(plan: LabPlan, node: NodePlan, verdicts: Verdicts | None) -> str:
    """The text `nft -f` loads on `node`: meshemu's policy tables replaced as a whole (deleted
    and, when the lab has policy, written again), in one transaction."""
    lines: list[str] = []
    for family in (4, 6):
        lines += [f"add table {_FAMILY[family]} {TABLE}", f"delete table {_FAMILY[family]} {TABLE}"]
    if verdicts is not None:
        local = [e for e in verdicts.endpoints if e.node == node.name]
        for family in (4, 6):
            lines += _Renderer(verdicts, family).table(node, local)
    return "\n".join(lines) + "\n"


def lab_verdicts(plan: LabPlan, policy: PolicyPlan | None) -> Verdicts | None:
    return None if policy is None else Verdicts(policy, endpoints_of(plan, policy))
