"""Calico's BGPFilters as the lab applies them.

`bgp_policy.evaluate` rule by rule (every match field and operator, rules in order, a filter
with no matching rule falling through to the next, then to the session's default), checked
where it matters against the BIRD text the same rules render to; `model.bgp` applying a
session's filters (import after the loop checks, export after the reflection rules and before
the attributes change); plans where a filter at one node changes that node's RIB and FIB and no
other's, over sessions between nodes and to the lab's BGP routers; and the agents, wired
together from their configurations, ending with the RIBs and FIBs the plans predict.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path as FsPath
from typing import Any

import pytest
import yaml

from meshemu.controlplane.agent import AgentCore
from meshemu.controlplane.events import UpdateEvent
from meshemu.errors import LabError
from meshemu.model.agent_config import AgentConfig, agent_config_of
from meshemu.model.bgp import (
    DEFAULT_LOCAL_PREF,
    Link,
    Path,
    Policy,
    Speaker,
    calico_local_pref,
    export,
    imported,
)
from meshemu.model.bgp_policy import (
    BIRD_INT_MAX,
    Filter,
    Route,
    Verdict,
    compiled_filters,
    evaluate,
    rule_statement,
)
from meshemu.model.labplan import LabPlan
from meshemu.model.load import load_topology_text
from meshemu.model.plan import build_plan
from meshemu.model.topology import FilterSpec, Topology

TOPOLOGIES = FsPath(__file__).resolve().parents[2] / "topologies"
PREFIX = "10.244.1.0/26"


def compiled(
    *rules: dict[str, Any], direction: str = "import", family: int = 4, name: str = "f"
) -> tuple[Filter, ...]:
    spec = FilterSpec.model_validate({f"{direction}V{family}": list(rules)})
    return compiled_filters({name: spec}, [name], direction, family)


def route(
    prefix: str = PREFIX,
    as_path: tuple[int, ...] = (),
    local_pref: int = DEFAULT_LOCAL_PREF,
    from_peer: bool = True,
    communities: tuple[tuple[int, ...], ...] = (),
    ifname: str | None = None,
) -> Route:
    return Route(prefix, as_path, local_pref, from_peer, frozenset(communities), ifname)


def decided(rule: dict[str, Any], r: Route, same_as: bool = True, family: int = 4) -> bool:
    """Whether the one rule (action Accept) matches: a verdict, not the default."""
    return evaluate(compiled({**rule, "action": "Accept"}, family=family), r, same_as) is not None


# --- match fields and operators ------------------------------------------------------------------

CIDR_CASES = [
    # (operator, prefixLength, route prefix, matches)
    ("In", None, "10.244.1.0/26", True),
    ("In", None, "10.244.0.0/16", True),  # the CIDR itself is in it
    ("In", None, "10.0.0.0/8", False),  # shorter: not in it
    ("In", None, "10.245.0.0/26", False),
    ("NotIn", None, "10.244.1.0/26", False),
    ("NotIn", None, "10.245.0.0/26", True),
    ("Equal", None, "10.244.0.0/16", True),
    ("Equal", None, "10.244.1.0/26", False),
    ("NotEqual", None, "10.244.0.0/16", False),
    ("NotEqual", None, "10.244.1.0/26", True),
    ("In", {"min": 24, "max": 26}, "10.244.1.0/26", True),
    ("In", {"min": 24, "max": 26}, "10.244.1.0/24", True),
    ("In", {"min": 24, "max": 26}, "10.244.1.0/27", False),
    ("In", {"min": 24, "max": 26}, "10.244.0.0/16", False),
    ("In", {"min": 24, "max": 26}, "10.245.1.0/26", False),
    ("NotIn", {"min": 24, "max": 26}, "10.244.1.0/27", True),
    ("NotIn", {"min": 24, "max": 26}, "10.244.1.0/26", False),
    # `net = [ set ]`: BIRD's val_same of a prefix and a prefix set is false, always.
    ("Equal", {"min": 16, "max": 16}, "10.244.0.0/16", False),
    ("NotEqual", {"min": 16, "max": 16}, "10.244.0.0/16", True),
]


@pytest.mark.parametrize(("operator", "length", "prefix", "expected"), CIDR_CASES)
def test_cidr_and_operator(
    operator: str, length: dict[str, int] | None, prefix: str, expected: bool
) -> None:
    rule: dict[str, Any] = {"cidr": "10.244.0.0/16", "matchOperator": operator}
    if length is not None:
        rule["prefixLength"] = length
    assert decided(rule, route(prefix)) is expected


def test_cidr_rule_renders_the_set_the_evaluator_matches() -> None:
    """prefixLength: min at least the CIDR's length, max at most the family's, in the BIRD
    text and in the evaluator alike."""
    spec = FilterSpec.model_validate(
        {
            "importV4": [
                {
                    "cidr": "10.244.0.0/16",
                    "matchOperator": "In",
                    "action": "Accept",
                    "prefixLength": {"min": 8, "max": 40},
                }
            ]
        }
    )
    assert "(net ~ [ 10.244.0.0/16{16,32} ])" in rule_statement(spec.import_v4[0], 4)
    (rule,) = compiled_filters({"f": spec}, ["f"], "import", 4)[0].rules
    assert (rule.low, rule.high) == (16, 32)
    assert decided(spec.import_v4[0].model_dump(by_alias=True), route("10.244.0.0/16"))
    assert decided(spec.import_v4[0].model_dump(by_alias=True), route("10.244.7.7/32"))


def test_a_v6_cidr() -> None:
    rule = {"cidr": "fd80::/64", "matchOperator": "In"}
    assert decided(rule, route("fd80::40/122"), family=6)
    assert not decided(rule, route("fd81::/122"), family=6)


def test_a_missing_operator_is_in_as_meshemu_renders_it() -> None:
    assert decided({"cidr": "10.244.0.0/16"}, route(PREFIX))
    assert not decided({"cidr": "10.244.0.0/16"}, route("10.9.0.0/24"))


def test_source_remote_peers_is_routes_learned_from_peers() -> None:
    rule = {"source": "RemotePeers"}
    assert decided(rule, route(from_peer=True))
    assert not decided(rule, route(from_peer=False))  # the node's own block


@pytest.mark.parametrize(("peer_type", "same_as"), [("iBGP", True), ("eBGP", False)])
def test_peer_type(peer_type: str, same_as: bool) -> None:
    rule = {"peerType": peer_type}
    assert decided(rule, route(), same_as=same_as)
    assert not decided(rule, route(), same_as=not same_as)


def test_conditions_are_and_ed() -> None:
    rule = {"cidr": "10.244.0.0/16", "matchOperator": "In", "peerType": "eBGP"}
    assert decided(rule, route(PREFIX), same_as=False)
    assert not decided(rule, route(PREFIX), same_as=True)
    assert not decided(rule, route("10.9.0.0/24"), same_as=False)


def test_communities_standard_and_large() -> None:
    assert decided({"communities": {"values": ["65000:100"]}}, route(communities=((65000, 100),)))
    assert decided({"communities": {"values": ["65000:1:2"]}}, route(communities=((65000, 1, 2),)))
    assert not decided({"communities": {"values": ["65000:100"]}}, route(communities=((1, 2),)))
    # The lab's routes carry none: a community rule matches none of them.
    assert not decided({"communities": {"values": ["65000:100"]}}, route())


def test_as_path_prefix_is_the_start_of_the_path() -> None:
    rule = {"asPathPrefix": [65001, 65002]}
    assert decided(rule, route(as_path=(65001, 65002)))
    assert decided(rule, route(as_path=(65001, 65002, 65003)))
    assert not decided(rule, route(as_path=(65001,)))
    assert not decided(rule, route(as_path=(65000, 65001, 65002)))
    assert not decided(rule, route(as_path=()))


def test_priority_is_the_local_preference_calico_converts() -> None:
    rule = {"priority": 512}
    assert decided(rule, route(local_pref=BIRD_INT_MAX - 512))
    assert not decided(rule, route(local_pref=BIRD_INT_MAX - 1024))
    assert not decided(rule, route(local_pref=100))


def test_interface_is_birds_pattern_on_a_known_interface_only() -> None:
    assert decided({"interface": "eth*"}, route(ifname="eth0"))
    assert decided({"interface": "cali?"}, route(ifname="cali1"))
    assert not decided({"interface": "cali?"}, route(ifname="cali12"))
    assert decided({"interface": "a\\*"}, route(ifname="a*"))
    assert not decided({"interface": "a\\*"}, route(ifname="ab"))
    # The lab does not name a route's interface: an interface rule matches none of its routes.
    assert not decided({"interface": "*"}, route(ifname=None))


def test_a_rule_without_conditions_matches_everything() -> None:
    assert decided({}, route("fd00::/64"), family=6)


# --- order, fall-through, actions and operations -------------------------------------------------


def test_the_first_matching_rule_decides() -> None:
    filters = compiled(
        {"cidr": PREFIX, "matchOperator": "Equal", "action": "Accept"},
        {"cidr": "10.244.0.0/16", "matchOperator": "In", "action": "Reject"},
    )
    assert evaluate(filters, route(PREFIX), True) == Verdict(True, "f", 0)
    assert evaluate(filters, route("10.244.2.0/26"), True) == Verdict(False, "f", 1)
    assert evaluate(filters, route("10.9.0.0/24"), True) is None  # the session's default


def test_a_filter_without_a_matching_rule_falls_through_to_the_next() -> None:
    specs = {
        "first": FilterSpec.model_validate(
            {"importV4": [{"cidr": "10.9.0.0/16", "matchOperator": "In", "action": "Reject"}]}
        ),
        "second": FilterSpec.model_validate({"importV4": [{"action": "Accept"}]}),
    }
    filters = compiled_filters(specs, ["first", "second"], "import", 4)
    assert evaluate(filters, route("10.9.1.0/24"), True) == Verdict(False, "first", 0)
    assert evaluate(filters, route(PREFIX), True) == Verdict(True, "second", 0)
    # In the BGPPeer's order, not by name.
    filters = compiled_filters(specs, ["second", "first"], "import", 4)
    assert evaluate(filters, route("10.9.1.0/24"), True) == Verdict(True, "second", 0)


def test_only_filters_with_rules_for_the_direction_and_family_are_called() -> None:
    specs = {
        "v6only": FilterSpec.model_validate({"importV6": [{"action": "Reject"}]}),
        "exportonly": FilterSpec.model_validate({"exportV4": [{"action": "Reject"}]}),
        "v4": FilterSpec.model_validate({"importV4": [{"action": "Reject"}]}),
    }
    names = ["missing", "v6only", "exportonly", "v4"]
    assert [f.name for f in compiled_filters(specs, names, "import", 4)] == ["v4"]
    assert [f.name for f in compiled_filters(specs, names, "import", 6)] == ["v6only"]
    assert [f.name for f in compiled_filters(specs, names, "export", 4)] == ["exportonly"]


def _bird_prepends(statements: str, path: tuple[int, ...]) -> tuple[int, ...]:
    """Run the `bgp_path.prepend(N);` statements of rendered BIRD text, in order."""
    for word in statements.split():
        if word.startswith("bgp_path.prepend("):
            path = (int(word[len("bgp_path.prepend(") : -2]), *path)
    return path


def test_operations_prepend_in_birds_order_and_the_last_priority_counts() -> None:
    rule = {
        "action": "Accept",
        "operations": [
            {"prependASPath": {"prefix": [1, 2]}},
            {"setPriority": {"value": 900}},
            {"addCommunity": {"value": "65000:7"}},
            {"prependASPath": {"prefix": [3]}},
            {"setPriority": {"value": 512}},
        ],
    }
    verdict = evaluate(compiled(rule), route(as_path=(9,)), True)
    assert verdict is not None and verdict.accept
    spec = FilterSpec.model_validate({"importV4": [rule]})
    text = rule_statement(spec.import_v4[0], 4)
    assert (*verdict.prepend, 9) == _bird_prepends(text, (9,)) == (3, 1, 2, 9)
    assert verdict.local_pref == BIRD_INT_MAX - 512
    assert text.rindex(f"bgp_local_pref = {BIRD_INT_MAX - 512};") > text.index("= 2147482747;")
    assert verdict.add_communities == ("65000:7",)  # (carried in the verdict, not emulated)


def test_a_reject_carries_no_operations() -> None:
    verdict = evaluate(
        compiled({"cidr": PREFIX, "matchOperator": "Equal", "action": "Reject"}),
        route(PREFIX),
        True,
    )
    assert verdict == Verdict(False, "f", 0)


# --- model.bgp: a session's filters on what it receives and sends ---------------------------------

ME = Speaker("me", "10.0.0.1", 64512, None, {4: "10.0.0.1"})


def _link(peer_as: int, imports: tuple[Filter, ...] = (), exports: tuple[Filter, ...] = ()) -> Link:
    return Link("10.0.0.2", peer_as, 64512, False, policy=Policy(imports, exports, 1024))


def test_calico_local_pref_of_the_labs_paths() -> None:
    own = Path(PREFIX, "10.0.0.1")
    ibgp = Path(PREFIX, "10.0.0.3", learned_from="10.0.0.3")
    ebgp = Path(PREFIX, "10.0.0.3", as_path=(65001,), learned_from="10.0.0.3", ebgp=True)
    relayed = Path(PREFIX, "10.0.0.3", as_path=(65001,), learned_from="10.0.0.4")
    set_by_filter = Path(PREFIX, "10.0.0.3", local_pref=BIRD_INT_MAX - 200, learned_from="x")
    assert calico_local_pref(own, 1024) == BIRD_INT_MAX - 1024
    assert calico_local_pref(own, 2048) == BIRD_INT_MAX - 2048
    assert calico_local_pref(ibgp) == BIRD_INT_MAX - 1024  # originated in the AS, over iBGP
    assert calico_local_pref(ebgp) == 100  # BIRD's default for what eBGP brings
    assert calico_local_pref(relayed) == 100  # ... which iBGP carries on
    assert calico_local_pref(set_by_filter) == BIRD_INT_MAX - 200


def test_import_reject_modify_and_default() -> None:
    link = _link(
        65001,
        imports=compiled(
            {"cidr": "10.9.0.0/16", "matchOperator": "In", "action": "Reject"},
            {
                "asPathPrefix": [65001],
                "action": "Accept",
                "operations": [
                    {"prependASPath": {"prefix": [65001]}},
                    {"setPriority": {"value": 7}},
                ],
            },
        ),
    )
    path = Path(PREFIX, "10.0.0.2", as_path=(65001,), learned_from="10.0.0.2", ebgp=True)
    assert imported(Path("10.9.1.0/24", "10.0.0.2", as_path=(65001,)), link) is None
    kept = imported(path, link)
    assert kept is not None
    assert kept.as_path == (65001, 65001) and kept.local_pref == BIRD_INT_MAX - 7
    other = Path(PREFIX, "10.0.0.2", as_path=(65002,), learned_from="10.0.0.2", ebgp=True)
    assert imported(other, link) is other  # no rule matched: Calico's import default, accept
    assert imported(other, Link("10.0.0.2", 65001, 64512, False)) is other  # no policy


def test_export_filter_sees_the_path_before_ebgp_prepends_the_own_as() -> None:
    own = Path(PREFIX, "10.0.0.1")
    blocked = _link(
        65001, exports=compiled({"asPathPrefix": [64512], "action": "Reject"}, direction="export")
    )
    out = export(own, ME, blocked)
    assert out is not None and out.as_path == (64512,)  # the rule saw an empty path
    prepend = _link(
        65001,
        exports=compiled(
            {"action": "Accept", "operations": [{"prependASPath": {"prefix": [7, 8]}}]},
            direction="export",
        ),
    )
    out = export(own, ME, prepend)
    assert out is not None and out.as_path == (64512, 7, 8)


def test_export_priority_over_ibgp_and_ebgp() -> None:
    """setPriority travels over iBGP; BIRD sends no LOCAL_PREF over eBGP."""
    rule = {"action": "Accept", "operations": [{"setPriority": {"value": 300}}]}
    own = Path(PREFIX, "10.0.0.1")
    out = export(own, ME, _link(64512, exports=compiled(rule, direction="export")))
    assert out is not None and out.local_pref == BIRD_INT_MAX - 300
    out = export(own, ME, _link(65001, exports=compiled(rule, direction="export")))
    assert out is not None and out.local_pref == DEFAULT_LOCAL_PREF


def test_export_priority_match_reads_the_normal_priority_of_own_routes() -> None:
    """Calico's export filter gives the node's own routes bgp_local_pref 2^31-1 - 1024 first:
    `priority: 1024` is "the node's own routes" (and routes learned over eBGP are not)."""
    filters = compiled({"priority": 1024, "action": "Reject"}, direction="export")
    own = Path(PREFIX, "10.0.0.1")
    learned = Path("10.9.0.0/26", "10.0.0.5", as_path=(65005,), learned_from="10.0.0.5", ebgp=True)
    assert export(own, ME, _link(65001, exports=filters)) is None
    assert export(learned, ME, _link(65001, exports=filters)) is not None


def test_interface_on_export_sees_a_blackhole_without_interface() -> None:
    """BIRD's `ifname` of a node's own block (a blackhole) is "": `*` matches it, `eth*` not;
    a learned route's interface the lab does not know, and no interface rule matches it."""
    own = Path(PREFIX, "10.0.0.1")
    learned = Path("10.9.0.0/26", "10.0.0.5", as_path=(65005,), learned_from="10.0.0.5", ebgp=True)
    anything = _link(
        65001, exports=compiled({"interface": "*", "action": "Reject"}, direction="export")
    )
    eth = _link(
        65001, exports=compiled({"interface": "eth*", "action": "Reject"}, direction="export")
    )
    assert export(own, ME, anything) is None and export(own, ME, eth) is not None
    assert export(learned, ME, anything) is not None


