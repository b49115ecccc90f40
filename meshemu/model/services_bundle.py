"""Kubernetes Services in a Calico resource bundle: which documents are Services or
EndpointSlices, and how they become the native topology's `services:` and pods (pure).

Owns recognising a bundle's `Service` (v1) and `EndpointSlice` (discovery.k8s.io/v1), checking
their shape where the bundle wrote them (`model.service_resources`), and converting them:
- a Service becomes `services.<name>` with its namespace, type, ports, cluster IPs, IP family
  policy, external IPs, `externalTrafficPolicy`, and as `loadBalancerIPs` the addresses its
  `status.loadBalancer.ingress` (or the deprecated `spec.loadBalancerIP`) names;
- a bundle's pods are meshemu's own (`pod1`..`podN`, no labels), so no selector would match one.
  What kube-proxy really reads are the EndpointSlices (the EndpointSlice controller's
  `kubernetes.io/service-name` label names the Service): each ready endpoint that names its
  node (`nodeName`) becomes a pod on that node, named by its `targetRef` (else
  `<slice>-<index>`), in the targetRef's (else the slice's) namespace, with the Service's
  selector as labels (a Service without a selector gets `kubernetes.io/service-name: <name>` on
  both sides) and the slice's ports as container ports, named as the Service's `targetPort`
  names them. Both families' slices of a dual-stack Service name the same pods, so they meet in
  one pod. meshemu's IPAM gives the pods their addresses; the slice's `addresses` are not kept.
  Such a node's stand-in pods are `<node>-pod1`.. (a list's pod names are unique in their
  namespace, where a count's `pod1`.. repeat on every node).
- `serviceClusterIPRange` is the BGPConfiguration's `serviceClusterIPs` (one CIDR a family:
  Calico's documentation has them name the cluster's service range), else meshemu's default.
Fields Kubernetes has and meshemu does not emulate are listed in `Topology.unsupported`;
headless and ExternalName Services, and endpoints outside the lab's nodes (the API server's
`default/kubernetes`), are listed and left out. Follows kubernetes `pkg/apis/core/types.go`,
`pkg/apis/discovery/types.go` and `pkg/controller/endpointslice` (`LabelServiceName`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from meshemu.errors import Problem
from meshemu.model.calico_bgp import SERVICE_CIDR_FIELDS
from meshemu.model.calico_inventory import Resources
from meshemu.model.calico_resources import Metadata
from meshemu.model.service_resources import (
    DISCOVERY_API,
    SERVICE_API,
    EndpointResource,
    EndpointSliceResource,
    ServicePortResource,
    ServiceResource,
)
from meshemu.model.topology import loc_part, problems_from_validation

SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # discovery/v1 LabelServiceName

# ServiceSpec fields read but not emulated, with the value Kubernetes defaults them to (a
# field at its default is not worth a line).
_NOT_EMULATED: dict[str, object] = {
    "sessionAffinity": "None",
    "loadBalancerSourceRanges": None,
    "healthCheckNodePort": None,
    "publishNotReadyAddresses": None,
    "sessionAffinityConfig": None,
    "allocateLoadBalancerNodePorts": True,
    "loadBalancerClass": None,
    "internalTrafficPolicy": "Cluster",
    "trafficDistribution": None,
}


_MODELS: dict[tuple[object, object], type[ServiceResource] | type[EndpointSliceResource]] = {
    ("Service", SERVICE_API): ServiceResource,
    ("EndpointSlice", DISCOVERY_API): EndpointSliceResource,
}


def read_service_resource(
    body: dict[str, Any], loc: str, found: Resources, problems: list[Problem]
) -> bool:
    """Take a Service or EndpointSlice document; False for any other kind."""
    kind, api = body.get("kind"), body.get("apiVersion")
    model = _MODELS.get((kind, api))
    if model is None:
        return False
    try:
        resource = model.model_validate(body)
    except ValidationError as err:
        problems.extend(problems_from_validation(err, loc))
        return True
    if isinstance(resource, ServiceResource):
        if not _twice(loc, "Service", resource.metadata, found.services, problems):
            found.services.append((loc, resource))
    elif not _twice(loc, "EndpointSlice", resource.metadata, found.endpoint_slices, problems):
        found.endpoint_slices.append((loc, resource))
    return True


def _twice(
    loc: str,
    kind: str,
    meta: Metadata,
    held: Sequence[tuple[str, ServiceResource | EndpointSliceResource]],
    problems: list[Problem],
) -> bool:
    """Whether a resource of the same kind, namespace and name came before (a problem)."""
    key = (meta.namespace or "default", meta.name)
    for first, other in held:
        if (other.metadata.namespace or "default", other.metadata.name) == key:
            problems.append(
                Problem(
                    loc,
                    f"{kind} {key[0]}/{key[1]} is defined twice: at {first} and here; the "
                    "later would silently replace the earlier",
                    "keep one of them, or give the other its own name",
                )
            )
            return True
    return False


@dataclass
class _Pod:
    node: str
    where: str  # the endpoint that asked for it
    data: dict[str, Any]


def add_services(
    data: dict[str, Any],
    origins: dict[str, str],
    found: Resources,
    node_names: dict[str, str],
    problems: list[Problem],
) -> None:
    """The bundle's Services into `data["services"]`, their endpoints' pods into the nodes'
    pods, each with its origin; problems located in the bundle. The default
    BGPConfiguration's Service CIDRs into `data["bgp"]` (Calico advertises them)."""
    _advertisement(data, found)
    if not found.services and not found.endpoint_slices:
        return
    services: dict[str, tuple[str, str, ServiceResource]] = {}  # name -> (loc, namespace, svc)
    out: dict[str, Any] = {}
    for loc, svc in found.services:
        name, namespace = svc.metadata.name, svc.metadata.namespace or "default"
        if name in services:
            problems.append(
                Problem(
                    loc,
                    f"a Service named {name!r} is also in namespace {services[name][1]!r} "
                    f"({services[name][0]})",
                    "meshemu's services: are keyed by name: give one of them another name",
                )
            )
            continue
        converted = _service(loc, svc, found)
        if converted is None:
            continue
        services[name] = (loc, namespace, svc)
        out[name] = converted
        origins[f"services.{name}"] = f"{loc}.spec"
    pods = _endpoint_pods(services, out, node_names, found, problems)
    _place_pods(data, origins, pods)
    if out:
        data["services"] = out
        _cluster_ip_range(data, found)


