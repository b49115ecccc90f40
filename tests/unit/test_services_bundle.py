"""Kubernetes Services and EndpointSlices in a Calico bundle (model/services_bundle.py,
service_resources.py): converted into the native `services:`, the slices' endpoints into pods
on their nodes, bad input exit 2 located in the bundle."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from meshemu.errors import ConfigError
from meshemu.model.load import load_topology_text
from meshemu.model.plan import LabPlan, build_plan

NODES = """
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  serviceClusterIPs: [{cidr: 10.100.0.0/16}, {cidr: "fd00:100::/112"}]
  serviceLoadBalancerIPs: [{cidr: 203.0.113.0/24}]
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: worker-a}
spec: {bgp: {ipv4Address: 10.0.0.2/24, ipv6Address: "fd00::2/64"}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: worker-b}
spec: {bgp: {ipv4Address: 10.0.0.3/24, ipv6Address: "fd00::3/64"}}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: p4}
spec: {cidr: 192.168.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: p6}
spec: {cidr: "fd00:192::/64"}
"""

SERVICE = """---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, resourceVersion: "7"}
spec:
  type: LoadBalancer
  selector: {app: web}
  clusterIP: 10.100.0.10
  clusterIPs: [10.100.0.10, "fd00:100::a"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  externalTrafficPolicy: Local
  sessionAffinity: ClientIP
  internalTrafficPolicy: Cluster
  allocateLoadBalancerNodePorts: true
  ports:
    - {name: http, port: 80, protocol: TCP, targetPort: web-http, nodePort: 31080}
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.10, ipMode: VIP}]
"""


def _slice(name: str, family: str, endpoints: str, ports: str = "") -> str:
    ports = ports or "[{name: http, port: 8080, protocol: TCP}]"
    return f"""---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  namespace: shop
  labels: {{kubernetes.io/service-name: web}}
addressType: {family}
ports: {ports}
endpoints: {endpoints}
"""


ENDPOINTS4 = """
  - addresses: [10.244.1.5]
    conditions: {ready: true}
    nodeName: worker-a
    targetRef: {kind: Pod, name: web-7d9f-abc, namespace: shop}
  - addresses: [10.244.2.6]
    conditions: {ready: true}
    nodeName: worker-b
    targetRef: {kind: Pod, name: web-7d9f-xyz, namespace: shop}
  - addresses: [10.244.2.9]
    conditions: {ready: false}
    nodeName: worker-b
    targetRef: {kind: Pod, name: web-7d9f-old, namespace: shop}
"""
ENDPOINTS6 = """
  - addresses: ["fd00:244::5"]
    nodeName: worker-a
    targetRef: {kind: Pod, name: web-7d9f-abc, namespace: shop}
  - addresses: ["fd00:244::6"]
    nodeName: worker-b
    targetRef: {kind: Pod, name: web-7d9f-xyz, namespace: shop}
"""
BUNDLE = (
    NODES + SERVICE + _slice("web-v4", "IPv4", ENDPOINTS4) + _slice("web-v6", "IPv6", ENDPOINTS6)
)


DATA = Path(__file__).resolve().parents[1] / "data" / "services-bundle.yaml"


def test_the_integration_tests_bundle_is_this_one() -> None:
    assert list(yaml.safe_load_all(DATA.read_text())) == list(yaml.safe_load_all(BUNDLE))


def _plan(text: str) -> LabPlan:
    return build_plan(load_topology_text(text, "bundle.yaml", "t"))


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        _plan(text)
    return [f"{p.location}: {p.message}" for p in err.value.problems]


def test_a_service_and_its_slices_become_a_service_with_its_endpoints_on_their_nodes() -> None:
    plan = _plan(BUNDLE)
    assert plan.services is not None
    (web,) = plan.services.services
    assert (web.namespace, web.name, web.type) == ("shop", "web", "LoadBalancer")
    assert web.cluster_ips == ("10.100.0.10", "fd00:100::a")
    assert web.load_balancer_ips == ("203.0.113.10",)
    assert web.external_traffic_policy == "Local"
    assert web.ports[0].node_port == 31080
    # Both families' slices meet in one pod per targetRef, on the slice's node; the
    # not-ready endpoint is no pod. The nodes' two stand-in pods are still there, named
    # uniquely in their namespace.
    a, b = plan.node("worker-a"), plan.node("worker-b")
    assert [p.name for p in a.pods] == ["worker-a-pod1", "worker-a-pod2", "web-7d9f-abc"]
    assert [p.name for p in b.pods] == ["worker-b-pod1", "worker-b-pod2", "web-7d9f-xyz"]
    pod = a.pods[2]
    assert (pod.namespace, pod.labels) == ("shop", {"app": "web"})
    assert [(p.name, p.port, p.protocol) for p in pod.ports] == [("web-http", 8080, "TCP")]
    # The Service selects them: its endpoints, at the named target port, in both families.
    for family in (4, 6):
        got = [(e.pod, e.node, e.port) for e in web.ports[0].endpoints_of(family)]
        assert got == [("web-7d9f-abc", "worker-a", 8080), ("web-7d9f-xyz", "worker-b", 8080)]
    assert web.local_nodes() == ("worker-a", "worker-b")
    # The default BGPConfiguration's Service CIDRs are advertised by every node, and (Local)
    # each node the LoadBalancer address it has an endpoint for.
    for node in ("worker-a", "worker-b"):
        held = plan.services.advertised[node]
        assert {"10.100.0.0/16", "fd00:100::/112", "203.0.113.0/24", "203.0.113.10/32"} <= set(held)
    unsupported = dict(plan.unsupported)
    assert "Service/web.spec.sessionAffinity" in unsupported
    assert "Service/web.spec.internalTrafficPolicy" not in unsupported  # defaults
    assert "Service/web.spec.allocateLoadBalancerNodePorts" not in unsupported
    assert "not ready" in unsupported["EndpointSlice/web-v4.endpoints[2].conditions.ready"]


def test_the_cluster_ip_range_is_bgp_configurations_service_cluster_ips() -> None:
    outside = BUNDLE.replace("10.100.0.10", "10.96.0.10")
    problems = _problems(outside)
    assert any(
        p.startswith("Service/web.spec.clusterIPs") and "10.100.0.0/16" in p for p in problems
    ), problems


def test_a_service_without_selector_takes_its_slices_endpoints() -> None:
    text = BUNDLE.replace("  selector: {app: web}\n", "")
    plan = _plan(text)
    assert plan.services is not None
    (web,) = plan.services.services
    assert plan.node("worker-a").pods[2].labels == {"kubernetes.io/service-name": "web"}
    assert [e.pod for e in web.ports[0].endpoints_of(4)] == ["web-7d9f-abc", "web-7d9f-xyz"]


def test_endpoints_without_a_node_and_headless_services_are_listed_and_left_out() -> None:
    api = """---
