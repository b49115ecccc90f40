"""The Calico v3 resources, the operator's Installation and the Kubernetes Secret, as pydantic
input models: the shapes a bundle's documents must have, and nothing else.

Follows the Go types the API server validates against: projectcalico/calico
`api/pkg/apis/projectcalico/v3/ippool.go` (IPPool), `bgpconfig.go` (BGPConfiguration),
`bgppeer.go` (BGPPeer, BGPPassword's `secretKeyRef`), `libcalico-go/lib/apis/internalapi/node.go`
(Node, `NodeBGPSpec`); tigera/operator `api/v1/installation_types.go` (Installation,
`CalicoNetworkSpec`, `IPPool`); Kubernetes core/v1 Secret. Every model forbids fields Calico
does not have; fields Calico has and meshemu does not emulate are accepted here and listed by
the converter. Reading documents into these models is `calico_bundle`'s job, turning them into
the native topology that of `calico`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from meshemu.model.topology import (
    DNS_SUBDOMAIN,
    AsNumber,
    Bool,
    CommunitySpec,
    Duration,
    EncapMode,
    FilterRuleSpec,
    InputModel,
    Int,
    NextHopMode,
    Port,
    PrefixAdvertisementSpec,
    Priority,
    ReversePeering,
    SourceAddress,
    Text,
    labels_as_text,
)

CALICO_API = "projectcalico.org/v3"
OPERATOR_API = "operator.tigera.io/v1"


class Metadata(InputModel):
    name: Text = Field(min_length=1, max_length=253)
    namespace: Text | None = None
    labels: dict[Text, Text] = Field(default_factory=dict)
    annotations: dict[Text, Text] = Field(default_factory=dict)
    resourceVersion: Text | None = None
    uid: Text | None = None
    creationTimestamp: Text | None = None
    generation: Int | None = None
    # Written by `kubectl get -o yaml`; meaningless for the lab, so accepted and ignored.
    finalizers: list[Text] | None = None
    ownerReferences: list[dict[Text, Any]] | None = None
    managedFields: list[dict[Text, Any]] | None = None
    generateName: Text | None = None
    deletionTimestamp: Text | None = None
    deletionGracePeriodSeconds: Int | None = None
    selfLink: Text | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, value: object) -> object:
        return labels_as_text(value)

    @field_validator("name")
    @classmethod
    def _subdomain(cls, value: str) -> str:
        if not DNS_SUBDOMAIN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a Kubernetes object name: lower-case letters, digits, '-' "
                "and '.', starting and ending with a letter or digit"
            )
        return value


class SecretKeyRef(InputModel):
    name: Text
    key: Text
    optional: Bool | None = None


class PasswordSource(InputModel):
    secretKeyRef: SecretKeyRef


class SecretResource(InputModel):
    """A Kubernetes v1 Secret: only its data matters (BGP passwords)."""

    apiVersion: Literal["v1"]
    kind: Literal["Secret"]
    metadata: Metadata
    data: dict[Text, Text] = Field(default_factory=dict)
    stringData: dict[Text, Text] = Field(default_factory=dict)
    type: Text | None = None
    immutable: Bool | None = None

    @field_validator("data", "stringData", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return {} if value is None else value


class NodeBGP(InputModel):
    ipv4Address: Text | None = None
    ipv6Address: Text | None = None
    asNumber: AsNumber | None = None
    routeReflectorClusterID: Text | None = None
    ipv4IPIPTunnelAddr: Text | None = None


class NodeResourceSpec(InputModel):
    bgp: NodeBGP | None = None
    ipv4VXLANTunnelAddr: Text | None = None
    ipv6VXLANTunnelAddr: Text | None = None
    vxlanTunnelMACAddr: Text | None = None
    vxlanTunnelMACAddrV6: Text | None = None
    orchRefs: list[dict[Text, Text]] = Field(default_factory=list)
    addresses: list[dict[Text, Text]] = Field(default_factory=list)
    wireguard: dict[Text, Text] | None = None


class IPPoolResourceSpec(InputModel):
    cidr: Text
    blockSize: Int | None = None
    ipipMode: EncapMode = "Never"
    vxlanMode: EncapMode = "Never"
    natOutgoing: Bool = False
    disabled: Bool = False
    nodeSelector: Text = "all()"
    disableBGPExport: Bool = False
    allowedUses: list[Text] | None = None
    assignmentMode: Text | None = None
    disableNewAllocations: Bool | None = None


class BGPConfigurationSpec(InputModel):
    """Every field of Calico's BGPConfigurationSpec (api/pkg/apis/projectcalico/v3/bgpconfig.go);
    which of them the lab emulates is `calico_bgp`'s list."""

    asNumber: AsNumber | None = None
    nodeToNodeMeshEnabled: Bool | None = None
    logSeverityScreen: Text | None = None
    listenPort: Port | None = None
    bindMode: Literal["None", "NodeIP"] | None = None
    nodeMeshPassword: PasswordSource | None = None
    nodeMeshMaxRestartTime: Duration | None = None
    serviceClusterIPs: list[dict[Text, Text]] | None = None
    serviceExternalIPs: list[dict[Text, Text]] | None = None
    serviceLoadBalancerIPs: list[dict[Text, Text]] | None = None
    serviceLoadBalancerAggregation: Literal["Enabled", "Disabled"] | None = None
    communities: list[CommunitySpec] | None = None
    prefixAdvertisements: list[PrefixAdvertisementSpec] | None = None
    ignoredInterfaces: list[Text] | None = None
    localWorkloadPeeringIPV4: Text | None = None
    localWorkloadPeeringIPV6: Text | None = None
    programClusterRoutes: (
        Literal["Enabled", "Disabled", "EnabledIPIPOnly", "EnabledNoEncapOnly"] | None
    ) = None
    ipv4NormalRoutePriority: Priority | None = None
    ipv6NormalRoutePriority: Priority | None = None