def test_source_remote_peers_on_export_leaves_the_nodes_own_routes() -> None:
    filters = compiled({"source": "RemotePeers", "action": "Reject"}, direction="export")
    own = Path(PREFIX, "10.0.0.1")
    learned = Path("10.9.0.0/26", "10.0.0.5", as_path=(65005,), learned_from="10.0.0.5", ebgp=True)
    assert export(own, ME, _link(65001, exports=filters)) is not None
    assert export(learned, ME, _link(65001, exports=filters)) is None


def test_an_export_accept_does_not_override_the_ibgp_rules() -> None:
    """BIRD refuses iBGP-learned routes to an iBGP peer (no reflection) before any filter."""
    filters = compiled({"action": "Accept"}, direction="export")
    learned = Path(PREFIX, "10.0.0.5", learned_from="10.0.0.5")
    assert export(learned, ME, _link(64512, exports=filters)) is None


# --- plans ----------------------------------------------------------------------------------------


def lab(asns: tuple[int, int, int], peers: dict[str, Any], filters: dict[str, Any]) -> str:
    """Three dual-stack nodes a, b, c on one subnet, mesh off, the BGPPeers and filters given."""
    nodes = {
        name: {
            "subnet": "lan",
            "ipv4": f"10.9.0.{i}",
            "ipv6": f"fd00:9::{i}",
            "asNumber": asn,
            "pods": 1,
            "labels": {"n": name},
        }
        for i, (name, asn) in enumerate(zip("abc", asns, strict=True), start=1)
    }
    return yaml.safe_dump(
        {
            "name": "filt",
            "subnets": {"lan": {"ipv4": "10.9.0.0/24", "ipv6": "fd00:9::/64"}},
            "nodes": nodes,
            "pools": {
                "p4": {"cidr": "10.244.0.0/16", "ipipMode": "Never"},
                "p6": {"cidr": "fd80::/64"},
            },
            "bgp": {"nodeToNodeMeshEnabled": False, "peers": peers, "filters": filters},
        }
    )


