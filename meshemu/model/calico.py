"""Calico v3 resources at the input boundary, and their conversion into the native `Topology`.

Owns the shapes of what `calicoctl get nodes,ippools,bgpconfig,bgppeers -o yaml` exports
(`projectcalico.org/v3` Node, IPPool, BGPConfiguration, BGPPeer and their `...List` forms, and
`kubectl`'s `List`), the operator's `Installation` (`spec.calicoNetwork.ipPools`), and
Kubernetes Secrets referenced by BGP passwords. A bundle says nothing about pods or the routers
between node subnets, so the converter supplies them: node subnets come from each Node's
`bgp.ipv4Address`/`ipv6Address` prefix, one router joins all of them, and every node gets the
same number of pods.

Nothing is silently lost: a resource defined twice, a document of the wrong shape, a Secret
that does not decode, an Installation pool that an IPPool of the same name would replace, are
each a located problem. Fields meshemu accepts but does not emulate are listed in
`Topology.unsupported`, by name.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from meshemu.errors import Problem
from meshemu.model.topology import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    AsNumber,
    Bool,
    EncapMode,
    InputModel,
    Int,
    Port,
    ReversePeering,
    SourceAddress,
    Text,
    labels_as_text,
    loc_part,
    problems_from_validation,
)

CALICO_API = "projectcalico.org/v3"
OPERATOR_API = "operator.tigera.io/v1"
DEFAULT_PODS_PER_NODE = 2


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
    asNumber: AsNumber | None = None
    nodeToNodeMeshEnabled: Bool | None = None
    logSeverityScreen: Text | None = None
    listenPort: Port | None = None
    bindMode: Literal["None", "NodeIP"] | None = None
    nodeMeshPassword: PasswordSource | None = None
    nodeMeshMaxRestartTime: Text | None = None
    serviceClusterIPs: list[dict[Text, Text]] | None = None
    serviceExternalIPs: list[dict[Text, Text]] | None = None
    serviceLoadBalancerIPs: list[dict[Text, Text]] | None = None
    communities: list[dict[Text, Text]] | None = None
    prefixAdvertisements: list[dict[Text, Any]] | None = None
    ignoredInterfaces: list[Text] | None = None


class BGPPeerSpec(InputModel):
    node: Text | None = None
    peerIP: Text | None = None
    asNumber: AsNumber | None = None
    nodeSelector: Text | None = None
    peerSelector: Text | None = None
    password: PasswordSource | None = None
    sourceAddress: SourceAddress = "UseNodeIP"
    maxRestartTime: Text | None = None
    keepOriginalNextHop: Bool = False
    numAllowedLocalASNumbers: Int | None = None
    localASNumber: AsNumber | None = None
    reversePeering: ReversePeering = "Auto"
    failureDetectionMode: Text | None = None
    restartMode: Text | None = None
    birdGatewayMode: Text | None = None
    ttlSecurity: Int | None = None
    filters: list[Text] | None = None


Encapsulation = Literal["IPIP", "IPIPCrossSubnet", "VXLAN", "VXLANCrossSubnet", "None"]


class InstallationPool(InputModel):
    """An operator IP pool. Unset fields get the operator's per-family defaults (see
    `_installation_pool_data`)."""

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
_KNOWN_KINDS = ", ".join([*SPEC_MODELS, "Installation (operator.tigera.io/v1)", "Secret (v1)"])


@dataclass
class BundleConversion:
    """The converted topology input (a plain dict for `Topology`) and where each part came from."""

    data: dict[str, Any]
    # Native-topology location prefix -> bundle location, so rule problems point into the bundle.
    origins: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class _Doc:
    """One resource of the bundle and where it is: `document 3` or `document 3.items[1]`."""

    where: str
    line: int | None
    body: dict[Any, Any]

    def at(self) -> str:
        return f"{self.where} (line {self.line})" if self.line is not None else self.where


@dataclass
class _Resources:
    """What the documents hold, by kind, each with its location."""

    nodes: dict[str, tuple[str, Metadata, NodeResourceSpec]] = field(default_factory=dict)
    pools: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    peers: dict[str, tuple[str, BGPPeerSpec]] = field(default_factory=dict)
    bgp_default: tuple[str, BGPConfigurationSpec] | None = None
    per_node_bgp: dict[str, tuple[str, BGPConfigurationSpec]] = field(default_factory=dict)
    # (namespace, name, key) -> value
    secrets: dict[tuple[str, str, str], str] = field(default_factory=dict)
    installations: list[tuple[_Doc, str, InstallationSpec]] = field(default_factory=list)
    unsupported: list[tuple[str, str]] = field(default_factory=list)
    # (kind, namespace, name) -> the document that defined it first
    seen: dict[tuple[str, str, str], _Doc] = field(default_factory=dict)


def looks_like_bundle(documents: list[Any]) -> bool:
    return any(
        isinstance(doc, dict) and ("apiVersion" in doc or "kind" in doc) for doc in documents
    )


def _type_name(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _expand_lists(
    documents: list[Any], problems: list[Problem], lines: list[int] | None
) -> list[_Doc]:
    """Flatten `...List` and `List` documents; each resource keeps its location."""
    out: list[_Doc] = []
    for index, doc in enumerate(documents, start=1):
        where = f"document {index}"
        line = lines[index - 1] if lines is not None and index - 1 < len(lines) else None
        if doc is None:
            continue
        if not isinstance(doc, dict):
            problems.append(
                Problem(
                    where,
                    f"is {_type_name(doc)}, not a mapping",
                    "each YAML document is one resource (apiVersion, kind, metadata, spec)",
                )
            )
            continue
        kind = doc.get("kind")
        if not (isinstance(kind, str) and kind.endswith("List")):
            out.append(_Doc(where, line, doc))
            continue
        items = doc.get("items")
        if items is None:
            items = []
        if not isinstance(items, list):
            problems.append(
                Problem(
                    f"{where}.items",
                    f"is {_type_name(items)}, not a list",
                    f"a {kind} holds its resources as a list under items",
                )
            )
            continue
        for item_index, item in enumerate(items):
            item_where = f"{where}.items[{item_index}]"
            if not isinstance(item, dict):
                problems.append(Problem(item_where, f"is {_type_name(item)}, not a mapping", ""))
                continue
            inherited = {"apiVersion": doc.get("apiVersion")}
            if kind != "List":
                inherited["kind"] = kind[:-4]
            out.append(_Doc(item_where, line, {**inherited, **item}))
    return out


def convert_bundle(
    documents: list[Any],
    lab_name: str,
    pods_per_node: int = DEFAULT_PODS_PER_NODE,
    lines: list[int] | None = None,
) -> BundleConversion:
    """Turn Calico resources into the native topology's data, collecting every problem.

    `lines`: the line each document starts on, for messages that name two places.
    """
    conv = BundleConversion(data={})
    found = _Resources()
    for doc in _expand_lists(documents, conv.problems, lines):
        _read_resource(doc, found, conv.problems)
    for doc, loc, inst in found.installations:
        _add_installation_pools(doc, loc, inst, found, conv.problems)
    _build(conv, lab_name, pods_per_node, found)
    return conv


def _resource_loc(doc: _Doc, kind: str) -> str:
    meta = doc.body.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if isinstance(name, str) and name and loc_part(name) == name:
        return f"{kind}/{name}"
    return f"{doc.where} ({kind})"


def _shape_problems(doc: _Doc, kind: object, api: object) -> list[Problem]:
    """The envelope every resource shares: text kind and apiVersion, mapping metadata/spec."""
    problems = []
    if kind is None:
        problems.append(
            Problem(
                f"{doc.where}.kind",
                "is missing",
                f"say what the resource is: {_KNOWN_KINDS}",
            )
        )
    elif not isinstance(kind, str):
        problems.append(
            Problem(
                f"{doc.where}.kind", f"is {_type_name(kind)}, not text", f"one of {_KNOWN_KINDS}"
            )
        )
    if api is not None and not isinstance(api, str):
        problems.append(
            Problem(
                f"{doc.where}.apiVersion",
                f"is {_type_name(api)}, not text",
                f"write {CALICO_API}",
            )
        )
    for key in ("metadata", "spec"):
        value = doc.body.get(key)
        if value is not None and not isinstance(value, dict):
            problems.append(
                Problem(
                    f"{doc.where}.{key}",
                    f"is {_type_name(value)}, not a mapping",
                    "write key: value lines under it",
                )
            )
    return problems


def _remember(
    doc: _Doc, kind: str, meta: Metadata, found: _Resources, problems: list[Problem]
) -> bool:
    """Record a resource by kind and name; a second one of the same name is a problem."""
    namespace = (meta.namespace or "") if kind == "Secret" else ""
    key = (kind, namespace, meta.name)
    first = found.seen.get(key)
    if first is None:
        found.seen[key] = doc
        return True
    problems.append(
        Problem(
            _resource_loc(doc, kind),
            f"{kind} {meta.name!r} is defined twice: at {first.at()} and at {doc.at()}; "
            "the later would silently replace the earlier",
            "keep one of them, or give the other its own name",
        )
    )
    return False


def _read_resource(doc: _Doc, found: _Resources, problems: list[Problem]) -> None:
    kind = doc.body.get("kind")
    api = doc.body.get("apiVersion")
    shape = _shape_problems(doc, kind, api)
    if shape:
        problems += shape
        return
    assert isinstance(kind, str)
    if kind == "CalicoNetwork":
        problems.append(
            Problem(
                f"{doc.where} (kind CalicoNetwork)",
                "CalicoNetwork is not a resource kind: calicoNetwork is a field of the "
                "operator's Installation",
                "write `apiVersion: operator.tigera.io/v1`, `kind: Installation`, and put "
                "the pools under spec.calicoNetwork.ipPools (each with cidr, blockSize and "
                "encapsulation: IPIP | IPIPCrossSubnet | VXLAN | VXLANCrossSubnet | None), "
                "or give projectcalico.org/v3 IPPool resources",
            )
        )
        _check_tutorial_pools(doc.body, doc.where, problems)
        return
    if kind == "Secret" and api == "v1":
        _read_secret(doc, found, problems)
        return
    if kind == "Installation":
        _read_installation(doc, api, found, problems)
        return
    if kind not in SPEC_MODELS:
        problems.append(
            Problem(
                f"{doc.where}.kind",
                f"unsupported kind {kind!r} (apiVersion {api!r})",
                "a bundle holds projectcalico.org/v3 Node, IPPool, BGPConfiguration, "
                "BGPPeer, an operator Installation, or v1 Secrets for BGP passwords",
            )
        )
        return
    if api != CALICO_API:
        problems.append(
            Problem(f"{doc.where}.apiVersion", f"{api!r} for {kind}", f"use {CALICO_API}")
        )
        return
    _read_calico_resource(doc, kind, found, problems)


def _read_calico_resource(doc: _Doc, kind: str, found: _Resources, problems: list[Problem]) -> None:
    loc = _resource_loc(doc, kind)
    for key in sorted(
        set(doc.body) - {"apiVersion", "kind", "metadata", "spec", "status"}, key=str
    ):
        problems.append(Problem(f"{loc}.{loc_part(key)}", "unknown field", "remove it"))
    try:
        meta = Metadata.model_validate(doc.body.get("metadata") or {})
    except ValidationError as err:
        problems += problems_from_validation(err, f"{doc.where}.metadata")
        return
    try:
        spec = SPEC_MODELS[kind].model_validate(doc.body.get("spec") or {})
    except ValidationError as err:
        problems += problems_from_validation(err, f"{loc}.spec")
        return
    if not _remember(doc, kind, meta, found, problems):
        return
    if isinstance(spec, NodeResourceSpec):
        found.nodes[meta.name] = (loc, meta, spec)
    elif isinstance(spec, IPPoolResourceSpec):
        found.pools[meta.name] = (
            loc + ".spec",
            spec.model_dump(exclude={"allowedUses", "assignmentMode", "disableNewAllocations"}),
        )
        for fname in ("allowedUses", "assignmentMode", "disableNewAllocations"):
            if getattr(spec, fname) is not None:
                found.unsupported.append(
                    (f"{loc}.spec.{fname}", "IPAM use restrictions are not emulated")
                )
    elif isinstance(spec, BGPPeerSpec):
        found.peers[meta.name] = (loc + ".spec", spec)
    elif isinstance(spec, BGPConfigurationSpec):
        if meta.name == "default":
            found.bgp_default = (loc + ".spec", spec)
        elif meta.name.startswith("node."):
            found.per_node_bgp[meta.name[5:]] = (loc + ".spec", spec)
        else:
            problems.append(
                Problem(
                    f"{loc}.metadata.name",
                    f"BGPConfiguration {meta.name!r} is neither 'default' nor 'node.<node>'",
                    "",
                )
            )


def _read_secret(doc: _Doc, found: _Resources, problems: list[Problem]) -> None:
    loc = _resource_loc(doc, "Secret")
    body = {k: v for k, v in doc.body.items() if k != "status"}
    try:
        secret = SecretResource.model_validate(body)
    except ValidationError as err:
        problems += problems_from_validation(err, loc)
        return
    if not _remember(doc, "Secret", secret.metadata, found, problems):
        return
    namespace = secret.metadata.namespace or ""
    values: dict[str, str] = {}
    for key, encoded in secret.data.items():
        where = f"{loc}.data.{loc_part(key)}"
        try:
            # validate=True: without it b64decode drops every character outside the alphabet,
            # so a pasted plain-text password would decode to garbage or to nothing.
            values[key] = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as err:
            problems.append(
                Problem(
                    where,
                    f"is not base64 of UTF-8 text ({err})",
                    "Secret data is base64-encoded (`printf %s secret | base64`); "
                    "or write the password as plain text under stringData",
                )
            )
    # Kubernetes merges stringData over data.
    values.update(secret.stringData)
    for key, value in values.items():
        if value == "":
            problems.append(
                Problem(
                    f"{loc}.data.{loc_part(key)}",
                    "is an empty password",
                    "a BGP password must not be empty (TCP MD5 needs a key)",
                )
            )
            continue
        found.secrets[(namespace, secret.metadata.name, key)] = value


def _read_installation(doc: _Doc, api: object, found: _Resources, problems: list[Problem]) -> None:
    loc = _resource_loc(doc, "Installation")
    if api != OPERATOR_API:
        problems.append(
            Problem(f"{doc.where}.apiVersion", f"{api!r} for Installation", f"use {OPERATOR_API}")
        )
        return
    try:
        meta = Metadata.model_validate(doc.body.get("metadata") or {})
    except ValidationError as err:
        problems += problems_from_validation(err, f"{doc.where}.metadata")
        return
    if not _remember(doc, "Installation", meta, found, problems):
        return
    raw_spec = doc.body.get("spec") or {}
    network = raw_spec.get("calicoNetwork") if isinstance(raw_spec, dict) else None
    # IPv6 pools asking for IP-in-IP get the Installation-worded explanation here
    # (encapsulation, not ipipMode), and are not converted so the rules do not repeat it.
    _check_tutorial_pools(network, f"{loc}.spec.calicoNetwork", problems)
    try:
        inst = InstallationSpec.model_validate(raw_spec)
    except ValidationError as err:
        problems += problems_from_validation(err, f"{loc}.spec")
        return
    found.installations.append((doc, loc, inst))
    if inst.calicoNetwork.bgp == "Disabled":
        found.unsupported.append(
            (f"{loc}.spec.calicoNetwork.bgp", "Disabled: the lab still runs BGP between nodes")
        )


def _installation_pool_name(
    index: int, pool: InstallationPool, inst: InstallationSpec, found: _Resources
) -> str:
    """The name the operator gives a pool (tigera/operator pkg/controller/ippool/defaults.go,
    `fillDefaults`): its own; else that of an existing IPPool with the same CIDR (the operator
    adopts it); else default-ipv4/ipv6-ippool for a single pool or a dual-stack pair; else one
    made from the CIDR."""
    if pool.name:
        return pool.name
    for name, (_loc, data) in found.pools.items():
        if _same_cidr(str(data.get("cidr")), pool.cidr):
            return name
    pools = inst.calicoNetwork.ipPools or []
    families = {_family(p.cidr) for p in pools}
    family = _family(pool.cidr)
    if len(pools) == 1 or (len(pools) == 2 and families == {4, 6}):
        return f"default-ipv{family}-ippool"
    try:
        network = ipaddress.ip_network(pool.cidr, strict=False)
    except ValueError:
        return f"pool-{index}"
    if isinstance(network, ipaddress.IPv6Network):
        expanded = network.network_address.exploded.replace(":", ".")
    else:
        expanded = str(network.network_address)
    return f"{expanded}-{network.prefixlen}"


def _installation_pool_data(pool: InstallationPool, inst: InstallationSpec) -> dict[str, Any]:
    """An Installation pool as IPPool fields, with the operator's per-family defaults
    (tigera/operator pkg/controller/ippool/defaults.go): IPv4 IPIP (None when the CNI plugin
    is not Calico) with natOutgoing Enabled; IPv6 encapsulation None with natOutgoing Disabled."""
    v6 = _family(pool.cidr) == 6
    cni = (inst.cni or {}).get("type", "Calico")
    default_encap: str = "None" if v6 or cni != "Calico" else "IPIP"
    encap = pool.encapsulation or default_encap
    nat = pool.natOutgoing or ("Disabled" if v6 else "Enabled")
    ipip, vxlan = INSTALLATION_ENCAP[encap]
    return {
        "cidr": pool.cidr,
        "blockSize": pool.blockSize,
        "ipipMode": ipip,
        "vxlanMode": vxlan,
        "natOutgoing": nat == "Enabled",
        "nodeSelector": pool.nodeSelector or "all()",
        "disableBGPExport": bool(pool.disableBGPExport),
        "disabled": False,
    }


def _add_installation_pools(
    doc: _Doc, loc: str, inst: InstallationSpec, found: _Resources, problems: list[Problem]
) -> None:
    """Add an Installation's pools; one the bundle also has as an IPPool must agree with it."""
    own: dict[str, str] = {}
    for index, pool in enumerate(inst.calicoNetwork.ipPools or []):
        ploc = f"{loc}.spec.calicoNetwork.ipPools[{index}]"
        if _family(pool.cidr) == 6 and (pool.encapsulation or "").startswith("IPIP"):
            continue  # explained by _check_tutorial_pools
        name = _installation_pool_name(index, pool, inst, found)
        data = _installation_pool_data(pool, inst)
        for fname in ("allowedUses", "assignmentMode", "disableNewAllocations"):
            if getattr(pool, fname) is not None:
                found.unsupported.append(
                    (f"{ploc}.{fname}", "IPAM use restrictions are not emulated")
                )
        if name in own:
            problems.append(
                Problem(
                    ploc,
                    f"pool {name!r} is also {own[name]}: the later would replace the earlier",
                    "give each pool its own name",
                )
            )
            continue
        own[name] = ploc
        if name in found.pools:
            other_loc, other = found.pools[name]
            other_at = other_loc.removesuffix(".spec")
            differences = _pool_differences(data, other)
            if differences:
                problems.append(
                    Problem(
                        ploc,
                        f"pool {name!r} is also IPPool {name} at {other_at}, "
                        f"which differs in {', '.join(differences)}; one would silently "
                        "replace the other",
                        "the operator creates the IPPool from this pool: make the two agree, "
                        "or keep only one of them in the bundle",
                    )
                )
            continue  # the same pool, described twice alike: keep the IPPool
        found.pools[name] = (ploc, data)


