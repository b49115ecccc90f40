"""Pods listed with names, namespaces, labels and ports (topology `pods:` as a list)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from meshemu.errors import ConfigError
from meshemu.model.labplan import LabPlan, Sticky
from meshemu.model.load import load_topology_text
from meshemu.model.plan import build_plan
from meshemu.model.topology import Topology

BASE: dict[str, Any] = {
    "name": "pods",
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
                    "ports": [
                        {"name": "http", "port": 80},
                        {"name": "dns", "port": 53, "protocol": "UDP"},
                    ],
                },
                {"name": "client", "namespace": "tools"},
            ],
        },
        "node2": {"subnet": "rack1", "pods": 1},
    },
}


def _plan(data: dict[str, Any], previous: LabPlan | None = None) -> LabPlan:
    return build_plan(Topology.model_validate(data), previous=previous)


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        _plan(data)
    return [f"{p.location}: {p.message}" for p in err.value.problems]


def test_listed_pods_carry_namespace_labels_and_ports_into_the_plan() -> None:
    plan = _plan(BASE)
    pods = {p.name: p for p in plan.node("node1").pods}
    assert list(pods) == ["web-1", "web-2", "client"]
    web = pods["web-2"]
    assert (web.namespace, web.labels) == ("default", {"app": "web"})
    assert [(p.name, p.port, p.protocol) for p in web.ports] == [
        ("http", 80, "TCP"),
        ("dns", 53, "UDP"),
    ]
    assert pods["client"].namespace == "tools" and pods["client"].ports == ()
    assert web.netns.endswith(".node1.web-2") and web.ipv4 and web.ipv6
    # The count form is unchanged.
    assert [p.name for p in plan.node("node2").pods] == ["pod1"]
    assert plan.node("node2").pods[0].namespace == "default"
    # The plan's JSON form carries them and reads back identical.
    again = LabPlan.from_json(plan.to_json(secrets=True))
    assert again.node("node1").pods == plan.node("node1").pods


def test_a_plan_written_before_pods_had_namespaces_reads_back_with_defaults() -> None:
    data = _plan(BASE).to_json(secrets=True)
    for node in data["nodes"]:
        for pod in node["pods"]:
            for key in ("namespace", "labels", "ports"):
                del pod[key]
    pod = LabPlan.from_json(data).node("node1").pods[0]
    assert (pod.namespace, pod.labels, pod.ports) == ("default", {}, ())


def test_a_pod_keeps_its_address_by_name_when_others_go() -> None:
    plan = _plan(BASE)
    before = {p.name: (p.ipv4, p.ipv6) for p in plan.node("node1").pods}
    changed = copy.deepcopy(BASE)
    changed["nodes"]["node1"]["pods"] = [
        {"name": "client", "namespace": "tools"},
        {"name": "web-2", "labels": {"app": "web"}},
        {"name": "new"},
    ]
    after = _plan(changed, previous=plan)
    now = {p.name: (p.ipv4, p.ipv6) for p in after.node("node1").pods}
    assert now["client"] == before["client"] and now["web-2"] == before["web-2"]
    assert now["new"] not in before.values() or now["new"] == before["web-1"]
    # The record of a running lab carries the names too.
    sticky = Sticky.from_json(Sticky.of(after).to_json())
    assert list(sticky.pods_by_name("node1")) == ["client", "web-2", "new"]


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        ([{"name": "Web"}], "nodes.node1.pods[0].name: pod name 'Web' is not a DNS label"),
        ([{"name": "a", "namespace": "A_b"}], "nodes.node1.pods[0].namespace: namespace 'A_b'"),
        ([{"name": "a.b"}], "nodes.node1.pods[0].name: pod name 'a.b' is not a DNS label"),
        ([{"name": "a", "ports": [{"port": 0}]}], "nodes.node1.pods[0].ports[0].port: Input"),
        (
            [{"name": "a", "ports": [{"port": 1, "protocol": "SCTP"}]}],
            "nodes.node1.pods[0].ports[0].protocol: Input should be 'TCP' or 'UDP'",
        ),
        (
            [{"name": "a", "ports": [{"name": "http--x", "port": 1}]}],
            "nodes.node1.pods[0].ports[0].name: port name 'http--x' is not an IANA",
        ),
        (
            [{"name": "a", "ports": [{"name": "123", "port": 1}]}],
            "nodes.node1.pods[0].ports[0].name: port name '123'",
        ),
        (
            [{"name": "a", "ports": [{"name": "abcdefghijklmnop", "port": 1}]}],
            "nodes.node1.pods[0].ports[0].name: port name 'abcdefghijklmnop'",
        ),
        ([{"name": "a", "replicas": 0}], "nodes.node1.pods[0].replicas: Input should be greater"),
        ([{"name": "a", "bogus": 1}], "nodes.node1.pods[0].bogus: unknown field"),
        ("two", "nodes.node1.pods: Input should be a valid integer"),
        (True, "nodes.node1.pods: Input should be a valid integer"),
        (251, "nodes.node1.pods: Input should be less than or equal to 250"),
    ],
)
def test_bad_pods_are_located(pods: object, expected: str) -> None:
    data = copy.deepcopy(BASE)
    data["nodes"]["node1"]["pods"] = pods
    with pytest.raises(ConfigError) as err:
        load_topology_text(yaml.safe_dump(data), "t.yaml", "pods")
    found = [f"{p.location}: {p.message}" for p in err.value.problems]
    assert any(f.startswith(f"t.yaml: {expected}") or f.startswith(expected) for f in found), found


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        (
            [{"name": "a"}, {"name": "a", "namespace": "other"}],
            "nodes.node1.pods[1].name: pod other/a is also nodes.node1",
        ),
        (
            [{"name": "web", "replicas": 2}, {"name": "web-2"}],
            "nodes.node1.pods[1].name: pod default/web-2 is also nodes.node1",
        ),
        ([{"name": "a", "labels": {"-x": "y"}}], "nodes.node1.pods[0].labels.-x: '-x' is not"),
        ([{"name": "a", "labels": {"x": "y z"}}], "nodes.node1.pods[0].labels.x: 'y z' is not"),
        (
            [{"name": "a", "ports": [{"name": "h", "port": 1}, {"name": "h", "port": 2}]}],
            "nodes.node1.pods[0].ports[1].name: port name 'h' is used twice",
        ),
        (
            [{"name": "a", "ports": [{"port": 1}, {"port": 1, "protocol": "TCP"}]}],
            "nodes.node1.pods[0].ports[1].port: 1/TCP is listed twice",
        ),
        ([{"name": "a" * 62, "replicas": 10}], "nodes.node1.pods[0].replicas: pod name"),
    ],
)
def test_what_kubernetes_refuses_in_pods_is_exit_2(pods: object, expected: str) -> None:
    data = copy.deepcopy(BASE)
    data["nodes"]["node1"]["pods"] = pods
    found = _problems(data)
    assert any(f.startswith(expected) for f in found), found


def test_the_same_pod_name_in_two_namespaces_on_two_nodes_is_fine() -> None:
    data = copy.deepcopy(BASE)
    data["nodes"]["node2"]["pods"] = [{"name": "web-1", "namespace": "other"}]
    assert _plan(data).node("node2").pods[0].name == "web-1"
    data["nodes"]["node2"]["pods"] = [{"name": "web-1"}]
    assert any("pod default/web-1 is also" in p for p in _problems(data))
