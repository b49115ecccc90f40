"""The native topology format: the input boundary of meshemu (pydantic v2, unknown fields rejected).

Owns the shape of a topology file and the per-field checks pydantic can make alone (types, ranges,
name syntax), and turning pydantic's errors into located `Problem`s. Cross-references and Calico's
rules live in `model.rules`; deciding addresses, blocks and sessions lives in `model.plan`.
Nothing here touches the kernel or the file system. The Calico bundle (`model.calico`) is
converted into this same model, so every later phase sees one shape.

Scalars are strict: YAML already gives numbers, booleans and text their types, so a boolean is
never read as a number (`pods: true` is not 1), a number never as text, and addresses are text
only (pydantic would read the number 10 as the address 0.0.0.10).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationError,
    field_validator,
)

from meshemu.errors import Problem
from meshemu.model.names import LAB_NAME_MAX, lab_name_error

__all__ = ["LAB_NAME_MAX"]

# A subnet, router, node, pool or peer name becomes part of namespace names, file names and
# process arguments: a DNS label (RFC 1123) keeps it safe for all three. Anchored with `\Z`
# (not `$`, which matches before a final newline) so that `.match` callers are safe too;
# meshemu's own code uses `fullmatch`.
DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
# Kubernetes object names (Nodes, IPPools, BGPPeers, ...) are DNS subdomains.
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?\Z")

# Kubernetes' documented largest cluster ("No more than 5,000 nodes", Considerations for large
# clusters); a bound on what one input may ask the planner to do.
MAX_NODES = 5000

EncapMode = Literal["Always", "CrossSubnet", "Never"]
ReversePeering = Literal["Auto", "Manual"]
SourceAddress = Literal["UseNodeIP", "None"]
NextHopMode = Literal["Auto", "Self", "Keep"]
FilterAction = Literal["Accept", "Reject"]
MatchOperator = Literal["Equal", "NotEqual", "In", "NotIn"]
PeerType = Literal["eBGP", "iBGP"]
# The BGP daemon of a node: meshemu's ExaBGP speaker with its agent, or BIRD 1.6 with the
# configuration Calico's confd renders (bird.cfg, bird6.cfg), as calico-node runs it.
Speaker = Literal["exabgp", "bird"]
# Who programs cluster routes (FelixConfiguration / BGPConfiguration `programClusterRoutes`,
# the CRD enum of api/pkg/apis/projectcalico/v3/felixconfig.go:650 and bgpconfig.go:177).
ClusterRoutes = Literal["Enabled", "Disabled", "EnabledIPIPOnly", "EnabledNoEncapOnly"]
# Calico's route priorities (BGPConfiguration ipv4/6NormalRoutePriority, BGPFilter priority):
# 1 .. 2^31-2, so that 2^31-1 - priority is a valid bgp_local_pref (api/.../v3/bgpconfig.go).
Priority = Annotated[int, Strict(), Field(ge=1, le=2147483646)]

# Strict scalars: no bool -> int, no str -> int, no int -> bool, no bytes -> str.
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]

AS_MIN, AS_MAX = 1, 4294967295
AsNumber = Annotated[int, Strict(), Field(ge=AS_MIN, le=AS_MAX)]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]

_IP_TYPES = (
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
)


def _address_text(value: object) -> object:
    """Addresses are written as text; a number or a boolean is a mistake, not an address."""
    if isinstance(value, _IP_TYPES):
        return value
    if not isinstance(value, str):
        raise ValueError(f"write the address as text, not {type(value).__name__} {value!r}")
    if "%" in value:
        raise ValueError(f"{value!r} carries an interface scope (%...): write the address alone")
    return value


def _not_mapped(value: object) -> object:
    mapped = getattr(value, "ipv4_mapped", None)
    if mapped is None and isinstance(value, ipaddress.IPv6Network):
        mapped = value.network_address.ipv4_mapped
    if mapped is not None:
        raise ValueError(
            f"{value} is an IPv4-mapped IPv6 address (::ffff:a.b.c.d): it would collide with "
            f"the IPv4 address {mapped}; write {mapped} as ipv4, or use a real IPv6 address"
        )
    return value


IPv4Net = Annotated[ipaddress.IPv4Network, BeforeValidator(_address_text)]
IPv6Net = Annotated[
    ipaddress.IPv6Network, BeforeValidator(_address_text), AfterValidator(_not_mapped)
]
IPv4Addr = Annotated[ipaddress.IPv4Address, BeforeValidator(_address_text)]
IPv6Addr = Annotated[
    ipaddress.IPv6Address, BeforeValidator(_address_text), AfterValidator(_not_mapped)
]


def check_dns_label(value: str, what: str) -> str:
    if not DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a DNS label: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


def loc_part(name: object) -> str:
    """A name as it may appear inside a location: quoted when it would break the line."""
    text = str(name)
    return text if text.isprintable() and text else repr(text)


def labels_as_text(value: object) -> object:
    """YAML 1.1 reads `routeReflector: true` or `yes` as a boolean; Kubernetes labels are
    strings, and Calico compares them as the text "true"."""
    if isinstance(value, dict):
        return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------------
# pydantic errors -> Problems (shared by the native loader, the Calico converter and scenarios).

_HINTS = {
    "extra_forbidden": "remove it or check its spelling; unknown fields are errors",
    "missing": "this field is required",
    "literal_error": "",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number (not quoted, not true/false, no decimal point)",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false (not quoted, not 0/1)",
    "ip_v4_network": "write an IPv4 prefix like 10.0.1.0/24",
    "ip_v6_network": "write an IPv6 prefix like fd00:1::/64",
    "ip_v4_address": "write an IPv4 address like 10.0.1.10",
    "ip_v6_address": "write an IPv6 address like fd00:1::10",
    "dict_type": "write a mapping (key: value lines)",
    "model_type": "write a mapping (key: value lines)",
    "model_attributes_type": "write a mapping (key: value lines)",
    "list_type": "write a list (- item lines)",
    "tuple_type": "write a list (- item lines)",
    "string_type": "write text (quote it if YAML reads it as something else)",
    "too_short": "",
    "too_long": "",
    "greater_than_equal": "",
    "less_than_equal": "",
}


def _location(parts: tuple[int | str, ...], where: str) -> str:
    text = where
    previous: int | str = ""
    for part in parts:
        # A `pods:` count or list: pydantic names the union's branch, which is no key.
        skip = previous == "pods" and part in _POD_FORMS
        previous = part
        if skip:
            continue
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            part_text = loc_part(part)
            text = f"{text}.{part_text}" if text else part_text
    return text


def problems_from_validation(err: ValidationError, where: str = "") -> list[Problem]:
    """One `Problem` per pydantic error, located with dotted keys, never a traceback."""
    problems = []
    for item in err.errors():
        loc = _location(tuple(item["loc"]), where)
        kind = item["type"]
        message = item["msg"]
        if kind == "extra_forbidden":
            message = "unknown field"
        elif kind == "value_error":
            message = message.removeprefix("Value error, ")
        problems.append(Problem(loc, message, _HINTS.get(kind, "")))
    return problems


# --------------------------------------------------------------------------------------------
# The model.


class InputModel(BaseModel):
    """Base of every input model: unknown keys are errors, values are not coerced silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class SubnetSpec(InputModel):
    """An L2 segment (a rack): its IPv4 and/or IPv6 prefix."""

    ipv4: IPv4Net | None = None
    ipv6: IPv6Net | None = None


