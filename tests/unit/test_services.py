"""Services in the plan: endpoints, cluster IPs, advertisement, kube-proxy's rules, bad input."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshemu.errors import ConfigError
from meshemu.model.labplan import LabPlan
from meshemu.model.plan import build_plan
from meshemu.model.services_nft import services_ruleset
from meshemu.model.topology import Topology

TOPOLOGY = Path(__file__).resolve().parents[2] / "topologies" / "services.yaml"


def _data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(TOPOLOGY.read_text())
    return data


def _plan(data: dict[str, Any]) -> LabPlan:
    return build_plan(Topology.model_validate(data))


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        _plan(data)
    return [f"{p.location}: {p.message} ({p.hint})" for p in err.value.problems]


def test_endpoints_are_the_selected_pods_at_their_target_ports() -> None:
    plan = _plan(_data())
    assert plan.services is not None
    web, nginx, dns, web_lb = plan.services.services
    assert web.cluster_ips == ("10.96.0.20", "fd00:10:96::14")  # allocated, both families
    assert [(e.pod, e.port) for e in web.ports[0].endpoints_of(4)] == [
        ("web-1", 8080),
        ("web-2", 8080),
        ("web-3", 8080),
    ]
    assert nginx.cluster_ips == ("10.96.0.80", "fd00:10:96::80")
    assert nginx.local_nodes() == ("node3",)
    assert dns.cluster_ips == ("10.96.0.21",)  # SingleStack: the first range's family
    assert dns.ports[0].node_port == 30000 and nginx.ports[0].node_port == 30080
    assert web_lb.cluster_ips == ("10.96.0.22", "fd00:10:96::15")
    assert web_lb.ports[0].endpoints_of(6) == web.ports[0].endpoints_of(6)
    # The plan's JSON reads back identical.
    assert LabPlan.from_json(plan.to_json(secrets=True)).services == plan.services


def test_every_node_advertises_the_cidrs_and_local_hosts_only_where_the_endpoint_is() -> None:
    plan = _plan(_data())
    assert plan.services is not None
    cidrs = ("10.96.0.0/16", "fd00:10:96::/112", "203.0.113.0/24", "2001:db8:80::/64")
    hosts = ("10.96.0.80/32", "fd00:10:96::80/128", "203.0.113.80/32", "2001:db8:80::80/128")
    assert plan.services.advertised == {
        "node1": cidrs,
        "node2": cidrs,
        "node3": cidrs + hosts,
    }
    # The nodes' RIBs hold them; their kernels never get a route inside a service CIDR.
    node1 = plan.node("node1")
    rib = {e.prefix: e for e in node1.rib}
    assert rib["203.0.113.80/32"].origin_node == "node3"
    assert not [r for r in node1.fib if r.prefix.startswith(("10.96.", "203.0.113", "2001:db8"))]
    # The top-of-rack router learns them and forwards the host routes to node3.
    tor = next(r for r in plan.routers if r.name == "tor1")
    assert tor.bgp is not None
    routes = {r.prefix: r for r in tor.bgp.routes}
    assert routes["203.0.113.80/32"].via == plan.node("node3").ipv4
    assert routes["2001:db8:80::80/128"].via == plan.node("node3").ipv6
    assert routes["10.96.0.0/16"].paths == 3


def test_local_advertisement_follows_the_endpoint() -> None:
    data = _data()
    nginx = data["nodes"]["node3"]["pods"].pop()
    data["nodes"]["node1"]["pods"].append(nginx)
    plan = _plan(data)
    assert plan.services is not None
    assert "203.0.113.80/32" in plan.services.advertised["node1"]
    assert "203.0.113.80/32" not in plan.services.advertised["node3"]


def test_kube_proxy_rules_dnat_to_the_endpoints() -> None:
    plan = _plan(_data())
    node3 = plan.node("node3")
    rules = services_ruleset(plan, node3)
    assert rules.startswith("table ip kube-proxy\ndelete table ip kube-proxy\n")
    assert "table ip6 kube-proxy {" in rules
    assert "10.96.0.20 . tcp . 80 : goto service-" in rules
    assert "meta l4proto tcp dnat to 172.26.0.64:8080" in rules
    assert "dnat to [fd00:46:beef::80]:80" in rules
    assert "numgen random mod 3 vmap" in rules
    assert "udp . 30000 : goto external-" in rules
    # Local on node3: its own endpoint; on node1 (none local) external traffic is dropped.
    local = rules.split("external-")[1]
    assert "goto endpoint-" in rules and "drop" not in local.split("}")[0]
    node1_rules = services_ruleset(plan, plan.node("node1"))
    nginx_external = [c for c in node1_rules.split("chain ") if '"default/nginx:http"' in c]
    assert any("drop" in c for c in nginx_external)


def test_a_service_without_endpoints_is_a_note_and_rejected() -> None:
    data = _data()
    data["services"]["web"]["selector"] = {"app": "nothing"}
    plan = _plan(data)
    assert any("default/web has no endpoints" in n for n in plan.notes)
    assert (
        "10.96.0.20 . tcp . 80"
        in services_ruleset(plan, plan.node("node1")).split("no-endpoint-services")[1]
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["services"]["nginx"].update(clusterIPs=["10.96.0.80", "fd00:46:beef::5"]),
            "services.nginx.clusterIPs[1]: fd00:46:beef::5 is a Service address inside "
            "pools.ipv6-pool",
        ),
        (
            lambda d: d["services"]["nginx"].update(loadBalancerIPs=["10.46.1.200"]),
            "services.nginx.loadBalancerIPs[0]: 10.46.1.200 is a Service address inside "
            "subnets.rack1",
        ),
        (
            lambda d: d.update(serviceClusterIPRange=["172.26.128.0/20"]),
            "serviceClusterIPRange[0]: 172.26.128.0/20 is a service cluster IP range inside",
        ),
        (
            lambda d: d["services"]["web"].update(clusterIPs=["10.97.0.1"]),
            "services.web.clusterIPs[0]: 10.97.0.1 is not in the service cluster IP range",
        ),
        (
            lambda d: (
                d.update(serviceClusterIPRange=["10.96.0.0/16"]),
                d["services"]["nginx"].pop("clusterIPs"),
            ),
            "services.nginx.ipFamilyPolicy: RequireDualStack, but serviceClusterIPRange",
        ),
        (
            lambda d: d["services"]["dns"]["ports"][0].update(nodePort=30080),
            "services.dns.ports[0].nodePort: 30080 is also services.nginx.ports[0]",
        ),
        (
            lambda d: d["services"]["web"].update(externalTrafficPolicy="Local"),
            "services.web.externalTrafficPolicy: externalTrafficPolicy applies to NodePort",
        ),
        (
            lambda d: d["services"].update({"Web": d["services"]["web"]}),
            "services.Web: 'Web' is not a Service name",
        ),
        (
            lambda d: d["bgp"].update(serviceClusterIPs=[{"cidr": "172.26.0.0/16"}]),
            "bgp.serviceClusterIPs[0].cidr: 172.26.0.0/16 is a service CIDR inside pools",
        ),
    ],
)
def test_bad_services_are_exit_2_with_a_location(change: Any, expected: str) -> None:
    data = copy.deepcopy(_data())
    change(data)
    found = _problems(data)
    assert any(f.startswith(expected) for f in found), found


def test_the_pool_hint_says_what_to_do() -> None:
    data = _data()
    data["services"]["web"]["clusterIPs"] = ["172.26.5.5"]
    data["serviceClusterIPRange"] = ["10.96.0.0/16", "fd00:10:96::/112"]
    found = _problems(data)
    assert any("range of their own" in f for f in found), found