def planned(text: str) -> tuple[Topology, LabPlan]:
    topo = load_topology_text(text, "filt.yaml", "filt")
    return topo, build_plan(topo)


IBGP = (64512, 64512, 64512)
EBGP = (65001, 65002, 65003)
# Every node peers with the others; c's own sessions apply filter x.
AT_C = {
    "plain": {"nodeSelector": "n != 'c'", "peerSelector": "all()"},
    "at-c": {"nodeSelector": "n == 'c'", "peerSelector": "all()", "filters": ["x"]},
}
# Every node peers with the others; only a's session towards c applies filter x.
A_TO_C = {
    "a-b": {"node": "a", "peerIP": "10.9.0.2"},
    "a-b6": {"node": "a", "peerIP": "fd00:9::2"},
    "a-c": {"node": "a", "peerIP": "10.9.0.3", "filters": ["x"]},
    "a-c6": {"node": "a", "peerIP": "fd00:9::3", "filters": ["x"]},
    "others": {"nodeSelector": "n != 'a'", "peerSelector": "all()"},
}
UNFILTERED = planned(lab(IBGP, AT_C, {}))[1]


def block(node: str, family: int, plan: LabPlan = UNFILTERED) -> str:
    return next(b.cidr for b in plan.node(node).blocks if (":" in b.cidr) == (family == 6))


