"""A lab without BGP (topologies/calico-vxlan-nobgp.yaml: the operator's `calicoNetwork.bgp:
Disabled` and a VXLAN pool), running.

As in Calico, no node runs a BGP speaker (calico-node starts no BIRD and no confd) and Felix
alone programs the cluster routes, here the lab's route programmer from the plan: `up`
converges, `status` shows no speaker and no agent on any node, every pod reaches every other
pod across the two racks (the whole `verify` passes), and a Felix route removed by hand makes
the check of that node fail until the route programmer writes it again.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from meshemu.dataplane.netlink import in_netns
from meshemu.lab import supervise, up
from meshemu.lab.status import lab_status
from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan
from meshemu.state import LabState
from meshemu.verify.results import FAIL, PASS
from meshemu.verify.run import verify_lab

from .conftest import TOPOLOGIES

pytestmark = pytest.mark.integration

TOPOLOGY = "calico-vxlan-nobgp.yaml"


def test_a_lab_without_bgp_runs_no_speaker_and_every_pod_reaches_every_pod(
    lab_env: Path,
) -> None:
    topo = load_topology(TOPOLOGIES / TOPOLOGY, name="nobgp1")
    plan = build_plan(topo)
    assert not topo.bgp.enabled
    assert all(n.speaker == "none" and not n.sessions and not n.rib for n in plan.nodes)
    result = up(plan, topo, TOPOLOGIES / TOPOLOGY, progress=print, timeout=90)
    assert result.converged, result.diffs
    state = LabState(plan.name)

    # Nothing BGP runs: no speaker recorded, no agent, status says none (not dead).
    assert state.speakers() == {}
    assert not [n for n in state.running_names() if n.startswith(("speaker", "agent"))]
    status = lab_status(state)
    assert [(n.speaker, n.agent, n.sessions) for n in status.nodes] == [("none", "none", ())] * 3
    assert not [p for n in status.nodes for p in n.problems()]

    report, _observation = verify_lab(state, plan)
    failures = [f"{r.name}: {r.diagnosis}" for r in report.results if r.status == FAIL]
    assert not failures, failures
    pods = [p for n in plan.nodes for p in n.pods]
    probes = [r for r in report.results if r.category == "dataplane" and r.status == PASS]
    # Every ordered pair of pods on different nodes, at least (6 pods on 3 nodes: 24 pairs).
    assert len(probes) >= len(pods) * (len(pods) - 2), [r.name for r in probes]
    print(f"up {result.seconds}, verify {report.seconds}s, {len(probes)} probes passed")

    # The check can fail: worker-a1 loses its Felix route to worker-b1's block.
    node = plan.node("worker-a1")
    block = plan.node("worker-b1").blocks[0].cidr
    route = next(r for r in node.fib if r.prefix == block)
    assert route.source == "felix" and route.dev == "vxlan.calico"
    with in_netns(node.netns) as ns:
        ns.route("del", block)
    broken, _ = verify_lab(state, plan)
    failed = {(r.category, r.node) for r in broken.results if r.status == FAIL}
    assert ("fib", "worker-a1") in failed, failed
    # Only worker-a1's FIB, and probes between worker-a1 and worker-b1 (either way: the
    # replies need the route too); worker-a2 reaches both.
    assert {n for c, n in failed if c != "dataplane"} == {"worker-a1"}, failed
    assert {n for c, n in failed if c == "dataplane"} <= {"worker-a1", "worker-b1"}, failed

    # The route programmer writes Felix's routes again on its next pass (a SIGHUP: at once).
    supervise.wake_felix(state)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        again, _ = verify_lab(state, plan)
        if not [r for r in again.results if r.status == FAIL]:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the route programmer did not write worker-a1's Felix route again")
