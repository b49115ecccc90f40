"""Kubernetes `Service` (v1) and `EndpointSlice` (discovery.k8s.io/v1) as pydantic input models:
the shapes a bundle's Service documents must have, and nothing else.

Follows the Go types the API server validates against: kubernetes `pkg/apis/core/types.go`
(`Service`, `ServiceSpec`, `ServicePort`, `ServiceStatus`, `LoadBalancerIngress`) and
`pkg/apis/discovery/types.go` (`EndpointSlice`, `Endpoint`, `EndpointConditions`,
`EndpointPort`, `ObjectReference` of core). Every field Kubernetes has is accepted (what
`kubectl get svc,endpointslices -o yaml` writes must read); unknown ones are errors. Which
fields meshemu emulates, and turning the resources into the topology's `services:` and pods,
is `model.services_bundle`'s job.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from meshemu.model.calico_resources import Metadata
from meshemu.model.topology import InputModel, Int, Text

SERVICE_API = "v1"
DISCOVERY_API = "discovery.k8s.io/v1"


class ServicePortResource(InputModel):
    name: Text | None = None
    protocol: Text = "TCP"
    appProtocol: Text | None = None
    port: Int
    targetPort: Int | Text | None = None
    nodePort: Int | None = None


class ServiceResourceSpec(InputModel):
    ports: list[ServicePortResource] = Field(default_factory=list)
    selector: dict[Text, Text] | None = None
    clusterIP: Text | None = None
    clusterIPs: list[Text] = Field(default_factory=list)
    type: Text = "ClusterIP"
    externalIPs: list[Text] = Field(default_factory=list)
    sessionAffinity: Text | None = None
    loadBalancerIP: Text | None = None
    loadBalancerSourceRanges: list[Text] | None = None
    externalName: Text | None = None
    externalTrafficPolicy: Text | None = None
    healthCheckNodePort: Int | None = None
    publishNotReadyAddresses: bool | None = None
    sessionAffinityConfig: dict[Text, Any] | None = None
    ipFamilies: list[Text] = Field(default_factory=list)
    ipFamilyPolicy: Text | None = None
    allocateLoadBalancerNodePorts: bool | None = None
    loadBalancerClass: Text | None = None
    internalTrafficPolicy: Text | None = None
    trafficDistribution: Text | None = None


class LoadBalancerIngress(InputModel):
    ip: Text | None = None
    hostname: Text | None = None
    ipMode: Text | None = None
    ports: list[dict[Text, Any]] | None = None


class LoadBalancerStatus(InputModel):
    ingress: list[LoadBalancerIngress] = Field(default_factory=list)


class ServiceResourceStatus(InputModel):
    loadBalancer: LoadBalancerStatus | None = None
    conditions: list[dict[Text, Any]] | None = None


class ServiceResource(InputModel):
    apiVersion: Literal["v1"]
    kind: Literal["Service"]
    metadata: Metadata
    spec: ServiceResourceSpec = Field(default_factory=ServiceResourceSpec)
    status: ServiceResourceStatus | None = None


class ObjectReference(InputModel):
    kind: Text | None = None
    namespace: Text | None = None
    name: Text | None = None
    uid: Text | None = None
    apiVersion: Text | None = None
    resourceVersion: Text | None = None
    fieldPath: Text | None = None


class EndpointConditions(InputModel):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class EndpointResource(InputModel):
    addresses: list[Text] = Field(min_length=1)
    conditions: EndpointConditions = Field(default_factory=EndpointConditions)
    hostname: Text | None = None
    targetRef: ObjectReference | None = None
    nodeName: Text | None = None
    zone: Text | None = None
    hints: dict[Text, Any] | None = None
    deprecatedTopology: dict[Text, Text] | None = None


class EndpointPortResource(InputModel):
    name: Text | None = None
    protocol: Text = "TCP"
    port: Int | None = None
    appProtocol: Text | None = None


class EndpointSliceResource(InputModel):
    apiVersion: Literal["discovery.k8s.io/v1"]
    kind: Literal["EndpointSlice"]
    metadata: Metadata
    addressType: Literal["IPv4", "IPv6", "FQDN"]
    endpoints: list[EndpointResource] = Field(default_factory=list)
    ports: list[EndpointPortResource] | None = None

    @field_validator("endpoints", mode="before")
    @classmethod
    def _null_is_none(cls, value: object) -> object:
        return [] if value is None else value  # (the controller writes `endpoints: null`)