apiVersion: v1
kind: Service
metadata: {name: kubernetes, namespace: default}
spec: {clusterIP: 10.100.0.1, ports: [{name: https, port: 443, targetPort: 6443}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: kubernetes, namespace: default, labels: {kubernetes.io/service-name: kubernetes}}
addressType: IPv4
ports: [{name: https, port: 6443, protocol: TCP}]
endpoints: [{addresses: [10.0.0.1], conditions: {ready: true}}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec: {clusterIP: None, selector: {app: db}, ports: [{port: 5432}]}
"""
    plan = _plan(NODES + api)
    assert plan.services is not None
    assert [s.name for s in plan.services.services] == ["kubernetes"]
    assert plan.services.services[0].ports[0].endpoints_of(4) == ()
    unsupported = dict(plan.unsupported)
    assert "names no node" in unsupported["EndpointSlice/kubernetes.endpoints[0]"]
    assert "headless" in unsupported["Service/db.spec"]


SWAPPED6 = (
    ENDPOINTS6.replace("worker-a", "worker-c")
    .replace("worker-b", "worker-a")
    .replace("worker-c", "worker-b")
)
BAD = {
    "unknown-node": (
        BUNDLE.replace("nodeName: worker-b", "nodeName: worker-z", 1),
        "EndpointSlice/web-v4.endpoints[1].nodeName",
        "'worker-z' is no Node of the bundle",
    ),
    "no-service-label": (
        BUNDLE.replace("labels: {kubernetes.io/service-name: web}", "labels: {}", 1),
        "EndpointSlice/web-v4.metadata.labels",
        "belongs to no Service",
    ),
    "unknown-service": (
        BUNDLE.replace("{kubernetes.io/service-name: web}", "{kubernetes.io/service-name: api}", 1),
        "EndpointSlice/web-v4.metadata.labels.kubernetes.io/service-name",
        "names Service shop/api, which the bundle does not hold",
    ),
    "port-mismatch": (
        BUNDLE.replace("targetPort: web-http", "targetPort: 8081"),
        "EndpointSlice/web-v4.ports[0].port",
        "targetPort 8081",
    ),
    "unknown-port": (
        BUNDLE.replace("[{name: http, port: 8080", "[{name: grpc, port: 8080", 1),
        "EndpointSlice/web-v4.ports[0].name",
        "'grpc' is no port of Service web",
    ),
    "bad-service-port": (
        BUNDLE.replace("{name: http, port: 80,", "{name: http, port: 0,"),
        "Service/web.spec.ports[0].port",
        "",
    ),
    "address-type": (
        BUNDLE.replace("addressType: IPv6", "addressType: IPv7"),
        "EndpointSlice/web-v6.addressType",
        "",
    ),
    "twice": (BUNDLE + SERVICE, "Service/web", "Service shop/web is defined twice"),
    "pod-on-two-nodes": (
        NODES + SERVICE + _slice("web-v4", "IPv4", ENDPOINTS4) + _slice("web-v6", "IPv6", SWAPPED6),
        "EndpointSlice/web-v6.endpoints[0].nodeName",
        "puts pod shop/web-7d9f-abc on worker-b, but EndpointSlice/web-v4.endpoints[0] puts it",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_exit_2_located_in_the_bundle(case: str) -> None:
    text, located, words = BAD[case]
    problems = _problems(text)
    assert any(p.startswith(located) and words in p for p in problems), problems


def test_a_nodes_own_service_cidrs_are_listed_not_read() -> None:
    own = """---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: node.worker-a}
spec: {serviceExternalIPs: [{cidr: 198.51.100.0/24}]}
"""
    plan = _plan(BUNDLE + own)
    unsupported = dict(plan.unsupported)
    assert (
        "only the default" in unsupported["BGPConfiguration/node.worker-a.spec.serviceExternalIPs"]
    )
    assert plan.services is not None
    assert "198.51.100.0/24" not in plan.services.advertised["worker-a"]
