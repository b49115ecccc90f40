"""Scenario steps for the BGP fabric: `stop-router`/`start-router` (a ToR fails and comes
back), `set-peer` (a BGPPeer's fields changed live), `set-filter` (a BGPFilter created or
replaced), `set-router` (a router's nodePassword), and expectations that name a BGP router (a
session with it, a route through it): what they parse to, what they change in the topology
and plan, and the located problems (exit 2) of steps that can never work, before anything
runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from meshemu.errors import ConfigError
from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan
from meshemu.model.topology import Topology
from meshemu.scenario.evolve import TOPOLOGY_KINDS, evolve
from meshemu.scenario.expectations import router_next_hop, router_peer_address
from meshemu.scenario.model import Step, load_scenario
from meshemu.scenario.runner import describe
from meshemu.scenario.schema import ACTION_KINDS

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGIES = ROOT / "topologies"
LEAF_SPINE = TOPOLOGIES / "leaf-spine.yaml"  # two leaves per rack, two spines, all BIRD
AS_PER_RACK = TOPOLOGIES / "as-per-rack.yaml"  # tor1, tor2, spine; BGPPeers rack1-tor, rack2-tor
FLAGSHIP = TOPOLOGIES / "flagship.yaml"  # one router (spine) that does not speak BGP


def scenario_file(folder: Path, steps: list[str], topology: Path = AS_PER_RACK) -> Path:
    path = folder / "scenario.yaml"
    body = "".join(f"  {step}\n" for step in ["- up: {}", *steps])
    path.write_text(f"name: t\nlab: sc-t\ntopology: {topology}\nsteps:\n{body}")
    return path


def problems(path: Path) -> list[str]:
    """The problem lines `load_scenario` refuses the file with ([] when it accepts it)."""
    try:
        load_scenario(path)
    except ConfigError as err:
        return str(err).splitlines()
    return []


def assert_located(path: Path, location: str, words: str) -> None:
    lines = problems(path)
    hits = [line for line in lines if line.startswith(f"{location}:") and words in line]
    assert hits, "\n".join(lines)


def step(data: dict[str, object]) -> Step:
    return Step.model_validate(data)


# -- the actions exist, and the topology-changing ones change the topology ------------------


def test_the_new_actions_are_listed_and_set_steps_change_the_topology() -> None:
    for kind in ("stop-router", "start-router", "set-peer", "set-filter", "set-router"):
        assert kind in ACTION_KINDS
    assert {"set-peer", "set-filter", "set-router"} <= set(TOPOLOGY_KINDS)
    assert not {"stop-router", "start-router"} & set(TOPOLOGY_KINDS)  # faults, not changes


def test_set_peer_changes_only_the_fields_it_names() -> None:
    topo = load_topology(AS_PER_RACK)
    plan = build_plan(topo)
    new, new_plan = evolve(topo, plan, step({"set-peer": {"peer": "rack1-tor", "password": "pw"}}))
    changed, kept = new.bgp.peers["rack1-tor"], topo.bgp.peers["rack1-tor"]
    assert changed.password == "pw"
    assert changed.model_copy(update={"password": None}) == kept  # nothing else moved
    assert new.bgp.peers["rack2-tor"] == topo.bgp.peers["rack2-tor"]
    # The plan follows: node1's sessions with tor1 are signed, node3's are not.
    assert {s.password for s in new_plan.node("node1").sessions} == {"pw"}
    assert {s.password for s in new_plan.node("node3").sessions} == {None}


def test_set_peer_null_puts_a_field_back_to_its_default() -> None:
    topo = load_topology(AS_PER_RACK)
    with_pw, plan = evolve(
        topo, build_plan(topo), step({"set-peer": {"peer": "rack1-tor", "password": "pw"}})
    )
    back, _ = evolve(with_pw, plan, step({"set-peer": {"peer": "rack1-tor", "password": None}}))
    assert back.bgp.peers["rack1-tor"].password is None
    assert back == topo


def test_set_peer_sets_filters_by_their_names() -> None:
    data = load_topology(AS_PER_RACK).model_dump(mode="json", by_alias=True)
    data["bgp"]["filters"] = {
        "no-default": {
            "importV4": [{"cidr": "0.0.0.0/0", "matchOperator": "Equal", "action": "Reject"}]
        }
    }
    topo = Topology.model_validate(data)
    new, plan = evolve(
        topo, build_plan(topo), step({"set-peer": {"peer": "rack1-tor", "filters": ["no-default"]}})
    )
    assert new.bgp.peers["rack1-tor"].filters == ["no-default"]
    v4 = [s for s in plan.node("node1").sessions if s.family == 4]
    assert v4 and all(s.import_filters == ("no-default",) for s in v4)
    assert all(s.import_filters == () for s in plan.node("node3").sessions)


def test_set_filter_creates_and_replaces_a_bgpfilter_that_set_peer_attaches() -> None:
    topo = load_topology(AS_PER_RACK)
    plan = build_plan(topo)
    rule = {"cidr": "172.21.0.128/25", "matchOperator": "In", "action": "Reject"}
    made = step({"set-filter": {"name": "no-rack2", "importV4": [rule]}})
    topo, plan = evolve(topo, plan, made)
    assert topo.bgp.filters["no-rack2"].import_v4[0].cidr == "172.21.0.128/25"
    assert all(s.import_filters == () for s in plan.node("node1").sessions)  # not attached
    topo, plan = evolve(
        topo, plan, step({"set-peer": {"peer": "rack1-tor", "filters": ["no-rack2"]}})
    )
    v4 = [s for s in plan.node("node1").sessions if s.family == 4]
    assert v4 and all(s.import_filters == ("no-rack2",) for s in v4)
    # Applied again, the filter is replaced as a whole (kubectl apply), not merged.
    replaced = step({"set-filter": {"name": "no-rack2", "exportV4": [rule]}})
    topo, plan = evolve(topo, plan, replaced)
    assert topo.bgp.filters["no-rack2"].import_v4 == []
    v4 = [s for s in plan.node("node1").sessions if s.family == 4]
    assert all(s.import_filters == () and s.export_filters == ("no-rack2",) for s in v4)


def test_set_filter_rules_are_checked_where_they_are_written(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path,
        [
            "- set-filter: {name: f, importV4: "
            "[{cidr: 10.0.0.0/8, matchOperator: Near, action: Reject}]}"
        ],
    )
    assert_located(path, "steps[1].set-filter.importV4[0].matchOperator", "'Equal'")


def test_set_peer_must_change_something_and_only_bgppeer_fields() -> None:
    with pytest.raises(ValidationError, match="fields to change"):
        step({"set-peer": {"peer": "rack1-tor"}})
    with pytest.raises(ValidationError, match="colour"):
        step({"set-peer": {"peer": "rack1-tor", "colour": "blue"}})


def test_set_peer_on_an_unknown_peer(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, ["- set-peer: {peer: rack9-tor, password: pw}"])
    assert_located(path, "steps[1].set-peer.peer", "unknown BGP peer 'rack9-tor'")


def test_set_peer_on_a_peer_removed_earlier(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path,
        ["- remove-peer: {peer: rack1-tor}", "- set-peer: {peer: rack1-tor, password: pw}"],
    )
    assert_located(path, "steps[2].set-peer.peer", "unknown BGP peer")


def test_set_router_node_password_changes_the_routers_node_sessions() -> None:
    topo = load_topology(AS_PER_RACK)
    new, plan = evolve(
        topo, build_plan(topo), step({"set-router": {"router": "tor1", "nodePassword": "pw"}})
    )
    assert new.routers["tor1"].bgp is not None and new.routers["tor1"].bgp.node_password == "pw"
    tor1 = next(r for r in plan.routers if r.name == "tor1")
    assert tor1.bgp is not None
    node_sessions = [s for s in tor1.bgp.sessions if s.peer_kind == "node"]
    assert node_sessions and {s.password for s in node_sessions} == {"pw"}
    # The nodes send no password: their sessions with tor1 cannot come up, as on a real ToR.
    assert plan.node("node1").expected_up == ()


def test_set_router_needs_node_password() -> None:
    with pytest.raises(ValidationError, match="nodePassword"):
        step({"set-router": {"router": "tor1"}})
    assert step({"set-router": {"router": "tor1", "nodePassword": None}}).set_router is not None


def test_set_router_on_an_unknown_router_and_on_one_without_bgp(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, ["- set-router: {router: tor9, nodePassword: pw}"])
    assert_located(path, "steps[1].set-router.router", "unknown router 'tor9'")
    path = scenario_file(
        tmp_path, ["- set-router: {router: spine, nodePassword: pw}"], topology=FLAGSHIP
    )
    assert_located(path, "steps[1].set-router.router", "does not speak BGP")


# -- stop-router / start-router ---------------------------------------------------------------


def test_stop_and_start_a_router(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path,
        [
            "- stop-router: {router: leaf1a}",
            "- expect: {session: {node: node1, peer: leaf1a, state: down}}",
            "- start-router: {router: leaf1a}",
            "- expect: {converged: {}}",
        ],
        topology=LEAF_SPINE,
    )
    scenario, _topo, _ = load_scenario(path)
    assert [s.kind for s in scenario.steps[1:4:2]] == ["stop-router", "start-router"]
    assert describe(scenario.steps[1]) == "stop-router leaf1a"


def test_a_router_without_bgp_can_fail_too(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path,
        ["- stop-router: {router: spine}", "- start-router: {router: spine}"],
        topology=FLAGSHIP,
    )
    assert problems(path) == []


def test_stop_router_on_an_unknown_router(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, ["- stop-router: {router: leaf9}"], topology=LEAF_SPINE)
    assert_located(path, "steps[1].stop-router.router", "unknown router 'leaf9'")


def test_a_router_stopped_twice(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path,
        ["- stop-router: {router: leaf1a}", "- stop-router: {router: leaf1a}"],
        topology=LEAF_SPINE,
    )
    assert_located(path, "steps[2].stop-router.router", "stopped already")


def test_a_router_started_while_it_runs(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, ["- start-router: {router: leaf1b}"], topology=LEAF_SPINE)
    assert_located(path, "steps[1].start-router.router", "leaf1b runs")


def test_converged_cannot_hold_while_a_router_is_stopped(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path,
        ["- stop-router: {router: leaf2b}", "- expect: {converged: {}}"],
        topology=LEAF_SPINE,
    )
    assert_located(path, "steps[2].expect.converged", "leaf2b is stopped")


# -- expectations naming a router -----------------------------------------------------------


def test_router_names_resolve_to_the_addresses_the_node_sees() -> None:
    plan = build_plan(load_topology(LEAF_SPINE))
    assert router_peer_address(plan, "node1", "leaf1a", 4) == "10.43.1.1"
    assert router_peer_address(plan, "node2", "leaf1b", 6) == "fd00:43:1::2"
    assert router_peer_address(plan, "node3", "leaf1a", 4) is None  # another rack's leaf
    assert router_next_hop(plan, "node1", "leaf1b", 4) == "10.43.1.2"
    assert router_next_hop(plan, "node1", "spine1", 4) is None  # not on rack 1


def test_a_session_with_a_router_of_another_rack(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path, ["- expect: {session: {node: node3, peer: leaf1a}}"], topology=LEAF_SPINE
    )
    assert_located(path, "steps[1].expect.session.peer", "no IPv4 session with router leaf1a")


def test_a_session_with_a_router_that_does_not_speak_bgp(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path,
        ["- expect: {session: {node: node1, peer: spine, state: down}}"],
        topology=FLAGSHIP,
    )
    assert_located(path, "steps[1].expect.session.peer", "does not speak BGP")


def test_a_session_with_a_removed_router_peer(tmp_path: Path) -> None:
    """The BGPPeer that made node1's sessions with tor1 is gone at that step."""
    path = scenario_file(
        tmp_path,
        ["- remove-peer: {peer: rack1-tor}", "- expect: {session: {node: node1, peer: tor1}}"],
    )
    assert_located(path, "steps[2].expect.session.peer", "no IPv4 session with router tor1")


