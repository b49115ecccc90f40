"""Calico v3 resources at the input boundary, and their conversion into the native `Topology`.

Owns the shapes of what `calicoctl get nodes,ippools,bgpconfig,bgppeers -o yaml` exports
(`projectcalico.org/v3` Node, IPPool, BGPConfiguration, BGPPeer and their `...List` forms), the
operator's `Installation` (`spec.calicoNetwork.ipPools`), and Kubernetes Secrets referenced by
BGP passwords. A bundle says nothing about pods or the routers between node subnets, so the
converter supplies them: node subnets come from each Node's `bgp.ipv4Address`/`ipv6Address`
prefix, one router joins all of them, and every node gets the same number of pods.
Fields meshemu accepts but does not emulate are listed in `Topology.unsupported`, by name.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from meshemu.errors import Problem
from meshemu.model.topology import (
    AsNumber,
    EncapMode,
    Port,
    ReversePeering,
    SourceAddress,
    labels_as_text,
)

CALICO_API = "projectcalico.org/v3"
OPERATOR_API = "operator.tigera.io/v1"
DEFAULT_PODS_PER_NODE = 2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Metadata(_Strict):
    name: str
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    resourceVersion: str | None = None
    uid: str | None = None
    creationTimestamp: str | None = None
    generation: int | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, value: object) -> object:
        return labels_as_text(value)


class SecretKeyRef(_Strict):
    name: str
    key: str


class PasswordSource(_Strict):
    secretKeyRef: SecretKeyRef


class NodeBGP(_Strict):
    ipv4Address: str | None = None
    ipv6Address: str | None = None
    asNumber: AsNumber | None = None
    routeReflectorClusterID: str | None = None
    ipv4IPIPTunnelAddr: str | None = None


class NodeResourceSpec(_Strict):
    bgp: NodeBGP | None = None
    ipv4VXLANTunnelAddr: str | None = None
    ipv6VXLANTunnelAddr: str | None = None
    vxlanTunnelMACAddr: str | None = None
    vxlanTunnelMACAddrV6: str | None = None
    orchRefs: list[dict[str, str]] = Field(default_factory=list)
    addresses: list[dict[str, str]] = Field(default_factory=list)


class IPPoolResourceSpec(_Strict):
    cidr: str
    blockSize: int | None = None
    ipipMode: EncapMode = "Never"
    vxlanMode: EncapMode = "Never"
    natOutgoing: bool = False
    disabled: bool = False
    nodeSelector: str = "all()"
    disableBGPExport: bool = False
    allowedUses: list[str] | None = None
    assignmentMode: str | None = None


class BGPConfigurationSpec(_Strict):
    asNumber: AsNumber | None = None
    nodeToNodeMeshEnabled: bool | None = None
    logSeverityScreen: str | None = None
    listenPort: Port | None = None
    bindMode: Literal["None", "NodeIP"] | None = None
    nodeMeshPassword: PasswordSource | None = None
    nodeMeshMaxRestartTime: str | None = None
    serviceClusterIPs: list[dict[str, str]] | None = None
    serviceExternalIPs: list[dict[str, str]] | None = None
    serviceLoadBalancerIPs: list[dict[str, str]] | None = None
    communities: list[dict[str, str]] | None = None
    prefixAdvertisements: list[dict[str, Any]] | None = None
    ignoredInterfaces: list[str] | None = None


class BGPPeerSpec(_Strict):
    node: str | None = None
    peerIP: str | None = None
    asNumber: AsNumber | None = None
    nodeSelector: str | None = None
    peerSelector: str | None = None
    password: PasswordSource | None = None
    sourceAddress: SourceAddress = "UseNodeIP"
    maxRestartTime: str | None = None
    keepOriginalNextHop: bool = False
    numAllowedLocalASNumbers: int | None = None
    localASNumber: AsNumber | None = None
    reversePeering: ReversePeering = "Auto"
    failureDetectionMode: str | None = None
    restartMode: str | None = None
    birdGatewayMode: str | None = None
    ttlSecurity: int | None = None
    filters: list[str] | None = None


class InstallationPool(_Strict):
    cidr: str
    name: str | None = None
    blockSize: int | None = None
    encapsulation: Literal["IPIP", "IPIPCrossSubnet", "VXLAN", "VXLANCrossSubnet", "None"] = "IPIP"
    natOutgoing: Literal["Enabled", "Disabled"] = "Enabled"
    nodeSelector: str = "all()"
    disableBGPExport: bool = False


class CalicoNetworkSpec(_Strict):
    ipPools: list[InstallationPool] = Field(default_factory=list)
    bgp: Literal["Enabled", "Disabled"] | None = None
    mtu: int | None = None
    linuxDataplane: str | None = None
    nodeAddressAutodetectionV4: dict[str, Any] | None = None
    nodeAddressAutodetectionV6: dict[str, Any] | None = None


class InstallationSpec(_Strict):
    calicoNetwork: CalicoNetworkSpec = Field(default_factory=CalicoNetworkSpec)
    variant: str | None = None
    registry: str | None = None
    cni: dict[str, Any] | None = None


# What each encapsulation of the operator's Installation means as IPPool modes.
INSTALLATION_ENCAP: dict[str, tuple[EncapMode, EncapMode]] = {
    "IPIP": ("Always", "Never"),
    "IPIPCrossSubnet": ("CrossSubnet", "Never"),
    "VXLAN": ("Never", "Always"),
    "VXLANCrossSubnet": ("Never", "CrossSubnet"),
    "None": ("Never", "Never"),
}

SPEC_MODELS: dict[str, type[BaseModel]] = {
    "Node": NodeResourceSpec,
    "IPPool": IPPoolResourceSpec,
    "BGPConfiguration": BGPConfigurationSpec,
    "BGPPeer": BGPPeerSpec,
}


@dataclass
class BundleConversion:
    """The converted topology input (a plain dict for `Topology`) and where each part came from."""

    data: dict[str, Any]
    # Native-topology location prefix -> bundle location, so rule problems point into the bundle.
    origins: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def looks_like_bundle(documents: list[Any]) -> bool:
    return any(
        isinstance(doc, dict) and ("apiVersion" in doc or "kind" in doc) for doc in documents
    )


def _pydantic_problems(err: ValidationError, where: str) -> list[Problem]:
    from meshemu.model.load import problems_from_validation  # shared formatter

    return problems_from_validation(err, where)


def _expand_lists(
    documents: list[Any], problems: list[Problem]
) -> list[tuple[str, dict[str, Any]]]:
    """Flatten `...List` documents; each resource keeps a location like `document 3`."""
    out: list[tuple[str, dict[str, Any]]] = []
    for index, doc in enumerate(documents, start=1):
        where = f"document {index}"
        if doc is None:
            continue
        if not isinstance(doc, dict):
            problems.append(Problem(where, "is not a mapping", "each YAML document is a resource"))
            continue
        kind = doc.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
            items = doc.get("items") or []
            for item_index, item in enumerate(items):
                if isinstance(item, dict):
                    item = {"apiVersion": doc.get("apiVersion"), "kind": kind[:-4], **item}
                out.append((f"{where}.items[{item_index}]", item))
        else:
            out.append((where, doc))
    return out


def convert_bundle(
    documents: list[Any], lab_name: str, pods_per_node: int = DEFAULT_PODS_PER_NODE
) -> BundleConversion:
    """Turn Calico resources into the native topology's data, collecting every problem."""
    conv = BundleConversion(data={})
    resources = _expand_lists(documents, conv.problems)
    nodes: dict[str, tuple[str, Metadata, NodeResourceSpec]] = {}
    pools: dict[str, tuple[str, dict[str, Any]]] = {}
    peers: dict[str, tuple[str, BGPPeerSpec]] = {}
    bgp_default: tuple[str, BGPConfigurationSpec] | None = None
    per_node_bgp: dict[str, tuple[str, BGPConfigurationSpec]] = {}
    secrets: dict[tuple[str, str], str] = {}
    unsupported: list[tuple[str, str]] = []

    for where, doc in resources:
        kind = doc.get("kind")
        api = doc.get("apiVersion")
        raw_meta = doc.get("metadata") or {}
        name = raw_meta.get("name", "?") if isinstance(raw_meta, dict) else "?"
        loc = f"{kind}/{name}"
        if kind == "CalicoNetwork":
            conv.problems.append(
                Problem(
                    f"{where} (kind CalicoNetwork)",
                    "CalicoNetwork is not a resource kind: calicoNetwork is a field of the "
                    "operator's Installation",
                    "write `apiVersion: operator.tigera.io/v1`, `kind: Installation`, and put "
                    "the pools under spec.calicoNetwork.ipPools (each with cidr, blockSize and "
                    "encapsulation: IPIP | IPIPCrossSubnet | VXLAN | VXLANCrossSubnet | None), "
                    "or give projectcalico.org/v3 IPPool resources",
                )
            )
            _check_tutorial_pools(doc, where, conv.problems)
            continue
        if kind == "Secret" and api == "v1":
            for key, value in (doc.get("stringData") or {}).items():
                secrets[(name, key)] = str(value)
            for key, value in (doc.get("data") or {}).items():
                import base64

                try:
                    secrets[(name, key)] = base64.b64decode(str(value)).decode()
                except ValueError:
                    conv.problems.append(
                        Problem(f"{loc}.data.{key}", "is not base64", "use stringData for text")
                    )
            continue
        if kind == "Installation":
            if api != OPERATOR_API:
                conv.problems.append(
                    Problem(
                        f"{where}.apiVersion", f"{api!r} for Installation", f"use {OPERATOR_API}"
                    )
                )
                continue
            try:
                inst = InstallationSpec.model_validate(doc.get("spec") or {})
            except ValidationError as err:
                conv.problems += _pydantic_problems(err, f"{loc}.spec")
                _check_tutorial_pools(
                    doc.get("spec", {}).get("calicoNetwork", {}),
                    f"{loc}.spec.calicoNetwork",
                    conv.problems,
                )
                continue
            # IPv6 pools asking for IP-in-IP get the Installation-worded explanation here
            # (encapsulation, not ipipMode), and are not converted so the rules do not repeat it.
            _check_tutorial_pools(
                (doc.get("spec") or {}).get("calicoNetwork"),
                f"{loc}.spec.calicoNetwork",
                conv.problems,
            )
            for index, ipool in enumerate(inst.calicoNetwork.ipPools):
                if _family(ipool.cidr) == 6 and ipool.encapsulation.startswith("IPIP"):
                    continue
                pool_name = ipool.name or f"default-ipv{_family(ipool.cidr)}-ippool"
                ipip, vxlan = INSTALLATION_ENCAP[ipool.encapsulation]
                pools[pool_name] = (
                    f"{loc}.spec.calicoNetwork.ipPools[{index}]",
                    {
                        "cidr": ipool.cidr,
                        "blockSize": ipool.blockSize,
                        "ipipMode": ipip,
                        "vxlanMode": vxlan,
                        "natOutgoing": ipool.natOutgoing == "Enabled",
                        "nodeSelector": ipool.nodeSelector,
                        "disableBGPExport": ipool.disableBGPExport,
                    },
                )
            continue
        if kind not in SPEC_MODELS:
            conv.problems.append(
                Problem(
                    f"{where}.kind",
                    f"unsupported kind {kind!r} (apiVersion {api!r})",
                    "a bundle holds projectcalico.org/v3 Node, IPPool, BGPConfiguration, "
                    "BGPPeer, an operator Installation, or v1 Secrets for BGP passwords",
                )
            )
            continue
        if api != CALICO_API:
            conv.problems.append(
                Problem(f"{where}.apiVersion", f"{api!r} for {kind}", f"use {CALICO_API}")
            )
            continue
        extra = set(doc) - {"apiVersion", "kind", "metadata", "spec"}
        for key in sorted(extra):
            if key != "status":
                conv.problems.append(Problem(f"{loc}.{key}", "unknown field", "remove it"))
        try:
            meta = Metadata.model_validate(raw_meta)
        except ValidationError as err:
            conv.problems += _pydantic_problems(err, f"{where}.metadata")
            continue
        try:
            spec = SPEC_MODELS[kind].model_validate(doc.get("spec") or {})
        except ValidationError as err:
            conv.problems += _pydantic_problems(err, f"{loc}.spec")
            continue
        if isinstance(spec, NodeResourceSpec):
            nodes[meta.name] = (loc, meta, spec)
        elif isinstance(spec, IPPoolResourceSpec):
            pools[meta.name] = (
                loc + ".spec",
                spec.model_dump(exclude={"allowedUses", "assignmentMode"}),
            )
            for fname in ("allowedUses", "assignmentMode"):
                if getattr(spec, fname) is not None:
                    unsupported.append(
                        (f"{loc}.spec.{fname}", "IPAM use restrictions are not emulated")
                    )
        elif isinstance(spec, BGPPeerSpec):
            peers[meta.name] = (loc + ".spec", spec)
        elif isinstance(spec, BGPConfigurationSpec):
            if meta.name == "default":
                bgp_default = (loc + ".spec", spec)
            elif meta.name.startswith("node."):
                per_node_bgp[meta.name[5:]] = (loc + ".spec", spec)
            else:
                conv.problems.append(
                    Problem(
                        f"{loc}.metadata.name",
                        f"BGPConfiguration {meta.name!r} is neither 'default' nor 'node.<node>'",
                        "",
                    )
                )

    _build(
        conv,
        lab_name,
        pods_per_node,
        nodes,
        pools,
        peers,
        bgp_default,
        per_node_bgp,
        secrets,
        unsupported,
    )
    return conv


