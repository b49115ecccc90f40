"""Tests of meshemu.verify.checks: the plan's expectations against hand-made observations.

The agent states are dicts shaped exactly like the `agent.json` an agent writes
(`AgentCore.snapshot` plus what `Runtime.write_state` adds), the FIBs lists of `FibRoute`, the
dataplane cells `PathCell`s: no lab, no root. Each test breaks one thing in a healthy
observation and checks that exactly that thing fails, with a diagnosis that names it.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from meshemu.model.load import load_topology, load_topology_text
from meshemu.model.plan import LabPlan, NodePlan, RouterPlan, build_plan
from meshemu.model.routes import FibRoute, NextHop, source_of
from meshemu.verify.bird_output import BirdProtocol, BirdRoute
from meshemu.verify.checks import (
    check_dataplane,
    check_fib,
    check_rib,
    check_sessions,
    verify_results,
)
from meshemu.verify.observation import (
    Cell,
    NodeHealth,
    Observation,
    PathCell,
    RouterObservation,
    expected_path,
)
from meshemu.verify.results import FAIL, PASS, SKIP, CheckResult

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"

# A mesh of three with an external upstream on node1 (a session that is planned but never up).
MESH3 = """
name: checks
subnets:
  lan: {ipv4: 10.8.0.0/24}
nodes:
  node1: {subnet: lan}
  node2: {subnet: lan}
  node3: {subnet: lan}
pools:
  p4: {cidr: 10.248.0.0/16}
bgp:
  peers:
    upstream: {node: node1, peerIP: 192.0.2.1, asNumber: 65100}