class AddressSpec(InputModel):
    """A fixed address per family (a router's on one of its subnets)."""

    ipv4: IPv4Addr | None = None
    ipv6: IPv6Addr | None = None


class RouterPeerSpec(InputModel):
    """A BGP session between two routers that share a subnet (eBGP when their AS differ).

    Named on either router; the other side is implied. The same `password` on both ends.
    `allowLocalAs`: this router accepts routes from that peer whose AS path holds its own AS
    up to that many times (BIRD `allow local as N`), for routers of one AS behind another AS;
    it applies to the side that names it only."""

    router: Text
    password: Text | None = None
    allow_local_as: Int | None = Field(default=None, ge=0, le=10, alias="allowLocalAs")


class RouterBgpSpec(InputModel):
    """A router's BGP speaker (BIRD 2). Its sessions with nodes are the nodes' own: every node
    session (mesh aside) whose peer address is one of the router's is answered by the router.

    `routeReflector`: the router reflects between its iBGP peers (BIRD `rr client`; cluster ID
    = router ID), as a top-of-rack router does in Calico's "AS per rack" design.
    `config`: the user's own BIRD 2 configuration file (relative to the topology file),
    started instead of the one meshemu renders.
    `nodePassword`: the TCP MD5 password the router is configured with for its node sessions;
    by default each node session's own (they always match). Set, a node whose BGPPeer says
    otherwise cannot open its session, as with a real top-of-rack router.
    """

    as_number: AsNumber = Field(alias="asNumber")
    router_id: IPv4Addr | None = Field(default=None, alias="routerID")
    route_reflector: Bool = Field(default=False, alias="routeReflector")
    peers: list[RouterPeerSpec] = Field(default_factory=list)
    config: Text | None = None
    node_password: Text | None = Field(default=None, alias="nodePassword")