def _service(loc: str, svc: ServiceResource, found: Resources) -> dict[str, Any] | None:
    """The native form of one Service; None (and a listing) for one meshemu leaves out."""
    spec = svc.spec
    if spec.type == "ExternalName" or spec.clusterIP == "None":
        what = "an ExternalName" if spec.type == "ExternalName" else "a headless"
        found.unsupported.append(
            (f"{loc}.spec", f"{what} Service has no cluster IP for kube-proxy: left out")
        )
        return None
    for fname, default in _NOT_EMULATED.items():
        value = getattr(spec, fname)
        if value is not None and value != default:
            found.unsupported.append((f"{loc}.spec.{fname}", "read, not emulated"))
    for index, port in enumerate(spec.ports):
        if port.appProtocol is not None:
            found.unsupported.append(
                (f"{loc}.spec.ports[{index}].appProtocol", "read, not emulated")
            )
    cluster_ips = list(spec.clusterIPs) or ([spec.clusterIP] if spec.clusterIP else [])
    status = svc.status.loadBalancer if svc.status is not None else None
    balancers = [i.ip for i in (status.ingress if status is not None else []) if i.ip]
    if spec.loadBalancerIP and spec.loadBalancerIP not in balancers:
        balancers.append(spec.loadBalancerIP)
    out: dict[str, Any] = {
        "namespace": svc.metadata.namespace or "default",
        "type": spec.type,
        "selector": dict(spec.selector or {}),
        "ports": [_port(p) for p in spec.ports],
    }
    optional = {
        "clusterIPs": cluster_ips,
        "ipFamilyPolicy": spec.ipFamilyPolicy,
        "ipFamilies": list(spec.ipFamilies),
        "externalIPs": list(spec.externalIPs),
        "loadBalancerIPs": balancers,
        "externalTrafficPolicy": spec.externalTrafficPolicy,
    }
    out.update({k: v for k, v in optional.items() if v})
    return out