def _pool_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = []
    if not _same_cidr(str(a.get("cidr")), str(b.get("cidr"))):
        out.append("cidr")
    family = _family(str(a.get("cidr")))
    default_block = 122 if family == 6 else 26
    if (a.get("blockSize") or default_block) != (b.get("blockSize") or default_block):
        out.append("blockSize")
    for key in ("ipipMode", "vxlanMode", "natOutgoing", "disableBGPExport", "disabled"):
        if a.get(key) != b.get(key):
            out.append(key)
    if (a.get("nodeSelector") or "all()").strip() != (b.get("nodeSelector") or "all()").strip():
        out.append("nodeSelector")
    return out


def _same_cidr(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_network(a, strict=False) == ipaddress.ip_network(b, strict=False)
    except ValueError:
        return a == b


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


# --------------------------------------------------------------------------------------------
# Building the native topology.


def _subnet_name(v4: ipaddress.IPv4Network | None, v6: ipaddress.IPv6Network | None) -> str:
    prefix = v4 if v4 is not None else v6
    text = re.sub(r"[^0-9a-f]+", "-", str(prefix).lower()).strip("-")
    return f"net-{text}"[:63].rstrip("-")


@dataclass(eq=False)
class _Segment:
    """One L2 segment of the bundle: the node prefixes that share nodes."""

    v4: ipaddress.IPv4Network | None = None
    v6: ipaddress.IPv6Network | None = None
    first: str = ""  # location of the first node placed in it
    merged_into: _Segment | None = None

    def resolve(self) -> _Segment:
        segment = self
        while segment.merged_into is not None:
            segment = segment.merged_into
        return segment


@dataclass
class _Segments:
    """Nodes that share a prefix share an L2 segment; a node with both prefixes joins them."""

    by_v4: dict[ipaddress.IPv4Network, _Segment] = field(default_factory=dict)
    by_v6: dict[ipaddress.IPv6Network, _Segment] = field(default_factory=dict)

    def all(self) -> list[_Segment]:
        seen: dict[int, _Segment] = {}
        for segment in [*self.by_v4.values(), *self.by_v6.values()]:
            seen.setdefault(id(segment.resolve()), segment.resolve())
        return list(seen.values())

    def place(
        self,
        loc: str,
        v4: ipaddress.IPv4Network | None,
        v6: ipaddress.IPv6Network | None,
        problems: list[Problem],
    ) -> _Segment | None:
        a = self.by_v4[v4].resolve() if v4 is not None and v4 in self.by_v4 else None
        b = self.by_v6[v6].resolve() if v6 is not None and v6 in self.by_v6 else None
        for family, mine, other in (("IPv4", v4, b and b.v4), ("IPv6", v6, a and a.v6)):
            if mine is not None and other is not None and mine != other:
                first = (b if family == "IPv4" else a) or _Segment()
                problems.append(
                    Problem(
                        f"{loc}.spec.bgp",
                        f"its {family} prefix {mine} differs from {other}, the {family} prefix "
                        f"of nodes that share its other prefix (first {first.first})",
                        "nodes that share one prefix share the other too: check both addresses",
                    )
                )
                return None
        segment = a or b or _Segment(first=loc)
        if a is not None and b is not None and a is not b:
            b.merged_into = a
        segment.v4 = segment.v4 or v4 or (b.v4 if b is not None else None)
        segment.v6 = segment.v6 or v6 or (b.v6 if b is not None else None)
        if segment.v4 is not None:
            self.by_v4[segment.v4] = segment
        if segment.v6 is not None:
            self.by_v6[segment.v6] = segment
        return segment


def _node_prefixes(
    loc: str, node_bgp: NodeBGP, problems: list[Problem]
) -> tuple[dict[str, str], ipaddress.IPv4Network | None, ipaddress.IPv6Network | None]:
    """A Node's addresses (as native `ipv4`/`ipv6` entries) and the prefixes they sit in."""
    entry: dict[str, str] = {}
    v4net: ipaddress.IPv4Network | None = None
    v6net: ipaddress.IPv6Network | None = None
    for field_name, text in (
        ("ipv4Address", node_bgp.ipv4Address),
        ("ipv6Address", node_bgp.ipv6Address),
    ):
        if text is None:
            continue
        where = f"{loc}.spec.bgp.{field_name}"
        try:
            if "%" in text:
                raise ValueError("scoped")
            iface = ipaddress.ip_interface(text)
        except ValueError:
            problems.append(Problem(where, f"{text!r} is not an address/prefix", ""))
            continue
        if "/" not in text:
            problems.append(
                Problem(
                    where,
                    f"{text!r} has no prefix length",
                    "Calico's node subnet is the prefix of this address: write e.g. 10.0.0.2/24",
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
            problems.append(Problem(where, f"{text!r} is the wrong family", ""))
    return entry, v4net, v6net


def _lab_node_names(found: _Resources) -> dict[str, str]:
    """Kubernetes node name -> the lab's node name.

    Node names are DNS subdomains (`ip-10-0-1-5.ec2.internal`), but a lab node's name becomes
    part of network namespace and interface-related names, where meshemu allows DNS labels only.
    A dotted name that turns into a free DNS label with '-' for '.' is renamed (and listed as
    such); any other stays as it is, for the rules to report.
    """
    names = {name: name for name in found.nodes}
    taken = set(found.nodes)
    for name, (loc, _meta, _spec) in found.nodes.items():
        if DNS_LABEL.fullmatch(name):
            continue
        candidate = name.replace(".", "-")
        if DNS_LABEL.fullmatch(candidate) and candidate not in taken:
            names[name] = candidate
            taken.add(candidate)
            found.unsupported.append(
                (
                    f"{loc}.metadata.name",
                    f"called {candidate!r} in the lab: lab node names are DNS labels (no dots)",
                )
            )
    return names


def _build_nodes(
    conv: BundleConversion, pods_per_node: int, found: _Resources, names: dict[str, str]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    node_data: dict[str, dict[str, Any]] = {}
    segments = _Segments()
    placed: dict[str, _Segment] = {}
    for original, (loc, meta, spec) in found.nodes.items():
        name = names[original]
        conv.origins[f"nodes.{name}"] = f"{loc}.spec.bgp"
        conv.origins[f"nodes.{name}.labels"] = f"{loc}.metadata.labels"
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
        addresses, v4net, v6net = _node_prefixes(loc, node_bgp, conv.problems)
        if v4net is None and v6net is None:
            continue
        segment = segments.place(loc, v4net, v6net, conv.problems)
        if segment is None:
            continue
        placed[name] = segment
        entry: dict[str, Any] = {"labels": meta.labels, "pods": pods_per_node, **addresses}
        entry["families"] = [f for f, n in (("ipv4", v4net), ("ipv6", v6net)) if n is not None]
        if node_bgp.asNumber is not None:
            entry["asNumber"] = node_bgp.asNumber
        if node_bgp.routeReflectorClusterID is not None:
            entry["routeReflectorClusterID"] = node_bgp.routeReflectorClusterID
        if node_bgp.ipv4IPIPTunnelAddr is not None:
            found.unsupported.append(
                (f"{loc}.spec.bgp.ipv4IPIPTunnelAddr", "meshemu assigns its own")
            )
        for fname in ("ipv4VXLANTunnelAddr", "ipv6VXLANTunnelAddr", "vxlanTunnelMACAddr"):
            if getattr(spec, fname) is not None:
                found.unsupported.append((f"{loc}.spec.{fname}", "meshemu assigns its own VTEPs"))
        if original in found.per_node_bgp:
            ploc, pspec = found.per_node_bgp[original]
            if pspec.listenPort is not None:
                entry["listenPort"] = pspec.listenPort
            _note_unsupported_bgpconfig(ploc, pspec, found.unsupported, per_node=True)
        node_data[name] = entry
    subnets: dict[str, dict[str, str]] = {}
    for segment in segments.all():
        subnet = _subnet_name(segment.v4, segment.v6)
        subnets[subnet] = {
            f: str(p) for f, p in (("ipv4", segment.v4), ("ipv6", segment.v6)) if p is not None
        }
        conv.origins[f"subnets.{subnet}"] = f"{segment.first}.spec.bgp"
    for name, segment in placed.items():
        final = segment.resolve()
        node_data[name]["subnet"] = _subnet_name(final.v4, final.v6)
    return node_data, subnets


def _build_bgp(conv: BundleConversion, found: _Resources, names: dict[str, str]) -> dict[str, Any]:
    bgp: dict[str, Any] = {}
    if found.bgp_default is not None:
        bloc, bspec = found.bgp_default
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
                bspec.nodeMeshPassword, found, f"{bloc}.nodeMeshPassword", conv.problems
            )
        _note_unsupported_bgpconfig(bloc, bspec, found.unsupported, per_node=False)
    peer_data: dict[str, Any] = {}
    for name, (ploc, peer_spec) in found.peers.items():
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
        if peer_spec.node is not None:
            data["node"] = names.get(peer_spec.node, peer_spec.node)
        if peer_spec.password is not None:
            data["password"] = _secret(peer_spec.password, found, f"{ploc}.password", conv.problems)
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
                found.unsupported.append((f"{ploc}.{fname}", "not emulated by meshemu"))
        if peer_spec.numAllowedLocalASNumbers is not None:
            found.unsupported.append(
                (
                    f"{ploc}.numAllowedLocalASNumbers",
                    "kept in the plan, not enforced by the speakers",
                )
            )
        peer_data[name] = data
    bgp["peers"] = peer_data
    return bgp


def _router_name(nodes: dict[str, Any]) -> str:
    name, index = "router", 1
    while name in nodes:
        index += 1
        name = f"router-{index}"
    return name


def _build(conv: BundleConversion, lab_name: str, pods_per_node: int, found: _Resources) -> None:
    if not found.nodes and not conv.problems:
        conv.problems.append(
            Problem(
                "bundle",
                "has no projectcalico.org/v3 Node resources",
                "meshemu places each node by its spec.bgp.ipv4Address/ipv6Address; add the "
                "output of `calicoctl get nodes -o yaml`",
            )
        )
    names = _lab_node_names(found)
    node_data, subnets = _build_nodes(conv, pods_per_node, found, names)
    for name, (ploc, _spec) in found.per_node_bgp.items():
        if name not in found.nodes:
            conv.problems.append(Problem(ploc, f"configures unknown node {name!r}", ""))
    bgp = _build_bgp(conv, found, names)
    for name, (ploc, _) in found.pools.items():
        conv.origins[f"pools.{name}"] = ploc
    routers: dict[str, Any] = {}
    if len(subnets) > 1:
        routers[_router_name(node_data)] = {"subnets": sorted(subnets)}
    conv.data = {
        "name": lab_name,
        "description": "converted from a Calico resource bundle",
        "subnets": subnets,
        "routers": routers,
        "nodes": node_data,
        "pools": {name: data for name, (_, data) in found.pools.items()},
        "bgp": bgp,
        "unsupported": found.unsupported,
    }


def _secret(source: PasswordSource, found: _Resources, where: str, problems: list[Problem]) -> str:
    ref = source.secretKeyRef
    matches = {
        ns: value
        for (ns, name, key), value in found.secrets.items()
        if name == ref.name and key == ref.key
    }
    if len(set(matches.values())) > 1:
        problems.append(
            Problem(
                f"{where}.secretKeyRef",
                f"secret {ref.name}/{ref.key} is in several namespaces with different values "
                f"({', '.join(sorted(ns or '(none)' for ns in matches))})",
                "calico-node reads the one in its own namespace: keep only that one",
            )
        )
    if matches:
        return next(iter(matches.values()))
    # The bundle only names the secret: the lab still needs a shared key, so derive one.
    found.unsupported.append(
        (where, f"secret {ref.name}/{ref.key} is not in the bundle; the lab uses a stand-in")
    )
    return f"meshemu-{ref.name}-{ref.key}"


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


__all__ = [
    "CALICO_API",
    "DEFAULT_PODS_PER_NODE",
    "DNS_LABEL",
    "OPERATOR_API",
    "BundleConversion",
    "convert_bundle",
    "looks_like_bundle",
]