def rib(plan: LabPlan, node: str) -> dict[str, Any]:
    return {e.prefix: e for e in plan.node(node).rib}


def fib(plan: LabPlan, node: str) -> set[str]:
    return {r.prefix for r in plan.node(node).fib}


def test_an_import_reject_at_one_node_leaves_its_rib_and_fib_only() -> None:
    a4, a6, b4 = block("a", 4), block("a", 6), block("b", 4)
    x = {"importV4": [{"cidr": a4, "matchOperator": "Equal", "action": "Reject"}]}
    _, plan = planned(lab(IBGP, AT_C, {"x": x}))
    assert a4 not in rib(plan, "c") and a4 not in fib(plan, "c")
    assert b4 in rib(plan, "c") and b4 in fib(plan, "c")
    assert a6 in rib(plan, "c") and a6 in fib(plan, "c")  # a v4 rule leaves v6 alone
    assert rib(plan, "b")[a4].learned_from == "10.9.0.1" and a4 in fib(plan, "b")
    for node in "ab":  # nothing else changed
        assert plan.node(node).rib == UNFILTERED.node(node).rib
        assert plan.node(node).fib == UNFILTERED.node(node).fib


def test_v6_rules_affect_v6_only() -> None:
    x = {"importV6": [{"cidr": "fd80::/64", "matchOperator": "In", "action": "Reject"}]}
    _, plan = planned(lab(IBGP, AT_C, {"x": x}))
    assert block("a", 6) not in rib(plan, "c") and block("b", 6) not in rib(plan, "c")
    assert block("a", 4) in rib(plan, "c") and block("b", 4) in rib(plan, "c")
    assert block("a", 6) in rib(plan, "b")