class RouterSpec(InputModel):
    """A router joining subnets. Without `bgp` it forwards node traffic but knows no pod routes;
    with `bgp` it runs BIRD and installs what it learns."""

    subnets: list[Text] = Field(min_length=1)
    # Fixed addresses by subnet (default: the subnet's next free host addresses).
    addresses: dict[Text, AddressSpec] = Field(default_factory=dict)
    bgp: RouterBgpSpec | None = None


class FelixSpec(InputModel):
    """Calico's FelixConfiguration: the fields that decide which cluster routes Felix programs
    (api/pkg/apis/projectcalico/v3/felixconfig.go). Defaults are Calico's v3.33 line
    (felix/config/config_params.go:318): Felix owns IPIP and VXLAN routes, BIRD unencapsulated."""

    program_cluster_routes: ClusterRoutes = Field(
        default="EnabledIPIPOnly", alias="programClusterRoutes"
    )
    # None: Felix decides from the pools (some IPIP / VXLAN pool exists), as Calico does
    # (felix/calc/encapsulation_resolver.go:269-283); false turns the manager off.
    ipip_enabled: Bool | None = Field(default=None, alias="ipipEnabled")
    vxlan_enabled: Bool | None = Field(default=None, alias="vxlanEnabled")
    # true: Felix programs no routes at all (felixconfig.go routeSyncDisabled).
    route_sync_disabled: Bool = Field(default=False, alias="routeSyncDisabled")


# A container port's name, as Kubernetes validates it (IANA_SVC_NAME, RFC 6335): at most 15
# lower-case letters, digits and '-', at least one letter, no '-' at either end or twice in a row.
PORT_NAME = re.compile(r"(?!-)(?!.*--)(?=.*[a-z])[a-z0-9-]{1,15}(?<!-)\Z")
PODS_MAX = 250  # pods of one node (Kubernetes' default maxPods is 110; 250 is its ceiling)
Protocol = Literal["TCP", "UDP"]


def check_port_name(value: str) -> str:
    if not PORT_NAME.fullmatch(value):
        raise ValueError(
            f"port name {value!r} is not an IANA service name: at most 15 lower-case letters, "
            "digits and '-', with at least one letter, no '-' at either end or twice in a row"
        )
    return value


class PodPortSpec(InputModel):
    """A container port a pod listens on (Kubernetes `containerPort`, named for Services and
    policies that refer to it by name). The lab's responder answers on it (`lab.responder`)."""

    name: Annotated[Text, AfterValidator(check_port_name)] | None = None
    port: Port
    protocol: Protocol = "TCP"


