"""A bundle's BGPConfiguration, BGPPeers and BGPFilters as the native topology's `bgp` section: the
cluster AS, mesh, port, restart time, route priorities, programClusterRoutes, communities and
prefix advertisements of the default BGPConfiguration (and a node's own prefix advertisements),
each BGPPeer's fields (its node renamed as the lab names it), every BGPFilter, both kinds'
passwords from their Secrets, and the fields meshemu accepts without emulating them, listed by
location.

Follows projectcalico/calico `api/pkg/apis/projectcalico/v3/bgpconfig.go` (the default and
`node.<name>` BGPConfigurations) and `bgppeer.go`, and `confd/pkg/backends/calico/client.go`
(which of them calico-node turns into BIRD peerings). Each password's location in the native
topology (`bgp.peers.<name>.password`, `bgp.nodeMeshPassword`) maps to the Secret key that
holds it (`calico_secrets`), so a problem with the password names the Secret.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from meshemu.errors import Problem
from meshemu.model.calico_inventory import Resources
from meshemu.model.calico_resources import BGPConfigurationSpec, BGPFilterSpec, BGPPeerSpec
from meshemu.model.calico_secrets import resolve_password

# BGPPeer fields the lab has no behaviour for: listed as unsupported, left out of the topology.
_PEER_NOT_EMULATED = {
    "localWorkloadSelector": "peering with workloads (pods) is not emulated; no session is planned",
}
# BGPPeer fields the plan carries (as Calico's confd renders them) that the lab's ExaBGP
# speakers do not act on: listed so that nothing is silently ignored.
_PEER_PLAN_ONLY = {
    "keepaliveTime": "kept in the plan; ExaBGP sends keepalives at a third of the hold time",
    "nextHopMode": "Keep is applied; Self on an iBGP session is kept in the plan only",
}
# BGPConfiguration fields the lab accepts and does not emulate, each with the reason.
_CONFIG_NOT_EMULATED = {
    "logSeverityScreen": "speaker log level is meshemu's own",
    "bindMode": "speakers always bind to the node address",
    "serviceLoadBalancerAggregation": "LoadBalancer addresses are advertised one by one",
    "communities": "kept in the plan (apply_communities); the ExaBGP speakers attach none",
    "prefixAdvertisements": "kept in the plan (apply_communities); the ExaBGP speakers attach none",
    "ignoredInterfaces": "not relevant in the lab",
    "localWorkloadPeeringIPV4": "peering with workloads is not emulated",
    "localWorkloadPeeringIPV6": "peering with workloads is not emulated",
    "ipv4NormalRoutePriority": "kept in the plan (the sessions' filters); the agents use "
    "their own metric",
    "ipv6NormalRoutePriority": "kept in the plan (the sessions' filters); the agents use "
    "their own metric",
}
SERVICE_CIDR_FIELDS = ("serviceClusterIPs", "serviceExternalIPs", "serviceLoadBalancerIPs")
_LITERAL_COMMUNITY = re.compile(r"\d+:\d+(:\d+)?\Z")


def build_bgp(
    found: Resources, names: dict[str, str], origins: dict[str, str], problems: list[Problem]
) -> dict[str, Any]:
    """The native `bgp` section; `names` maps Kubernetes node names to the lab's."""
    bgp: dict[str, Any] = {}
    if found.bgp_default is not None:
        bloc, bspec = found.bgp_default
        origins["bgp"] = bloc
        bgp.update(_default_config(bspec))
        if bspec.nodeMeshPassword is not None:
            password = resolve_password(
                bspec.nodeMeshPassword, found, f"{bloc}.nodeMeshPassword", problems
            )
            bgp["nodeMeshPassword"] = password.value
            origins["bgp.nodeMeshPassword"] = password.origin
        note_unsupported_bgpconfig(bloc, bspec, found.unsupported, per_node=False)
    per_node = {
        names.get(node, node): _resolved_adverts(spec)
        for node, (_, spec) in found.per_node_bgp.items()
        if spec.prefixAdvertisements is not None
    }
    if per_node:
        bgp["nodePrefixAdvertisements"] = per_node
    bgp["peers"] = {
        name: _peer_data(name, ploc, spec, found, names, origins, problems)
        for name, (ploc, spec) in found.peers.items()
    }
    bgp["filters"] = _filters(found, origins)
    return bgp


