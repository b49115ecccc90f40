"""Who programs cluster routes, as a bundle says it: FelixConfiguration resources and the
operator's Installation (`calicoNetwork.bgp`, `calicoNetwork.clusterRoutingMode`) turned into the
native topology's `felix`, `nodes.<n>.felix` and `bgp.enabled` / `bgp.programClusterRoutes`,
with the operator's refusals; every FelixConfiguration field the lab does not emulate listed in
`Topology.unsupported`. (BGPConfiguration's `programClusterRoutes` is `calico_bgp`'s.)

Follows projectcalico/calico at 87c15906 (release-v3.33 alike):
`api/pkg/apis/projectcalico/v3/felixconfig.go` (the fields; `programClusterRoutes` 628-651),
`libcalico-go/lib/backend/syncersv1/updateprocessors/configurationprocessor.go:98` (a
`node.<name>` FelixConfiguration overrides `default` field by field), and tigera/operator at
40788b9b: `pkg/controller/installation/core_controller.go` (515-531 the `bgp` default,
1826-1894 the programClusterRoutes pair a `clusterRoutingMode` writes, 1908-1929 the mode
assumed when unset) and `pkg/controller/installation/validation.go:149-193` (the refusals
with BGP disabled). `model.cluster_routes` decides from the result who programs what.
"""

from __future__ import annotations

from typing import Any

from meshemu.errors import Problem
from meshemu.model.calico_installation import INSTALLATION_ENCAP, installation_encapsulation
from meshemu.model.calico_inventory import Resources
from meshemu.model.calico_resources import (
    FELIX_NOT_EMULATED,
    FelixEmulatedFields,
    InstallationSpec,
)

# The FelixConfiguration fields the lab emulates, as `model.topology.FelixSpec` names them.
EMULATED = ("programClusterRoutes", "ipipEnabled", "vxlanEnabled", "routeSyncDisabled")

# Why a field the lab reads is not emulated, by field name or name prefix (the first match);
# the rest have no effect on the routes and reachability the lab checks.
_REASONS: tuple[tuple[str, str], ...] = (
    ("deviceRouteProtocol", "the lab's Felix routes use protocol 80, Felix's default"),
    ("routeRefreshInterval", "the lab's route programmer resyncs Felix's routes every 30 s"),
    ("routeSource", "Felix's routes come from IPAM blocks (CalicoIPAM), never per workload"),
    ("ipv4NormalRoutePriority", "pod routes take BGPConfiguration's normal route priority"),
    ("ipv6NormalRoutePriority", "pod routes take BGPConfiguration's normal route priority"),
    ("ipipMTU", "route and device MTUs are not emulated"),
    ("vxlanMTU", "route and device MTUs are not emulated"),
    ("vxlanPort", "the lab's VXLAN devices use port 4789"),
    ("vxlanVNI", "the lab's VXLAN devices use VNI 4096"),
    ("natOutgoingAddress", "natOutgoing masquerades to the node's own address"),
    ("natOutgoingExclusions", "natOutgoing excludes only destinations inside IP pools"),
    ("natPortRange", "natOutgoing uses the kernel's port range"),
    ("iptablesNATOutgoingInterfaceFilter", "natOutgoing applies on every interface"),
    ("wireguard", "WireGuard encryption is not emulated"),
    ("bpf", "the BPF dataplane is not emulated (the lab writes nftables)"),
    ("ipv6Support", "IPv6 follows the lab's addresses"),
)
_DEFAULT_REASON = "not emulated: it changes nothing the lab routes or checks"

# clusterRoutingMode -> (FelixConfiguration, BGPConfiguration) programClusterRoutes, as the
# operator writes them (core_controller.go:1871-1894); unset writes neither and the operator
# then reasons as FelixIPIPOnly (1908-1929), Calico's own defaults since v3.33.
ROUTING_MODES = {
    "BIRD": ("Disabled", "Enabled"),
    "Felix": ("Enabled", "Disabled"),
    "FelixIPIPOnly": ("EnabledIPIPOnly", "EnabledNoEncapOnly"),
}


def felix_reason(name: str) -> str:
    """Why the FelixConfiguration field `name` is read and not emulated."""
    for prefix, reason in _REASONS:
        if name.startswith(prefix):
            return reason
    return _DEFAULT_REASON


def build_felix(
    found: Resources,
    names: dict[str, str],
    nodes: dict[str, Any],
    origins: dict[str, str],
    problems: list[Problem],
) -> dict[str, Any]:
    """The native `felix` section (the default FelixConfiguration's emulated fields); each
    `node.<name>` one goes into `nodes[<lab name>]["felix"]`, merged over the default as Felix
    merges them. `names` maps Kubernetes node names to the lab's."""
    default: dict[str, Any] = {}
    if found.felix_default is not None:
        loc, spec = found.felix_default
        origins["felix"] = loc
        default = _emulated(spec)
        _note_unsupported(loc, spec, found)
    for node, (loc, spec) in found.per_node_felix.items():
        _note_unsupported(loc, spec, found)
        if node not in found.nodes:
            problems.append(
                Problem(
                    loc.removesuffix(".spec") + ".metadata.name",
                    f"FelixConfiguration node.{node} configures unknown node {node!r}",
                    "name it node.<name> after a Node resource of the bundle ("
                    + (", ".join(sorted(found.nodes)[:5]) or "there is none")
                    + "), or default for every node",
                )
            )
            continue
        lab_name = names.get(node, node)
        if lab_name in nodes:
            nodes[lab_name]["felix"] = {**default, **_emulated(spec)}
            origins[f"nodes.{lab_name}.felix"] = loc
    return default