class PodSpec(InputModel):
    """A pod, or with `replicas` a template of that many pods named `<name>-1`, `<name>-2`...

    The name becomes part of the pod's namespace name, so it is a DNS label (Kubernetes allows
    a DNS subdomain; the dots it would add cannot be told from meshemu's own separators)."""

    name: Annotated[Text, AfterValidator(lambda v: check_dns_label(v, "pod name"))]
    namespace: Annotated[Text, AfterValidator(lambda v: check_dns_label(v, "namespace"))] = (
        "default"
    )
    labels: dict[Text, Text] = Field(default_factory=dict)
    ports: list[PodPortSpec] = Field(default_factory=list)
    replicas: Int | None = Field(default=None, ge=1, le=PODS_MAX)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, value: object) -> object:
        return labels_as_text(value)

    def names(self) -> list[str]:
        if self.replicas is None:
            return [self.name]
        return [f"{self.name}-{i}" for i in range(1, self.replicas + 1)]


@dataclass(frozen=True)
class Pod:
    """One pod of a node as the topology asks for it (a `PodSpec` expanded, or `podN` of a
    count): what IPAM numbers and the plan carries."""

    name: str
    namespace: str
    labels: tuple[tuple[str, str], ...]
    ports: tuple[PodPortSpec, ...]


# The two forms of `nodes.<n>.pods` (pydantic's tags, left out of error locations).
_POD_FORMS = ("pods-count", "pods-list")
PodCount = Annotated[int, Strict(), Field(ge=0, le=PODS_MAX)]


def _pod_form(value: object) -> str:
    return _POD_FORMS[1] if isinstance(value, list) else _POD_FORMS[0]


Pods = Annotated[
    Annotated[PodCount, Tag(_POD_FORMS[0])] | Annotated[list[PodSpec], Tag(_POD_FORMS[1])],
    Discriminator(_pod_form),
]


class NodeSpec(InputModel):
    """A Kubernetes node running calico-node.

    `pods`: how many (`pod1`..`podN`, namespace `default`, no labels, no ports), or a list of
    pods and pod templates (`PodSpec`)."""

    subnet: Text
    labels: dict[Text, Text] = Field(default_factory=dict)
    ipv4: IPv4Addr | None = None
    ipv6: IPv6Addr | None = None
    pods: Pods = 2
    # Which of its subnet's families the node uses; default: all the subnet has.
    families: list[Literal["ipv4", "ipv6"]] | None = None
    route_reflector_cluster_id: Text | None = Field(default=None, alias="routeReflectorClusterID")
    as_number: AsNumber | None = Field(default=None, alias="asNumber")
    listen_port: Port | None = Field(default=None, alias="listenPort")
    # This node's BGP daemon; default: the lab's `speaker`.
    speaker: Speaker | None = None
    # This node's own FelixConfiguration (Calico's `node.<name>`), replacing the lab's `felix`.
    felix: FelixSpec | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, value: object) -> object:
        return labels_as_text(value)

    @property
    def pod_count(self) -> int:
        return self.pods if isinstance(self.pods, int) else len(self.pod_list())

    def pod_list(self) -> list[Pod]:
        """The node's pods in order (IPAM numbers them in this order)."""
        if isinstance(self.pods, int):
            return [Pod(f"pod{i}", "default", (), ()) for i in range(1, self.pods + 1)]
        return [
            Pod(name, spec.namespace, tuple(sorted(spec.labels.items())), tuple(spec.ports))
            for spec in self.pods
            for name in spec.names()
        ]


class PoolSpec(InputModel):
    """A Calico IPPool (same field names and defaults as `projectcalico.org/v3` IPPool)."""

    cidr: Text
    block_size: Int | None = Field(default=None, alias="blockSize")
    ipip_mode: EncapMode = Field(default="Never", alias="ipipMode")
    vxlan_mode: EncapMode = Field(default="Never", alias="vxlanMode")
    nat_outgoing: Bool = Field(default=False, alias="natOutgoing")
    node_selector: Text = Field(default="all()", alias="nodeSelector")
    disable_bgp_export: Bool = Field(default=False, alias="disableBGPExport")
    disabled: Bool = False