def _default_config(spec: BGPConfigurationSpec) -> dict[str, Any]:
    """The default BGPConfiguration's fields the native `bgp` section has, under its names."""
    copied = (
        "asNumber",
        "nodeToNodeMeshEnabled",
        "listenPort",
        "nodeMeshMaxRestartTime",
        "ipv4NormalRoutePriority",
        "ipv6NormalRoutePriority",
        "programClusterRoutes",
    )
    data = {name: getattr(spec, name) for name in copied if getattr(spec, name) is not None}
    if spec.communities is not None:
        data["communities"] = [c.model_dump() for c in spec.communities]
    if spec.prefixAdvertisements is not None:
        data["prefixAdvertisements"] = [a.model_dump() for a in spec.prefixAdvertisements]
    return data


def _resolved_adverts(spec: BGPConfigurationSpec) -> list[dict[str, Any]]:
    """A node's own prefixAdvertisements, its community names resolved against its own
    `communities` (confd resolves each BGPConfiguration's names against itself, client.go
    getPrefixAdvertisementsKVPair; an unknown name is dropped)."""
    named = {c.name: c.value for c in spec.communities or []}
    return [
        {
            "cidr": advert.cidr,
            "communities": [
                value
                for community in advert.communities
                if (
                    value := community
                    if _LITERAL_COMMUNITY.match(community)
                    else named.get(community)
                )
            ],
        }
        for advert in spec.prefixAdvertisements or []
    ]


def _filters(found: Resources, origins: dict[str, str]) -> dict[str, Any]:
    """Every BGPFilter of the bundle. `calico_bundle` validated and recorded each (in
    `found.seen`) without filing it by kind, so they are read back from there."""
    out: dict[str, Any] = {}
    for (kind, _, name), doc in sorted(found.seen.items()):
        if kind != "BGPFilter":
            continue
        try:
            spec = BGPFilterSpec.model_validate(doc.body.get("spec") or {})
        except ValidationError:
            continue  # already reported, located, by calico_bundle
        out[name] = spec.model_dump(by_alias=True, exclude_none=True)
        origins[f"bgp.filters.{name}"] = f"BGPFilter/{name}.spec"
    if out:
        found.unsupported.append(
            (
                "BGPFilter",
                "applied by the planner and the agents (Accept/Reject, prependASPath, "
                "setPriority); addCommunity and community matches are not emulated",
            )
        )
    return out


def _peer_data(
    name: str,
    ploc: str,
    spec: BGPPeerSpec,
    found: Resources,
    names: dict[str, str],
    origins: dict[str, str],
    problems: list[Problem],
) -> dict[str, Any]:
    """One BGPPeer as a native peer; what it asks that the lab does not do is listed."""
    origins[f"bgp.peers.{name}"] = ploc
    data = spec.model_dump(
        by_alias=True,
        exclude_none=True,
        exclude={"password", *_PEER_NOT_EMULATED},
    )
    if spec.node is not None:
        data["node"] = names.get(spec.node, spec.node)
    if spec.password is not None:
        password = resolve_password(spec.password, found, f"{ploc}.password", problems)
        data["password"] = password.value
        origins[f"bgp.peers.{name}.password"] = password.origin
    for fname, reason in {**_PEER_NOT_EMULATED, **_PEER_PLAN_ONLY}.items():
        if getattr(spec, fname) is not None:
            found.unsupported.append((f"{ploc}.{fname}", reason))
    return data


def note_unsupported_bgpconfig(
    where: str, spec: BGPConfigurationSpec, unsupported: list[tuple[str, str]], per_node: bool
) -> None:
    """List the BGPConfiguration fields the lab accepts and ignores, each with the reason."""
    reasons = dict(_CONFIG_NOT_EMULATED)
    if per_node:
        reasons["asNumber"] = "set the AS on the Node resource instead"
        reasons["nodeToNodeMeshEnabled"] = "only the default BGPConfiguration decides the mesh"
        reasons["nodeMeshPassword"] = "only the default BGPConfiguration's is read (as confd)"
        reasons["nodeMeshMaxRestartTime"] = "only the default BGPConfiguration's is read"
        # confd caches programClusterRoutes from the default BGPConfiguration only
        # (confd/pkg/backends/calico/client.go:1224-1231).
        reasons["programClusterRoutes"] = (
            "only the default BGPConfiguration's is read (as confd): BIRD programs the same "
            "pools on every node"
        )
        for fname in SERVICE_CIDR_FIELDS:  # (model.services_bundle carries the default's)
            reasons[fname] = "only the default BGPConfiguration's is read (as confd)"
        reasons["prefixAdvertisements"] = (
            "kept in the plan for this node (apply_communities); the ExaBGP speakers attach none"
        )
    for fname, reason in reasons.items():
        if getattr(spec, fname) is not None:
            unsupported.append((f"{where}.{fname}", reason))