def test_an_export_reject_towards_one_peer_keeps_the_route_from_it_only() -> None:
    a4 = block("a", 4)
    x = {"exportV4": [{"cidr": a4, "matchOperator": "Equal", "action": "Reject"}]}
    _, plan = planned(lab(IBGP, A_TO_C, {"x": x}))
    assert a4 not in rib(plan, "c") and a4 not in fib(plan, "c")  # c never learns it
    assert a4 in rib(plan, "b") and a4 in fib(plan, "b")
    assert block("a", 6) in rib(plan, "c") and block("b", 4) in rib(plan, "c")


def test_without_a_matching_rule_the_plan_is_the_unfiltered_one() -> None:
    x = {"importV4": [{"cidr": "192.0.2.0/24", "matchOperator": "In", "action": "Reject"}]}
    _, plan = planned(lab(IBGP, AT_C, {"x": x}))
    for node in "abc":
        assert plan.node(node).rib == UNFILTERED.node(node).rib


def test_set_priority_on_import_makes_the_longer_path_best() -> None:
    """eBGP between three ASes: c hears a's block from a and, one AS longer, through b."""
    a4 = block("a", 4)
    _, plain = planned(lab(EBGP, AT_C, {}))
    assert rib(plain, "c")[a4].learned_from == "10.9.0.1"
    x = {
        "importV4": [
            {
                "asPathPrefix": [65002],
                "action": "Accept",
                "operations": [{"setPriority": {"value": 512}}],
            }
        ]
    }
    _, plan = planned(lab(EBGP, AT_C, {"x": x}))
    entry = rib(plan, "c")[a4]
    assert (entry.learned_from, entry.as_path, entry.paths) == ("10.9.0.2", (65002, 65001), 2)
    assert rib(plan, "c")[block("a", 6)].learned_from == "fd00:9::1"


