"""A containerlab topology as a native topology: `import_clab` (pure; the CLI reads and writes).

Owns reading the parts of a containerlab topology (srl-labs/containerlab, its
`schemas/clab.schema.json`) that say what a meshemu lab is:
- `linux` containers by their `meshemu.role` label: `node`, `route-reflector` (a node with
  `meshemu.rr-cluster-id`, else Calico's documented 244.0.0.1), `router` (BGP when it has
  `meshemu.as`), `outside` (the lab's outside host), `switch` (a container bridging a subnet);
- `bridge` and `ovs-bridge` nodes as subnets (named by `meshemu.subnet`, else the node's name);
  a link between two containers as a subnet of its own (named by the labels of its ends:
  `meshemu.subnet` of a node, the matching entry of a router's `meshemu.subnets`);
- addresses from `ip address add A/LEN dev IF` exec commands and a brief link's `ipv4`/`ipv6`;
  a subnet's prefix from a bridge's `meshemu.ipv4`/`meshemu.ipv6` labels, else from the
  addresses on it; a node with addresses in fewer families than its subnet uses only those;
- every other native field from the `meshemu.spec` (per container) and `meshemu.lab` (on
  `topology.defaults`) JSON labels `model.clab.export` writes.
Labels, kind and exec are inherited as containerlab does: node, then its `group`, then its
kind's entry in `kinds`, then `defaults` (labels merged, the most specific winning).
Everything else containerlab knows (images, binds, ports, management) does not concern the
lab and is ignored. Problems (a kind or link meshemu cannot map, a role missing, bad JSON,
addresses that disagree) are collected, located in the containerlab file, and raised together
as ConfigError; checking the resulting topology is `model.load`'s job.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshemu.errors import ConfigError, Problem
from meshemu.model.clab import labels as L
from meshemu.model.topology import loc_part

# Link types with no meshemu meaning, and the special endpoint nodes of brief links.
_SPECIAL_ENDPOINTS = ("host", "mgmt-net", "macvlan", "vxlan", "vxlan-stitch", "dummy")
_ADDRESS_OBJECTS = ("address", "addr", "a")


@dataclass
class _Container:
    name: str
    role: str
    labels: dict[str, Any]
    where: str
    # lab interface -> family -> (address, prefix length)
    addresses: dict[str, dict[int, tuple[str, int]]] = field(default_factory=dict)
    # lab interface -> subnet, filled from the links
    subnets: dict[str, str] = field(default_factory=dict)


@dataclass
class _Import:
    source: str
    problems: list[Problem] = field(default_factory=list)

    def fail(self, where: str, message: str, hint: str = "") -> None:
        self.problems.append(Problem(where, message, hint))


def import_clab(
    doc: object,
    source: str,
    *,
    name: str | None = None,
    base_dir: str = ".",
    out_dir: str = ".",
) -> dict[str, Any]:
    """The native topology (as its YAML holds it) of containerlab topology `doc`.

    `name` replaces the lab's name; `base_dir` is the containerlab file's folder and `out_dir`
    the new topology's, so a router's own BIRD file stays found. ConfigError lists every
    problem, located in the containerlab file.
    """
    run = _Import(source)
    if not isinstance(doc, dict):
        raise ConfigError([Problem(source, "is not a mapping", "a containerlab topology is one")])
    topology = doc.get("topology")
    raw_nodes = topology.get("nodes") if isinstance(topology, dict) else None
    if not isinstance(topology, dict) or not isinstance(raw_nodes, dict) or not raw_nodes:
        raise ConfigError(
            [Problem("topology.nodes", "no nodes", "a containerlab topology lists its nodes")]
        )
    defaults = _mapping(topology.get("defaults"))
    containers, segments = _classify(run, topology, raw_nodes, defaults)
    reported = {str(n) for n in raw_nodes} - {c.name for c in containers} - set(segments)
    order, linked = _wire(run, topology, containers, segments, reported)
    _read_addresses(run, containers, linked)
    if run.problems:
        raise ConfigError(run.problems)
    data: dict[str, Any] = {"name": name if name is not None else doc.get("name")}
    where = "topology.defaults.labels"
    lab = _json_label(run, _mapping(defaults.get("labels")), L.LAB, where)
    for key in L.STRUCTURE & set(lab):
        run.fail(f"{where}.{L.LAB}", f"holds {key!r}", "the nodes and links say that, not a label")
    data["subnets"] = _subnets(run, order, segments, containers)
    routers = {c.name: _router(run, c, base_dir, out_dir) for c in containers if c.role == L.ROUTER}
    nodes = {
        c.name: _node(run, c, data["subnets"])
        for c in containers
        if c.role in (L.NODE, L.ROUTE_REFLECTOR)
    }
    outside = [c for c in containers if c.role == L.OUTSIDE]
    if not nodes:
        run.fail("topology.nodes", "no container has meshemu.role node or route-reflector")
    if len(outside) > 1:
        run.fail(outside[1].where, "a second outside host", "a lab has at most one")
    if run.problems:
        raise ConfigError(run.problems)
    if routers:
        data["routers"] = routers
    data["nodes"] = nodes
    data.update(lab)
    if outside:
        o = outside[0]
        ((ifname, subnet),) = o.subnets.items()
        data["outside"] = {"subnet": subnet, **_fixed(o.addresses.get(ifname, {}))}
    return data


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------------------------------------
# Nodes: containers and L2 segments


def _classify(
    run: _Import, topology: dict[str, Any], raw_nodes: dict[str, Any], defaults: dict[str, Any]
) -> tuple[list[_Container], dict[str, tuple[str, dict[str, Any]]]]:
    """The containers meshemu knows by role, and the segments (bridge or switch node name ->
    (subnet, labels)); a problem for every other node."""
    kinds, groups = _mapping(topology.get("kinds")), _mapping(topology.get("groups"))
    containers: list[_Container] = []
    segments: dict[str, tuple[str, dict[str, Any]]] = {}
    for node_name, raw in raw_nodes.items():
        where = f"topology.nodes.{loc_part(node_name)}"
        own = _mapping(raw)
        group = _mapping(groups.get(own["group"])) if isinstance(own.get("group"), str) else {}
        kind = own.get("kind") or group.get("kind") or defaults.get("kind")
        layers = [defaults, _mapping(kinds.get(kind)) if isinstance(kind, str) else {}, group, own]
        labels: dict[str, Any] = {}
        for layer in layers:
            labels.update(_mapping(layer.get("labels")))
        if kind in L.BRIDGE_KINDS:
            segments[node_name] = (str(labels.get(L.SUBNET, node_name)), labels)
            continue
        if kind != L.LINUX:
            run.fail(
                f"{where}.kind",
                f"node {node_name!r} is of kind {kind!r}, which meshemu cannot map",
                "meshemu maps `linux` containers with a meshemu.role label (node, "
                "route-reflector, router, outside, switch) and `bridge`/`ovs-bridge` nodes "
                "(subnets); make a router a linux node running BIRD, or leave the node out",
            )
            continue
        role = labels.get(L.ROLE)
        if role not in L.ROLES:
            run.fail(
                f"{where}.labels",
                f"linux node {node_name!r} has "
                + (f"{L.ROLE} {role!r}" if role is not None else f"no {L.ROLE} label"),
                f"label it {L.ROLE}: one of {', '.join(L.ROLES)}",
            )
            continue
        if role == L.SWITCH:
            segments[node_name] = (str(labels.get(L.SUBNET, node_name)), labels)
            continue
        container = _Container(str(node_name), role, labels, where)
        container.addresses = {}
        for text in _exec(layers):
            _exec_address(run, container, text)
        containers.append(container)
    return containers, segments


def _exec(layers: list[dict[str, Any]]) -> list[str]:
    """The node's exec commands: its own, else its group's, kind's or the defaults'."""
    for layer in reversed(layers):
        commands = layer.get("exec")
        if isinstance(commands, list):
            return [c for c in commands if isinstance(c, str)]
    return []


def _exec_address(run: _Import, container: _Container, text: str) -> None:
    """Record an `ip [-4|-6] address add A/LEN dev IF ...` command's address."""
    try:
        words = shlex.split(text)
    except ValueError:
        return
    if not words or words[0] != "ip":
        return
    words = [w for w in words[1:] if not w.startswith("-")]
    if len(words) < 2 or words[0] not in _ADDRESS_OBJECTS or words[1] != "add":
        return
    address = next((w for w in words[2:] if "/" in w), None)
    dev = words[words.index("dev") + 1] if "dev" in words[:-1] else None
    if address is not None and dev is not None:
        _record(run, container, dev, address, f"{container.where}.exec")