def _duration_text(value: object) -> object:
    """A Kubernetes duration (`10s`, `2m`, `1m30s`): checked here so a bad one is located."""
    if value is not None:
        if not isinstance(value, str):
            raise ValueError(f"write a duration like 120s or 2m, not {value!r}")
        parse_duration(value)
    return value


Duration = Annotated[str, Strict(), AfterValidator(_duration_text)]


def parse_duration(text: str | None) -> int | None:
    """Kubernetes durations as Calico writes them: `10s`, `2m`, `1m30s`, `1.5s`, `120`, in
    whole seconds rounded as confd rounds them (`int(math.Round(d.Seconds()))`)."""
    if text is None:
        return None
    match = _DURATION.fullmatch(text.strip())
    if match is None or not text.strip():
        raise ValueError(f"{text!r} is not a duration like 120s or 2m")
    if match.group("bare") is not None:
        return int(match.group("bare"))
    total = 0.0
    for number, unit in _DURATION_PART.findall(text.strip()):
        total += float(number) * _DURATION_UNITS[unit]
    return int(total + 0.5)


_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "ns": 1e-9}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)")
_DURATION = re.compile(r"(?P<bare>\d+)|(?:\d+(?:\.\d+)?(?:h|ms|us|ns|m|s))+")


class PrefixLengthSpec(InputModel):
    min: Int | None = Field(default=None, ge=0, le=128)
    max: Int | None = Field(default=None, ge=0, le=128)


class CommunityMatchSpec(InputModel):
    values: list[Text] = Field(min_length=1, max_length=1)


class CommunityValueSpec(InputModel):
    value: Text


class PrependSpec(InputModel):
    prefix: list[AsNumber] = Field(min_length=1)


class PrioritySpec(InputModel):
    value: Priority


class FilterOperationSpec(InputModel):
    """One operation of a BGPFilter rule: exactly one of its fields."""

    add_community: CommunityValueSpec | None = Field(default=None, alias="addCommunity")
    prepend_as_path: PrependSpec | None = Field(default=None, alias="prependASPath")
    set_priority: PrioritySpec | None = Field(default=None, alias="setPriority")


class FilterRuleSpec(InputModel):
    """A BGPFilter rule (projectcalico/calico api/pkg/apis/projectcalico/v3/bgpfilter.go
    BGPFilterRuleV4/V6: the same fields for both families)."""

    cidr: Text | None = None
    prefix_length: PrefixLengthSpec | None = Field(default=None, alias="prefixLength")
    source: Literal["RemotePeers"] | None = None
    interface: Text | None = None
    match_operator: MatchOperator | None = Field(default=None, alias="matchOperator")
    peer_type: PeerType | None = Field(default=None, alias="peerType")
    communities: CommunityMatchSpec | None = None
    as_path_prefix: list[AsNumber] | None = Field(default=None, alias="asPathPrefix")
    priority: Priority | None = None
    action: FilterAction
    operations: list[FilterOperationSpec] = Field(default_factory=list)


class FilterSpec(InputModel):
    """A Calico BGPFilter: import/export rules per family, applied by the BGPPeers naming it."""

    export_v4: list[FilterRuleSpec] = Field(default_factory=list, alias="exportV4")
    import_v4: list[FilterRuleSpec] = Field(default_factory=list, alias="importV4")
    export_v6: list[FilterRuleSpec] = Field(default_factory=list, alias="exportV6")
    import_v6: list[FilterRuleSpec] = Field(default_factory=list, alias="importV6")

    def rules(self, direction: str, family: int) -> list[FilterRuleSpec]:
        return {
            ("import", 4): self.import_v4,
            ("export", 4): self.export_v4,
            ("import", 6): self.import_v6,
            ("export", 6): self.export_v6,
        }[(direction, family)]


