"""A bundle's Nodes as the native topology's nodes and subnets: each Node's addresses and the
prefixes they sit in, nodes that share a prefix grouped into one L2 segment (one native subnet,
named after its prefix), and Kubernetes node names turned into the DNS labels lab names must be.

Calico's node subnet is the prefix of the Node's `spec.bgp.ipv4Address`/`ipv6Address`: Felix
takes it as the node's CIDR to decide which peers are on the same subnet (projectcalico/calico
`felix/calc/l3_route_resolver.go`, `OnResourceUpdate`), and the Node's fields are those of
`libcalico-go/lib/apis/internalapi/node.go` (`NodeBGPSpec`). A bundle says nothing about the
links between segments or about pods: `calico` adds the router and the pod counts.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from meshemu.errors import Problem
from meshemu.model.calico_bgp import note_unsupported_bgpconfig
from meshemu.model.calico_inventory import Resources
from meshemu.model.calico_resources import NodeBGP, NodeResourceSpec
from meshemu.model.topology import DNS_LABEL


def subnet_name(v4: ipaddress.IPv4Network | None, v6: ipaddress.IPv6Network | None) -> str:
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


def lab_node_names(found: Resources) -> dict[str, str]:
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


def build_nodes(
    found: Resources,
    names: dict[str, str],
    pods_per_node: int,
    origins: dict[str, str],
    problems: list[Problem],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    """The native nodes and subnets; `names` maps Kubernetes node names to the lab's."""
    node_data: dict[str, dict[str, Any]] = {}
    segments = _Segments()
    placed: dict[str, _Segment] = {}
    for original, (loc, meta, spec) in found.nodes.items():
        name = names[original]
        origins[f"nodes.{name}"] = f"{loc}.spec.bgp"
        origins[f"nodes.{name}.labels"] = f"{loc}.metadata.labels"
        node_bgp = spec.bgp
        if node_bgp is None or (node_bgp.ipv4Address is None and node_bgp.ipv6Address is None):
            problems.append(
                Problem(
                    f"{loc}.spec.bgp",
                    "has no ipv4Address or ipv6Address",
                    "meshemu places a node by its BGP address and prefix, e.g. 10.0.0.2/24",
                )
            )
            continue
        addresses, v4net, v6net = _node_prefixes(loc, node_bgp, problems)
        if v4net is None and v6net is None:
            continue
        segment = segments.place(loc, v4net, v6net, problems)
        if segment is None:
            continue
        placed[name] = segment
        entry: dict[str, Any] = {"labels": meta.labels, "pods": pods_per_node, **addresses}
        entry["families"] = [f for f, n in (("ipv4", v4net), ("ipv6", v6net)) if n is not None]
        node_data[name] = entry | _node_settings(original, loc, spec, found)
    subnets = _subnets(segments, origins)
    for name, segment in placed.items():
        final = segment.resolve()
        node_data[name]["subnet"] = subnet_name(final.v4, final.v6)
    return node_data, subnets


def _node_settings(
    original: str, loc: str, spec: NodeResourceSpec, found: Resources
) -> dict[str, Any]:
    """A node's BGP settings (its Node's AS and cluster ID, its `node.<name>` BGPConfiguration's
    port); the tunnel addresses Calico assigned are listed, the lab assigns its own."""
    settings: dict[str, Any] = {}
    node_bgp = spec.bgp
    if node_bgp is not None and node_bgp.asNumber is not None:
        settings["asNumber"] = node_bgp.asNumber
    if node_bgp is not None and node_bgp.routeReflectorClusterID is not None:
        settings["routeReflectorClusterID"] = node_bgp.routeReflectorClusterID
    if node_bgp is not None and node_bgp.ipv4IPIPTunnelAddr is not None:
        found.unsupported.append((f"{loc}.spec.bgp.ipv4IPIPTunnelAddr", "meshemu assigns its own"))
    for fname in ("ipv4VXLANTunnelAddr", "ipv6VXLANTunnelAddr", "vxlanTunnelMACAddr"):
        if getattr(spec, fname) is not None:
            found.unsupported.append((f"{loc}.spec.{fname}", "meshemu assigns its own VTEPs"))
    if original in found.per_node_bgp:
        ploc, pspec = found.per_node_bgp[original]
        if pspec.listenPort is not None:
            settings["listenPort"] = pspec.listenPort
        note_unsupported_bgpconfig(ploc, pspec, found.unsupported, per_node=True)
    return settings


def _subnets(segments: _Segments, origins: dict[str, str]) -> dict[str, dict[str, str]]:
    """One native subnet a segment, named after its prefix, located at its first node."""
    subnets: dict[str, dict[str, str]] = {}
    for segment in segments.all():
        subnet = subnet_name(segment.v4, segment.v6)
        subnets[subnet] = {
            f: str(p) for f, p in (("ipv4", segment.v4), ("ipv6", segment.v6)) if p is not None
        }
        origins[f"subnets.{subnet}"] = f"{segment.first}.spec.bgp"
    return subnets