def _family(cidr: str) -> int:
    try:
        return ipaddress.ip_network(cidr, strict=False).version
    except ValueError:
        return 4


def _check_tutorial_pools(container: Any, where: str, problems: list[Problem]) -> None:
    """Explain IPv6 pools asking for IP-in-IP in operator-style pool lists."""
    pools = container.get("ipPools") if isinstance(container, dict) else None
    if not isinstance(pools, list):
        return
    for index, pool in enumerate(pools):
        if not isinstance(pool, dict):
            continue
        ploc = f"{where}.ipPools[{index}]"
        mode = str(pool.get("ipipMode") or "")
        encap = str(pool.get("encapsulation") or "")
        if "ipipMode" in pool:
            problems.append(
                Problem(
                    f"{ploc}.ipipMode",
                    "ipipMode is an IPPool (projectcalico.org/v3) field, not an Installation pool "
                    "field",
                    "Installation pools say encapsulation: IPIP | IPIPCrossSubnet | VXLAN | "
                    "VXLANCrossSubnet | None",
                )
            )
        if _family(str(pool.get("cidr", ""))) == 6 and (
            mode in ("Always", "CrossSubnet") or encap.startswith("IPIP")
        ):
            across = "VXLANCrossSubnet" if "CrossSubnet" in (mode + encap) else "VXLAN"
            problems.append(
                Problem(
                    ploc,
                    f"IPv6 pool {pool.get('cidr')} asks for IP-in-IP, which is IPv4-only: "
                    "Calico rejects it",
                    f"for IPv6 write encapsulation: {across} (VXLAN across subnets) or "
                    "encapsulation: None (native routing)",
                )
            )


