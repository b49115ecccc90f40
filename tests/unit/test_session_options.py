"""Calico's session options in the plan and in the ExaBGP configuration (issue 8, part 3).

Each rule follows projectcalico/calico confd (`client.go` updatePeersV1 / nodeAsBGPPeers,
`bgp_processor.go` buildPeerFromData, `template_funcs.go` for BGPFilters); the conformance test
checks the same rules against Calico's rendered files, these tests pin them one at a time on
small bundles.
"""

from __future__ import annotations

import pytest

from meshemu.errors import ConfigError
from meshemu.model import bgp_policy
from meshemu.model.load import load_topology_text
from meshemu.model.plan import LabPlan, build_plan
from meshemu.model.render import gtsm_minimum_ttl, render_exabgp
from meshemu.model.sessions import Session
from meshemu.model.topology import parse_duration

NODES = """
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false, asNumber: 64512}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: rr, labels: {rr: "yes"}}
spec: {bgp: {ipv4Address: 10.0.0.1/24, routeReflectorClusterID: 1.1.1.1}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: a}
spec: {bgp: {ipv4Address: 10.0.0.2/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: b}
spec: {bgp: {ipv4Address: 10.0.0.3/24}}
"""


def _plan(extra: str) -> LabPlan:
    return build_plan(load_topology_text(NODES + extra, "bundle.yaml", "t"))


def _peer(name: str, spec: str) -> str:
    return f"""---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: {name}}}
spec: {spec}
"""


def _sessions(plan: LabPlan, node: str) -> dict[str, Session]:
    return {s.peer_ip: s for s in plan.node(node).sessions}


def test_an_ebgp_peer_of_a_route_reflector_is_no_client() -> None:
    plan = _plan(
        _peer("tor", "{node: rr, peerIP: 10.0.0.9, asNumber: 65000}")
        + _peer("ibgp", "{node: rr, peerIP: 10.0.0.8, asNumber: 64512}")
    )
    sessions = _sessions(plan, "rr")
    assert not sessions["10.0.0.9"].rr_client
    # An iBGP peerIP peer is a client whatever it is (confd knows no cluster ID for it).
    assert sessions["10.0.0.8"].rr_client and sessions["10.0.0.8"].cluster_id == "1.1.1.1"


def test_keep_original_next_hop_is_for_ebgp_only_and_next_hop_mode_overrides_it() -> None:
    plan = _plan(
        _peer("e", "{node: a, peerIP: 10.0.0.9, asNumber: 65000, keepOriginalNextHop: true}")
        + _peer("i", "{node: a, peerIP: 10.0.0.8, asNumber: 64512, keepOriginalNextHop: true}")
        + _peer("s", "{node: a, peerIP: 10.0.0.7, asNumber: 64512, nextHopMode: Self}")
        + _peer(
            "k",
            "{node: a, peerIP: 10.0.0.6, asNumber: 65000, nextHopMode: Auto, "
            "keepOriginalNextHop: true}",
        )
    )
    sessions = _sessions(plan, "a")
    assert sessions["10.0.0.9"].keep_next_hop
    assert not sessions["10.0.0.8"].keep_next_hop
    assert sessions["10.0.0.7"].next_hop_self and not sessions["10.0.0.7"].keep_next_hop
    assert not sessions["10.0.0.6"].keep_next_hop  # Auto wins over keepOriginalNextHop


def test_a_peer_selector_alone_makes_global_sessions_never_passive() -> None:
    plan = _plan(_peer("all-rr", "{peerSelector: has(rr), ttlSecurity: 2}"))
    for node in ("a", "b"):
        (session,) = plan.node(node).sessions
        assert session.kind == "global" and session.peer_ip == "10.0.0.1"
        assert not session.passive and session.ttl_security == 2


def test_a_node_specific_peering_is_dropped_under_a_global_one() -> None:
    plan = _plan(
        _peer("g", "{peerIP: 10.0.0.9, asNumber: 65000}")
        + _peer("n", "{node: a, peerIP: 10.0.0.9, asNumber: 65001}")
    )
    (session,) = plan.node("a").sessions
    assert session.kind == "global" and session.peer_as == 65000