def test_prepend_on_export_makes_the_other_path_best() -> None:
    a4 = block("a", 4)
    x = {
        "exportV4": [
            {"action": "Accept", "operations": [{"prependASPath": {"prefix": [65001, 65001]}}]}
        ]
    }
    _, plan = planned(lab(EBGP, A_TO_C, {"x": x}))
    entry = rib(plan, "c")[a4]
    assert (entry.learned_from, entry.as_path) == ("10.9.0.2", (65002, 65001))
    assert rib(plan, "b")[a4].as_path == (65001,)  # a's session to b applies no filter


def test_an_import_prepend_of_the_own_as_is_no_loop() -> None:
    """BIRD drops a path holding its own AS before the import filter runs, not after."""
    x = {"importV4": [{"action": "Accept", "operations": [{"prependASPath": {"prefix": [65003]}}]}]}
    topo, plan = planned(lab(EBGP, AT_C, {"x": x}))
    entry = rib(plan, "c")[block("a", 4)]
    assert (entry.learned_from, entry.as_path, entry.paths) == ("10.9.0.1", (65003, 65001), 2)
    _assert_agents_hold_the_plan(topo, plan)


def _as_per_rack(
    filters: dict[str, Any], applied: dict[str, list[str]]
) -> tuple[Topology, LabPlan]:
    data = yaml.safe_load((TOPOLOGIES / "as-per-rack.yaml").read_text())
    data["bgp"]["filters"] = filters
    for peer, names in applied.items():
        data["bgp"]["peers"][peer]["filters"] = names
    return planned(yaml.safe_dump(data))


