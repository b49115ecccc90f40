"""Calico's BGP route policy in BIRD's words (pure): BGPFilter resources as BIRD functions, the
calls a session's import and export filters make, and the communities BGPConfiguration's
prefixAdvertisements attach on export.

Follows projectcalico/calico `confd/pkg/resource/template/template_funcs.go`
(`BGPFilterBIRDFuncs`, `filterStatement`, `BGPFilterFunctionName`), `confd/pkg/resource/template/
util.go` (`TruncateAndHashName`), `confd/pkg/backends/calico/bgp_processor.go`
(`buildImportFilter`, `buildExportFilter`, `processCommunityRules`) and `client.go`
(`getPrefixAdvertisementsKVPair`, `getCommunitiesArray`). The text is what confd renders into
bird.cfg / bird6.cfg, checked line by line by the conformance test; it is also what a BIRD
speaker of the lab would be given. The ExaBGP speakers apply none of it (see `model.render`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence

from meshemu.model.topology import BgpSpec, FilterRuleSpec, FilterSpec

# 2^31-1: Calico's priority <-> bgp_local_pref conversion (template_funcs.go BirdIntMaxValue).
BIRD_INT_MAX = 2147483647
# BIRD symbols are at most 64 characters (template_funcs.go maxBIRDSymLen).
_MAX_SYMBOL = 64
_OPERATORS = {"Equal": "=", "NotEqual": "!=", "In": "~", "NotIn": "!~"}
DIRECTIONS = ("import", "export")


def truncate_and_hash(name: str, max_len: int) -> str:
    """util.go TruncateAndHashName: a name over `max_len` keeps its first characters and ends
    in `_` and the first 16 upper-case hex digits of its SHA-256."""
    if len(name) <= max_len:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest().upper()
    return f"{name[: max_len - 17]}_{digest[:16]}"


def function_name(filter_name: str, direction: str, family: int) -> str:
    """`'bgp_<name>_importFilterV4'`, the name cut to keep the symbol within 64 characters."""
    fixed = len(f"bgp__{direction}FilterV{family}")
    return f"'bgp_{truncate_and_hash(filter_name, _MAX_SYMBOL - fixed)}_{direction}FilterV{family}'"


def has_peer_type(rules: Sequence[FilterRuleSpec]) -> bool:
    return any(rule.peer_type is not None for rule in rules)


def filter_call(
    filters: Mapping[str, FilterSpec], name: str, direction: str, family: int, same_as: bool
) -> str | None:
    """The call a session's inline filter makes to BGPFilter `name`, or None when the filter
    does not exist or has no rule for that direction and family (bgp_processor.go)."""
    spec = filters.get(name)
    if spec is None or not spec.rules(direction, family):
        return None
    argument = str(same_as).lower() if has_peer_type(spec.rules(direction, family)) else ""
    return f"{function_name(name, direction, family)}({argument});"


def applied_filters(
    filters: Mapping[str, FilterSpec], names: Sequence[str], direction: str, family: int
) -> tuple[str, ...]:
    """The BGPFilters (of those a BGPPeer names, in its order) a session of `family` applies
    in `direction`: a named filter that does not exist is skipped, as confd skips it."""
    return tuple(
        name for name in names if name in filters and filters[name].rules(direction, family)
    )


def bird_filter_functions(filters: Mapping[str, FilterSpec], family: int) -> list[str]:
    """BGPFilterBIRDFuncs: the BIRD functions of every BGPFilter (by name), for one family."""
    lines: list[str] = []
    for name in sorted(filters):
        spec = filters[name]
        directions = [(d, spec.rules(d, family)) for d in DIRECTIONS if spec.rules(d, family)]
        if not directions:
            continue
        lines.append(f"# v{family} BGPFilter {name}")
        for direction, rules in directions:
            argument = "bool is_same_as" if has_peer_type(rules) else ""
            lines.append(f"function {function_name(name, direction, family)}({argument}) {{")
            lines += [f"  {rule_statement(rule, family)}" for rule in rules]
            lines.append("}")
    return lines or [f"# No v{family} BGPFilters configured"]


def rule_statement(rule: FilterRuleSpec, family: int) -> str:
    """template_funcs.go filterStatement, wrapped in the peerType guard."""
    conditions = _conditions(rule, family)
    body = " ".join([*_operations(rule), f"{rule.action.lower()};"])
    statement = f"if ({'&&'.join(conditions)}) then {{ {body} }}" if conditions else body
    if rule.peer_type == "iBGP":
        return f"if (is_same_as) then {{ {statement} }}"
    if rule.peer_type == "eBGP":
        return f"if (!is_same_as) then {{ {statement} }}"
    return statement


def _conditions(rule: FilterRuleSpec, family: int) -> list[str]:
    out = []
    if rule.cidr:
        operator = _OPERATORS[rule.match_operator or "In"]
        out.append(f"(net {operator} {_cidr_match(rule, family)})")
    if rule.source is not None:
        out.append("((defined(source))&&(source ~ [ RTS_BGP ]))")
    if rule.interface:
        out.append(f'((defined(ifname))&&(ifname ~ "{rule.interface}"))')
    if rule.communities is not None:
        parts = rule.communities.values[0].split(":")
        attribute = "bgp_community" if len(parts) == 2 else "bgp_large_community"
        out.append(f"(({', '.join(parts)}) ~ {attribute})")
    if rule.as_path_prefix:
        out.append(f"(bgp_path ~ [= {' '.join(str(a) for a in rule.as_path_prefix)} * =])")
    if rule.priority is not None:
        out.append(f"(defined(bgp_local_pref)&&(bgp_local_pref = {BIRD_INT_MAX - rule.priority}))")
    return out


def _cidr_match(rule: FilterRuleSpec, family: int) -> str:
    """The CIDR, or with `prefixLength` the set `[ cidr{min,max} ]` (template_funcs.go
    filterMatchPrefixLength: min at least the CIDR's length, max at most the family's)."""
    assert rule.cidr is not None
    if rule.prefix_length is None:
        return rule.cidr
    network = ipaddress.ip_network(rule.cidr, strict=False)
    low, high = network.prefixlen, int(network.max_prefixlen)
    if rule.prefix_length.min is not None:
        low = max(low, rule.prefix_length.min)
    if rule.prefix_length.max is not None:
        high = min(high, rule.prefix_length.max)
    return f"[ {rule.cidr}{{{low},{high}}} ]"


def _operations(rule: FilterRuleSpec) -> list[str]:
    out = []
    for op in rule.operations:
        if op.add_community is not None:
            parts = op.add_community.value.split(":")
            attribute = "bgp_community" if len(parts) == 2 else "bgp_large_community"
            out.append(f"{attribute}.add(({', '.join(parts)}));")
        elif op.prepend_as_path is not None:
            # BIRD prepends one AS at a time: the last prepended ends up first.
            out += [f"bgp_path.prepend({asn});" for asn in reversed(op.prepend_as_path.prefix)]
        elif op.set_priority is not None:
            out.append(f"bgp_local_pref = {BIRD_INT_MAX - op.set_priority.value};")
    return out


# ---------------------------------------------------------------------------------------------
# Communities on export (BGPConfiguration communities + prefixAdvertisements).

_LITERAL = re.compile(r"\d+:\d+(:\d+)?\Z")


def community_rules(
    bgp: BgpSpec, node: str, family: int
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(CIDR, communities) that `apply_communities()` adds on export from `node`, for the
    family: the node's own prefixAdvertisements when its BGPConfiguration has them, else the
    cluster's. A community is a literal `a:b` / `a:b:c` or the name of one of `communities`
    (an unknown name is dropped); per CIDR deduplicated and sorted as text (client.go)."""
    adverts = bgp.node_prefix_advertisements.get(node, bgp.prefix_advertisements)
    named = {c.name: c.value for c in bgp.communities}
    out = []
    for advert in adverts:
        if (":" in advert.cidr) != (family == 6):
            continue
        values = {
            value
            for community in advert.communities
            if (value := community if _LITERAL.match(community) else named.get(community))
        }
        out.append((advert.cidr, tuple(sorted(values))))
    return tuple(out)


def community_statement(community: str) -> str:
    parts = community.split(":")
    attribute = "bgp_community" if len(parts) == 2 else "bgp_large_community"
    return f"{attribute}.add(({', '.join(parts)}));"