def _subnet_name(v4: ipaddress.IPv4Network | None, v6: ipaddress.IPv6Network | None) -> str:
    prefix = v4 if v4 is not None else v6
    text = re.sub(r"[^0-9a-f]+", "-", str(prefix).lower()).strip("-")
    return f"net-{text}"[:63].rstrip("-")


def _build(
    conv: BundleConversion,
    lab_name: str,
    pods_per_node: int,
    nodes: dict[str, tuple[str, Metadata, NodeResourceSpec]],
    pools: dict[str, tuple[str, dict[str, Any]]],
    peers: dict[str, tuple[str, BGPPeerSpec]],
    bgp_default: tuple[str, BGPConfigurationSpec] | None,
    per_node_bgp: dict[str, tuple[str, BGPConfigurationSpec]],
    secrets: dict[tuple[str, str], str],
    unsupported: list[tuple[str, str]],
) -> None:
    subnets: dict[str, dict[str, str]] = {}
    node_data: dict[str, dict[str, Any]] = {}
    if not nodes and not conv.problems:
        conv.problems.append(
            Problem(
                "bundle",
                "has no projectcalico.org/v3 Node resources",
                "meshemu places each node by its spec.bgp.ipv4Address/ipv6Address; add the "
                "output of `calicoctl get nodes -o yaml`",
            )
        )
    for name, (loc, meta, spec) in nodes.items():
        conv.origins[f"nodes.{name}"] = f"{loc}.spec.bgp"
        node_bgp = spec.bgp
        if node_bgp is None or (node_bgp.ipv4Address is None and node_bgp.ipv6Address is None):
            conv.problems.append(
                Problem(
                    f"{loc}.spec.bgp",
                    "has no ipv4Address or ipv6Address",
                    "meshemu places a node by its BGP address and prefix, e.g. 10.0.0.2/24",
                )
            )
            continue
        entry: dict[str, Any] = {"labels": meta.labels, "pods": pods_per_node}
        v4net: ipaddress.IPv4Network | None = None
        v6net: ipaddress.IPv6Network | None = None
        for field_name, text in (
            ("ipv4Address", node_bgp.ipv4Address),
            ("ipv6Address", node_bgp.ipv6Address),
        ):
            if text is None:
                continue
            try:
                iface = ipaddress.ip_interface(text)
            except ValueError:
                conv.problems.append(
                    Problem(
                        f"{loc}.spec.bgp.{field_name}", f"{text!r} is not an address/prefix", ""
                    )
                )
                continue
            if "/" not in text:
                conv.problems.append(
                    Problem(
                        f"{loc}.spec.bgp.{field_name}",
                        f"{text!r} has no prefix length",
                        "Calico's node subnet is the prefix of this address: "
                        "write e.g. 10.0.0.2/24",
                    )
                )
                continue
            if isinstance(iface, ipaddress.IPv4Interface) and field_name == "ipv4Address":
                v4net = iface.network
                entry["ipv4"] = str(iface.ip)
            elif isinstance(iface, ipaddress.IPv6Interface) and field_name == "ipv6Address":
                v6net = iface.network
                entry["ipv6"] = str(iface.ip)
            else:
                conv.problems.append(
                    Problem(f"{loc}.spec.bgp.{field_name}", f"{text!r} is the wrong family", "")
                )
        if v4net is None and v6net is None:
            continue
        entry["families"] = [f for f, n in (("ipv4", v4net), ("ipv6", v6net)) if n is not None]
        subnet = _subnet_name(v4net, v6net)
        subnets.setdefault(subnet, {})
        if v4net is not None:
            subnets[subnet]["ipv4"] = str(v4net)
        if v6net is not None:
            subnets[subnet]["ipv6"] = str(v6net)
        entry["subnet"] = subnet
        if node_bgp.asNumber is not None:
            entry["asNumber"] = node_bgp.asNumber
        if node_bgp.routeReflectorClusterID is not None:
            entry["routeReflectorClusterID"] = node_bgp.routeReflectorClusterID
        if node_bgp.ipv4IPIPTunnelAddr is not None:
            unsupported.append((f"{loc}.spec.bgp.ipv4IPIPTunnelAddr", "meshemu assigns its own"))
        for fname in ("ipv4VXLANTunnelAddr", "ipv6VXLANTunnelAddr", "vxlanTunnelMACAddr"):
            if getattr(spec, fname) is not None:
                unsupported.append((f"{loc}.spec.{fname}", "meshemu assigns its own VTEPs"))
        if name in per_node_bgp:
            ploc, pspec = per_node_bgp[name]
            if pspec.listenPort is not None:
                entry["listenPort"] = pspec.listenPort
            _note_unsupported_bgpconfig(ploc, pspec, unsupported, per_node=True)
        node_data[name] = entry
    for name, (ploc, _spec) in per_node_bgp.items():
        if name not in nodes:
            conv.problems.append(Problem(ploc, f"configures unknown node {name!r}", ""))

    bgp: dict[str, Any] = {}
    if bgp_default is not None:
        bloc, bspec = bgp_default
        conv.origins["bgp"] = bloc
        if bspec.asNumber is not None:
            bgp["asNumber"] = bspec.asNumber
        if bspec.nodeToNodeMeshEnabled is not None:
            bgp["nodeToNodeMeshEnabled"] = bspec.nodeToNodeMeshEnabled
        if bspec.listenPort is not None:
            bgp["listenPort"] = bspec.listenPort
        if bspec.nodeMeshMaxRestartTime is not None:
            bgp["nodeMeshMaxRestartTime"] = bspec.nodeMeshMaxRestartTime
        if bspec.nodeMeshPassword is not None:
            bgp["nodeMeshPassword"] = _secret(
                bspec.nodeMeshPassword, secrets, f"{bloc}.nodeMeshPassword", unsupported
            )
        _note_unsupported_bgpconfig(bloc, bspec, unsupported, per_node=False)
    peer_data: dict[str, Any] = {}
    for name, (ploc, peer_spec) in peers.items():
        conv.origins[f"bgp.peers.{name}"] = ploc
        data = peer_spec.model_dump(
            by_alias=True,
            exclude_none=True,
            exclude={
                "password",
                "maxRestartTime",
                "failureDetectionMode",
                "restartMode",
                "birdGatewayMode",
                "ttlSecurity",
                "filters",
            },
        )
        if peer_spec.password is not None:
            data["password"] = _secret(peer_spec.password, secrets, f"{ploc}.password", unsupported)
        if peer_spec.maxRestartTime is not None:
            data["maxRestartTime"] = peer_spec.maxRestartTime
        for fname in (
            "failureDetectionMode",
            "restartMode",
            "birdGatewayMode",
            "ttlSecurity",
            "filters",
        ):
            if getattr(peer_spec, fname) is not None:
                unsupported.append((f"{ploc}.{fname}", "not emulated by meshemu"))
        if peer_spec.numAllowedLocalASNumbers is not None:
            unsupported.append(
                (
                    f"{ploc}.numAllowedLocalASNumbers",
                    "kept in the plan, not enforced by the speakers",
                )
            )
        peer_data[name] = data
    bgp["peers"] = peer_data
    for name, (ploc, _) in pools.items():
        conv.origins[f"pools.{name}"] = ploc
    routers: dict[str, Any] = {}
    if len(subnets) > 1:
        routers["router"] = {"subnets": sorted(subnets)}
    conv.data = {
        "name": lab_name,
        "description": "converted from a Calico resource bundle",
        "subnets": subnets,
        "routers": routers,
        "nodes": node_data,
        "pools": {name: data for name, (_, data) in pools.items()},
        "bgp": bgp,
        "unsupported": unsupported,
    }