"""


@pytest.fixture(scope="module")
def mesh() -> LabPlan:
    return build_plan(load_topology_text(MESH3, "checks.yaml", "checks"))


@pytest.fixture(scope="module")
def rr() -> LabPlan:
    return build_plan(load_topology(TOPOLOGIES / "route-reflectors.yaml"))


# --- healthy observations, as the agents and the observer write them -----------------------------


def agent_state(plan: LabPlan, node: NodePlan) -> dict[str, Any]:
    """What a healthy, converged agent writes to `agent.json`."""
    sessions = [
        {
            "peer_ip": s.peer_ip,
            "peer_node": s.peer_name,
            "kind": s.kind,
            "state": "established" if s.peer_ip in node.expected_up else "idle",
            "since": 1714557600.25,
            "info": "" if s.peer_ip in node.expected_up else "Connect",
            "prefixes_received": 2,
        }
        for s in node.sessions
        if s.emulated
    ]
    rib = []
    for entry in node.rib:
        rib.append(
            {
                "prefix": entry.prefix,
                "next_hop": entry.next_hop,
                "learned_from": entry.learned_from,
                "as_path": list(entry.as_path),
                "local_pref": 100,
                "originator_id": entry.originator_id,
                "cluster_list": list(entry.cluster_list),
                "best": True,
            }
        )
        # The other candidates the node holds (another reflector's copy): not best.
        for extra in range(entry.paths - 1):
            rib.append(
                {
                    "prefix": entry.prefix,
                    "next_hop": entry.next_hop,
                    "learned_from": f"10.255.255.{extra + 1}",
                    "as_path": [],
                    "local_pref": 100,
                    "originator_id": entry.originator_id or entry.next_hop,
                    "cluster_list": ["244.0.0.1", *entry.cluster_list],
                    "best": False,
                }
            )
    return {
        "sessions": sessions,
        "rib": rib,
        "adj_out": {s["peer_ip"]: [] for s in sessions},
        "node": node.name,
        "pid": 4242,
        "started": 1714557600.0,
        "updated": 1714557601.0,
        "fib": [
            {"prefix": r.prefix, "via": r.via, "dev": r.dev, "onlink": r.onlink, "type": r.type}
            for r in node.fib
        ],
        "errors": [],
    }


def matrix(plan: LabPlan) -> list[PathCell]:
    """Every pod probes every other pod, replies come back along the planned path."""
    cells = []
    pods = [(n, p) for n in plan.nodes for p in n.pods]
    for src_node, src in pods:
        for dst_node, dst in pods:
            if src is dst:
                continue
            for family, (a, b) in ((4, (src.ipv4, dst.ipv4)), (6, (src.ipv6, dst.ipv6))):
                if a is None or b is None:
                    continue
                path = expected_path(plan, src_node, dst_node, family)
                cell = Cell(
                    f"{src_node.name}/{src.name}",
                    f"{dst_node.name}/{dst.name}",
                    family,
                    a,
                    b,
                    path,
                    0.2,
                )
                cells.append(PathCell(cell, True, path))
    return cells


def router_seen(router: RouterPlan) -> RouterObservation:
    """What a healthy BIRD with meshemu's configuration says: every session the plan expects
    up Established, the plan's best paths selected, its kernel routes installed."""
    assert router.bgp is not None
    up = set(router.bgp.expected_up)
    protocols = tuple(
        BirdProtocol(
            s.protocol_name,
            "BGP",
            None,
            "up" if s.peer_ip in up else "start",
            "07:00:00",
            "Established" if s.peer_ip in up else "Active",
            bgp_state="Established" if s.peer_ip in up else "Active",
            neighbor_address=s.peer_ip,
        )
        for s in router.bgp.sessions
    )
    # The best paths, selected; an ECMP route's other paths, held but not selected.
    held = [(r, r.learned_from, r.next_hop, True) for r in router.bgp.routes] + [
        (r, h.learned_from, h.next_hop, False)
        for r in router.bgp.routes
        for h in r.multipath
        if h.next_hop != r.next_hop
    ]
    routes = tuple(
        BirdRoute(
            r.prefix,
            "master6" if ":" in r.prefix else "master4",
            "unicast",
            "x",
            "07:00:00",
            learned_from,
            selected,
            "",
            source="BGP",
            as_path=r.as_path,
            bgp_next_hop=next_hop,
        )
        for r, learned_from, next_hop, selected in held
    )
    # Its kernel routes as netlink reports them: BIRD's kernel protocol writes protocol 12; an
    # ECMP route has next hops (RTA_MULTIPATH) instead of a gateway and device.
    fib = tuple(
        FibRoute(
            r.prefix, "unicast", r.via, r.dev, False, "proto 12", source_of(12, "unicast", r.dev)
        )
        if not r.multipath
        else FibRoute(
            r.prefix,
            "unicast",
            reason="proto 12",
            source=source_of(12, "unicast", None),
            nexthops=tuple(NextHop(h.via, h.dev) for h in r.multipath),
        )
        for r in router.bgp.routes
    )
    return RouterObservation(True, protocols, routes, fib)


def healthy(plan: LabPlan) -> Observation:
    return Observation(
        agents={n.name: agent_state(plan, n) for n in plan.nodes},
        fibs={n.name: list(n.fib) for n in plan.nodes},
        matrix=matrix(plan),
        health={n.name: NodeHealth() for n in plan.nodes},
        routers={r.name: router_seen(r) for r in plan.routers if r.bgp is not None},
    )