def _record(run: _Import, container: _Container, ifname: str, text: str, where: str) -> None:
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        run.fail(where, f"{text!r} is not an address with its prefix length", "write A/LEN")
        return
    known = container.addresses.setdefault(ifname, {})
    if iface.version in known and known[iface.version][0] != str(iface.ip):
        run.fail(
            where,
            f"{container.name} {ifname} has two IPv{iface.version} addresses "
            f"({known[iface.version][0]}, {iface.ip})",
            "meshemu gives an interface one address per family",
        )
        return
    known[iface.version] = (str(iface.ip), iface.network.prefixlen)


# ---------------------------------------------------------------------------------------------
# Links


def _endpoints(run: _Import, link: object, where: str) -> list[tuple[str, str, int]] | None:
    """(node, interface, position) of a brief or `veth` link; None (a problem) otherwise."""
    if not isinstance(link, dict):
        run.fail(where, "is not a mapping", "write `endpoints: [a:eth1, b:eth1]`")
        return None
    kind = link.get("type")
    ends = link.get("endpoints")
    if kind not in (None, "veth") or not isinstance(ends, list) or len(ends) != 2:
        run.fail(
            where,
            f"a {kind or 'link'} link meshemu cannot map",
            "meshemu maps point-to-point links between two nodes (brief or type veth)",
        )
        return None
    out = []
    for i, end in enumerate(ends):
        if isinstance(end, str) and ":" in end:
            node, ifname = end.split(":", 1)
        elif isinstance(end, dict) and {"node", "interface"} <= end.keys():
            node, ifname = str(end["node"]), str(end["interface"])
        else:
            run.fail(f"{where}.endpoints[{i}]", f"{end!r} is not NODE:INTERFACE")
            return None
        if node in _SPECIAL_ENDPOINTS:
            run.fail(
                f"{where}.endpoints[{i}]",
                f"a link to {node!r} meshemu cannot map",
                "meshemu's subnets join lab nodes only",
            )
            return None
        out.append((node, ifname, i))
    return out


