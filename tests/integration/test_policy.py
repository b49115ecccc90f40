"""Network policy in a running lab (topologies/policy.yaml): every probe of the plan's matrix
does what the plan says, both ways; without a node's IPv4 policy table exactly the denied IPv4
probes through that node get through, and `verify` fails them ("not enforced"), in its text
and its JUnit report; a policy applied live is enforced at once."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from meshemu.dataplane.netlink import entered
from meshemu.lab import live, up
from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan
from meshemu.report.junit import render_junit
from meshemu.state import LabState
from meshemu.verify.results import FAIL, PASS
from meshemu.verify.run import verify_lab

from .conftest import TOPOLOGIES

pytestmark = pytest.mark.integration

TOPOLOGY = TOPOLOGIES / "policy.yaml"


def test_policy_matrix_both_ways(lab_env: Path) -> None:
    topo = load_topology(TOPOLOGY, name="itpol1")
    plan = build_plan(topo)
    assert plan.policy is not None
    result = up(plan, topo, TOPOLOGY, progress=print, timeout=90)
    assert result.converged, result.diffs
    state = LabState(plan.name)

    with entered(plan.node("node1").netns):
        rules = subprocess.run(
            ["nft", "list", "table", "ip", "calico-policy"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    frontend = plan.node("node1").pods[0]
    assert f"chain tw-{frontend.host_ifname}" in rules
    assert "End of tier default" in rules

    report, _ = verify_lab(state, plan)
    failures = [f"{r.name}: {r.diagnosis}" for r in report.results if r.status == FAIL]
    assert not failures, failures
    policy = [r for r in report.results if r.category == "policy"]
    allowed = [r for r in policy if r.details["allowed"]]
    denied = [r for r in policy if not r.details["allowed"]]
    assert allowed and denied and all(r.status == PASS for r in policy)
    assert {r.details["probe"] for r in allowed} >= {"TCP 8080", "UDP 6379", "ICMP type 8"}
    print(f"policy: {len(allowed)} allowed and {len(denied)} denied probes held; "
          f"verify {report.seconds}s")  # fmt: skip

    # node1's IPv4 policy gone: its pods' denied IPv4 probes get through, nothing else fails.
    with entered(plan.node("node1").netns):
        subprocess.run(["nft", "delete", "table", "ip", "calico-policy"], check=True)
    broken, _ = verify_lab(state, plan)
    bad = [r for r in broken.results if r.status == FAIL]
    assert bad and all(r.category == "policy" for r in bad), [r.name for r in bad]
    assert all(not r.details["allowed"] and r.details["family"] == 4 for r in bad)
    node1 = {f"node1/{p.name}" for p in plan.node("node1").pods}
    assert all(r.details["source"] in node1 or r.details["target"] in node1 for r in bad)
    assert "not enforced" in bad[0].diagnosis
    junit = render_junit([broken])
    assert junit.count('type="policy"') == len(bad) and "not enforced" in junit

    # A live change loads every node's tables again: node1's is back, and a new policy holds.
    tenant_open = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny-in", "namespace": "tenant"},
        "spec": {"podSelector": {}},
    }
    changed = topo.model_copy(update={"policies": [*topo.policies, tenant_open]})
    new_plan, summary = live.apply_topology(state, plan, changed)
    assert "network policy loaded on 2 nodes" in summary.text()
    with entered(plan.node("node1").netns):
        subprocess.run(["nft", "list", "table", "ip", "calico-policy"], check=True)
    again, _ = verify_lab(state, new_plan)
    assert again.ok, [r.diagnosis for r in again.failures()]
    into_other = [
        r for r in again.results if r.category == "policy" and r.details["target"] == "node2/other"
    ]
    assert into_other and not any(r.details["allowed"] for r in into_other)
