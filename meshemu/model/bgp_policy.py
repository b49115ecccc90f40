"""Calico's BGP route policy (pure): BGPFilter resources as BIRD functions, the calls a
session's import and export filters make, the communities BGPConfiguration's
prefixAdvertisements attach on export, and what those filters decide for a route.

Follows projectcalico/calico `confd/pkg/resource/template/template_funcs.go`
(`BGPFilterBIRDFuncs`, `filterStatement`, `BGPFilterFunctionName`), `confd/pkg/resource/template/
util.go` (`TruncateAndHashName`), `confd/pkg/backends/calico/bgp_processor.go`
(`buildImportFilter`, `buildExportFilter`, `processCommunityRules`) and `client.go`
(`getPrefixAdvertisementsKVPair`, `getCommunitiesArray`). The text is what confd renders into
bird.cfg / bird6.cfg, checked line by line by the conformance test; it is also what a BIRD
speaker of the lab would be given.

`evaluate` is what BIRD does with that text for one route (the second half of this module): the
planner (`model.bgp`) and the ExaBGP nodes' agents run it on every path a filtered session
sends or receives. It reads `Filter`s (plain data, also the agent configuration's JSON): the
agent imports this module and must not load the topology's pydantic models, so those are
imported for type checking only.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from meshemu.model.wire import OneOf, Wire

if TYPE_CHECKING:
    # Types only: the agent imports this module, and the topology's models are pydantic's.
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
    low, high = _length_range(rule)
    return f"[ {rule.cidr}{{{low},{high}}} ]"


def _length_range(rule: FilterRuleSpec) -> tuple[int, int]:
    """The prefix lengths of `[ cidr{low,high} ]` for a rule with a CIDR and `prefixLength`."""
    assert rule.cidr is not None and rule.prefix_length is not None
    network = ipaddress.ip_network(rule.cidr, strict=False)
    low, high = network.prefixlen, int(network.max_prefixlen)
    if rule.prefix_length.min is not None:
        low = max(low, rule.prefix_length.min)
    if rule.prefix_length.max is not None:
        high = min(high, rule.prefix_length.max)
    return low, high


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


# ---------------------------------------------------------------------------------------------
# Evaluation: what Calico's BIRD does with one route when a session's filter runs.
#
# A session's BIRD filter (bgp_processor.go buildImportFilter / buildExportFilter) calls the
# functions of its BGPPeer's BGPFilters in the order the BGPPeer names them (those with rules
# for the direction and family: `applied_filters`), then ends in the session's default: on
# import `accept;` (the comment there: "Prior to the introduction of BGP Filters we used
# 'import all' so use default accept behaviour on import"), on export
# `calico_export_to_bgp_peers(<same AS>); reject;`. Node-to-node mesh sessions call no
# BGPFilter (processMeshPeers passes nil). Each function is the filter's rules in order
# (template_funcs.go BGPFilterBIRDFuncs), each rule one statement
# `if (<conditions, and-ed>) then { <operations> accept|reject; }` (filterStatement), a rule
# with a peerType wrapped in `if (is_same_as)` / `if (!is_same_as)`. `accept` and `reject`
# inside a function end the whole filter, not only the function: in BIRD 1.6, which calico-node
# runs (projectcalico/bird filter/filter.c: FI_PRINT_AND_DIE returns T_RETURN, FI_CALL passes a
# T_RETURN up), and in BIRD 2.0.12 alike. So the first rule that matches, in the first filter
# that has one, decides; a filter none of whose rules matches falls through to the next, and
# after the last to the session's default.
#
# Emulated (changes what a speaker selects or sends): the verdict; `prependASPath` (a longer
# AS path); `setPriority` (bgp_local_pref = 2^31-1 - priority: a higher local preference).
# Matched as BIRD matches, with what the lab's routes carry: cidr with matchOperator and
# prefixLength, source RemotePeers, peerType, asPathPrefix, priority (the route's
# bgp_local_pref, see `model.bgp.calico_local_pref`). Not emulated: `addCommunity` (the lab's
# paths carry no communities, nor do the ExaBGP speakers send them), so a `communities`
# condition matches no route of the lab; `interface` is matched where the lab knows the
# route's outgoing interface: BIRD's `ifname` of the blackhole route of a node's own block is ""
# (filter/filter.c: no interface), so only a pattern `*` matches it; a BGP route's is the
# interface BIRD resolves its next hop through, which the lab's model does not name, so no
# interface rule matches a learned route here (Calico's interface rules are meant for the
# kernel routes of workload and tunnel devices, which the lab's speakers do not hold).


@dataclass(frozen=True)
class Rule(Wire):
    """One BGPFilter rule as `evaluate` reads it: plain data, in the agent's configuration too.

    `cidr` is the rule's CIDR as a network, host bits cleared (BIRD refuses a configuration
    with host bits set: conf/confbase.Y "Invalid prefix"); `low`/`high` the prefix lengths of
    the set `[ cidr{low,high} ]` a rule with `prefixLength` matches against, None without one.
    `prepend` is the AS path the rule's prependASPath operations put in front, in order;
    `set_priority` the value of its last setPriority (each sets bgp_local_pref in turn).
    """

    action: Annotated[str, OneOf("Accept", "Reject")]
    cidr: str | None = None
    operator: Annotated[str, OneOf("Equal", "NotEqual", "In", "NotIn")] = "In"
    low: int | None = None
    high: int | None = None
    remote_peers: bool = False  # source: RemotePeers
    interface: str | None = None
    peer_type: Annotated[str, OneOf("iBGP", "eBGP")] | None = None
    community: str | None = None  # a:b or a:b:c
    as_path_prefix: tuple[int, ...] = ()
    priority: int | None = None
    prepend: tuple[int, ...] = ()
    set_priority: int | None = None
    add_communities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Filter(Wire):
    """One BGPFilter's rules for one direction (import, export) and family (4, 6)."""

    name: str
    direction: Annotated[str, OneOf(*DIRECTIONS)]
    family: Annotated[int, OneOf(4, 6)]
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Route:
    """What a rule reads of a route, as BIRD holds it when the filter runs.

    `local_pref` is its bgp_local_pref (always defined there: on import BIRD attaches its
    default to a route that came without one, on export Calico's filter sets it first);
    `from_peer` whether BIRD learned it from a BGP peer (`source ~ [ RTS_BGP ]`), not from the
    node itself; `communities` the communities it carries, each as numbers; `ifname` its
    outgoing interface ("" for none, as BIRD has it), None where the lab does not know it.
    """

    prefix: str
    as_path: tuple[int, ...]
    local_pref: int
    from_peer: bool
    communities: frozenset[tuple[int, ...]] = frozenset()
    ifname: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the rule that matched decided: accept (with its operations) or reject."""

    accept: bool
    filter: str  # the BGPFilter ...
    rule: int  # ... and the index of the rule in its rules for the direction and family
    prepend: tuple[int, ...] = ()
    set_priority: int | None = None
    add_communities: tuple[str, ...] = ()

    @property
    def local_pref(self) -> int | None:
        """The bgp_local_pref setPriority leaves (template_funcs.go filterOperationStatements:
        `bgp_local_pref = 2147483647 - value`), None when the rule sets none."""
        return None if self.set_priority is None else BIRD_INT_MAX - self.set_priority


def compiled_filters(
    filters: Mapping[str, FilterSpec], names: Sequence[str], direction: str, family: int
) -> tuple[Filter, ...]:
    """The filters a session of `family` that names `names` runs in `direction`, in order."""
    return tuple(
        Filter(
            name,
            direction,
            family,
            tuple(compiled_rule(rule) for rule in filters[name].rules(direction, family)),
        )
        for name in applied_filters(filters, names, direction, family)
    )


def compiled_rule(rule: FilterRuleSpec) -> Rule:
    cidr, low, high = None, None, None
    if rule.cidr:
        cidr = str(_network(rule.cidr))
        if rule.prefix_length is not None:
            low, high = _length_range(rule)
    prepend: tuple[int, ...] = ()
    set_priority = None
    added = []
    for op in rule.operations:  # in `_operations`' order of precedence
        if op.add_community is not None:
            added.append(op.add_community.value)
        elif op.prepend_as_path is not None:
            # Each operation's ASNs are prepended last first: they end up in front, in order,
            # before those of the operations that came earlier.
            prepend = (*op.prepend_as_path.prefix, *prepend)
        elif op.set_priority is not None:
            set_priority = op.set_priority.value
    return Rule(
        action=rule.action,
        cidr=cidr,
        # confd requires an operator with a CIDR; meshemu renders a missing one as In.
        operator=rule.match_operator or "In",
        low=low,
        high=high,
        remote_peers=rule.source is not None,
        interface=rule.interface or None,
        peer_type=rule.peer_type,
        community=rule.communities.values[0] if rule.communities is not None else None,
        as_path_prefix=tuple(rule.as_path_prefix or ()),
        priority=rule.priority,
        prepend=prepend,
        set_priority=set_priority,
        add_communities=tuple(added),
    )


def evaluate(filters: Sequence[Filter], route: Route, same_as: bool) -> Verdict | None:
    """The verdict of the first rule, of the first filter, that matches `route` on a session
    whose peer is in the node's own AS (`same_as`, Calico's is_same_as: iBGP) or not; None
    when no rule matches, and the session's default decides (import: accept; export:
    calico_export_to_bgp_peers)."""
    for spec in filters:
        for index, rule in enumerate(spec.rules):
            if matches(rule, route, same_as):
                if rule.action != "Accept":
                    return Verdict(False, spec.name, index)
                return Verdict(
                    True,
                    spec.name,
                    index,
                    rule.prepend,
                    rule.set_priority,
                    rule.add_communities,
                )
    return None


def matches(rule: Rule, route: Route, same_as: bool) -> bool:
    """Whether `rule`'s conditions (template_funcs.go filterStatement, and-ed, under the
    peerType guard of BGPFilterBIRDFuncs) all hold for `route`."""
    if rule.peer_type is not None and (rule.peer_type == "iBGP") != same_as:
        return False
    if rule.cidr is not None and not _cidr_matches(rule, route.prefix):
        return False
    # `(defined(source))&&(source ~ [ RTS_BGP ])`
    if rule.remote_peers and not route.from_peer:
        return False
    # `(defined(ifname))&&(ifname ~ "<interface>")`
    if rule.interface is not None and (
        route.ifname is None or not _pattern(rule.interface).fullmatch(route.ifname)
    ):
        return False
    # `((a, b) ~ bgp_community)` / `((a, b, c) ~ bgp_large_community)`
    if rule.community is not None and _community_numbers(rule.community) not in route.communities:
        return False
    # `(bgp_path ~ [= a b * =])`: the path starts with these ASNs
    if rule.as_path_prefix and route.as_path[: len(rule.as_path_prefix)] != rule.as_path_prefix:
        return False
    # `(defined(bgp_local_pref)&&(bgp_local_pref = 2147483647 - priority))`
    return rule.priority is None or route.local_pref == BIRD_INT_MAX - rule.priority


def _cidr_matches(rule: Rule, prefix: str) -> bool:
    """`(net <op> <cidr>)`, or with prefixLength `(net <op> [ <cidr>{low,high} ])`.

    BIRD (filter/filter.c val_in_range, val_same; BIRD 2 filter/data.c alike): `~` of two
    prefixes is "inside" (net_in_net: at least as long, same leading bits), `~` of a prefix and
    a prefix set is membership (trie_match_fprefix: inside the CIDR, length within the range);
    `=` is exact equality, and a prefix is never `=` to a set (values of different types are
    not the same), so Equal with prefixLength matches nothing and NotEqual everything.
    """
    assert rule.cidr is not None
    net, cidr = _network(prefix), _network(rule.cidr)
    if rule.operator in ("Equal", "NotEqual"):
        same = rule.low is None and net == cidr
        return same if rule.operator == "Equal" else not same
    inside = net.version == cidr.version and net.subnet_of(cidr)  # type: ignore[arg-type]
    if inside and rule.low is not None and rule.high is not None:
        inside = rule.low <= net.prefixlen <= rule.high
    return inside if rule.operator == "In" else not inside


@functools.lru_cache(maxsize=1 << 12)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


@functools.lru_cache(maxsize=1 << 8)
def _pattern(text: str) -> re.Pattern[str]:
    """BIRD's shell-like pattern (lib/patmatch.c): `*` any text, `?` any one character, `\\`
    takes the next character as it is."""
    out, chars = [], iter(text)
    for c in chars:
        if c == "\\":
            c = next(chars, c)
            out.append(re.escape(c))
        else:
            out.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
    return re.compile("".join(out), re.DOTALL)


def _community_numbers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(":"))
