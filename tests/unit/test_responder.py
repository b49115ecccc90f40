"""The responder's configuration from a plan, and its answer line (no root, no namespaces)."""

from __future__ import annotations

from meshemu.dataplane.responder import answer_line, parse_answer
from meshemu.lab.responders import listen_config
from meshemu.model.plan import build_plan
from meshemu.model.topology import Topology

TOPO = {
    "name": "resp",
    "subnets": {"rack1": {"ipv4": "10.0.1.0/24", "ipv6": "fd00:1::/64"}},
    "pools": {"p4": {"cidr": "10.244.0.0/16"}},
    "nodes": {
        "node1": {
            "subnet": "rack1",
            "pods": [
                {"name": "web", "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]},
                {"name": "quiet"},
            ],
        },
        "node2": {"subnet": "rack1", "pods": 2},
    },
}


def test_only_pods_with_ports_and_addresses_are_served() -> None:
    plan = build_plan(Topology.model_validate(TOPO))
    config = listen_config(plan, 7)
    assert config["generation"] == 7
    # Only an IPv4 pool: the pods have no IPv6 address, so no IPv6 sockets.
    assert config["pods"] == [
        {
            "netns": plan.node("node1").pods[0].netns,
            "who": "node1/web",
            "families": [4],
            "ports": [[80, "TCP"], [53, "UDP"]],
        }
    ]


def test_a_lab_without_ports_serves_nothing() -> None:
    data = {**TOPO, "nodes": {"node1": {"subnet": "rack1", "pods": 3}}}
    assert listen_config(build_plan(Topology.model_validate(data)), 1)["pods"] == []


def test_the_answer_line_reads_back() -> None:
    line = answer_line("node1/web-1", 80, "TCP", "fd00:244::5")
    assert line == b"meshemu node1/web-1 80/TCP fd00:244::5\n"
    assert parse_answer(line) == ("node1/web-1", "fd00:244::5")
    assert parse_answer(b"HTTP/1.1 200 OK\r\n") is None
    assert parse_answer(b"") is None