def _port(port: ServicePortResource) -> dict[str, Any]:
    out: dict[str, Any] = {"port": port.port, "protocol": port.protocol}
    for key, value in (
        ("name", port.name),
        ("targetPort", port.targetPort),
        ("nodePort", port.nodePort),
    ):
        if value is not None and value != "":
            out[key] = value
    return out


def _endpoint_pods(
    services: dict[str, tuple[str, str, ServiceResource]],
    out: dict[str, Any],
    node_names: dict[str, str],
    found: Resources,
    problems: list[Problem],
) -> dict[tuple[str, str], _Pod]:
    """(namespace, pod name) -> the pod the EndpointSlices' endpoints ask for."""
    pods: dict[tuple[str, str], _Pod] = {}
    for loc, eps in found.endpoint_slices:
        label_at = f"{loc}.metadata.labels"
        service = eps.metadata.labels.get(SERVICE_NAME_LABEL)
        if service is None:
            problems.append(
                Problem(
                    label_at,
                    f"has no {SERVICE_NAME_LABEL} label, so it belongs to no Service",
                    f"label it {SERVICE_NAME_LABEL}: <the Service's name>, as the "
                    "EndpointSlice controller does",
                )
            )
            continue
        namespace = eps.metadata.namespace or "default"
        known = services.get(service)
        if known is None or known[1] != namespace:
            if not any(s.metadata.name == service for _, s in found.services):
                problems.append(
                    Problem(
                        f"{label_at}.{loc_part(SERVICE_NAME_LABEL)}",
                        f"names Service {namespace}/{service}, which the bundle does not hold",
                        "add the Service (kubectl get svc -o yaml) or leave the slice out",
                    )
                )
            continue
        if eps.addressType == "FQDN":
            found.unsupported.append((f"{loc}.addressType", "FQDN endpoints: no pods; left out"))
            continue
        svc = known[2]
        labels = dict(svc.spec.selector or {})
        if not labels:
            labels = {SERVICE_NAME_LABEL: service}
            out[service]["selector"] = labels
        ports = _container_ports(loc, eps, svc, problems)
        for index, endpoint in enumerate(eps.endpoints):
            where = f"{loc}.endpoints[{index}]"
            node = _endpoint_node(where, endpoint, node_names, found, problems)
            if node is None:
                continue
            ref = endpoint.targetRef
            name = ref.name if ref is not None and ref.kind in (None, "Pod") and ref.name else None
            key = (
                (ref.namespace if ref is not None and ref.namespace else namespace),
                name or f"{eps.metadata.name}-{index}",
            )
            pod = pods.get(key)
            if pod is None:
                pod = pods[key] = _Pod(
                    node, where, {"name": key[1], "namespace": key[0], "labels": {}, "ports": []}
                )
            elif pod.node != node:
                problems.append(
                    Problem(
                        f"{where}.nodeName",
                        f"puts pod {key[0]}/{key[1]} on {node}, but {pod.where} puts it on "
                        f"{pod.node}",
                        "a pod runs on one node: correct one of the two",
                    )
                )
                continue
            pod.data["labels"].update(labels)
            pod.data["ports"] += [p for p in ports if p not in pod.data["ports"]]
    return pods


def _endpoint_node(
    where: str,
    endpoint: EndpointResource,
    node_names: dict[str, str],
    found: Resources,
    problems: list[Problem],
) -> str | None:
    """The lab node of an endpoint that is a pod meshemu creates; None (listed) otherwise."""
    if endpoint.conditions.ready is False:
        found.unsupported.append(
            (f"{where}.conditions.ready", "not ready: kube-proxy sends it nothing; left out")
        )
        return None
    if endpoint.nodeName is None:
        found.unsupported.append(
            (
                f"{where}",
                f"{', '.join(endpoint.addresses)} names no node (not a pod of the cluster, "
                "such as the API server behind default/kubernetes): left out",
            )
        )
        return None
    node = node_names.get(endpoint.nodeName)
    if node is None:
        problems.append(
            Problem(
                f"{where}.nodeName",
                f"{endpoint.nodeName!r} is no Node of the bundle",
                f"the bundle's nodes: {', '.join(sorted(node_names)) or 'none'}",
            )
        )
    return node