def failed(results: list[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.status == FAIL]


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def _addr(plan: LabPlan, name: str) -> str:
    address = plan.node(name).ipv4
    assert address is not None
    return address


# --- everything ok -------------------------------------------------------------------------------


def _plans() -> list[LabPlan]:
    plans = [build_plan(load_topology(p)) for p in sorted(TOPOLOGIES.glob("*.yaml"))]
    return [*plans, build_plan(load_topology_text(MESH3, "checks.yaml", "checks"))]


PLANS = _plans()


@pytest.mark.parametrize("plan", PLANS, ids=[p.name for p in PLANS])
def test_a_healthy_lab_passes(plan: LabPlan) -> None:
    results = verify_results(plan, healthy(plan))
    assert failed(results) == []
    names = [r.name for r in results]
    assert len(names) == len(set(names)), "check names are unique within a run"
    categories = [r.category for r in results]
    # Health first, then sessions, RIB, FIB, dataplane (the order reports show).
    order = ["health", "sessions", "rib", "fib", "dataplane"]
    assert categories == sorted(categories, key=order.index)
    speakers = len(plan.nodes) + sum(r.bgp is not None for r in plan.routers)
    assert sum(c == "rib" for c in categories) == speakers
    assert sum(c == "fib" for c in categories) == speakers
    assert sum(c == "dataplane" for c in categories) == len(matrix(plan))
    assert sum(c == "sessions" for c in categories) == sum(
        len(n.sessions) for n in plan.nodes
    ) + sum(len(r.bgp.sessions) for r in plan.routers if r.bgp is not None)


def test_a_healthy_lab_has_the_results_it_should(mesh: LabPlan) -> None:
    results = by_name(verify_results(mesh, healthy(mesh)))
    n1, n2 = _addr(mesh, "node1"), _addr(mesh, "node2")
    assert results[f"session node1 -> {n2}"].status == PASS
    assert results[f"session node2 -> {n1}"].observed == "Established"
    upstream = results["session node1 -> 192.0.2.1"]
    assert upstream.status == SKIP and "external" in upstream.diagnosis
    assert results["rib node1"].status == PASS
    assert results["rib node1"].observed == "2 learned best paths"
    assert results["fib node3"].status == PASS


# --- sessions ------------------------------------------------------------------------------------


def test_a_session_down(mesh: LabPlan) -> None:
    observation = healthy(mesh)
    n2 = _addr(mesh, "node2")
    agent = observation.agents["node1"]
    assert agent is not None
    session = next(s for s in agent["sessions"] if s["peer_ip"] == n2)
    session.update(state="active", info="Connection refused")
    results = check_sessions(mesh, observation.agents, observation.health)
    (bad,) = failed(results)
    assert bad.name == f"session node1 -> {n2}"
    assert bad.node == "node1"
    assert bad.observed == "active (Connection refused)"
    assert "node2" in bad.diagnosis and n2 in bad.diagnosis


def test_a_session_the_agent_does_not_report(mesh: LabPlan) -> None:
    observation = healthy(mesh)
    n3 = _addr(mesh, "node3")
    agent = observation.agents["node2"]
    assert agent is not None
    agent["sessions"] = [s for s in agent["sessions"] if s["peer_ip"] != n3]
    (bad,) = failed(check_sessions(mesh, observation.agents))
    assert (bad.name, bad.observed) == (f"session node2 -> {n3}", "absent")


def test_an_unplanned_established_session(mesh: LabPlan) -> None:
    observation = healthy(mesh)
    agent = observation.agents["node3"]
    assert agent is not None
    extra = dict(agent["sessions"][0], peer_ip="10.8.0.99", peer_node=None)
    agent["sessions"].append(extra)
    (bad,) = failed(check_sessions(mesh, observation.agents))
    assert bad.name == "session node3 -> 10.8.0.99"
    assert "the plan does not have" in bad.diagnosis
    extra["state"] = "idle"
    assert failed(check_sessions(mesh, observation.agents)) == []


# --- RIB -----------------------------------------------------------------------------------------


def _best(agent: dict[str, Any] | None, prefix: str) -> dict[str, Any]:
    assert agent is not None
    return next(r for r in agent["rib"] if r["prefix"] == prefix and r["best"])


def _learned(plan: LabPlan, node: str) -> list[str]:
    return [e.prefix for e in plan.node(node).rib if e.learned_from is not None]


def test_a_rib_entry_with_a_wrong_next_hop(mesh: LabPlan) -> None:
    observation = healthy(mesh)
    prefix = _learned(mesh, "node1")[0]
    want = _best(observation.agents["node1"], prefix)["next_hop"]
    _best(observation.agents["node1"], prefix)["next_hop"] = "10.8.0.77"
    (bad,) = failed(check_rib(mesh, observation.agents))
    assert bad.name == "rib node1"
    assert bad.details["problems"] == [f"{prefix}: next hop 10.8.0.77, expected {want}"]


def test_a_missing_rib_entry(mesh: LabPlan) -> None:
    observation = healthy(mesh)
    prefix = _learned(mesh, "node2")[0]
    origin = next(e.origin_node for e in mesh.node("node2").rib if e.prefix == prefix)
    agent = observation.agents["node2"]
    assert agent is not None
    agent["rib"] = [r for r in agent["rib"] if r["prefix"] != prefix]
    (bad,) = failed(check_rib(mesh, observation.agents))
    assert bad.details["problems"] == [f"missing {prefix} (block of {origin})"]
    assert bad.expected == f"{len(_learned(mesh, 'node2'))} learned best paths"


def test_a_rib_entry_that_is_there_but_not_best_is_missing(mesh: LabPlan) -> None:
    observation = healthy(mesh)
    prefix = _learned(mesh, "node2")[0]
    _best(observation.agents["node2"], prefix)["best"] = False
    (bad,) = failed(check_rib(mesh, observation.agents))
    assert bad.details["problems"][0].startswith(f"missing {prefix}")


def test_a_leaked_rib_entry(mesh: LabPlan) -> None:
    observation = healthy(mesh)
    agent = observation.agents["node3"]
    assert agent is not None
    agent["rib"].append(dict(agent["rib"][0], prefix="10.99.0.0/26", learned_from="10.8.0.9"))
    (bad,) = failed(check_rib(mesh, observation.agents))
    assert bad.details["problems"] == ["unexpected 10.99.0.0/26 from 10.8.0.9 (leaked or looped)"]


def test_own_routes_and_candidates_that_are_not_best_do_not_count(rr: LabPlan) -> None:
    observation = healthy(rr)
    agent = observation.agents["node1"]
    assert agent is not None
    # An own route (learned_from None) the plan does not list, and a second candidate.
    agent["rib"].append(
        dict(agent["rib"][0], prefix="172.20.250.0/26", learned_from=None, best=True)
    )
    agent["rib"].append(dict(agent["rib"][0], next_hop="10.30.9.9", best=False))
    assert failed(check_rib(rr, observation.agents)) == []


def test_a_reflected_route_with_a_wrong_cluster_list(rr: LabPlan) -> None:
    node = rr.node("node1")
    reflected = next(e for e in node.rib if e.originator_id is not None)
    observation = healthy(rr)
    entry = _best(observation.agents["node1"], reflected.prefix)
    entry["cluster_list"] = ["244.0.0.1", "244.0.0.1"]
    (bad,) = failed(check_rib(rr, observation.agents))
    (problem,) = bad.details["problems"]
    assert problem.startswith(f"{reflected.prefix}: ORIGINATOR_ID {reflected.originator_id}")
    assert "CLUSTER_LIST" in problem and "244.0.0.1" in problem


def test_a_reflected_route_without_originator(rr: LabPlan) -> None:
    node = rr.node("node3")
    reflected = next(e for e in node.rib if e.originator_id is not None)
    observation = healthy(rr)
    _best(observation.agents["node3"], reflected.prefix)["originator_id"] = None
    (bad,) = failed(check_rib(rr, observation.agents))
    assert "ORIGINATOR_ID None" in bad.details["problems"][0]


def test_many_rib_problems_are_cut_in_the_summary_but_kept_in_details(mesh: LabPlan) -> None:
    observation = healthy(mesh)
    agent = observation.agents["node1"]
    assert agent is not None
    template = agent["rib"][0]
    for i in range(10):
        agent["rib"].append(dict(template, prefix=f"10.99.{i}.0/26", learned_from="10.8.0.9"))
    (bad,) = failed(check_rib(mesh, observation.agents))
    assert len(bad.details["problems"]) == 10
    assert bad.observed.endswith(" ...")
    assert bad.observed.count(";") == 5


# --- FIB -----------------------------------------------------------------------------------------


def _learned_route(plan: LabPlan, node: str) -> FibRoute:
    learned = set(_learned(plan, node))
    return next(r for r in plan.node(node).fib if r.prefix in learned)


def test_a_fib_route_missing(mesh: LabPlan) -> None:
    observation = healthy(mesh)
    route = _learned_route(mesh, "node1")
    observation.fibs["node1"].remove(route)
    (bad,) = failed(check_fib(mesh, observation.fibs))
    assert bad.name == "fib node1"
    assert bad.details["lines"] == [f"node1: missing {route.text()}"]
    assert "1 missing, 0 unexpected, 0 wrong" in bad.diagnosis


def test_a_fib_route_wrong(mesh: LabPlan) -> None:
    observation = healthy(mesh)
    route = _learned_route(mesh, "node2")
    wrong = FibRoute(route.prefix, "unicast", route.via, "tunl0", True, source="bgp")
    routes = observation.fibs["node2"]
    routes[routes.index(route)] = wrong
    (bad,) = failed(check_fib(mesh, observation.fibs))
    assert bad.details["lines"] == [
        f"node2: {route.prefix} expected '{route.text()}' by bgp, observed '{wrong.text()}' by bgp"
    ]


def test_a_route_written_by_the_wrong_component(mesh: LabPlan) -> None:
    """The right route, from Felix where the plan says BIRD: wrong, naming both writers."""
    observation = healthy(mesh)
    route = _learned_route(mesh, "node2")
    assert route.source == "bgp"
    by_felix = dataclasses.replace(route, source="felix")
    routes = observation.fibs["node2"]
    routes[routes.index(route)] = by_felix
    (bad,) = failed(check_fib(mesh, observation.fibs))
    assert bad.details["lines"] == [
        f"node2: {route.prefix} expected '{route.text()}' by bgp, "
        f"observed '{route.text()}' by felix"
    ]


def test_a_missing_blackhole(mesh: LabPlan) -> None:
    observation = healthy(mesh)
    blackhole = next(r for r in mesh.node("node3").fib if r.type == "blackhole")
    observation.fibs["node3"].remove(blackhole)
    (bad,) = failed(check_fib(mesh, observation.fibs))
    assert bad.details["lines"] == [f"node3: missing blackhole {blackhole.prefix}"]


def test_an_unexpected_fib_route(mesh: LabPlan) -> None:
    observation = healthy(mesh)
    stray = FibRoute("10.248.200.0/26", "unicast", "10.8.0.50", "eth0")
    observation.fibs["node1"].append(stray)
    (bad,) = failed(check_fib(mesh, observation.fibs))
    assert bad.details["lines"] == [f"node1: unexpected {stray.text()}"]


def test_routes_outside_the_pools_are_not_calicos(mesh: LabPlan) -> None:
    observation = healthy(mesh)
    observation.fibs["node1"] += [
        FibRoute("0.0.0.0/0", "unicast", "10.8.0.1", "eth0"),
        FibRoute("10.8.0.0/24", "unicast", None, "eth0"),
        FibRoute("10.99.0.0/24", "blackhole"),
    ]
    assert failed(check_fib(mesh, observation.fibs)) == []


def test_a_fib_not_observed(mesh: LabPlan) -> None:
    observation = healthy(mesh)
    del observation.fibs["node2"]
    (bad,) = failed(check_fib(mesh, observation.fibs))
    assert (bad.name, bad.observed) == ("fib node2", "not observed")


# --- dataplane -----------------------------------------------------------------------------------


def _cell(plan: LabPlan, **change: Any) -> tuple[list[PathCell], PathCell]:
    """The matrix with its first cell between two nodes changed."""
    cells = matrix(plan)
    index = next(i for i, c in enumerate(cells) if c.cell.path != "local")
    entry = cells[index]
    cell_fields = {k: v for k, v in change.items() if k in Cell.__dataclass_fields__}
    entry_fields = {k: v for k, v in change.items() if k not in cell_fields}
    cell = Cell(**{**vars(entry.cell), **cell_fields})
    changed = PathCell(**{**vars(entry), "cell": cell, **entry_fields})
    cells[index] = changed
    return cells, changed


def test_a_cell_unreachable(mesh: LabPlan) -> None:
    cells, changed = _cell(mesh, rtt_ms=None, tcp_ok=False, observed_path="unseen")
    (bad,) = failed(check_dataplane(cells))
    cell = changed.cell
    assert bad.name == f"ipv4 {cell.source} -> {cell.target}"
    assert bad.node == cell.source.split("/")[0]
    assert bad.observed == "unreachable, no packet seen on the fabric"
    assert "no ICMP echo reply" in bad.diagnosis and "TCP connect failed" in bad.diagnosis
    assert cell.source_ip in bad.diagnosis and cell.target_ip in bad.diagnosis
    assert bad.details["icmp"] is False and bad.details["tcp"] is False


def test_a_cell_by_the_wrong_path(rr: LabPlan) -> None:
    cells, changed = _cell(rr, observed_path="router")
    assert changed.cell.path == "ipip"  # IPIP Always in the reflector lab
    (bad,) = failed(check_dataplane(cells))
    assert bad.expected == "reachable, IP-in-IP"
    assert bad.observed.startswith("reachable, through the router, unencapsulated")
    assert "took through the router" in bad.diagnosis
    assert bad.details["expected_path"] == "ipip" and bad.details["observed_path"] == "router"


def test_a_cell_reachable_but_unseen_on_the_fabric(rr: LabPlan) -> None:
    cells, _ = _cell(rr, observed_path="unseen")
    (bad,) = failed(check_dataplane(cells))
    assert "took no packet seen on the fabric" in bad.diagnosis


def test_only_tcp_failing(mesh: LabPlan) -> None:
    cells, _ = _cell(mesh, tcp_ok=False)
    (bad,) = failed(check_dataplane(cells))
    assert bad.diagnosis.endswith("TCP connect failed")
    assert bad.observed.startswith("reachable")


def test_tcp_not_probed_is_not_a_failure(mesh: LabPlan) -> None:
    cells, _ = _cell(mesh, tcp_ok=None)
    assert failed(check_dataplane(cells)) == []


def test_a_probe_that_could_not_be_sent(mesh: LabPlan) -> None:
    cells, _ = _cell(mesh, rtt_ms=None, error="pod namespace gone", observed_path="unseen")
    (bad,) = failed(check_dataplane(cells))
    assert "not probed: pod namespace gone" in bad.diagnosis
    assert "no ICMP echo reply" not in bad.diagnosis


def test_rtt_is_reported(mesh: LabPlan) -> None:
    results = check_dataplane(matrix(mesh))
    assert all(r.observed.endswith(", 0.2 ms") for r in results)
    assert all(r.status == PASS for r in results)


# --- a dead node ---------------------------------------------------------------------------------


def test_a_node_whose_agent_never_wrote_its_state(mesh: LabPlan) -> None:
    observation = healthy(mesh)
    observation.agents["node2"] = None
    results = verify_results(mesh, observation)
    bad = by_name(failed(results))
    assert "never wrote its state" in bad["sessions node2"].diagnosis
    missing = bad["rib node2"].details["problems"]
    assert missing == [f"missing {p} (block of {o})" for p, o in _origins(mesh, "node2")]
    assert set(bad) == {"sessions node2", "rib node2"}


def _origins(plan: LabPlan, node: str) -> list[tuple[str, str]]:
    return sorted((e.prefix, e.origin_node) for e in plan.node(node).rib if e.learned_from)


def test_a_dead_node_is_not_judged_from_its_last_state(mesh: LabPlan) -> None:
    """Its agent's last file says all is well; the node's speaker is dead: both fail, and its
    peers' failures point at it."""
    observation = healthy(mesh)
    n2 = _addr(mesh, "node2")
    for name in ("node1", "node3"):
        agent = observation.agents[name]
        assert agent is not None
        next(s for s in agent["sessions"] if s["peer_ip"] == n2)["state"] = "active"
    health = dict(observation.health, node2=NodeHealth(speaker=False))
    results = by_name(verify_results(mesh, Observation(**{**vars(observation), "health": health})))
    assert results["sessions node2"].status == FAIL
    assert "speaker dead" in results["sessions node2"].diagnosis
    assert results["rib node2"].status == FAIL
    assert "stale" in results["rib node2"].diagnosis
    blamed = results[f"session node1 -> {n2}"]
    assert blamed.status == FAIL and "the cause is node2: speaker dead" in blamed.diagnosis


# --- state files of another shape ----------------------------------------------------------------


BROKEN_AGENT_STATES: dict[str, Any] = {
    "sessions is null": {"sessions": None, "rib": []},
    "a session without peer_ip": {"sessions": [{"state": "established"}], "rib": []},
    "a rib entry without prefix": {"sessions": [], "rib": [{"best": True, "learned_from": "x"}]},
    "rib is an object": {"sessions": [], "rib": {"10.0.0.0/8": {}}},
}


@pytest.mark.parametrize(
    "broken", list(BROKEN_AGENT_STATES.values()), ids=list(BROKEN_AGENT_STATES)
)
def test_an_agent_state_of_another_shape_fails_the_node_without_a_traceback(
    mesh: LabPlan, broken: dict[str, Any]
) -> None:
    observation = healthy(mesh)
    agents = dict(observation.agents, node2=copy.deepcopy(broken))
    results = check_sessions(mesh, agents) + check_rib(mesh, agents)
    assert any(r.status == FAIL and r.node == "node2" for r in results)


# --- BGP routers (BIRD) ----------------------------------------------------------------------

ASRACK = build_plan(load_topology(TOPOLOGIES / "as-per-rack.yaml"))


def _with_router(plan: LabPlan, name: str, seen: RouterObservation) -> Observation:
    observation = healthy(plan)
    return Observation(
        observation.agents,
        observation.fibs,
        observation.matrix,
        observation.health,
        observation.fibd,
        {**observation.routers, name: seen},
    )


def test_a_dead_bird_fails_its_router_and_is_named_as_the_nodes_cause() -> None:
    results = verify_results(ASRACK, _with_router(ASRACK, "tor1", RouterObservation(False)))
    named = by_name(results)
    assert named["health router tor1"].status == FAIL
    assert named["rib router tor1"].status == FAIL
    assert named["fib router tor1"].status == FAIL
    assert named["health router tor2"].status == PASS


def test_a_session_stuck_in_connect_asks_about_the_password() -> None:
    tor1 = next(r for r in ASRACK.routers if r.name == "tor1")
    seen = router_seen(tor1)
    stuck = tuple(
        replace(p, bgp_state="Connect", state="start") if p.neighbor_address == "10.41.1.2" else p
        for p in seen.protocols
    )
    results = by_name(
        verify_results(ASRACK, _with_router(ASRACK, "tor1", replace(seen, protocols=stuck)))
    )
    result = results["session tor1 -> 10.41.1.2"]
    assert result.status == FAIL
    assert result.observed == "Connect"
    assert "password" in result.diagnosis
    assert results["session tor1 -> 10.41.1.3"].status == PASS


def test_a_router_route_with_another_next_hop_or_an_extra_pool_route_fails() -> None:
    tor1 = next(r for r in ASRACK.routers if r.name == "tor1")
    seen = router_seen(tor1)
    first, *rest = seen.routes
    extra = replace(first, prefix="172.21.255.0/26", from_address="10.41.1.9")
    wrong = replace(first, bgp_next_hop="10.41.1.99")
    observed = replace(seen, routes=(wrong, *rest, extra))
    result = by_name(verify_results(ASRACK, _with_router(ASRACK, "tor1", observed)))[
        "rib router tor1"
    ]
    assert result.status == FAIL
    assert f"{first.prefix}: next hop 10.41.1.99, expected {first.bgp_next_hop}" in result.observed
    assert "unexpected 172.21.255.0/26 from 10.41.1.9" in result.observed


def test_a_router_fib_missing_a_route_fails() -> None:
    tor1 = next(r for r in ASRACK.routers if r.name == "tor1")
    seen = router_seen(tor1)
    observed = replace(seen, fib=seen.fib[1:])
    result = by_name(verify_results(ASRACK, _with_router(ASRACK, "tor1", observed)))[
        "fib router tor1"
    ]
    assert result.status == FAIL
    assert "1 missing" in result.observed


def test_a_router_with_the_users_own_configuration_is_reported_not_judged() -> None:
    tor1 = next(r for r in ASRACK.routers if r.name == "tor1")
    assert tor1.bgp is not None
    own = replace(tor1, bgp=replace(tor1.bgp, config_file="/etc/tor1.conf"))
    plan = replace(ASRACK, routers=tuple(own if r.name == "tor1" else r for r in ASRACK.routers))
    seen = router_seen(tor1)
    results = by_name(verify_results(plan, _with_router(plan, "tor1", replace(seen, fib=()))))
    assert results["fib router tor1"].status == SKIP
    assert results["rib router tor1"].status == SKIP
    assert results["rib router tor1"].observed.startswith(
        f"learned {len(tor1.bgp.routes)} BGP routes"
    )
    assert results["health router tor1"].status == PASS


def test_a_router_session_up_where_the_plan_says_down_fails() -> None:
    """A session the plan expects to stay down (here: a password it thinks differs) that BIRD
    has Established means the plan is wrong about the lab."""
    tor1 = next(r for r in ASRACK.routers if r.name == "tor1")
    assert tor1.bgp is not None
    down = replace(tor1.bgp, expected_up=tuple(p for p in tor1.bgp.expected_up if p != "10.41.1.2"))
    plan = replace(
        ASRACK,
        routers=tuple(replace(r, bgp=down) if r.name == "tor1" else r for r in ASRACK.routers),
    )
    seen = router_seen(tor1)  # BIRD: every session Established
    result = by_name(verify_results(plan, _with_router(plan, "tor1", seen)))[
        "session tor1 -> 10.41.1.2"
    ]
    assert result.status == FAIL and "stay down" in result.diagnosis


SERVICES = next(p for p in PLANS if p.name == "services")


def test_a_router_ecmp_route_short_of_a_next_hop_fails_fib_and_rib() -> None:
    """tor1's route to the Service CIDR every node advertises is ECMP over the three nodes:
    the kernel route with one next hop missing fails the FIB, a path BIRD no longer holds
    fails the RIB; Service CIDRs are in scope as the pools are."""
    tor1 = next(r for r in SERVICES.routers if r.name == "tor1")
    seen = router_seen(tor1)
    assert not failed(verify_results(SERVICES, _with_router(SERVICES, "tor1", seen)))
    ecmp = next(r for r in seen.fib if r.prefix == "10.96.0.0/16")
    assert len(ecmp.nexthops) == 3
    short = replace(ecmp, nexthops=ecmp.nexthops[:2])
    fib = tuple(short if r is ecmp else r for r in seen.fib)
    results = by_name(
        verify_results(SERVICES, _with_router(SERVICES, "tor1", replace(seen, fib=fib)))
    )
    assert results["fib router tor1"].status == FAIL
    (line,) = results["fib router tor1"].details["lines"]
    assert line.startswith(
        "tor1: 10.96.0.0/16 expected '10.96.0.0/16 nexthop via 10.46.1.2 dev eth0 nexthop"
    )
    assert results["rib router tor1"].status == PASS
    dropped = next(r for r in seen.routes if r.prefix == "10.96.0.0/16" and not r.selected)
    routes = tuple(r for r in seen.routes if r is not dropped)
    results = by_name(
        verify_results(SERVICES, _with_router(SERVICES, "tor1", replace(seen, routes=routes)))
    )
    assert results["rib router tor1"].status == FAIL
    assert (
        f"10.96.0.0/16: no path with next hop {dropped.bgp_next_hop} to merge (ECMP)"
        in results["rib router tor1"].observed
    )
    # A Service CIDR route the kernel lacks entirely is missing too (not only pool routes).
    fib = tuple(r for r in seen.fib if r.prefix != "203.0.113.0/24")
    results = by_name(
        verify_results(SERVICES, _with_router(SERVICES, "tor1", replace(seen, fib=fib)))
    )
    assert results["fib router tor1"].status == FAIL
    assert "missing 203.0.113.0/24" in results["fib router tor1"].details["lines"][0]
