"""A bundle's BGPConfiguration and BGPPeers as the native topology's `bgp` section: the cluster
AS, mesh, port and restart time of the default BGPConfiguration, each BGPPeer's fields (its node
renamed as the lab names it), both kinds' passwords from their Secrets, and the fields meshemu
accepts without emulating them, listed by location.

Follows projectcalico/calico `api/pkg/apis/projectcalico/v3/bgpconfig.go` (the default and
`node.<name>` BGPConfigurations) and `bgppeer.go`, and `confd/pkg/backends/calico/client.go`
(which of them calico-node turns into BIRD peerings). Each password's location in the native
topology (`bgp.peers.<name>.password`, `bgp.nodeMeshPassword`) maps to the Secret key that
holds it (`calico_secrets`), so a problem with the password names the Secret.
"""

from __future__ import annotations

from typing import Any

from meshemu.errors import Problem
from meshemu.model.calico_inventory import Resources
from meshemu.model.calico_resources import BGPConfigurationSpec, BGPPeerSpec
from meshemu.model.calico_secrets import resolve_password

# BGPPeer fields the lab has no behaviour for: listed as unsupported, left out of the topology.
_PEER_NOT_EMULATED = (
    "failureDetectionMode",
    "restartMode",
    "birdGatewayMode",
    "ttlSecurity",
    "filters",
)


def build_bgp(
    found: Resources, names: dict[str, str], origins: dict[str, str], problems: list[Problem]
) -> dict[str, Any]:
    """The native `bgp` section; `names` maps Kubernetes node names to the lab's."""
    bgp: dict[str, Any] = {}
    if found.bgp_default is not None:
        bloc, bspec = found.bgp_default
        origins["bgp"] = bloc
        if bspec.asNumber is not None:
            bgp["asNumber"] = bspec.asNumber
        if bspec.nodeToNodeMeshEnabled is not None:
            bgp["nodeToNodeMeshEnabled"] = bspec.nodeToNodeMeshEnabled
        if bspec.listenPort is not None:
            bgp["listenPort"] = bspec.listenPort
        if bspec.nodeMeshMaxRestartTime is not None:
            bgp["nodeMeshMaxRestartTime"] = bspec.nodeMeshMaxRestartTime
        if bspec.nodeMeshPassword is not None:
            password = resolve_password(
                bspec.nodeMeshPassword, found, f"{bloc}.nodeMeshPassword", problems
            )
            bgp["nodeMeshPassword"] = password.value
            origins["bgp.nodeMeshPassword"] = password.origin
        note_unsupported_bgpconfig(bloc, bspec, found.unsupported, per_node=False)
    bgp["peers"] = {
        name: _peer_data(name, ploc, spec, found, names, origins, problems)
        for name, (ploc, spec) in found.peers.items()
    }
    return bgp


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
        exclude={"password", "maxRestartTime", *_PEER_NOT_EMULATED},
    )
    if spec.node is not None:
        data["node"] = names.get(spec.node, spec.node)
    if spec.password is not None:
        password = resolve_password(spec.password, found, f"{ploc}.password", problems)
        data["password"] = password.value
        origins[f"bgp.peers.{name}.password"] = password.origin
    if spec.maxRestartTime is not None:
        data["maxRestartTime"] = spec.maxRestartTime
    for fname in _PEER_NOT_EMULATED:
        if getattr(spec, fname) is not None:
            found.unsupported.append((f"{ploc}.{fname}", "not emulated by meshemu"))
    if spec.numAllowedLocalASNumbers is not None:
        found.unsupported.append(
            (
                f"{ploc}.numAllowedLocalASNumbers",
                "kept in the plan, not enforced by the speakers",
            )
        )
    return data


def note_unsupported_bgpconfig(
    where: str, spec: BGPConfigurationSpec, unsupported: list[tuple[str, str]], per_node: bool
) -> None:
    """List the BGPConfiguration fields the lab accepts and ignores, each with the reason."""
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