def _container_ports(
    loc: str, eps: EndpointSliceResource, svc: ServiceResource, problems: list[Problem]
) -> list[dict[str, Any]]:
    """The slice's ports as the endpoints' container ports: a slice port carries its Service
    port's name and the target port's number; the container port takes the name the
    Service's `targetPort` gives it (when it is a name)."""
    by_name = {p.name or "": p for p in svc.spec.ports}
    out = []
    for index, port in enumerate(eps.ports or []):
        where = f"{loc}.ports[{index}]"
        if port.port is None:
            continue  # (all ports of the Service: nothing to listen on in particular)
        service_port = by_name.get(port.name or "")
        if service_port is None:
            problems.append(
                Problem(
                    f"{where}.name",
                    f"{port.name!r} is no port of Service {svc.metadata.name}",
                    f"its ports: {', '.join(repr(n) for n in by_name) or 'none'}",
                )
            )
            continue
        target = service_port.targetPort
        if isinstance(target, int) and target != port.port:
            problems.append(
                Problem(
                    f"{where}.port",
                    f"{port.port}, but Service {svc.metadata.name} sends port "
                    f"{service_port.port} to targetPort {target}",
                    "the slice's port is the Service's targetPort",
                )
            )
            continue
        entry: dict[str, Any] = {"port": port.port, "protocol": port.protocol}
        if isinstance(target, str) and target:
            entry["name"] = target
        out.append(entry)
    return out


def _place_pods(
    data: dict[str, Any], origins: dict[str, str], pods: dict[tuple[str, str], _Pod]
) -> None:
    """Each endpoint's pod onto its node, after the node's stand-in pods. A list of pods holds
    names unique in their namespace (Kubernetes'), where a count's `pod1`..`podN` repeat on
    every node: on a node that runs endpoints they become `<node>-pod1`..; a stand-in the
    slice names (by that name) is that pod, given the labels and ports."""
    for pod in sorted(pods.values(), key=lambda p: (p.node, p.data["namespace"], p.data["name"])):
        node = data["nodes"][pod.node]
        held = node.get("pods", 0)
        if isinstance(held, int):
            held = node["pods"] = [{"name": f"{pod.node}-pod{i}"} for i in range(1, held + 1)]
        same = next(
            (
                p
                for p in held
                if p["name"] == pod.data["name"]
                and p.get("namespace", "default") == pod.data["namespace"]
            ),
            None,
        )
        if same is None:
            held.append(pod.data)
            origins[f"nodes.{pod.node}.pods[{len(held) - 1}]"] = pod.where
        else:
            same.setdefault("labels", {}).update(pod.data["labels"])
            same.setdefault("ports", []).extend(
                p for p in pod.data["ports"] if p not in same["ports"]
            )


def _advertisement(data: dict[str, Any], found: Resources) -> None:
    """The default BGPConfiguration's serviceClusterIPs, serviceExternalIPs and
    serviceLoadBalancerIPs, as the native `bgp:` spells them (confd reads only the default's:
    a node's own is listed by `calico_bgp`; `calico_bgp` maps `bgp` to the resource)."""
    if found.bgp_default is None:
        return
    spec = found.bgp_default[1]
    for fname in SERVICE_CIDR_FIELDS:
        value = getattr(spec, fname)
        if value:
            data.setdefault("bgp", {})[fname] = [dict(entry) for entry in value]


def _cluster_ip_range(data: dict[str, Any], found: Resources) -> None:
    """The BGPConfiguration's serviceClusterIPs as the cluster IP range, one CIDR a family."""
    if found.bgp_default is None or "serviceClusterIPRange" in data:
        return
    chosen: dict[int, str] = {}
    for entry in found.bgp_default[1].serviceClusterIPs or []:
        try:
            network = ipaddress.ip_network(entry.get("cidr", ""), strict=False)
        except ValueError:
            continue  # (the BGP conversion reports it)
        chosen.setdefault(network.version, entry["cidr"])
    if chosen:
        data["serviceClusterIPRange"] = [chosen[f] for f in sorted(chosen)]