class BGPPeerSpec(InputModel):
    """Every field of Calico's BGPPeerSpec (api/pkg/apis/projectcalico/v3/bgppeer.go); a field
    of another edition (Calico Enterprise's failureDetectionMode, restartMode, ...) is unknown."""

    node: Text | None = None
    peerIP: Text | None = None
    asNumber: AsNumber | None = None
    localASNumber: AsNumber | None = None
    nodeSelector: Text | None = None
    peerSelector: Text | None = None
    keepOriginalNextHop: Bool = False
    nextHopMode: NextHopMode | None = None
    password: PasswordSource | None = None
    sourceAddress: SourceAddress = "UseNodeIP"
    maxRestartTime: Duration | None = None
    keepaliveTime: Duration | None = None
    numAllowedLocalASNumbers: Int | None = None
    ttlSecurity: Int | None = Field(default=None, ge=0, le=255)
    reachableBy: Text | None = None
    filters: list[Text] | None = None
    localWorkloadSelector: Text | None = None
    reversePeering: ReversePeering = "Auto"


class BGPFilterSpec(InputModel):
    """Calico's BGPFilterSpec (api/pkg/apis/projectcalico/v3/bgpfilter.go)."""

    exportV4: list[FilterRuleSpec] | None = None
    importV4: list[FilterRuleSpec] | None = None
    exportV6: list[FilterRuleSpec] | None = None
    importV6: list[FilterRuleSpec] | None = None


Encapsulation = Literal["IPIP", "IPIPCrossSubnet", "VXLAN", "VXLANCrossSubnet", "None"]


class InstallationPool(InputModel):
    """An operator IP pool. Unset fields get the operator's per-family defaults (see
    `calico_installation`)."""

    cidr: Text
    name: Text | None = None
    blockSize: Int | None = None
    encapsulation: Encapsulation | None = None
    natOutgoing: Literal["Enabled", "Disabled"] | None = None
    nodeSelector: Text | None = None
    disableBGPExport: Bool | None = None
    disableNewAllocations: Bool | None = None
    allowedUses: list[Text] | None = None
    assignmentMode: Text | None = None


class CalicoNetworkSpec(InputModel):
    ipPools: list[InstallationPool] | None = None
    bgp: Literal["Enabled", "Disabled"] | None = None
    mtu: Int | None = None
    linuxDataplane: Text | None = None
    nodeAddressAutodetectionV4: dict[Text, Any] | None = None
    nodeAddressAutodetectionV6: dict[Text, Any] | None = None
    # Set by the operator's defaulting, so present in every `kubectl get` export.
    hostPorts: Text | None = None
    multiInterfaceMode: Text | None = None
    containerIPForwarding: Text | None = None
    linuxPolicySetupTimeoutSeconds: Int | None = None
    windowsDataplane: Text | None = None


class InstallationSpec(InputModel):
    calicoNetwork: CalicoNetworkSpec = Field(default_factory=CalicoNetworkSpec)
    variant: Text | None = None
    registry: Text | None = None
    cni: dict[Text, Any] | None = None
    kubernetesProvider: Text | None = None
    # Set by the operator's defaulting; about deployment, not networking.
    controlPlaneReplicas: Int | None = None
    flexVolumePath: Text | None = None
    kubeletVolumePluginPath: Text | None = None
    nodeUpdateStrategy: dict[Text, Any] | None = None
    nonPrivileged: Text | None = None
    logging: dict[Text, Any] | None = None
    imagePullSecrets: list[dict[Text, Any]] | None = None
    fipsMode: Text | None = None


class IPAMConfigurationSpec(InputModel):
    """Every field of Calico's IPAMConfigurationSpec (api/pkg/apis/projectcalico/v3/
    ipamconfig.go:63-101). strictAffinity and maxBlocksPerHost are emulated (model/ipam.py);
    the others are listed as read but not emulated (calico_bundle)."""

    strictAffinity: Bool | None = None
    maxBlocksPerHost: Int | None = Field(default=None, ge=0, le=1000000)
    autoAllocateBlocks: Bool | None = None
    kubeVirtVMAddressPersistence: Literal["Enabled", "Disabled"] | None = None
    ipCooldownSeconds: Int | None = Field(default=None, ge=0, le=1200)


# The projectcalico.org/v3 kinds a bundle may hold, by kind, with the model of their spec.
SPEC_MODELS: dict[str, type[BaseModel]] = {
    "Node": NodeResourceSpec,
    "IPPool": IPPoolResourceSpec,
    "BGPConfiguration": BGPConfigurationSpec,
    "BGPPeer": BGPPeerSpec,
    "BGPFilter": BGPFilterSpec,
    "IPAMConfiguration": IPAMConfigurationSpec,
}