def _wire(
    run: _Import,
    topology: dict[str, Any],
    containers: list[_Container],
    segments: dict[str, tuple[str, dict[str, Any]]],
    reported: set[str],
) -> tuple[list[str], set[str]]:
    """Attach each container interface to its subnet; the subnets in order of first mention
    (the order `export` writes the links in), then the bridges no link mentions; and the
    containers the file links at all. A link to a node already reported is left out."""
    by_name = {c.name: c for c in containers}
    links = topology.get("links")
    mentions: list[tuple[str, str | int]] = []  # ("subnet", name) or ("pair", index)
    pairs: list[_Pair] = []
    ifnames: dict[str, set[str]] = {c.name: set() for c in containers}
    linked: set[str] = set()
    for index, link in enumerate(links if isinstance(links, list) else []):
        where = f"topology.links[{index}]"
        ends = _endpoints(run, link, where)
        if ends is None:
            continue
        linked.update(n for n, _, _ in ends)
        if any(n in reported for n, _, _ in ends):
            continue
        unknown = [n for n, _, _ in ends if n not in by_name and n not in segments]
        if unknown:
            run.fail(where, f"endpoint {unknown[0]!r} is no node meshemu maps", "see above")
            continue
        bridged = [n for n, _, _ in ends if n in segments]
        if len(bridged) == 2:
            run.fail(where, "joins two bridges", "join containers to a bridge, not bridges")
            continue
        mine = [(by_name[n], ifname, i) for n, ifname, i in ends if n in by_name]
        for c, ifname, i in mine:
            ifnames[c.name].add(ifname)
            for key in ("ipv4", "ipv6"):
                given = _mapping(link).get(key)
                text = given[i] if isinstance(given, list) and i < len(given) else None
                if isinstance(text, str) and text:  # "" leaves an endpoint unaddressed
                    _record(run, c, ifname, text, f"{where}.{key}[{i}]")
        if bridged:
            subnet = segments[bridged[0]][0]
            _attach(run, mine[0][0], mine[0][1], subnet, where)
            mentions.append(("subnet", subnet))
        else:
            pairs.append(_Pair(where, (mine[0][0], mine[0][1]), (mine[1][0], mine[1][1])))
            mentions.append(("pair", len(pairs) - 1))
    named = _name_pairs(run, pairs, ifnames, {s for s, _ in segments.values()})
    order: list[str] = []
    for what, value in mentions:
        subnet = named[int(value)] if what == "pair" else str(value)
        if subnet not in order:
            order.append(subnet)
    order += [s for s, _ in segments.values() if s not in order]
    return order, linked


