"""The routers a bundle implies: a BIRD router at every BGPPeer `peerIP` that belongs to no
node, the subnets that hold the ones outside the nodes' subnets, and a spine that joins them.

A `calicoctl` export names the cluster's top-of-rack routers and route servers only by the
`peerIP` and `asNumber` of its BGPPeers (projectcalico/calico `api/pkg/apis/projectcalico/v3/
bgppeer.go`); confd renders a BIRD session to each (`confd/pkg/backends/calico/client.go`
`updatePeersV1`). So that those sessions come up in the lab, this module places a BIRD 2 router
(the native topology's `routers.<name>.bgp`) at each such address:
- inside a node subnet (the segment `calico_nodes` derived from the Nodes' address prefixes): a
  router on that subnet at that fixed address, one per (subnet, AS), so that a dual-stack ToR
  named by a v4 and a v6 BGPPeer is one router (addresses of one family are paired with the
  other family's in address order when a subnet has several routers of one AS);
- outside every node subnet ("behind the fabric"): a router on a new subnet, the smallest
  prefix the rules accept (/29, /125) around the address, grouped by AS the same way;
- a spine when anything must be joined (more than one placed router, one behind the fabric,
  or a node subnet without one): named `spine` (or `spine-N`, free of node names), in the
  first private AS no resource uses (64999 downwards, then 4200000000 upwards), on a new
  fabric subnet `fabric` with every placed ToR, on every behind-the-fabric subnet and on every
  node subnet no router was placed on (as those nodes' default router, the job of the plain
  router the converter adds otherwise), peering over eBGP with every placed router, so that
  the routers of different racks exchange what they learn. The fabric subnet's prefixes are
  the highest ones, large enough for the spine and the ToRs, of 10.0.0.0/8 (then
  172.16.0.0/12, 192.168.0.0/16) and a /64 of fd00::/8 that overlap no node subnet, pool,
  service range, prefix advertisement, new subnet or address the bundle names: far from
  where clusters number their nodes, so that a lab's addresses do not surprise.
Which nodes peer with an address, over iBGP or eBGP, and which AS they give it are decided by
Calico's own session rules (`model.sessions`): a node-specific BGPPeer that confd drops under
a global one to the same address gives the router no AS and no sessions.
The routers answer the nodes' own sessions (`model.phases.fabric`): a placed router peers back
with every node that peers with it; it is a route reflector (BIRD `rr client`) when any of
those sessions is iBGP, as the ToR of Calico's "AS per rack" design is
(`calico/reference/architecture/design/l3-interconnect-fabric.md`, see
docs/research/fabric/bird-router.md), since iBGP peers share nothing otherwise. Placed routers
that share an AS accept their AS once in paths from the spine (BIRD `allow local as 1`,
doc/bird.sgml "allow local as"), or BGP's loop check would drop every route between them.

Each placement is said, with its reason, in `Fabric.notes` (the converted topology's
description, which `plan` prints). Peers in special ranges and peers at a node's address are
left as they were; a peer inside an IP pool is left for `rules` (exit 2). Two BGPPeers that
give one address two AS numbers are a problem (one router has one AS).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain, zip_longest
from typing import Any

from pydantic import ValidationError

from meshemu.errors import Problem
from meshemu.model.addressing import (
    IPAddress,
    IPNetwork,
    parse_network,
    parse_peer_ip,
    special_kind,
    special_range,
)
from meshemu.model.calico_inventory import Resources
from meshemu.model.calico_nodes import subnet_name
from meshemu.model.calico_resources import BGPPeerSpec
from meshemu.model.sessions import Session, SessionNode, plan_sessions
from meshemu.model.topology import BgpSpec, labels_as_text

FAMILIES = (4, 6)
DEFAULT_CLUSTER_AS = 64512  # the BGPConfiguration default (and the native `bgp.asNumber`)
# The spine's AS: the first private AS no resource of the bundle uses, from the top of the
# 16-bit private range (RFC 6996: 64512-65534) downwards, then the 32-bit one upwards.
SPINE_AS_16 = range(64999, 64511, -1)
SPINE_AS_32 = range(4200000000, 4294967295)
# A behind-the-fabric subnet: the smallest prefix the rules accept for a subnet
# (`rules._check_subnets`: /29, /125), widened while the address is not a host address of it.
BEHIND_LENGTH = {4: 29, 6: 125}
BEHIND_WIDEST = {4: 16, 6: 64}
# The fabric subnet (spine and ToRs): the highest free prefix of the private ranges, far from
# where clusters usually number their nodes and pools; IPv6 takes a /64 as links do.
FABRIC_RANGES: dict[int, tuple[IPNetwork, ...]] = {
    4: (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("172.16.0.0/12"),
        ipaddress.ip_network("192.168.0.0/16"),
    ),
    6: (ipaddress.ip_network("fd00::/8"),),
}
FABRIC_V6_LENGTH = 64
BIRD_PORT = 179  # the port the placed BIRD listens on (model.phases.fabric.BIRD_PORT)


@dataclass(frozen=True)
class Fabric:
    """What the converter adds: new subnets and routers (native form, in order) and notes."""

    subnets: dict[str, dict[str, str]]
    routers: dict[str, dict[str, Any]]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class _Claim:
    """One BGPPeer naming an address no node has."""

    peer: str
    loc: str
    address: IPAddress
    ports: list[int]  # the ports the nodes connect to
    as_number: int
    ibgp: bool  # some node peers with it over iBGP


@dataclass
class _Router:
    """A router to place: its AS, where, its addresses and the BGPPeers naming them.

    (Working state of one conversion, filled in step by step: its name, and behind the
    fabric the prefixes it sits in; addresses that cannot be placed are dropped.)"""

    as_number: int
    segment: str | None  # the node subnet it is on; None: behind the fabric
    addresses: dict[int, IPAddress]
    claims: list[_Claim]
    name: str = ""
    # Behind the fabric: per family the prefix around its address, and the subnet holding it.
    pieces: dict[int, IPNetwork] = field(default_factory=dict)
    subnet_of: dict[int, str] = field(default_factory=dict)

    @property
    def behind(self) -> list[str]:
        """Its behind-the-fabric subnets, IPv4's first (one when it is dual-stack)."""
        return list(dict.fromkeys(self.subnet_of[f] for f in sorted(self.subnet_of)))