class CommunitySpec(InputModel):
    name: Text
    value: Text


class PrefixAdvertisementSpec(InputModel):
    cidr: Text
    communities: list[Text] = Field(default_factory=list)


class PeerSpec(InputModel):
    """A Calico BGPPeer (global when it names no node and no nodeSelector)."""

    peer_ip: Text | None = Field(default=None, alias="peerIP")
    # meshemu's native topology only (Calico's BGPPeer has no such field; a bundle names the
    # router's peerIP): the router of the lab to peer with, at its address on the node's subnet.
    peer_router: Text | None = Field(default=None, alias="peerRouter")
    as_number: AsNumber | None = Field(default=None, alias="asNumber")
    node: Text | None = None
    node_selector: Text | None = Field(default=None, alias="nodeSelector")
    peer_selector: Text | None = Field(default=None, alias="peerSelector")
    password: Text | None = None
    reverse_peering: ReversePeering = Field(default="Auto", alias="reversePeering")
    keep_original_next_hop: Bool = Field(default=False, alias="keepOriginalNextHop")
    local_as_number: AsNumber | None = Field(default=None, alias="localASNumber")
    num_allowed_local_as_numbers: Int | None = Field(
        default=None, ge=0, le=10, alias="numAllowedLocalASNumbers"
    )
    source_address: SourceAddress = Field(default="UseNodeIP", alias="sourceAddress")
    max_restart_time: Duration | None = Field(default=None, alias="maxRestartTime")
    keepalive_time: Duration | None = Field(default=None, alias="keepaliveTime")
    next_hop_mode: NextHopMode | None = Field(default=None, alias="nextHopMode")
    ttl_security: Int | None = Field(default=None, ge=0, le=255, alias="ttlSecurity")
    reachable_by: Text | None = Field(default=None, alias="reachableBy")
    filters: list[Text] = Field(default_factory=list)


class BgpSpec(InputModel):
    """The cluster's BGP layout (Calico's default BGPConfiguration plus its BGPPeers)."""

    as_number: AsNumber = Field(default=64512, alias="asNumber")
    node_to_node_mesh_enabled: Bool = Field(default=True, alias="nodeToNodeMeshEnabled")
    listen_port: Port = Field(default=179, alias="listenPort")
    node_mesh_password: Text | None = Field(default=None, alias="nodeMeshPassword")
    node_mesh_max_restart_time: Duration | None = Field(
        default=None, alias="nodeMeshMaxRestartTime"
    )
    # Calico renders no hold time, so BIRD's default applies: 240 s (keepalive a third of it).
    # `holdTime` is meshemu's lab-level setting for fast failure detection in scenarios.
    hold_time: Int = Field(default=240, ge=3, le=65535, alias="holdTime")
    ipv4_normal_route_priority: Priority = Field(default=1024, alias="ipv4NormalRoutePriority")
    ipv6_normal_route_priority: Priority = Field(default=1024, alias="ipv6NormalRoutePriority")
    communities: list[CommunitySpec] = Field(default_factory=list)
    prefix_advertisements: list[PrefixAdvertisementSpec] = Field(
        default_factory=list, alias="prefixAdvertisements"
    )
    # A node's own BGPConfiguration (`node.<name>`) replaces the cluster's prefixAdvertisements
    # as a whole (confd client.go processCommunityRules).
    node_prefix_advertisements: dict[Text, list[PrefixAdvertisementSpec]] = Field(
        default_factory=dict, alias="nodePrefixAdvertisements"
    )
    peers: dict[Text, PeerSpec] = Field(default_factory=dict)
    filters: dict[Text, FilterSpec] = Field(default_factory=dict)
    # Which pools' routes BIRD writes into the kernel (confd's kernel filter); Calico's default
    # since v3.33 (bgpconfig.go:176, confd bgp_processor.go clusterRoutePolicyFromBGPConfig).
    program_cluster_routes: ClusterRoutes = Field(
        default="EnabledNoEncapOnly", alias="programClusterRoutes"
    )
    # false: no BGP at all (the operator's Installation `calicoNetwork.bgp: Disabled`): no
    # speakers, no sessions; only Felix programs routes.
    enabled: Bool = True
    # Service address advertisement (BGPConfiguration; confd routes.go): every node advertises
    # these CIDRs, and a Service's /32 (/128) where `externalTrafficPolicy: Local` has a local
    # endpoint.
    service_cluster_ips: list[ServiceCidrSpec] = Field(
        default_factory=list, alias="serviceClusterIPs"
    )
    service_external_ips: list[ServiceCidrSpec] = Field(
        default_factory=list, alias="serviceExternalIPs"
    )
    service_load_balancer_ips: list[ServiceCidrSpec] = Field(
        default_factory=list, alias="serviceLoadBalancerIPs"
    )

    def route_priority(self, family: int) -> int:
        """The normal route priority (kernel metric) of the family's routes."""
        return self.ipv4_normal_route_priority if family == 4 else self.ipv6_normal_route_priority