@dataclass(frozen=True)
class _Pair:
    """A link between two containers: a subnet of its own."""

    where: str
    a: tuple[_Container, str]
    b: tuple[_Container, str]


def _attach(run: _Import, c: _Container, ifname: str, subnet: str, where: str) -> None:
    if ifname in c.subnets:
        run.fail(where, f"{c.name} {ifname} is on a second link", "one link per interface")
    c.subnets[ifname] = subnet


def _name_pairs(
    run: _Import, pairs: list[_Pair], ifnames: Mapping[str, set[str]], taken: set[str]
) -> list[str]:
    """The subnet of each link between two containers, named by its ends' labels, else after
    the two containers."""
    out = []
    for pair in pairs:
        said = {
            n
            for c, ifname in (pair.a, pair.b)
            if (n := _label_subnet(c, ifname, ifnames[c.name])) is not None
        }
        if len(said) > 1:
            run.fail(pair.where, f"its ends' labels name two subnets: {', '.join(sorted(said))}")
        name = min(said) if said else _free(f"{pair.a[0].name}-{pair.b[0].name}", taken)
        taken.add(name)
        for c, ifname in (pair.a, pair.b):
            _attach(run, c, ifname, name, pair.where)
        out.append(name)
    return out


def _label_subnet(c: _Container, ifname: str, ifnames: set[str]) -> str | None:
    """What a container's labels call the subnet of its interface `ifname`: a router's
    `meshemu.subnets` lists its subnets in the order of its interfaces (eth1, eth2, ...)."""
    if c.role == L.ROUTER:
        listed = [s.strip() for s in str(c.labels.get(L.SUBNETS, "")).split(",") if s.strip()]
        position = sorted(ifnames, key=_natural).index(ifname)
        return listed[position] if position < len(listed) else None
    value = c.labels.get(L.SUBNET)
    return str(value) if value is not None else None


def _natural(text: str) -> tuple[str, int, str]:
    match = re.fullmatch(r"(\D*)(\d+)(.*)", text)
    return (match.group(1), int(match.group(2)), match.group(3)) if match else (text, -1, "")


def _free(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:60].strip("-") or "subnet"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


# ---------------------------------------------------------------------------------------------
# Sections


def _read_addresses(run: _Import, containers: list[_Container], linked: set[str]) -> None:
    """Addresses on interfaces without a link mean nothing to the lab (pods, tunnels); a
    container must be on a link at all."""
    for c in containers:
        c.addresses = {i: a for i, a in c.addresses.items() if i in c.subnets}
        if not c.subnets and (c.name not in linked or not run.problems):
            run.fail(c.where, f"{c.role} {c.name!r} is on no link", "link it to its subnet")
        elif c.role != L.ROUTER and len(c.subnets) > 1:
            run.fail(
                c.where,
                f"{c.role} {c.name!r} is on {len(c.subnets)} links",
                "a node and the outside host have one interface into one subnet",
            )