def test_a_nodes_filters_apply_on_its_sessions_to_the_labs_routers() -> None:
    """as-per-rack: nodes peer over eBGP with their rack's BIRD ToR only."""
    _, plain = _as_per_rack({}, {})
    node1, node3 = (b.cidr for n in ("node1", "node3") for b in plain.node(n).blocks[:1])
    assert node1 in rib(plain, "node3") and node3 in rib(plain, "node1")
    no3 = {"importV4": [{"cidr": node3, "matchOperator": "Equal", "action": "Reject"}]}
    no1 = {"exportV4": [{"cidr": node1, "matchOperator": "Equal", "action": "Reject"}]}
    _, plan = _as_per_rack({"no3": no3, "no1": no1}, {"rack1-tor": ["no3", "no1"]})
    for node in ("node1", "node2"):  # rack 1 imports nothing of node3's
        assert node3 not in rib(plan, node) and node3 not in fib(plan, node)
    assert node3 in rib(plan, "node4")
    # node1 never sends its block to tor1: no node anywhere learns it.
    for node in ("node2", "node3", "node4"):
        assert node1 not in rib(plan, node)


# --- the agents ----------------------------------------------------------------------------------


def _core(topo: Topology, plan: LabPlan, node: str) -> AgentCore:
    config = agent_config_of(plan, node, bgp=topo.bgp)
    return AgentCore(AgentConfig.from_json(json.loads(json.dumps(config.to_json()))))


def _parse(command: str) -> tuple[str, str, Path]:
    """`neighbor P announce|withdraw route PREFIX next-hop H [local-preference N] [as-path [..]]`"""
    words = command.split()
    peer, action, prefix, next_hop = words[1], words[2], words[4], words[6]
    local_pref, as_path = DEFAULT_LOCAL_PREF, tuple[int, ...]()
    if "local-preference" in words:
        local_pref = int(words[words.index("local-preference") + 1])
    if "as-path" in words:
        start = words.index("as-path") + 2
        as_path = tuple(int(w) for w in words[start : words.index("]", start)])
    return peer, action, Path(prefix, next_hop, as_path=as_path, local_pref=local_pref)


def _run(topo: Topology, plan: LabPlan) -> dict[str, AgentCore]:
    """Every node's core, wired together: each command becomes the peer's update."""
    cores = {n.name: _core(topo, plan, n.name) for n in plan.nodes}
    owner = {a: n for n in plan.nodes for a in (n.ipv4, n.ipv6) if a is not None}
    queue: deque[tuple[str, str]] = deque()
    for node in plan.nodes:
        queue.extend((node.name, c) for c in cores[node.name].start())
    while queue:
        sender, command = queue.popleft()
        peer, action, path = _parse(command)
        node = plan.node(sender)
        if peer not in node.expected_up:
            continue
        session = next(s for s in node.sessions if s.peer_ip == peer)
        event = (
            UpdateEvent(session.local_ip, peer, announced=(path,))
            if action == "announce"
            else UpdateEvent(session.local_ip, peer, withdrawn=(path.prefix,))
        )
        receiver = owner[peer].name
        queue.extend((receiver, c) for c in cores[receiver].on_update(event))
    return cores


