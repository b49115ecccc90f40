"""The native topology format: the input boundary of meshemu (pydantic v2, unknown fields rejected).

Owns the shape of a topology file and the per-field checks pydantic can make alone (types, ranges,
name syntax). Cross-references and Calico's rules live in `model.rules`; deciding addresses,
blocks and sessions lives in `model.plan`. Nothing here touches the kernel or the file system.
The Calico bundle (`model.calico`) is converted into this same model, so every later phase
sees one shape.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# A lab, subnet, router, node, pod or peer name becomes part of namespace names, file names and
# process arguments: a DNS label (RFC 1123) keeps it safe for all three.
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Kubernetes node names are DNS subdomains; dots are allowed there but we keep them out of
# namespace names by replacing them in `model.names`.
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
LAB_NAME_MAX = 12

EncapMode = Literal["Always", "CrossSubnet", "Never"]
ReversePeering = Literal["Auto", "Manual"]
SourceAddress = Literal["UseNodeIP", "None"]

AS_MIN, AS_MAX = 1, 4294967295
AsNumber = Annotated[int, Field(ge=AS_MIN, le=AS_MAX)]
Port = Annotated[int, Field(ge=1, le=65535)]


def check_dns_label(value: str, what: str) -> str:
    if not DNS_LABEL.match(value):
        raise ValueError(
            f"{what} {value!r} is not a DNS label: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


def labels_as_text(value: object) -> object:
    """YAML 1.1 reads `routeReflector: true` or `yes` as a boolean; Kubernetes labels are
    strings, and Calico compares them as the text "true"."""
    if isinstance(value, dict):
        return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in value.items()}
    return value


class Strict(BaseModel):
    """Base of every input model: unknown keys are errors, values are not coerced silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class SubnetSpec(Strict):
    """An L2 segment (a rack): its IPv4 and/or IPv6 prefix."""

    ipv4: ipaddress.IPv4Network | None = None
    ipv6: ipaddress.IPv6Network | None = None


class RouterSpec(Strict):
    """A router joining subnets; it forwards node traffic but knows no pod routes."""

    subnets: list[str] = Field(min_length=1)


class NodeSpec(Strict):
    """A Kubernetes node running calico-node."""

    subnet: str
    labels: dict[str, str] = Field(default_factory=dict)
    ipv4: ipaddress.IPv4Address | None = None
    ipv6: ipaddress.IPv6Address | None = None
    pods: int = Field(default=2, ge=0, le=250)
    # Which of its subnet's families the node uses; default: all the subnet has.
    families: list[Literal["ipv4", "ipv6"]] | None = None
    route_reflector_cluster_id: str | None = Field(default=None, alias="routeReflectorClusterID")
    as_number: AsNumber | None = Field(default=None, alias="asNumber")
    listen_port: Port | None = Field(default=None, alias="listenPort")

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, value: object) -> object:
        return labels_as_text(value)


class PoolSpec(Strict):
    """A Calico IPPool (same field names and defaults as `projectcalico.org/v3` IPPool)."""

    cidr: str
    block_size: int | None = Field(default=None, alias="blockSize")
    ipip_mode: EncapMode = Field(default="Never", alias="ipipMode")
    vxlan_mode: EncapMode = Field(default="Never", alias="vxlanMode")
    nat_outgoing: bool = Field(default=False, alias="natOutgoing")
    node_selector: str = Field(default="all()", alias="nodeSelector")
    disable_bgp_export: bool = Field(default=False, alias="disableBGPExport")
    disabled: bool = False


class PeerSpec(Strict):
    """A Calico BGPPeer (global when it names no node and no nodeSelector)."""

    peer_ip: str | None = Field(default=None, alias="peerIP")
    as_number: AsNumber | None = Field(default=None, alias="asNumber")
    node: str | None = None
    node_selector: str | None = Field(default=None, alias="nodeSelector")
    peer_selector: str | None = Field(default=None, alias="peerSelector")
    password: str | None = None
    reverse_peering: ReversePeering = Field(default="Auto", alias="reversePeering")
    keep_original_next_hop: bool = Field(default=False, alias="keepOriginalNextHop")
    local_as_number: AsNumber | None = Field(default=None, alias="localASNumber")
    num_allowed_local_as_numbers: int | None = Field(
        default=None, ge=0, le=10, alias="numAllowedLocalASNumbers"
    )
    source_address: SourceAddress = Field(default="UseNodeIP", alias="sourceAddress")
    max_restart_time: str | None = Field(default=None, alias="maxRestartTime")


class BgpSpec(Strict):
    """The cluster's BGP layout (Calico's default BGPConfiguration plus its BGPPeers)."""

    as_number: AsNumber = Field(default=64512, alias="asNumber")
    node_to_node_mesh_enabled: bool = Field(default=True, alias="nodeToNodeMeshEnabled")
    listen_port: Port = Field(default=179, alias="listenPort")
    node_mesh_password: str | None = Field(default=None, alias="nodeMeshPassword")
    node_mesh_max_restart_time: str | None = Field(default=None, alias="nodeMeshMaxRestartTime")
    hold_time: int = Field(default=9, ge=3, le=65535, alias="holdTime")
    peers: dict[str, PeerSpec] = Field(default_factory=dict)


class Topology(Strict):
    """A whole lab: what `meshemu validate`, `plan` and `up` take."""

    name: str
    description: str = ""
    subnets: dict[str, SubnetSpec] = Field(min_length=1)
    routers: dict[str, RouterSpec] = Field(default_factory=dict)
    nodes: dict[str, NodeSpec] = Field(min_length=1)
    pools: dict[str, PoolSpec] = Field(default_factory=dict)
    bgp: BgpSpec = Field(default_factory=BgpSpec)
    # Fields the input carried that meshemu reads but does not emulate: (location, explanation).
    # Filled by the Calico converter; shown by `plan` so nothing is silently ignored.
    unsupported: list[tuple[str, str]] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _lab_name(cls, value: str) -> str:
        check_dns_label(value, "lab name")
        if len(value) > LAB_NAME_MAX:
            raise ValueError(
                f"lab name {value!r} is longer than {LAB_NAME_MAX} characters; it prefixes every "
                "namespace and interface of the lab, so keep it short"
            )
        return value