def _emulated(spec: FelixEmulatedFields) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in EMULATED if getattr(spec, name) is not None}


def _note_unsupported(loc: str, spec: FelixEmulatedFields, found: Resources) -> None:
    for name in FELIX_NOT_EMULATED:
        if getattr(spec, name, None) is not None:
            found.unsupported.append((f"{loc}.{name}", felix_reason(name)))


def apply_installations(
    found: Resources, data: dict[str, Any], origins: dict[str, str], problems: list[Problem]
) -> None:
    """Each Installation's `bgp` and `clusterRoutingMode` into `data` (the native topology's
    `bgp` and `felix`), after the operator's refusals."""
    for loc, inst in found.installations:
        network = inst.calicoNetwork
        where = f"{loc}.spec.calicoNetwork"
        mode = network.clusterRoutingMode
        if mode is not None:
            felix_value, bgp_value = ROUTING_MODES[mode]
            _operator_writes(found, data, "felix", felix_value, "FelixConfiguration")
            _operator_writes(found, data, "bgp", bgp_value, "BGPConfiguration")
            origins["felix.programClusterRoutes"] = f"{where}.clusterRoutingMode"
            origins["bgp.programClusterRoutes"] = f"{where}.clusterRoutingMode"
        if not bgp_enabled(inst):
            data.setdefault("bgp", {})["enabled"] = False
            origins["bgp.enabled"] = f"{where}.bgp"
            _refuse_bird_pools(loc, inst, problems)


def bgp_enabled(inst: InstallationSpec) -> bool:
    """The Installation's `bgp` after the operator's defaulting (core_controller.go:515-531):
    Enabled for the Calico CNI plugin except on EKS, Disabled otherwise."""
    if inst.calicoNetwork.bgp is not None:
        return bool(inst.calicoNetwork.bgp == "Enabled")
    return _cni_type(inst) == "Calico" and inst.kubernetesProvider != "EKS"


def _cni_type(inst: InstallationSpec) -> str:
    return str((inst.cni or {}).get("type", "Calico"))


def _operator_writes(
    found: Resources, data: dict[str, Any], section: str, value: str, kind: str
) -> None:
    """The operator patches the `default` resource's programClusterRoutes to `value`; a
    different value the bundle gave there is replaced (said in `unsupported`)."""
    given = found.felix_default if section == "felix" else found.bgp_default
    if given is not None and given[1].programClusterRoutes not in (None, value):
        found.unsupported.append(
            (
                f"{given[0]}.programClusterRoutes",
                f"replaced by {value}: the operator writes {kind} default's programClusterRoutes "
                "from the Installation's clusterRoutingMode",
            )
        )
    data.setdefault(section, {})["programClusterRoutes"] = value


def _refuse_bird_pools(loc: str, inst: InstallationSpec, problems: list[Problem]) -> None:
    """With BGP disabled the operator refuses an Installation pool whose cluster routes would
    be BIRD's (validation.go:149-193): IPIP unless Felix owns IPIP routes (modes Felix and
    FelixIPIPOnly, the latter also when the mode is unset), unencapsulated unless mode Felix.
    Only for the Calico CNI plugin with Calico IPAM, as there."""
    ipam = (inst.cni or {}).get("ipam")
    ipam_type = ipam.get("type", "Calico") if isinstance(ipam, dict) else "Calico"
    if _cni_type(inst) != "Calico" or ipam_type != "Calico":
        return
    mode = inst.calicoNetwork.clusterRoutingMode or "FelixIPIPOnly"
    felix_ipip, felix_noencap = mode in ("Felix", "FelixIPIPOnly"), mode == "Felix"
    for index, pool in enumerate(inst.calicoNetwork.ipPools or []):
        encap = installation_encapsulation(pool, inst)
        ipip, vxlan = INSTALLATION_ENCAP[encap]
        where = f"{loc}.spec.calicoNetwork.ipPools[{index}]"
        if pool.encapsulation is not None:
            where += ".encapsulation"
        if ipip != "Never" and not felix_ipip:
            problems.append(
                Problem(
                    where,
                    "with BIRD cluster routing mode, IPIP encapsulation requires that BGP is "
                    f"enabled (encapsulation {encap}, clusterRoutingMode {mode}, bgp Disabled)",
                    "set calicoNetwork.clusterRoutingMode: FelixIPIPOnly or Felix (Felix "
                    "programs the IPIP routes), or bgp: Enabled, or use VXLAN",
                )
            )
        elif ipip == "Never" and vxlan == "Never" and not felix_noencap:
            problems.append(
                Problem(
                    where,
                    "with BIRD cluster routing mode, unencapsulated IP pools require that BGP "
                    f"is enabled (encapsulation None, clusterRoutingMode {mode}, bgp Disabled)",
                    "set calicoNetwork.clusterRoutingMode: Felix (Felix programs the "
                    "unencapsulated routes), or bgp: Enabled, or use VXLAN",
                )
            )