def _subnets(
    run: _Import,
    order: list[str],
    segments: Mapping[str, tuple[str, dict[str, Any]]],
    containers: list[_Container],
) -> dict[str, dict[str, str]]:
    labelled = {subnet: labels for subnet, labels in segments.values()}
    out: dict[str, dict[str, str]] = {}
    for subnet in order:
        where = f"subnet {subnet}"
        prefixes: dict[str, str] = {}
        for family, key in ((4, "ipv4"), (6, "ipv6")):
            given = labelled.get(subnet, {}).get(L.IPV4 if family == 4 else L.IPV6)
            seen = {
                str(ipaddress.ip_interface(f"{a[0]}/{a[1]}").network)
                for c in containers
                for ifname, s in c.subnets.items()
                if s == subnet and (a := c.addresses.get(ifname, {}).get(family)) is not None
            }
            if given is not None:
                prefixes[key] = str(given)
            elif len(seen) > 1:
                run.fail(where, f"its members' IPv{family} addresses disagree: {sorted(seen)}")
            elif seen:
                prefixes[key] = seen.pop()
        if not prefixes:
            run.fail(
                where,
                "no prefix: no member has an address and no bridge label gives one",
                f"add `ip address add A/LEN dev IF` exec commands, or {L.IPV4}/{L.IPV6} "
                "labels on its bridge",
            )
        out[subnet] = prefixes
    return out


def _fixed(addresses: Mapping[int, tuple[str, int]]) -> dict[str, str]:
    return {f"ipv{f}": addresses[f][0] for f in (4, 6) if f in addresses}


def _router(run: _Import, c: _Container, base_dir: str, out_dir: str) -> dict[str, Any]:
    spec = _json_label(run, c.labels, L.SPEC, f"{c.where}.labels")
    ifnames = sorted(c.subnets, key=_natural)
    out: dict[str, Any] = {"subnets": [c.subnets[i] for i in ifnames]}
    addresses = {c.subnets[i]: _fixed(c.addresses[i]) for i in ifnames if c.addresses.get(i)}
    if addresses:
        out["addresses"] = addresses
    bgp = _mapping(spec.pop("bgp", None))
    as_number = _as_number(run, c)
    if as_number is not None:
        bgp = {"asNumber": as_number, **bgp}
        config = bgp.get("config")
        if isinstance(config, str):
            # Relative to the containerlab file; the new topology's own folder may differ.
            path = os.path.normpath(os.path.join(base_dir, config))
            bgp["config"] = os.path.relpath(path, out_dir) if not os.path.isabs(config) else config
        out["bgp"] = bgp
    elif bgp:
        run.fail(f"{c.where}.labels", f"router {c.name!r} has BGP settings but no {L.AS_NUMBER}")
    return {**spec, **out}  # what the links and exec commands say wins


def _node(run: _Import, c: _Container, subnets: Mapping[str, dict[str, str]]) -> dict[str, Any]:
    spec = _json_label(run, c.labels, L.SPEC, f"{c.where}.labels")
    ((ifname, subnet),) = c.subnets.items()
    said = c.labels.get(L.SUBNET)
    if said is not None and str(said) != subnet:
        run.fail(f"{c.where}.labels", f"{L.SUBNET} says {said!r}, its link joins {subnet!r}")
    out: dict[str, Any] = {"subnet": subnet, **_fixed(c.addresses.get(ifname, {}))}
    offered = {k for k in ("ipv4", "ipv6") if k in subnets.get(subnet, {})}
    used = {k for k in ("ipv4", "ipv6") if k in out}
    if used and used < offered and "families" not in spec:
        out["families"] = sorted(used)
    as_number = _as_number(run, c)
    if as_number is not None:
        out["asNumber"] = as_number
    if c.role == L.ROUTE_REFLECTOR:
        out["routeReflectorClusterID"] = str(c.labels.get(L.CLUSTER_ID, L.DEFAULT_CLUSTER_ID))
    return {**spec, **out}  # what the links and exec commands say wins


def _as_number(run: _Import, c: _Container) -> int | None:
    value = c.labels.get(L.AS_NUMBER)
    if value is None:
        return None
    text = str(value)
    if not text.isdigit():
        run.fail(f"{c.where}.labels.{L.AS_NUMBER}", f"{text!r} is not an AS number")
        return None
    return int(text)


def _json_label(run: _Import, labels: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    text = labels.get(key)
    if text is None:
        return {}
    try:
        value = json.loads(str(text))
    except ValueError as err:
        run.fail(f"{where}.{key}", f"is not JSON: {err}", "write a JSON object")
        return {}
    if not isinstance(value, dict):
        run.fail(f"{where}.{key}", "is not a JSON object", "write {...}")
        return {}
    return value