def build_fabric(
    found: Resources,
    node_data: Mapping[str, Mapping[str, Any]],
    subnets: Mapping[str, Mapping[str, str]],
    bgp: Mapping[str, Any],
    origins: dict[str, str],
    problems: list[Problem],
) -> Fabric:
    """The routers (and their subnets) for the bundle's external peers; empty when there are
    none to place. `node_data`, `subnets` and `bgp` are the converted parts (`calico_nodes`,
    `calico_bgp`: nodes under their lab names); problems go to `problems`, and the locations of
    the new routers and subnets to `origins` (the BGPPeer that named each first)."""
    return _Placer(found, node_data, subnets, bgp, origins, problems).run()


class _Placer:
    def __init__(
        self,
        found: Resources,
        node_data: Mapping[str, Mapping[str, Any]],
        subnets: Mapping[str, Mapping[str, str]],
        bgp: Mapping[str, Any],
        origins: dict[str, str],
        problems: list[Problem],
    ) -> None:
        self.found = found
        self.subnets = subnets
        self.bgp = bgp
        self.origins = origins
        self.problems = problems
        self.notes: list[str] = []
        self.node_data = node_data
        self.cluster_as = int(bgp.get("asNumber", DEFAULT_CLUSTER_AS))
        self.node_ips = {
            ipaddress.ip_address(data[f"ipv{f}"])
            for data in node_data.values()
            for f in FAMILIES
            if f"ipv{f}" in data
        }
        self.segments: dict[str, dict[int, IPNetwork]] = {
            name: {f: net for f in FAMILIES if (net := _prefix(spec, f)) is not None}
            for name, spec in subnets.items()
        }
        self.pools = _pool_networks(found)
        self._taken_routers: set[str] = set()

    # -- the steps -----------------------------------------------------------------------------

    def run(self) -> Fabric:
        claims = self._claims()
        if not claims:
            return Fabric({}, {}, tuple(self.notes))
        routers = self._group(claims)
        new_subnets = self._behind_subnets([r for r in routers if r.segment is None])
        routers = [r for r in routers if r.addresses]
        if not routers:
            return Fabric({}, {}, tuple(self.notes))
        self._name(routers)
        tors = [r for r in routers if r.segment is not None]
        behind = [r for r in routers if r.segment is None]
        bare = [s for s in self.subnets if not any(r.segment == s for r in tors)]
        out: dict[str, dict[str, Any]] = {}
        spine = None
        if behind or len(routers) > 1 or bare:
            spine = self._free_name("spine")
        fabric_subnet = None
        if spine is not None and tors:
            fabric_subnet = self._fabric_subnet(new_subnets, tors, spine)
            if fabric_subnet is None:
                return Fabric({}, {}, tuple(self.notes))
        shared = self._shared_as(routers)
        for router in [*tors, *behind]:
            out[router.name] = self._router(router, spine, fabric_subnet, shared)
            self.notes.append(self._placed_note(router, spine))
        if spine is not None:
            spine_as = self._spine_as()
            joins = bare
            out[spine] = {
                "subnets": [
                    *([fabric_subnet] if fabric_subnet is not None else []),
                    *[s for r in behind for s in r.behind],
                    *joins,
                ],
                "bgp": {"asNumber": spine_as, "peers": [{"router": r.name} for r in routers]},
            }
            # (two behind routers may share a subnet: list it once)
            out[spine]["subnets"] = list(dict.fromkeys(out[spine]["subnets"]))
            self.notes.append(
                self._spine_note(spine, spine_as, fabric_subnet, new_subnets, routers, joins)
            )
        for as_number, members in shared.items():
            self.notes.append(
                f"placed routers {', '.join(r.name for r in members)} share AS {as_number}: "
                f"each accepts routes from {spine} whose AS path holds AS {as_number} once "
                "(BIRD allow local as 1), which BGP's AS-loop check would drop otherwise"
            )
        return Fabric(new_subnets, out, tuple(self.notes))

    def _claims(self) -> list[_Claim]:
        """Per BGPPeer and address no node has (outside special ranges and pools), the
        sessions the nodes have with it, as Calico's rules make them (`model.sessions`: a
        node-specific peering under a global one to the same address is dropped, as are
        peerings of another family or with a misfit `reachableBy`), checked for one AS per
        address."""
        candidates: dict[IPAddress, list[str]] = {}
        for name, (_loc, spec) in self.found.peers.items():
            address = self._candidate(spec)
            if address is not None:
                candidates.setdefault(address, []).append(name)
        sessions = self._external_sessions() if candidates else []
        if sessions is None:
            return []  # input the rules or the native model refuse, located, later
        by_address: dict[str, list[Session]] = {}
        for session in sessions:
            by_address.setdefault(session.peer_ip, []).append(session)
        claims: list[_Claim] = []
        for address, peers in candidates.items():
            mine = by_address.get(str(address), [])
            if not mine:
                self.notes.append(
                    f"BGPPeer{'s' if len(peers) > 1 else ''} {', '.join(peers)} ({address}): "
                    "no router placed, no node has a session with it"
                )
                continue
            claims += self._agreeing(address, peers, mine)
        return claims

    def _candidate(self, spec: BGPPeerSpec) -> IPAddress | None:
        """The address of a BGPPeer a router may stand at, else None."""
        if spec.peerIP is None or spec.peerSelector is not None or spec.asNumber is None:
            return None  # not an external peer, or one the rules report
        try:
            address, _port = parse_peer_ip(spec.peerIP)
        except ValueError:
            return None  # the rules report it
        if address in self.node_ips or special_kind(address) is not None:
            return None  # a node's, or planned-but-unreachable (phases/notes.py says why)
        if any(address in pool for pool in self.pools if pool.version == address.version):
            return None  # `rules`: a peer inside an IP pool is exit 2
        return address

    def _external_sessions(self) -> list[Session] | None:
        """Every node's sessions with peers that are not nodes (the mesh left out: it has
        none), or None where the input is one the later checks refuse."""
        try:
            spec = BgpSpec.model_validate({**self.bgp, "nodeToNodeMeshEnabled": False})
            nodes = [self._session_node(name, data, spec) for name, data in self.node_data.items()]
            planned = plan_sessions(nodes, spec)
        except (ValidationError, ValueError, TypeError):
            return None
        return [s for mine in planned.values() for s in mine if s.peer_node is None]

    @staticmethod
    def _session_node(name: str, data: Mapping[str, Any], spec: BgpSpec) -> SessionNode:
        ips = {f: ipaddress.ip_address(data[f"ipv{f}"]) for f in FAMILIES if f"ipv{f}" in data}
        return SessionNode(
            name=name,
            ipv4=ips.get(4),
            ipv6=ips.get(6),
            as_number=int(data.get("asNumber", spec.as_number)),
            cluster_id=data.get("routeReflectorClusterID"),
            labels=labels_as_text(data.get("labels") or {}),  # type: ignore[arg-type]
            listen_port=int(data.get("listenPort", spec.listen_port)),
        )

    def _agreeing(
        self, address: IPAddress, peers: list[str], sessions: list[Session]
    ) -> list[_Claim]:
        """The claims on `address`, one per BGPPeer whose sessions reach it; a BGPPeer giving
        it another AS than the first one (in bundle order) is a problem."""
        by_peer: dict[str, list[Session]] = {}
        for session in sessions:
            by_peer.setdefault(session.source, []).append(session)
        claims = []
        first: _Claim | None = None
        for name in peers:
            mine = by_peer.get(name)
            if not mine:
                continue  # dropped under another BGPPeer's peering (confd's rules)
            loc = self.found.peers[name][0]
            ports = sorted({s.peer_port for s in mine})
            claim = _Claim(name, loc, address, ports, mine[0].peer_as, any(s.same_as for s in mine))
            if first is None:
                first = claim
            elif claim.as_number != first.as_number:
                self.problems.append(
                    Problem(
                        f"{loc}.asNumber",
                        f"AS {claim.as_number} for peer {address}, which BGPPeer "
                        f"{first.peer} ({first.loc}) gives AS {first.as_number}: meshemu "
                        "places one BIRD router at an address no node has, and a router has "
                        "one AS",
                        f"give every BGPPeer with peerIP {address} the AS of the router there",
                    )
                )
                continue
            claims.append(claim)
        return claims

    def _group(self, claims: list[_Claim]) -> list[_Router]:
        """One router per (node subnet, AS), or per AS behind the fabric, each address of one
        family paired with one of the other in address order."""
        by_key: dict[tuple[str | None, int], dict[int, dict[IPAddress, list[_Claim]]]] = {}
        for claim in claims:
            segment = self._segment_of(claim)
            if segment == "":
                continue
            families = by_key.setdefault((segment, claim.as_number), {4: {}, 6: {}})
            families[claim.address.version].setdefault(claim.address, []).append(claim)
        routers = []
        for (segment, as_number), families in by_key.items():
            pairs = zip_longest(sorted(families[4]), sorted(families[6]))
            for pair in pairs:
                addresses = {a.version: a for a in pair if a is not None}
                mine = [c for a in addresses.values() for c in families[a.version][a]]
                routers.append(_Router(as_number, segment, addresses, mine))
        return routers

    def _segment_of(self, claim: _Claim) -> str | None:
        """The node subnet holding the address (None: behind the fabric; "": not placed)."""
        address = claim.address
        for name, prefixes in self.segments.items():
            net = prefixes.get(address.version)
            if net is None or address not in net:
                continue
            if address in _ends_of(net):
                self.notes.append(
                    f"BGPPeer {claim.peer} ({address}): no router placed, {address} is not a "
                    f"host address of node subnet {name} ({net}); its sessions stay down"
                )
                return ""
            return name
        return None

    def _behind_subnets(self, behind: list[_Router]) -> dict[str, dict[str, str]]:
        """Subnets for the routers behind the fabric: per address the smallest prefix around
        it the rules accept (nested ones merged), one dual-stack subnet where a router's v4 and
        v6 prefixes hold no other router's, else one per prefix."""
        pieces: dict[int, list[IPNetwork]] = {4: [], 6: []}
        for router in behind:
            for family, address in list(router.addresses.items()):
                piece = self._piece(router, address)
                if piece is None:
                    del router.addresses[family]
                else:
                    pieces[family].append(piece)
        merged = {f: _outermost(pieces[f]) for f in FAMILIES}
        for router in behind:
            for family, address in router.addresses.items():
                router.pieces[family] = next(p for p in merged[family] if address in p)
        users: dict[IPNetwork, set[int]] = {}
        for index, router in enumerate(behind):
            for piece in router.pieces.values():
                users.setdefault(piece, set()).add(index)
        out: dict[str, dict[str, str]] = {}
        for router in behind:
            if not router.addresses:
                continue
            v4, v6 = router.pieces.get(4), router.pieces.get(6)
            together = v4 is not None and v6 is not None and users[v4] == users[v6]
            parts = [(v4, v6)] if together or v4 is None or v6 is None else [(v4, None), (None, v6)]
            for a, b in parts:
                name = subnet_name(a, b)  # type: ignore[arg-type]
                out[name] = {f"ipv{p.version}": str(p) for p in (a, b) if p is not None}
                self.origins.setdefault(f"subnets.{name}", router.claims[0].loc)
                for piece in (a, b):
                    if piece is not None:
                        router.subnet_of[piece.version] = name
        return out

    def _piece(self, router: _Router, address: IPAddress) -> IPNetwork | None:
        """The smallest prefix of at least the rules' size holding `address` as a host."""
        claim = next(c for c in router.claims if c.address == address)
        length = BEHIND_LENGTH[address.version]
        while length >= BEHIND_WIDEST[address.version]:
            net = ipaddress.ip_network(f"{address}/{length}", strict=False)
            if address not in _ends_of(net):
                break
            length -= 1
        else:
            self.notes.append(
                f"BGPPeer {claim.peer} ({address}): no router placed, no subnet of at most "
                f"/{BEHIND_WIDEST[address.version]} holds it as a host address; its sessions "
                "stay down"
            )
            return None
        clash = next(
            (
                f"{what} {other}"
                for what, other in self._used()
                if other.version == net.version and other.overlaps(net)
            ),
            None,
        ) or (f"{special_range(net)}" if special_range(net) else None)
        if clash is not None:
            self.notes.append(
                f"BGPPeer {claim.peer} ({address}): no router placed, the subnet {net} it "
                f"would be on overlaps {clash}; its sessions stay down"
            )
            return None
        return net

    def _used(self) -> Iterable[tuple[str, IPNetwork]]:
        """Prefixes of the bundle a new subnet must not overlap."""
        for name, prefixes in self.segments.items():
            for net in prefixes.values():
                yield f"node subnet {name}", net
        for net in self.pools:
            yield "IP pool", net
        for text in self._service_cidrs():
            try:
                yield "service range", ipaddress.ip_network(text, strict=False)
            except ValueError:
                continue

    def _service_cidrs(self) -> list[str]:
        if self.found.bgp_default is None:
            return []
        spec = self.found.bgp_default[1]
        out = []
        for entries in (
            spec.serviceClusterIPs,
            spec.serviceExternalIPs,
            spec.serviceLoadBalancerIPs,
        ):
            out += [e.get("cidr", "") for e in entries or []]
        out += [a.cidr for a in spec.prefixAdvertisements or []]
        return out

    def _name(self, routers: list[_Router]) -> None:
        """`tor-<address>` on a node subnet, `ext-<address>` behind the fabric (the IPv4
        address when it has one), free of node and other router names."""
        for router in routers:
            address = router.addresses.get(4) or router.addresses[6]
            text = str(address).replace(".", "-").replace(":", "-").strip("-")
            kind = "tor" if router.segment is not None else "ext"
            router.name = self._free_name(f"{kind}-{text}"[:60].rstrip("-"))
            self.origins[f"routers.{router.name}"] = router.claims[0].loc

    def _free_name(self, base: str) -> str:
        taken = set(self.node_data) | self._taken_routers
        name, index = base, 1
        while name in taken:
            index += 1
            name = f"{base}-{index}"
        self._taken_routers.add(name)
        return name

    def _fabric_subnet(
        self, new_subnets: dict[str, dict[str, str]], tors: list[_Router], spine: str
    ) -> str | None:
        """A new subnet for the spine and the ToRs: in each family of the node subnets, the
        highest prefix of the private ranges that overlaps no subnet, pool or address of the
        bundle, large enough for them."""
        families = sorted({f for prefixes in self.segments.values() for f in prefixes})
        taken: list[IPNetwork] = [net for _what, net in self._used()]
        taken += [parse_network(p) for s in new_subnets.values() for p in s.values()]
        taken += [ipaddress.ip_network(a) for a in self._bundle_addresses()]
        spec: dict[str, str] = {}
        for family in families:
            if family == 4:
                hosts = len(tors) + 1
                length = min(29, 32 - (hosts + 1).bit_length())
            else:
                length = FABRIC_V6_LENGTH
            net = next(
                (
                    found
                    for within in FABRIC_RANGES[family]
                    if (found := _free_prefix(within, length, taken)) is not None
                ),
                None,
            )
            if net is None:
                self.problems.append(
                    Problem(
                        "bundle",
                        f"meshemu found no free IPv{family} prefix in "
                        f"{', '.join(map(str, FABRIC_RANGES[family]))} for the subnet joining "
                        f"its placed routers to {spine}",
                        "the bundle's subnets and pools take all of those ranges",
                    )
                )
                return None
            spec[f"ipv{family}"] = str(net)
        name = "fabric"
        index = 1
        while name in self.subnets or name in new_subnets:
            index += 1
            name = f"fabric-{index}"
        new_subnets[name] = spec
        return name

    def _bundle_addresses(self) -> set[IPAddress]:
        """Every address the bundle names: nodes', peers' (any peer) and reachableBy gateways."""
        out = set(self.node_ips)
        for _loc, spec in self.found.peers.values():
            for text in (spec.peerIP, spec.reachableBy):
                if text is None:
                    continue
                try:
                    out.add(parse_peer_ip(text)[0])
                except ValueError:
                    continue
        return out

    def _shared_as(self, routers: list[_Router]) -> dict[int, list[_Router]]:
        by_as: dict[int, list[_Router]] = {}
        for router in routers:
            by_as.setdefault(router.as_number, []).append(router)
        return {a: rs for a, rs in by_as.items() if len(rs) > 1}

    def _spine_as(self) -> int:
        used = _as_numbers(self.bgp, self.cluster_as, self.node_data)
        free: int = next(a for a in chain(SPINE_AS_16, SPINE_AS_32) if a not in used)
        return free

    def _router(
        self,
        router: _Router,
        spine: str | None,
        fabric_subnet: str | None,
        shared: Mapping[int, list[_Router]],
    ) -> dict[str, Any]:
        bgp: dict[str, Any] = {"asNumber": router.as_number}
        if any(c.ibgp for c in router.claims):
            bgp["routeReflector"] = True
        if spine is not None and router.as_number in shared:
            bgp["peers"] = [{"router": spine, "allowLocalAs": 1}]
        addresses = {f"ipv{f}": str(a) for f, a in router.addresses.items()}
        if router.segment is not None:
            subnets = [router.segment]
            if fabric_subnet is not None:
                subnets.append(fabric_subnet)
            return {"subnets": subnets, "addresses": {router.segment: addresses}, "bgp": bgp}
        by_subnet: dict[str, dict[str, str]] = {}
        for family, address in sorted(router.addresses.items()):
            by_subnet.setdefault(router.subnet_of[family], {})[f"ipv{family}"] = str(address)
        return {"subnets": router.behind, "addresses": by_subnet, "bgp": bgp}

    # -- notes ---------------------------------------------------------------------------------

    def _placed_note(self, router: _Router, spine: str | None) -> str:
        at = ", ".join(str(a) for _f, a in sorted(router.addresses.items()))
        peers = list(dict.fromkeys(c.peer for c in router.claims))
        who = (
            f"BGPPeer {peers[0]} names it"
            if len(peers) == 1
            else f"BGPPeers {', '.join(peers)} name it"
        )
        if router.segment is not None:
            where = f"on subnet {router.segment}"
            why = f"{who} and no node has that address"
        else:
            prefixes = ", ".join(str(p) for _f, p in sorted(router.pieces.items()))
            where = (
                f"behind the fabric on new subnet {' and '.join(router.behind)} "
                f"({prefixes}), reached through {spine}"
            )
            why = f"{who}, outside every node subnet; its sessions with the nodes are multihop"
        text = f"placed BIRD router {router.name} at {at} (AS {router.as_number}) {where}: {why}"
        if any(c.ibgp for c in router.claims):
            text += "; a route reflector for the nodes that peer with it over iBGP"
        for claim in router.claims:
            for port in claim.ports:
                if port != BIRD_PORT:
                    text += (
                        f"; BGPPeer {claim.peer} names port {port} but BIRD listens on "
                        f"{BIRD_PORT}, so only the router's connections to the nodes' BGP "
                        "port open those sessions"
                    )
        return text

    def _spine_note(
        self,
        spine: str,
        spine_as: int,
        fabric_subnet: str | None,
        new_subnets: Mapping[str, Mapping[str, str]],
        routers: list[_Router],
        joins: list[str],
    ) -> str:
        text = f"added BIRD router {spine} (AS {spine_as}, an AS no resource uses)"
        if fabric_subnet is not None:
            prefixes = new_subnets[fabric_subnet].values()
            ranges = [
                str(next(r for r in FABRIC_RANGES[net.version] if net.subnet_of(r)))  # type: ignore[arg-type]
                for net in map(ipaddress.ip_network, prefixes)
            ]
            text += (
                f" on new subnet {fabric_subnet} ({', '.join(prefixes)}: the highest prefixes "
                f"of {' and '.join(ranges)} that hold no subnet, pool or address of the bundle)"
            )
        text += (
            f", peering over eBGP with {', '.join(r.name for r in routers)} so that the "
            "placed routers exchange what they learn"
        )
        if joins:
            text += f"; it joins node subnet{'s' if len(joins) > 1 else ''} "
            text += f"{', '.join(joins)} (their default router)"
        return text