def test_local_as_applies_to_peer_ip_peerings_only() -> None:
    plan = _plan(
        _peer(
            "ip",
            "{node: a, peerIP: 10.0.0.9, asNumber: 65000, localASNumber: 65010, "
            "numAllowedLocalASNumbers: 2}",
        )
        + _peer(
            "sel",
            "{node: a, peerSelector: has(rr), localASNumber: 65010, numAllowedLocalASNumbers: 2}",
        )
    )
    sessions = _sessions(plan, "a")
    assert (sessions["10.0.0.9"].local_as, sessions["10.0.0.9"].allow_local_as) == (65010, 2)
    assert (sessions["10.0.0.1"].local_as, sessions["10.0.0.1"].allow_local_as) == (64512, None)


@pytest.mark.parametrize("gateway", ["10.0.0.254x", "fd00::1"])
def test_a_reachable_by_that_does_not_fit_drops_the_peer(gateway: str) -> None:
    plan = _plan(
        _peer("p", f"{{node: a, peerIP: 10.0.0.9, asNumber: 65000, reachableBy: {gateway}}}")
    )
    assert plan.node("a").sessions == ()


def test_reachable_by_keepalive_and_filters_reach_the_session() -> None:
    plan = _plan(
        _peer(
            "p",
            "{node: a, peerIP: 10.0.0.9, asNumber: 65000, reachableBy: 10.0.0.254, "
            "keepaliveTime: 1m30s, filters: [f, missing]}",
        )
        + """---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: f}
spec:
  exportV4: [{cidr: 10.0.0.0/8, matchOperator: In, action: Accept}]
"""
    )
    (session,) = plan.node("a").sessions
    assert session.reachable_by == "10.0.0.254" and session.keepalive_time == 90
    # Only the filter that exists and has rules for the direction and family applies.
    assert session.export_filters == ("f",) and session.import_filters == ()
    # Applied by the planner and the agents now: not listed as read but not emulated.
    assert not any(where.endswith(".filters") for where, _ in plan.unsupported)


def test_a_calico_enterprise_peer_field_is_unknown() -> None:
    with pytest.raises(ConfigError) as err:
        _plan(_peer("p", "{node: a, peerIP: 10.0.0.9, asNumber: 65000, restartMode: LongLived}"))
    assert any(p.location.endswith("spec.restartMode") for p in err.value.problems)


def test_a_bad_duration_is_located() -> None:
    with pytest.raises(ConfigError) as err:
        _plan(_peer("p", "{node: a, peerIP: 10.0.0.9, asNumber: 65000, keepaliveTime: soon}"))
    assert any(p.location.endswith("spec.keepaliveTime") for p in err.value.problems)


def test_durations_round_like_confd() -> None:
    assert [parse_duration(t) for t in ("10s", "2m", "1m30s", "1.6s", "120", "500ms")] == [
        10,
        120,
        90,
        2,
        120,
        1,
    ]


def test_a_long_filter_name_is_cut_with_a_hash_like_confd() -> None:
    """bgpfilter/filter_names in Calico's corpus: 46 characters make a 65-character symbol."""
    name = "46characters.exactly.so.should.truncate-123456"
    assert len(name) == 46
    assert bgp_policy.function_name(name, "import", 4) == (
        "'bgp_46characters.exactly.so.shou_9615CBDC00BAC628_importFilterV4'"
    )


def test_ttl_security_reaches_exabgp_as_a_minimum_ttl() -> None:
    plan = _plan(_peer("p", "{peerSelector: has(rr), ttlSecurity: 1, keepaliveTime: 20s}"))
    text = render_exabgp(plan, plan.node("a"), ["agent"])
    assert f"incoming-ttl {gtsm_minimum_ttl(1)};" in text and gtsm_minimum_ttl(1) == 255
    assert "# not emulated by ExaBGP: keepalive time 20" in text