class OutsideSpec(InputModel):
    """meshemu's stand-in for the Internet (not a Calico resource): one host on a subnet of its
    own behind a router, at an address outside every pool. Pods reach it through their node,
    NATed when their pool has natOutgoing (`model.nat`)."""

    subnet: Text
    ipv4: IPv4Addr | None = None
    ipv6: IPv6Addr | None = None


class IpamSpec(InputModel):
    """Calico's IPAMConfiguration (the `default` one): the fields meshemu's IPAM follows
    (api/pkg/apis/projectcalico/v3/ipamconfig.go:63-101; see model/ipam.py)."""

    # No borrowing from other nodes' blocks; a pod with no free block is not created.
    strict_affinity: Bool = Field(default=False, alias="strictAffinity")
    # 0: unlimited in the API, but Calico's autoAssign then limits a node to 20 blocks
    # (libcalico-go/lib/ipam/ipam.go:750-752). CRD bounds 0..1000000 (ipamconfig.go:72-74).
    max_blocks_per_host: Int = Field(default=0, ge=0, le=1000000, alias="maxBlocksPerHost")


class NamespaceSpec(InputModel):
    """A Kubernetes namespace's labels, which policies' namespaceSelectors match (`model.policy`
    checks them; every namespace also has `kubernetes.io/metadata.name`)."""

    labels: dict[Text, Text] = Field(default_factory=dict)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, value: object) -> object:
        return labels_as_text(value)


ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]
IpFamilyPolicy = Literal["SingleStack", "PreferDualStack", "RequireDualStack"]
IpFamily = Literal["IPv4", "IPv6"]
TrafficPolicy = Literal["Cluster", "Local"]
# kube-apiserver's default --service-node-port-range.
NODE_PORT_RANGE = (30000, 32767)


class ServicePortSpec(InputModel):
    """A Service port (Kubernetes `ServicePort`): `targetPort` is a number or the name of a
    container port of the endpoints (default: `port`); `nodePort` for NodePort and
    LoadBalancer Services (default: allocated from 30000-32767)."""

    name: Annotated[Text, AfterValidator(check_port_name)] | None = None
    port: Port
    target_port: Port | Annotated[Text, AfterValidator(check_port_name)] | None = Field(
        default=None, alias="targetPort"
    )
    protocol: Protocol = "TCP"
    node_port: Int | None = Field(
        default=None, ge=NODE_PORT_RANGE[0], le=NODE_PORT_RANGE[1], alias="nodePort"
    )