def _assert_agents_hold_the_plan(topo: Topology, plan: LabPlan) -> None:
    cores = _run(topo, plan)
    prefixes = {b.cidr for n in plan.nodes for b in n.blocks}
    for node in plan.nodes:
        snapshot = cores[node.name].snapshot()["rib"]
        best = {
            r["prefix"]: (r["next_hop"], r["learned_from"], tuple(r["as_path"]))
            for r in snapshot
            if r["best"]
        }
        assert best == {e.prefix: (e.next_hop, e.learned_from, e.as_path) for e in node.rib}
        routes = {p: r.key() for p in prefixes if (r := cores[node.name].route(p)) is not None}
        assert routes == {r.prefix: r.key() for r in node.fib if r.prefix in prefixes}


def test_agents_drop_what_the_plan_drops_on_import() -> None:
    a4 = block("a", 4)
    x = {"importV4": [{"cidr": a4, "matchOperator": "Equal", "action": "Reject"}]}
    topo, plan = planned(lab(IBGP, AT_C, {"x": x}))
    _assert_agents_hold_the_plan(topo, plan)
    cores = _run(topo, plan)
    assert a4 not in cores["c"].best and a4 in cores["b"].best


def test_agents_drop_what_the_plan_drops_on_export() -> None:
    x = {"exportV4": [{"cidr": block("a", 4), "matchOperator": "Equal", "action": "Reject"}]}
    _assert_agents_hold_the_plan(*planned(lab(IBGP, A_TO_C, {"x": x})))


def test_agents_select_as_the_plan_with_priority_and_prepend() -> None:
    priority = {
        "importV4": [
            {
                "asPathPrefix": [65002],
                "action": "Accept",
                "operations": [{"setPriority": {"value": 512}}],
            }
        ]
    }
    _assert_agents_hold_the_plan(*planned(lab(EBGP, AT_C, {"x": priority})))
    prepend = {
        "exportV4": [{"action": "Accept", "operations": [{"prependASPath": {"prefix": [65001]}}]}],
        "exportV6": [{"action": "Reject"}],
    }
    topo, plan = planned(lab(EBGP, A_TO_C, {"x": prepend}))
    _assert_agents_hold_the_plan(topo, plan)
    # exportV6 rejects everything towards c: c hears a's v6 block through b only.
    assert rib(plan, "c")[block("a", 6)].learned_from == "fd00:9::2"


# --- the agent's configuration --------------------------------------------------------------------


def test_the_agent_configuration_carries_the_rules_it_needs() -> None:
    x = {"importV4": [{"action": "Reject"}]}
    unused = {"importV4": [{"action": "Accept"}]}
    topo, plan = planned(lab(IBGP, AT_C, {"x": x, "unused": unused}))
    config = agent_config_of(plan, "c", bgp=topo.bgp)
    assert [(f.name, f.direction, f.family) for f in config.filters] == [("x", "import", 4)]
    assert {s.peer_ip: s.import_filters for s in config.sessions} == {
        "10.9.0.1": ("x",),
        "10.9.0.2": ("x",),
        "fd00:9::1": (),
        "fd00:9::2": (),
    }
    assert AgentConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    links = config.links()
    assert links["10.9.0.1"].policy is not None and links["fd00:9::1"].policy is None
    assert agent_config_of(plan, "a", bgp=topo.bgp).filters == ()


def test_an_agent_configuration_without_the_rules_is_refused() -> None:
    _, plan = planned(lab(IBGP, AT_C, {"x": {"importV4": [{"action": "Reject"}]}}))
    assert agent_config_of(plan, "a").filters == ()  # a applies none: no rules needed
    with pytest.raises(ValueError, match="pass the topology's bgp section"):
        agent_config_of(plan, "c")
    other = load_topology_text(lab(IBGP, AT_C, {}), "other.yaml", "other")
    with pytest.raises(ValueError, match="pass the plan's own topology"):
        agent_config_of(plan, "c", bgp=other.bgp)


def test_an_agent_configuration_missing_a_filters_rules_is_named() -> None:
    topo, plan = planned(lab(IBGP, AT_C, {"x": {"importV4": [{"action": "Reject"}]}}))
    data = agent_config_of(plan, "c", bgp=topo.bgp).to_json()
    data["filters"] = []
    with pytest.raises(LabError, match=r"^cfg\.sessions\[0\]\.import_filters: BGPFilter 'x' has"):
        AgentConfig.from_json(data, "cfg")