def test_a_route_through_a_router(tmp_path: Path) -> None:
    ok = scenario_file(
        tmp_path,
        ["- expect: {route: {node: node1, to: node3, family: ipv6, via: leaf1b}}"],
        topology=LEAF_SPINE,
    )
    assert problems(ok) == []
    far = scenario_file(
        tmp_path, ["- expect: {route: {node: node1, to: node3, via: spine2}}"], topology=LEAF_SPINE
    )
    assert_located(far, "steps[1].expect.route.via", "no IPv4 address on the subnet of node1")


def test_an_unknown_name_as_next_hop_lists_the_routers(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path, ["- expect: {route: {node: node1, to: node3, via: leaf9}}"], topology=LEAF_SPINE
    )
    assert_located(path, "steps[1].expect.route.via", "neither a node nor an address, nor a router")


# -- reports never show a password ----------------------------------------------------------


def test_describe_never_shows_a_password() -> None:
    text = describe(
        step({"set-peer": {"peer": "rack1-tor", "password": "hunter2", "ttlSecurity": 1}})
    )
    assert "hunter2" not in text and "password (changed)" in text and "ttlSecurity 1" in text
    assert "back to default" in describe(step({"set-peer": {"peer": "p", "password": None}}))
    assert "hunter2" not in describe(
        step({"set-router": {"router": "tor1", "nodePassword": "hunter2"}})
    )
