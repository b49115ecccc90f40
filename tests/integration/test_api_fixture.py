"""The pytest plugin's `meshemu_lab` fixture and the Python API on real labs of mesh.yaml.

One lab shared by the module's read-only tests (scope="module"), and one of its own for the
test that breaks a link. Both in a private state folder, and checked for leftovers afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from meshemu import Lab
from meshemu.errors import UsageError

from .conftest import lab_leftovers

SHARED, OWN, FLAP = "apitest", "apitest-ln", "apitest-fl"
pytestmark = [
    pytest.mark.integration,
    # Relative to pytest's rootdir: the repository.
    pytest.mark.meshemu_topology("topologies/mesh.yaml", name=SHARED, scope="module"),
]


@pytest.fixture(scope="module", autouse=True)
def private_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Set up before the plugin's module lab and torn down after it: the labs of this module
    live in a state folder of their own, and leave nothing behind."""
    root = tmp_path_factory.mktemp("apitest-state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MESHEMU_STATE_DIR", str(root))
        yield root
    for lab in (SHARED, OWN, FLAP):
        assert not lab_leftovers(lab, root / lab), lab
    assert list(root.iterdir()) == []


def test_verify_passes_with_every_pod_pair_probed(meshemu_lab: Lab) -> None:
    report = meshemu_lab.verify()
    assert report.ok, [r.diagnosis for r in report.failures()]
    pods = sum(len(n.pods) for n in meshemu_lab.plan.nodes)
    cells = [r for r in report.results if r.category == "dataplane"]
    assert pods == 8 and len(cells) == pods * (pods - 1)
    sessions = [r for r in report.results if r.category == "sessions"]
    assert len(sessions) == 12  # a full mesh of 4, seen from both sides


def test_status_shows_the_full_mesh_established(meshemu_lab: Lab) -> None:
    status = meshemu_lab.status()
    assert status.healthy, status.problems()
    for node in status.nodes:
        others = {n.name for n in meshemu_lab.plan.nodes} - {node.name}
        assert {s.peer_node for s in node.sessions} == others
        assert {s.state for s in node.sessions} == {"established"}


def test_routes_of_node1_come_from_each_peer_over_the_lan(meshemu_lab: Lab) -> None:
    plan = meshemu_lab.plan
    rows = {r.prefix: r for r in meshemu_lab.routes("node1")}
    for node in plan.nodes:
        block = node.blocks[0].cidr
        row = rows[block]
        assert row.matches_plan, row
        if node.name == "node1":
            assert row.fib == f"blackhole {block}"
        else:
            assert row.rib_learned_from == node.ipv4
            assert row.fib == f"{block} via {node.ipv4} dev eth0"


def test_exec_runs_in_the_pods_namespace(meshemu_lab: Lab) -> None:
    pod = meshemu_lab.plan.node("node1").pods[0]
    addresses = meshemu_lab.exec("node1/pod1", ["ip", "-4", "-o", "addr", "show", "eth0"])
    assert addresses.returncode == 0, addresses.stderr
    assert f"inet {pod.ipv4}/32" in addresses.stdout
    routes = meshemu_lab.exec("node1/pod1", ["ip", "route"], check=True).stdout
    assert "default via 169.254.1.1 dev eth0" in routes  # Calico's link-local gateway
    assert meshemu_lab.exec("node2", ["sh", "-c", "exit 3"]).returncode == 3
    with pytest.raises(UsageError, match="command not found: no-such-command"):
        meshemu_lab.exec("node1/pod1", ["no-such-command"])


@pytest.mark.meshemu_topology("topologies/mesh.yaml", name=OWN)
def test_a_link_down_fails_verify_on_that_node_only_and_link_up_recovers(
    meshemu_lab: Lab,
) -> None:
    plan = meshemu_lab.plan
    node2 = plan.node("node2")
    block2 = node2.blocks[0].cidr
    meshemu_lab.link_down("node2")
    # The peers see it when their hold timer (mesh.yaml: 9 s) expires, and node2 when its
    # own timers do: each session's timer runs from its own last keepalive, so node2 may hold
    # on to one session a second longer than node1 holds node2's route (CI saw exactly that).
    assert _within(30, lambda: block2 not in _fib_prefixes(meshemu_lab, "node1"))
    assert _within(30, lambda: _sessions_down(meshemu_lab, "node2"))
    report = meshemu_lab.verify()
    assert not report.ok
    failed = report.failures()
    # Sessions: every one with node2, from both sides, and no other.
    sessions = {r.name for r in failed if r.category == "sessions"}
    assert sessions == {
        *(f"session node2 -> {n.ipv4}" for n in plan.nodes if n.name != "node2"),
        *(f"session {n.name} -> {node2.ipv4}" for n in plan.nodes if n.name != "node2"),
    }
    # Packets: exactly the pod pairs with one end on node2 (its own pods still talk).
    cells = {r.name for r in failed if r.category == "dataplane"}
    assert cells == {
        r.name for r in report.results if r.category == "dataplane" and _one_end_on_node2(r.name)
    }
    assert len(cells) == 2 * len(node2.pods) * (8 - len(node2.pods))
    assert {r.category for r in failed} == {"sessions", "rib", "fib", "dataplane"}

    meshemu_lab.link_up("node2")
    recovered = meshemu_lab.wait_converged(timeout=40)
    assert recovered.converged, recovered.text()
    again = meshemu_lab.verify()
    assert again.ok, [r.diagnosis for r in again.failures()]


@pytest.mark.meshemu_topology("topologies/mesh.yaml", name=FLAP)
def test_a_brief_flap_gets_the_routes_the_kernel_dropped_back(meshemu_lab: Lab) -> None:
    """Down and up again before any hold timer expires (docs/python-api.md's first example):
    no session drops, so nothing is announced again, yet the kernel removed node2's BGP
    routes through its uplink with the link; they come back as BIRD's kernel scan puts them."""
    block1 = meshemu_lab.plan.node("node1").blocks[0].cidr
    meshemu_lab.link_down("node2")
    assert block1 not in _fib_prefixes(meshemu_lab, "node2")
    meshemu_lab.link_up("node2")
    recovered = meshemu_lab.wait_converged(timeout=20)
    assert recovered.converged, recovered.text()
    assert meshemu_lab.session("node1", "node2") is not None


def _one_end_on_node2(cell: str) -> bool:
    """`ipv4 node1/pod1 -> node2/pod2` -> whether exactly one of the two is on node2."""
    source, target = cell.split(" ", 1)[1].split(" -> ")
    return source.startswith("node2/") != target.startswith("node2/")


def _sessions_down(lab: Lab, node: str) -> bool:
    """Whether none of `node`'s sessions is established any more."""
    peers = [n.name for n in lab.plan.nodes if n.name != node]
    return all(
        (session := lab.session(node, peer)) is None or session.state != "established"
        for peer in peers
    )


def _fib_prefixes(lab: Lab, node: str) -> set[str]:
    return {route.prefix for route in lab.kernel_routes(node)}


def _within(seconds: float, condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True