def _prefix(spec: Mapping[str, str], family: int) -> IPNetwork | None:
    text = spec.get(f"ipv{family}")
    return ipaddress.ip_network(text) if text is not None else None


def _pool_networks(found: Resources) -> list[IPNetwork]:
    out = []
    for _loc, data in found.pools.values():
        try:
            out.append(ipaddress.ip_network(str(data.get("cidr")), strict=False))
        except ValueError:
            continue  # reported where the pool is read
    return out


def _ends_of(net: IPNetwork) -> tuple[IPAddress, ...]:
    """Addresses of a prefix no host may take (as `rules` refuses them for a router)."""
    if net.version == 4:
        return (net.network_address, net.broadcast_address)
    return (net.network_address,)


def _outermost(pieces: list[IPNetwork]) -> list[IPNetwork]:
    """The pieces without those inside another (CIDR prefixes nest or are disjoint)."""
    out: list[IPNetwork] = []
    for piece in sorted(set(pieces), key=lambda p: (p.prefixlen, int(p.network_address))):
        if not any(piece.subnet_of(o) for o in out):  # type: ignore[arg-type]
            out.append(piece)
    return out


def _free_prefix(within: IPNetwork, length: int, taken: list[IPNetwork]) -> IPNetwork | None:
    """The highest prefix of `length` inside `within` that overlaps nothing in `taken`."""
    relevant = [t for t in taken if t.version == within.version and t.overlaps(within)]
    if not relevant:
        last = int(within.broadcast_address) - (1 << (within.max_prefixlen - length)) + 1
        return ipaddress.ip_network(f"{ipaddress.ip_address(last)}/{length}")
    if within.prefixlen >= length or any(within.subnet_of(t) for t in relevant):  # type: ignore[arg-type]
        return None
    low, high = within.subnets(prefixlen_diff=1)
    return _free_prefix(high, length, relevant) or _free_prefix(low, length, relevant)


def _as_numbers(
    bgp: Mapping[str, Any], cluster_as: int, nodes: Mapping[str, Mapping[str, Any]]
) -> set[int]:
    """Every AS number the bundle's resources use (nodes, BGPPeers, BGPFilters)."""
    used = {cluster_as, *(int(n.get("asNumber", cluster_as)) for n in nodes.values())}
    for peer in (bgp.get("peers") or {}).values():
        for key in ("asNumber", "localASNumber"):
            if isinstance(peer.get(key), int):
                used.add(peer[key])

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("asPathPrefix", "prefix") and isinstance(item, list):
                    used.update(v for v in item if isinstance(v, int))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(bgp.get("filters") or {})
    return used
