"""Pods that listen, and Services over them, in a running lab.

The lab's one responder answers every declared pod port (TCP and UDP, both families) with a
line naming the pod and the source it saw; `verify.connect` probes from inside a namespace.
Every test brings its lab down; the fixture checks nothing is left (the responder included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshemu import process
from meshemu.lab import down, live, up
from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan
from meshemu.state import LabState
from meshemu.verify.connect import Target, connect, connect_many

pytestmark = pytest.mark.integration

PODS_LAB: dict[str, Any] = {
    "name": "itsvc1",
    "subnets": {"rack1": {"ipv4": "10.0.1.0/24", "ipv6": "fd00:1::/64"}},
    "pools": {"p4": {"cidr": "10.244.0.0/16"}, "p6": {"cidr": "fd00:244::/48"}},
    "nodes": {
        "node1": {
            "subnet": "rack1",
            "pods": [
                {
                    "name": "web",
                    "replicas": 2,
                    "labels": {"app": "web"},
                    "ports": [{"name": "http", "port": 8080}, {"port": 53, "protocol": "UDP"}],
                }
            ],
        },
        "node2": {"subnet": "rack1", "pods": [{"name": "client", "namespace": "tools"}]},
    },
}


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_pods_answer_on_their_ports_through_one_responder(lab_env: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, PODS_LAB)
    topo = load_topology(path)
    plan = build_plan(topo)
    result = up(plan, topo, path, progress=print, timeout=60)
    assert result.converged, result.diffs
    state = LabState(plan.name)
    responder = state.process("responder")
    assert responder is not None and process.same_process(responder.pid, responder.start_time)
    client = plan.node("node2").pods[0]
    web1, web2 = plan.node("node1").pods
    targets = [
        Target(address, port, proto)
        for pod in (web1, web2)
        for address in (pod.ipv4, pod.ipv6)
        if address
        for port, proto in ((8080, "TCP"), (53, "UDP"))
    ]
    results = connect_many(client.netns, targets, timeout=2.0)
    for got in results:
        assert got.ok, got
        pod = web1 if got.target.address in (web1.ipv4, web1.ipv6) else web2
        assert got.answered_by == f"node1/{pod.name}"
        assert got.seen_from in (client.ipv4, client.ipv6)
    # A port nobody declared: the pod's kernel refuses it (the packet got there).
    refused = connect(client.netns, str(web1.ipv4), 9999, "TCP", timeout=2.0)
    assert (refused.ok, refused.refused) == (False, True)
    refused = connect(client.netns, str(web1.ipv6), 9999, "UDP", timeout=2.0)
    assert (refused.ok, refused.refused) == (False, True)

    # Live: one replica less, a new pod with another port; the responder follows.
    changed = yaml.safe_load(yaml.safe_dump(PODS_LAB))
    changed["nodes"]["node1"]["pods"] = [
        {"name": "web-1", "labels": {"app": "web"}, "ports": [{"port": 8080}]},
        {"name": "dns", "ports": [{"port": 5353, "protocol": "UDP"}]},
    ]
    new, _summary = live.apply_topology(state, plan, build_topology(changed, tmp_path))
    assert [p.name for p in new.node("node1").pods] == ["web-1", "dns"]
    assert new.node("node1").pods[0].ipv4 == web1.ipv4  # kept by name
    dns = new.node("node1").pods[1]
    got = connect(client.netns, str(dns.ipv6), 5353, "UDP", timeout=2.0)
    assert got.ok and got.answered_by == "node1/dns", got
    got = connect(client.netns, str(web1.ipv4), 53, "UDP", timeout=2.0)
    assert not got.ok, got  # web-1 no longer declares 53/UDP
    pid = responder.pid
    assert pid is not None
    down(plan.name, progress=print)
    assert not process.same_process(pid, responder.start_time)


def build_topology(data: dict[str, Any], tmp_path: Path) -> Any:
    return load_topology(_write(tmp_path, data))


def _verified(path: Path, name: str) -> tuple[Any, list[Any]]:
    """Bring the lab of `path` up as `name`; its plan and verify's results, none failing."""
    from meshemu.verify.results import FAIL
    from meshemu.verify.run import verify_lab

    topo = load_topology(path, name=name)
    plan = build_plan(topo)
    result = up(plan, topo, path, progress=print, timeout=90)
    assert result.converged, result.diffs
    report, _observation = verify_lab(LabState(plan.name), plan)
    failures = [f"{r.name}: {r.observed} {r.diagnosis}" for r in report.results if r.status == FAIL]
    assert not failures, failures
    return plan, list(report.results)


def test_services_answer_inside_and_outside_the_cluster(lab_env: Path) -> None:
    """topologies/services.yaml: every pod reaches each Service on each family's cluster IP
    (DNAT by the kube-proxy tables), from an endpoint; the outside host reaches nginx's
    LoadBalancer addresses through the ToR (which learned them by BGP from node3 only, Local)
    and the pod sees the client's own address; web-lb's (Cluster) through the ToR's ECMP route
    over every node; the whole verify passes."""
    from meshemu.dataplane.netlink import read_fib

    from .conftest import TOPOLOGIES

    plan, results = _verified(TOPOLOGIES / "services.yaml", "itsvc2")
    checks = {r.name: r for r in results if r.category == "services"}
    assert len(checks) == 25, sorted(checks)
    outside = checks["service default/nginx TCP/80 ipv6 outside -> 2001:db8:80::80"]
    assert outside.details["result"]["seen_from"] == "2001:db8:100::10"
    assert outside.details["result"]["answered_by"] == "node3/nginx"
    # web-lb (Cluster): reached over tor1's ECMP route to the LoadBalancer CIDR, which BIRD
    # installed with the three nodes as next hops (RTA_MULTIPATH, read back by netlink).
    nodes = {n.address(f) for n in plan.nodes for f in (4, 6)}
    for address in ("203.0.113.81", "2001:db8:80::81"):
        family = "ipv6" if ":" in address else "ipv4"
        got = checks[f"service default/web-lb TCP/80 {family} outside -> {address}"]
        assert got.details["result"]["answered_by"].split("/")[1].startswith("web-"), got
        assert got.details["result"]["seen_from"] in nodes, got  # masqueraded
    tor1 = next(r for r in plan.routers if r.name == "tor1")
    kernel = {r.prefix: r for r in read_fib(tor1.netns)}
    for prefix, family in (("203.0.113.0/24", 4), ("2001:db8:80::/64", 6)):
        hops = {(h.via, h.dev) for h in kernel[prefix].nexthops}
        assert hops == {(n.address(family), "eth0") for n in plan.nodes}, kernel[prefix]
    assert {r.name: r.status for r in results}["fib router tor1"] == "pass"


def test_a_bundles_service_answers_from_the_pods_its_endpoint_slices_name(
    lab_env: Path,
) -> None:
    """tests/data/services-bundle.yaml, a Calico bundle with a Kubernetes Service and its two
    EndpointSlices (one a family): the endpoints become pods on the nodes the slices name, and
    every node's first pod reaches the Service on both cluster IPs, answered by one of them
    (verify passes)."""
    _plan, results = _verified(
        Path(__file__).resolve().parents[1] / "data" / "services-bundle.yaml", "itsvcb"
    )
    checks = [r for r in results if r.category == "services"]
    assert len(checks) == 4, [r.name for r in checks]  # two nodes' first pods, two families
    answered = {r.details["result"]["answered_by"] for r in checks}
    assert answered <= {"worker-a/web-7d9f-abc", "worker-b/web-7d9f-xyz"}, answered