def _secret(
    source: PasswordSource,
    secrets: dict[tuple[str, str], str],
    where: str,
    unsupported: list[tuple[str, str]],
) -> str:
    ref = source.secretKeyRef
    value = secrets.get((ref.name, ref.key))
    if value is None:
        # The bundle only names the secret: the lab still needs a shared key, so derive one.
        unsupported.append(
            (where, f"secret {ref.name}/{ref.key} is not in the bundle; the lab uses a stand-in")
        )
        return f"meshemu-{ref.name}-{ref.key}"
    return value


def _note_unsupported_bgpconfig(
    where: str, spec: BGPConfigurationSpec, unsupported: list[tuple[str, str]], per_node: bool
) -> None:
    reasons = {
        "logSeverityScreen": "speaker log level is meshemu's own",
        "bindMode": "speakers always bind to the node address",
        "serviceClusterIPs": "service advertisement is not emulated",
        "serviceExternalIPs": "service advertisement is not emulated",
        "serviceLoadBalancerIPs": "service advertisement is not emulated",
        "communities": "communities are not emulated",
        "prefixAdvertisements": "communities are not emulated",
        "ignoredInterfaces": "not relevant in the lab",
    }
    if per_node:
        reasons["asNumber"] = "set the AS on the Node resource instead"
        reasons["nodeToNodeMeshEnabled"] = "only the default BGPConfiguration decides the mesh"
    for fname, reason in reasons.items():
        if getattr(spec, fname) is not None:
            unsupported.append((f"{where}.{fname}", reason))
