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

from pydantic import BaseModel, Field, create_model, field_validator

from meshemu.model.topology import (
    DNS_SUBDOMAIN,
    AsNumber,
    Bool,
    ClusterRoutes,
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
    programClusterRoutes: ClusterRoutes | None = None
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
    # Who programs cluster routes (installation_types.go:683-696; mapped by `calico_felix`).
    clusterRoutingMode: Literal["BIRD", "Felix", "FelixIPIPOnly"] | None = None
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


class FelixEmulatedFields(InputModel):
    """The FelixConfiguration fields the lab emulates (`calico_felix`), with the types and the
    CRD enum of api/pkg/apis/projectcalico/v3/felixconfig.go (426, 434, 650-651, 1090)."""

    programClusterRoutes: ClusterRoutes | None = None
    ipipEnabled: Bool | None = None
    vxlanEnabled: Bool | None = None
    routeSyncDisabled: Bool | None = None


# Every other field of FelixConfigurationSpec, by its JSON name, in the struct's order
# (felixconfig.go at projectcalico/calico 87c15906, 188 fields in all): accepted, of any value
# (the API server checks them; the lab does not act on them), and listed by `calico_felix` as
# read but not emulated. A name not here and not emulated is an unknown field.
_FELIX_NAMES = """
    nodeSelector useInternalDataplaneDriver dataplaneDriver dataplaneWatchdogTimeout
    ipv6Support routeRefreshInterval interfaceRefreshInterval iptablesRefreshInterval
    iptablesPostWriteCheckInterval iptablesLockProbeInterval featureDetectOverride featureGates
    ipsetsRefreshInterval maxIpsetSize iptablesBackend xdpRefreshInterval netlinkTimeout
    metadataAddr metadataPort openstackRegion interfacePrefix interfaceExclude chainInsertMode
    defaultEndpointToHostAction iptablesFilterAllowAction iptablesMangleAllowAction
    iptablesFilterDenyAction logPrefix logActionRateLimit logActionRateLimitBurst logFilePath
    logSeverityFile logSeverityScreen logSeveritySys logDebugFilenameRegex ipipMTU vxlanMTU
    vxlanMTUV6 vxlanPort vxlanVNI allowVXLANPacketsFromWorkloads allowIPIPPacketsFromWorkloads
    reportingInterval reportingTTL endpointReportingEnabled endpointReportingDelay
    endpointStatusPathPrefix iptablesMarkMask disableConntrackInvalidCheck healthEnabled
    healthHost healthPort healthTimeoutOverrides prometheusMetricsEnabled prometheusMetricsHost
    prometheusMetricsPort prometheusGoMetricsEnabled prometheusProcessMetricsEnabled
    prometheusWireGuardMetricsEnabled prometheusMetricsCAFile prometheusMetricsCertFile
    prometheusMetricsKeyFile prometheusMetricsClientAuth failsafeInboundHostPorts
    failsafeOutboundHostPorts kubeNodePortRanges policySyncPathPrefix usageReportingEnabled
    usageReportingInitialDelay usageReportingInterval natPortRange natOutgoingAddress
    natOutgoingExclusions deviceRouteSourceAddress deviceRouteSourceAddressIPv6
    deviceRouteProtocol removeExternalRoutes ipForwarding externalNodesList
    debugMemoryProfilePath debugDisableLogDropping debugSimulateCalcGraphHangAfter
    debugSimulateDataplaneHangAfter debugSimulateDataplaneApplyDelay debugHost debugPort
    iptablesNATOutgoingInterfaceFilter sidecarAccelerationEnabled xdpEnabled genericXDPEnabled
    nftablesMode nftablesFlowTableOffload nftablesFlowTableDataIfacePattern
    nftablesRefreshInterval nftablesFilterAllowAction nftablesMangleAllowAction
    nftablesFilterDenyAction nftablesMarkMask bpfEnabled bpfOverlayHostSourceIP
    bpfDisableUnprivileged bpfJITHardening bpfLogLevel bpfConntrackLogLevel bpfConntrackMode
    bpfConntrackTimeouts bpfIPFragTimeout bpfLogFilters bpfCTLBLogFilter bpfDataIfacePattern
    bpfL3IfacePattern bpfConnectTimeLoadBalancingEnabled bpfConnectTimeLoadBalancing
    bpfHostNetworkedNATWithoutCTLB bpfExternalServiceMode bpfDSROptoutCIDRs
    bpfExtToServiceConnmark bpfKubeProxyIptablesCleanupEnabled bpfKubeProxyMinSyncPeriod
    bpfKubeProxyHealthzPort bpfPSNATPorts bpfMapSizeNATFrontend bpfMapSizeNATBackend
    bpfMapSizeNATAffinity bpfMapSizeRoute bpfMapSizeConntrack bpfMapSizePerCpuConntrack
    bpfMapSizeConntrackScaling bpfMapSizeConntrackCleanupQueue bpfMapSizeIPSets
    bpfMapSizeIfState bpfHostConntrackBypass bpfIPFragmentReassemblyEnabled bpfEnforceRPF
    bpfPolicyDebugEnabled bpfForceTrackPacketsFromIfaces bpfDisableGROForIfaces
    bpfExcludeCIDRsFromNAT bpfExportBufferSizeMB istioAmbientMode istioDSCPMark cgroupV2Path
    flowLogsPolicyEvaluationMode bpfRedirectToPeer bpfAttachType flowLogsFlushInterval
    flowLogsCollectorDebugTrace flowLogsGoldmaneServer flowLogsLocalReporter bpfProfiling
    routeSource routeTableRanges routeTableRange ipv4NormalRoutePriority
    ipv4ElevatedRoutePriority ipv6NormalRoutePriority ipv6ElevatedRoutePriority
    liveMigrationRouteConvergenceTime wireguardEnabled wireguardEnabledV6
    wireguardThreadingEnabled wireguardListeningPort wireguardListeningPortV6
    wireguardRoutingRulePriority wireguardInterfaceName wireguardInterfaceNameV6 wireguardMTU
    wireguardMTUV6 wireguardHostEncryptionEnabled wireguardKeepAlive awsSrcDstCheck
    serviceLoopPrevention workloadSourceSpoofing mtuIfacePattern floatingIPs
    localSubnetL2Reachability localSubnetL2ReachabilityRefreshInterval
    windowsManageFirewallRules goGCThreshold goMemoryLimitMB goMaxProcs requireMTUFile
    bpfMaglevMaxEndpointsPerService bpfMaglevMaxServices
"""
FELIX_NOT_EMULATED = tuple(_FELIX_NAMES.split())

_ANY_VALUE: dict[str, Any] = {name: (Any, None) for name in FELIX_NOT_EMULATED}
FelixConfigurationSpec = create_model(
    "FelixConfigurationSpec",
    __base__=FelixEmulatedFields,
    **_ANY_VALUE,
)

# The projectcalico.org/v3 kinds a bundle may hold, by kind, with the model of their spec.
SPEC_MODELS: dict[str, type[BaseModel]] = {
    "Node": NodeResourceSpec,
    "IPPool": IPPoolResourceSpec,
    "BGPConfiguration": BGPConfigurationSpec,
    "BGPPeer": BGPPeerSpec,
    "BGPFilter": BGPFilterSpec,
    "IPAMConfiguration": IPAMConfigurationSpec,
    "FelixConfiguration": FelixConfigurationSpec,
}
