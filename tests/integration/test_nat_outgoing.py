"""natOutgoing and the outside host in a running lab (topologies/nat-outgoing.yaml).

Rack 1's IPv4 pool NATs: the outside host sees its pods as their node's address; rack 2's
IPv4 pool and the IPv6 pool do not: it sees the pods' own addresses (the spine learns the
blocks by BGP and routes the replies back). The ruleset Felix's form renders is loaded in each
node's namespace, the whole `verify` passes, and `down` leaves nothing (the fixture checks).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from meshemu.dataplane.netlink import entered, netns_exists
from meshemu.lab import down, live, up
from meshemu.lab.converge import wait_converged
from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan
from meshemu.state import LabState
from meshemu.verify.outside import check_outside
from meshemu.verify.outside_probe import probe_outside
from meshemu.verify.results import FAIL, PASS
from meshemu.verify.run import verify_lab

from .conftest import TOPOLOGIES

pytestmark = pytest.mark.integration

TOPOLOGY = "nat-outgoing.yaml"


def _nft_list(netns: str) -> str:
    with entered(netns):
        done = subprocess.run(
            ["nft", "list", "ruleset"], capture_output=True, text=True, check=True
        )
    return done.stdout


def test_nat_outgoing_sources_seen_by_the_outside_host(lab_env: Path) -> None:
    topo = load_topology(TOPOLOGIES / TOPOLOGY, name="itnat1")
    plan = build_plan(topo)
    assert plan.outside is not None
    result = up(plan, topo, TOPOLOGIES / TOPOLOGY, progress=print, timeout=90)
    assert result.converged, result.diffs
    try:
        assert netns_exists(plan.outside.netns)
        rules = _nft_list(plan.node("node1").netns)
        assert "ip saddr @cali40masq-ipam-pools ip daddr != @cali40network-ip-pools" in rules
        assert "172.25.1.0/24" in rules

        report, observation = verify_lab(LabState(plan.name), plan)
        failures = [f"{r.name}: {r.diagnosis}" for r in report.results if r.status == FAIL]
        assert not failures, failures
        seen = {(p.node, p.pod_ip, p.target): p.seen for p in observation.outside}
        pods = [(n, p) for n in plan.nodes for p in n.pods]
        assert len(seen) == 2 * len(pods)  # one IPv4 and one IPv6 probe per pod
        for node, pod in pods:
            natted = node.name in ("node1", "node2")  # rack 1's pool
            assert seen[(node.name, pod.ipv4, "198.51.100.10")] == (
                node.ipv4 if natted else pod.ipv4
            )
            assert seen[(node.name, pod.ipv6, "2001:db8:100::10")] == pod.ipv6
        outside = [r for r in report.results if r.category == "outside"]
        assert len(outside) == len(seen) and all(r.status == PASS for r in outside)
        print(
            "outside probes:",
            {f"{k[0]} {k[1]} -> {k[2]}": v for k, v in sorted(seen.items(), key=str)},
            f"verify {report.seconds}s, up {result.seconds.get('total')}s",
        )

        # Without node1's rules its pods arrive with their own address: the check fails there
        # (and nowhere else), so it tests the NAT, not a restatement of the plan.
        with entered(plan.node("node1").netns):
            subprocess.run(["nft", "delete", "table", "ip", "calico"], check=True)
        broken = check_outside(plan, probe_outside(plan))
        failed = {r.node for r in broken if r.status == FAIL}
        assert failed == {"node1"}, [(r.name, r.observed) for r in broken]
        assert all(
            r.observed == f"seen from {r.details['pod_ip']}" for r in broken if r.status == FAIL
        )

        # Live: rack 1's pool stops NATing; the rules are reloaded (node1's come back empty)
        # and its pods are seen with their own addresses (the spine routes the replies back).
        state = LabState(plan.name)
        pools = dict(topo.pools)
        pools["rack1-pool"] = pools["rack1-pool"].model_copy(update={"nat_outgoing": False})
        new, _summary = live.apply_topology(state, plan, topo.model_copy(update={"pools": pools}))
        assert not wait_converged(new, state, 60)
        assert "masq-ipam-pools" not in _nft_list(new.node("node2").netns)
        after = check_outside(new, probe_outside(new))
        assert after and all(r.status == PASS for r in after), [
            (r.name, r.observed) for r in after if r.status != PASS
        ]
        assert all(r.details["seen"] == r.details["pod_ip"] for r in after)
    finally:
        down(plan.name, progress=print)
    assert not netns_exists(plan.outside.netns)
