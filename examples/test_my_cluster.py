"""Routing tests of my Calico cluster, run on a meshemu lab: copy this file and your topology
(my-cluster.yaml here) into your repository.

Run as root (labs are network namespaces): `sudo pytest test_my_cluster.py`. Without root, the
tests are skipped with the reason; `--meshemu-must-run` makes that a failure (for CI). A failed
test's report ends with the lab's status and its latest verify report.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from meshemu import Lab

# One lab for the whole module (relative paths: from pytest's rootdir, else this file's folder).
pytestmark = pytest.mark.meshemu_topology("my-cluster.yaml", scope="module")


def test_every_pod_reaches_every_pod_by_calicos_path(meshemu_lab: Lab) -> None:
    report = meshemu_lab.verify()
    assert report.ok, "\n".join(r.diagnosis for r in report.failures())


def test_node1_has_the_routes_calico_would_program(meshemu_lab: Lab) -> None:
    rows = meshemu_lab.routes("node1")
    node3_block = meshemu_lab.plan.node("node3").blocks[0].cidr
    # node3 is in the other rack: its block goes through the IP-in-IP tunnel (CrossSubnet).
    assert "dev tunl0" in str({r.prefix: r.fib for r in rows}[node3_block])
    assert all(r.matches_plan for r in rows), [r for r in rows if not r.matches_plan]


def test_pods_leave_through_calicos_link_local_gateway(meshemu_lab: Lab) -> None:
    target = meshemu_lab.plan.node("node3").pods[0].ipv4
    assert target is not None
    result = meshemu_lab.exec("node1/pod1", ["ip", "route", "get", target], check=True)
    assert "via 169.254.1.1" in result.stdout


@pytest.mark.meshemu_topology("my-cluster.yaml")  # a lab of its own: this test breaks it
def test_a_lost_uplink_drops_that_nodes_sessions_until_it_returns(meshemu_lab: Lab) -> None:
    meshemu_lab.link_down("node3")
    # node1 notices when its hold timer (9 s in my-cluster.yaml) expires.
    assert _wait(lambda: _state(meshemu_lab, "node1", "node3") != "established", seconds=30)
    assert _state(meshemu_lab, "node1", "node2") == "established"
    meshemu_lab.link_up("node3")
    recovered = meshemu_lab.wait_converged(timeout=40)
    assert recovered.converged, recovered.text()
    assert _state(meshemu_lab, "node1", "node3") == "established"


def _state(lab: Lab, node: str, peer: str) -> str:
    session = lab.session(node, peer)  # as `meshemu status` shows it
    return session.state if session else "absent"


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True
