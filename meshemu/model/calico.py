"""A bundle of Calico v3 resources converted into the native `Topology`'s data: the entry point
`load` calls, and the assembly of the parts.

A bundle is what `calicoctl get nodes,ippools,bgpconfig,bgppeers -o yaml` exports
(`projectcalico.org/v3` Node, IPPool, BGPConfiguration, BGPPeer, their `...List` forms and
`kubectl`'s `List`), with the operator's `Installation` and the Secrets BGP passwords name. The
parts, one job each: `calico_resources` (the input models), `calico_bundle` (documents ->
`calico_inventory.Resources`, with duplicate and shape checks), `calico_secrets` (Secret keys
and passwords), `calico_installation` (the operator's pools), `calico_nodes` (nodes, segments,
lab names), `calico_bgp` (BGPConfiguration and BGPPeers), `calico_felix` (FelixConfiguration and
the Installation's bgp and clusterRoutingMode: who programs cluster routes), `calico_fabric` (a
BIRD router at each BGPPeer address no node has, and a spine joining them). This module adds
what a bundle does not say: one router joining every node subnet when `calico_fabric` placed
none, and the same number of pods on every node.

Nothing is silently lost: every problem is located in the bundle, and `origins` maps each part
of the native topology back to the resource (or the Secret key) it came from, so that the rules
checked on the topology name the bundle's places. Fields meshemu accepts but does not emulate
are listed in `Topology.unsupported`, by name. The Calico source each part follows is named in
that part's docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshemu.errors import Problem
from meshemu.model.calico_bgp import build_bgp
from meshemu.model.calico_bundle import looks_like_bundle, read_bundle
from meshemu.model.calico_fabric import build_fabric
from meshemu.model.calico_felix import apply_installations, build_felix
from meshemu.model.calico_inventory import Resources
from meshemu.model.calico_nodes import build_nodes, lab_node_names
from meshemu.model.calico_resources import CALICO_API, OPERATOR_API
from meshemu.model.policy_bundle import add_policies
from meshemu.model.services_bundle import add_services
from meshemu.model.topology import DNS_LABEL

DEFAULT_PODS_PER_NODE = 2


@dataclass
class BundleConversion:
    """The converted topology input (a plain dict for `Topology`) and where each part came from."""

    data: dict[str, Any]
    # Native-topology location prefix -> bundle location, so rule problems point into the bundle.
    origins: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


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
    found = read_bundle(documents, lines, conv.problems)
    _build(conv, lab_name, pods_per_node, found)
    return conv


def _build(conv: BundleConversion, lab_name: str, pods_per_node: int, found: Resources) -> None:
    if not found.nodes and not conv.problems:
        conv.problems.append(
            Problem(
                "bundle",
                "has no projectcalico.org/v3 Node resources",
                "meshemu places each node by its spec.bgp.ipv4Address/ipv6Address; add the "
                "output of `calicoctl get nodes -o yaml`",
            )
        )
    names = lab_node_names(found)
    node_data, subnets = build_nodes(found, names, pods_per_node, conv.origins, conv.problems)
    for name, (ploc, _spec) in found.per_node_bgp.items():
        if name not in found.nodes:
            conv.problems.append(Problem(ploc, f"configures unknown node {name!r}", ""))
    bgp = build_bgp(found, names, conv.origins, conv.problems)
    felix = build_felix(found, names, node_data, conv.origins, conv.problems)
    for name, (ploc, _) in found.pools.items():
        conv.origins[f"pools.{name}"] = ploc
    fabric = build_fabric(found, node_data, subnets, bgp, conv.origins, conv.problems)
    routers: dict[str, Any] = fabric.routers
    if not routers and len(subnets) > 1:
        routers[_router_name(node_data)] = {"subnets": sorted(subnets)}
    conv.data = {
        "name": lab_name,
        # What meshemu added, and why, is said where `plan` shows it: one line each.
        "description": "\n".join(("converted from a Calico resource bundle", *fabric.notes)),
        "subnets": subnets | fabric.subnets,
        "routers": routers,
        "nodes": node_data,
        "pools": {name: data for name, (_, data) in found.pools.items()},
        "bgp": bgp,
        "felix": felix,
        "unsupported": found.unsupported,
    }
    apply_installations(found, conv.data, conv.origins, conv.problems)
    add_policies(conv.data, conv.origins, found)
    add_services(conv.data, conv.origins, found, names, conv.problems)
    if found.ipam_config is not None:
        iloc, ispec = found.ipam_config
        conv.origins["ipam"] = iloc
        conv.data["ipam"] = {
            "strictAffinity": bool(ispec.strictAffinity),
            "maxBlocksPerHost": ispec.maxBlocksPerHost or 0,
        }


def _router_name(nodes: dict[str, Any]) -> str:
    """The one router's name: `router`, or the first `router-N` no node has taken."""
    name, index = "router", 1
    while name in nodes:
        index += 1
        name = f"router-{index}"
    return name


__all__ = [
    "CALICO_API",
    "DEFAULT_PODS_PER_NODE",
    "DNS_LABEL",
    "OPERATOR_API",
    "BundleConversion",
    "convert_bundle",
    "looks_like_bundle",
]
