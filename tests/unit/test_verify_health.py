"""verify names what is dead and does not judge a dead node from the state it left behind.

Once, when a node's speaker died, `verify` reported that node ok (from its dead agent's last
state file) and blamed its peers; these checks are pure, so they are tested on hand-made
observations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshemu.model.load import load_topology
from meshemu.model.plan import LabPlan, build_plan
from meshemu.verify.checks import verify_results
from meshemu.verify.observation import Cell, NodeHealth, Observation, PathCell
from meshemu.verify.results import FAIL, PASS

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


def mesh() -> LabPlan:
    return build_plan(load_topology(TOPOLOGIES / "mesh.yaml", name="ut-health"))


def agent_state(plan: LabPlan, node: str, down: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    """What a healthy agent writes: every planned session up, the plan's RIB."""
    me = plan.node(node)
    by_ip = {a: n.name for n in plan.nodes for a in (n.ipv4, n.ipv6) if a}
    return {
        "sessions": [
            {
                "peer_ip": s.peer_ip,
                "state": "idle" if by_ip.get(s.peer_ip) in down else "established",
                "info": "",
            }
            for s in me.sessions
        ],
        "rib": [
            {
                "prefix": r.prefix,
                "next_hop": r.next_hop,
                "learned_from": r.learned_from,
                "originator_id": r.originator_id,
                "cluster_list": list(r.cluster_list),
                "best": True,
            }
            for r in me.rib
        ],
    }


def healthy(plan: LabPlan) -> Observation:
    return Observation(
        agents={n.name: agent_state(plan, n.name) for n in plan.nodes},
        fibs={n.name: list(n.fib) for n in plan.nodes},
        matrix=[],
        health={n.name: NodeHealth() for n in plan.nodes},
    )


def failures(results: list[Any]) -> list[Any]:
    return [r for r in results if r.status == FAIL]


def test_a_healthy_lab_passes_every_check() -> None:
    plan = mesh()
    results = verify_results(plan, healthy(plan))
    assert failures(results) == []
    assert {r.category for r in results} == {"health", "sessions", "rib", "fib"}


def test_a_dead_speaker_is_named_and_its_stale_state_not_trusted() -> None:
    plan = mesh()
    observed = healthy(plan)
    # node2's speaker died; its agent's last state file still says everything is fine.
    observed.health["node2"] = NodeHealth(speaker=False, agent=False)
    for other in plan.nodes:
        if other.name != "node2":
            observed.agents[other.name] = agent_state(plan, other.name, down={"node2"})
    results = verify_results(plan, observed)
    bad = failures(results)
    health = [r for r in bad if r.category == "health"]
    assert [r.node for r in health] == ["node2"] and "speaker dead" in health[0].observed
    node2 = [r for r in results if r.node == "node2" and r.category in ("sessions", "rib")]
    assert node2 and all(r.status == FAIL for r in node2)
    assert all("speaker dead" in r.diagnosis for r in node2)
    # Its peers' sessions to it fail, with node2 named as the cause.
    peers = [r for r in bad if r.category == "sessions" and r.node != "node2"]
    assert peers and all("the cause is node2: speaker dead" in r.diagnosis for r in peers)


def test_a_gone_namespace_fails_the_fib_without_reading_it() -> None:
    plan = mesh()
    observed = healthy(plan)
    observed.health["node3"] = NodeHealth(netns=False, speaker=False, agent=False)
    del observed.fibs["node3"]
    bad = failures(verify_results(plan, observed))
    fib = [r for r in bad if r.category == "fib"]
    assert [r.node for r in fib] == ["node3"] and "namespace is gone" in fib[0].diagnosis


def test_a_dead_tunnel_or_route_programmer_is_named() -> None:
    plan = mesh()
    observed = healthy(plan)
    observed.health["node1"] = NodeHealth(tunnel=False)
    dead_fibd = Observation(observed.agents, observed.fibs, [], observed.health, fibd=False)
    bad = failures(verify_results(plan, dead_fibd))
    assert {r.name for r in bad} == {"route programmer", "health node1"}
    assert "tunnel dead" in next(r for r in bad if r.name == "health node1").observed


def test_a_probe_from_a_gone_pod_says_why() -> None:
    plan = mesh()
    cell = Cell(
        "node1/pod1",
        "node2/pod1",
        4,
        "10.0.0.1",
        "10.0.0.2",
        "direct",
        None,
        "namespace meshemu.x.node1.pod1 does not exist",
    )
    observed = healthy(plan)
    result = verify_results(
        plan,
        Observation(
            observed.agents, observed.fibs, [PathCell(cell, None, "unseen")], observed.health
        ),
    )
    cells = [r for r in result if r.category == "dataplane"]
    assert cells[0].status == FAIL and "not probed: namespace" in cells[0].diagnosis
    assert PASS in {r.status for r in result}