class ServiceSpec(InputModel):
    """A Kubernetes Service (its `spec`, in Kubernetes' field names, and the addresses a load
    balancer controller would have given it). Endpoints: the pods of `namespace` whose labels
    match `selector` (`model.services`)."""

    namespace: Annotated[Text, AfterValidator(lambda v: check_dns_label(v, "namespace"))] = (
        "default"
    )
    type: ServiceType = "ClusterIP"
    selector: dict[Text, Text] = Field(default_factory=dict)
    ports: list[ServicePortSpec] = Field(min_length=1)
    # Fixed cluster IPs (one per family); default: allocated from serviceClusterIPRange.
    cluster_ips: list[Text] = Field(default_factory=list, alias="clusterIPs", max_length=2)
    ip_family_policy: IpFamilyPolicy = Field(default="SingleStack", alias="ipFamilyPolicy")
    ip_families: list[IpFamily] = Field(default_factory=list, alias="ipFamilies", max_length=2)
    external_ips: list[Text] = Field(default_factory=list, alias="externalIPs")
    # The LoadBalancer's addresses (status.loadBalancer.ingress): meshemu has no cloud
    # controller, so a LoadBalancer Service names them.
    load_balancer_ips: list[Text] = Field(default_factory=list, alias="loadBalancerIPs")
    external_traffic_policy: TrafficPolicy = Field(default="Cluster", alias="externalTrafficPolicy")

    @field_validator("selector", mode="before")
    @classmethod
    def _labels_as_text(cls, value: object) -> object:
        return labels_as_text(value)


class ServiceCidrSpec(InputModel):
    """One entry of BGPConfiguration serviceClusterIPs / serviceExternalIPs /
    serviceLoadBalancerIPs."""

    cidr: Text


class Topology(InputModel):
    """A whole lab: what `meshemu validate`, `plan` and `up` take."""

    name: Text
    description: Text = ""
    subnets: dict[Text, SubnetSpec] = Field(min_length=1)
    routers: dict[Text, RouterSpec] = Field(default_factory=dict)
    nodes: dict[Text, NodeSpec] = Field(min_length=1, max_length=MAX_NODES)
    pools: dict[Text, PoolSpec] = Field(default_factory=dict)
    bgp: BgpSpec = Field(default_factory=BgpSpec)
    ipam: IpamSpec = Field(default_factory=IpamSpec)
    felix: FelixSpec = Field(default_factory=FelixSpec)
    # Every node's BGP daemon unless the node names its own (`nodes.<n>.speaker`): "exabgp"
    # (meshemu's speaker and agent) or "bird" (BIRD 1.6 running Calico's rendered configuration).
    speaker: Speaker = "exabgp"
    # An optional host outside the cluster (see `OutsideSpec`).
    outside: OutsideSpec | None = None
    # Kubernetes Services (`model.services`) and the kube-apiserver's
    # --service-cluster-ip-range (one CIDR per family) their cluster IPs come from.
    services: dict[Text, ServiceSpec] = Field(default_factory=dict)
    # (Empty: kubeadm's 10.96.0.0/12 and fd00:10:96::/112, `service_ranges`.)
    service_cluster_ip_range: list[Text] = Field(
        default_factory=list, alias="serviceClusterIPRange", max_length=2
    )
    # Kubernetes NetworkPolicies and Calico (Global)NetworkPolicies, each the object as written
    # (apiVersion, kind, metadata, spec); `model.policy` validates and converts them.
    policies: list[dict[Text, Any]] = Field(default_factory=list)
    namespaces: dict[Text, NamespaceSpec] = Field(default_factory=dict)
    # Fields the input carried that meshemu reads but does not emulate: (location, explanation).
    # Filled by the Calico converter; shown by `plan` so nothing is silently ignored.
    unsupported: list[tuple[Text, Text]] = Field(default_factory=list)

    def service_ranges(self) -> list[str]:
        """The service cluster IP ranges: as written, or kubeadm's default and its IPv6 twin."""
        return self.service_cluster_ip_range or ["10.96.0.0/12", "fd00:10:96::/112"]

    @field_validator("name")
    @classmethod
    def _lab_name(cls, value: str) -> str:
        error = lab_name_error(value)
        if error is not None:
            raise ValueError(error)
        return value
