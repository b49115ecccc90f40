"""Pass 5b: the routers' BGP speakers (BIRD 2): their sessions, links, and installed routes.

Owns what a router that speaks BGP is configured with and what it should install:
- `session_routers`: each BGP router as the node session rules see it (its AS, addresses, and
  its address on each node's subnet, which a `peerRouter` BGPPeer peers with);
- `plan_router_sessions`: the router's side of every node session towards it (the router
  answers each node that peers with it, as a top-of-rack router configured for its rack does),
  and the router-to-router sessions of `routers.<r>.bgp.peers` (named on either side);
- `router_links`: which of those sessions come up (AS numbers and passwords agree on both
  ends, the active side connects to a port the other listens on), as `model.bgp.Link`s with
  BIRD's next-hop rules (eBGP next hop self from the session's own address; kept between
  directly connected peers on one subnet; `next hop self ebgp` towards iBGP clients);
- `router_routes`: the kernel routes BIRD installs for its best paths (`protocol kernel`
  exporting BGP routes: the next hop on a connected subnet, or resolved through the router's
  static routes for a multihop peer's next hop), with `merge paths on`: one ECMP route over
  every path as good as the best (several nodes advertising one Service prefix).
Pure: it decides; `controlplane` and `lab` run BIRD with `model.bird_router`'s configuration.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from meshemu.model.bgp import Link, Path, Speaker, router_id_for, session_link
from meshemu.model.labplan import (
    RouterBgp,
    RouterHop,
    RouterInterface,
    RouterPlan,
    RouterRoute,
    RouterSession,
)
from meshemu.model.phases.addresses import FAMILIES, NodeAddresses
from meshemu.model.sessions import DEFAULT_BGP_PORT, Session, SessionNode, SessionRouter
from meshemu.model.topology import Topology

BIRD_PORT = DEFAULT_BGP_PORT  # the rendered BIRD listens and connects on 179


def session_routers(
    topo: Topology, routers: Sequence[RouterPlan], addresses: NodeAddresses
) -> dict[str, SessionRouter]:
    """The routers that speak BGP, with their address on each node's subnet."""
    out = {}
    for router in routers:
        spec = topo.routers[router.name].bgp
        if spec is None:
            continue
        on_subnet_of = {}
        for node, node_spec in topo.nodes.items():
            interface = router.interface_on(node_spec.subnet)
            if interface is None:
                continue
            on_subnet_of[node] = {
                f: a
                for f in FAMILIES
                if (a := interface.address(f)) is not None and addresses.of(node, f) is not None
            }
        out[router.name] = SessionRouter(
            name=router.name,
            as_number=spec.as_number,
            addresses=frozenset(
                a for i in router.interfaces for f in FAMILIES if (a := i.address(f)) is not None
            ),
            on_subnet_of=on_subnet_of,
        )
    return out


def router_id(topo: Topology, router: RouterPlan) -> str:
    """The configured router ID, else its first IPv4 address (as Calico does for a node),
    else a stable one made from its name."""
    spec = topo.routers[router.name].bgp
    if spec is not None and spec.router_id is not None:
        return str(spec.router_id)
    first4 = next((i.ipv4 for i in router.interfaces if i.ipv4 is not None), None)
    return router_id_for(first4, router.name)


def subnet_prefixes(topo: Topology) -> dict[tuple[str, int], str]:
    """(subnet, family) -> the subnet's prefix."""
    out = {}
    for name, spec in topo.subnets.items():
        for family, prefix in ((4, spec.ipv4), (6, spec.ipv6)):
            if prefix is not None:
                out[(name, family)] = str(prefix)
    return out


@dataclass(frozen=True)
class _Attachment:
    """Where a router meets an address: its interface and that subnet's prefix."""

    ifname: str
    prefix: str


def _attachment(
    router: RouterPlan, address: str, prefixes: Mapping[tuple[str, int], str]
) -> _Attachment | None:
    """The router's interface on a subnet holding `address` (None: not directly connected)."""
    ip = ipaddress.ip_address(address)
    for interface in router.interfaces:
        mine = interface.address(ip.version)
        prefix = prefixes.get((interface.subnet, ip.version))
        if mine is not None and prefix is not None and ip in ipaddress.ip_network(prefix):
            return _Attachment(interface.ifname, prefix)
    return None


def _shared_interfaces(
    topo: Topology, mine: RouterPlan, theirs: RouterPlan, family: int
) -> tuple[RouterInterface, RouterInterface] | None:
    """Both routers' interfaces on the first subnet (topology order) where both have an
    address of `family`; None when there is none."""
    for subnet in topo.subnets:
        a, b = mine.interface_on(subnet), theirs.interface_on(subnet)
        if a is not None and b is not None and a.address(family) and b.address(family):
            return a, b
    return None


def plan_router_sessions(
    topo: Topology,
    routers: Sequence[RouterPlan],
    node_sessions: Mapping[str, tuple[Session, ...]],
) -> dict[str, tuple[RouterSession, ...]]:
    """Each BGP router's sessions: one answering every node session towards one of its
    addresses (first per node and address), then those with other routers."""
    prefixes = subnet_prefixes(topo)
    by_name = {r.name: r for r in routers}
    out: dict[str, list[RouterSession]] = {
        r.name: [] for r in routers if topo.routers[r.name].bgp is not None
    }
    for node, sessions in node_sessions.items():
        seen: set[tuple[str, str]] = set()
        for session in sessions:
            # One session per node and family on a router (BIRD has one protocol per
            # neighbor address): a second BGPPeer of the node to another address of the same
            # router gets no answer, and the plan says that session cannot come up.
            name = session.peer_router
            if name is None or name not in out or (name, session.local_ip) in seen:
                continue
            seen.add((name, session.local_ip))
            out[name].append(_answer(topo, by_name[name], node, session, prefixes))
    for left, right, password in _router_pairs(topo):
        for mine, theirs in ((left, right), (right, left)):
            out[mine] += _router_session(topo, by_name[mine], by_name[theirs], password)
    return {name: tuple(sessions) for name, sessions in out.items()}


def _answer(
    topo: Topology,
    router: RouterPlan,
    node: str,
    session: Session,
    prefixes: Mapping[tuple[str, int], str],
) -> RouterSession:
    """The router's side of a node's session towards it."""
    spec = topo.routers[router.name].bgp
    assert spec is not None
    at = _attachment(router, session.local_ip, prefixes)
    ibgp = session.local_as == spec.as_number
    reflects = spec.route_reflector and ibgp
    how = "directly connected" if at is not None else "multihop (not on a subnet of this router)"
    return RouterSession(
        family=session.family,
        local_ip=session.peer_ip,
        local_as=spec.as_number,
        peer_ip=session.local_ip,
        peer_as=session.local_as,
        peer_kind="node",
        peer_name=node,
        interface=at.ifname if at is not None else None,
        rr_client=reflects,
        next_hop_self_ebgp=ibgp,
        password=spec.node_password if spec.node_password is not None else session.password,
        ttl_security=session.ttl_security,
        graceful_restart_time=session.graceful_restart_time,
        # (BIRD refuses a keepalive time above its hold time: then BIRD's own, hold / 3.)
        keepalive_time=session.keepalive_time
        if session.keepalive_time is not None and session.keepalive_time <= topo.bgp.hold_time
        else None,
        allow_local_as=0,
        reason=(
            f"node {node} peers with this router ({session.source}); "
            f"{'iBGP' if ibgp else 'eBGP'}, {how}"
            + ("; a route-reflector client" if reflects else "")
        ),
    )


def _router_pairs(topo: Topology) -> list[tuple[str, str, str | None]]:
    """Each pair of routers with a session (named on either side, once), with the password
    of the side that names it first in input order."""
    pairs: dict[frozenset[str], tuple[str, str, str | None]] = {}
    for name, spec in topo.routers.items():
        if spec.bgp is None:
            continue
        for peer in spec.bgp.peers:
            pairs.setdefault(frozenset((name, peer.router)), (name, peer.router, peer.password))
    return list(pairs.values())


def _router_session(
    topo: Topology,
    mine: RouterPlan,
    theirs: RouterPlan,
    password: str | None,
) -> list[RouterSession]:
    """`mine`'s sessions with `theirs`: per family, on the first subnet (in the topology's
    order, so both sides pick the same one) on which both have an address of that family.

    A password named on both sides is each side's own: when they differ, the session stays
    down, as between two real routers."""
    my_spec, their_spec = topo.routers[mine.name].bgp, topo.routers[theirs.name].bgp
    assert my_spec is not None and their_spec is not None
    own = next((p.password for p in my_spec.peers if p.router == theirs.name), password)
    # (`allowLocalAs` is the naming side's own: BIRD's `allow local as` acts on import.)
    allow = next((p.allow_local_as or 0 for p in my_spec.peers if p.router == theirs.name), 0)
    ebgp = my_spec.as_number != their_spec.as_number
    out = []
    for family in FAMILIES:
        pair = _shared_interfaces(topo, mine, theirs, family)
        if pair is None:
            continue  # (`rules` reports routers that share no subnet)
        shared, other = pair
        local, peer = shared.address(family), other.address(family)
        assert local is not None and peer is not None
        out.append(
            RouterSession(
                family=family,
                local_ip=local,
                local_as=my_spec.as_number,
                peer_ip=peer,
                peer_as=their_spec.as_number,
                peer_kind="router",
                peer_name=theirs.name,
                interface=shared.ifname,
                rr_client=False,
                next_hop_self_ebgp=not ebgp,
                password=own,
                ttl_security=None,
                graceful_restart_time=None,
                keepalive_time=None,
                allow_local_as=allow,
                reason=(
                    f"{'eBGP' if ebgp else 'iBGP'} with router {theirs.name} on subnet "
                    f"{shared.subnet} (a peer in routers.<name>.bgp.peers of either router)"
                ),
            )
        )
    return out


@dataclass(frozen=True)
class RouterLinks:
    """Which router sessions come up, as BGP links: (family, speaker, peer name) -> link."""

    links: Mapping[tuple[int, str, str], Link]
    up: Mapping[str, tuple[str, ...]]  # router -> peer addresses of its sessions that come up
    node_up: Mapping[str, tuple[str, ...]]  # node -> router addresses of its sessions up


def router_links(
    topo: Topology,
    routers: Sequence[RouterPlan],
    sessions: Mapping[str, tuple[RouterSession, ...]],
    node_sessions: Mapping[str, tuple[Session, ...]],
    nodes: Mapping[str, SessionNode],
) -> RouterLinks:
    """The router sessions that come up, both directions as links."""
    prefixes = subnet_prefixes(topo)
    by_name = {r.name: r for r in routers}
    node_side = {
        (node, s.peer_ip, s.local_ip): s
        for node, mine in node_sessions.items()
        for s in mine
        if s.peer_router is not None
    }
    router_side = {
        (router, s.local_ip, s.peer_ip): s for router, mine in sessions.items() for s in mine
    }
    links: dict[tuple[int, str, str], Link] = {}
    up: dict[str, list[str]] = {name: [] for name in sessions}
    node_up: dict[str, list[str]] = {}
    for router, mine in sessions.items():
        for s in mine:
            if s.peer_kind == "node":
                theirs_node = node_side.get((s.peer_name, s.local_ip, s.peer_ip))
                if theirs_node is None or not _node_meets(s, theirs_node, nodes[s.peer_name]):
                    continue
                links[(s.family, s.peer_name, router)] = session_link(theirs_node)
                node_up.setdefault(s.peer_name, []).append(s.local_ip)
            else:
                theirs = router_side.get((s.peer_name, s.peer_ip, s.local_ip))
                if theirs is None or not _routers_meet(s, theirs):
                    continue
            links[(s.family, router, s.peer_name)] = _router_link(by_name[router], s, prefixes)
            up[router].append(s.peer_ip)
    return RouterLinks(
        links,
        {name: tuple(sorted(ips, key=_address_key)) for name, ips in up.items()},
        {name: tuple(ips) for name, ips in node_up.items()},
    )


def _address_key(text: str) -> tuple[int, int]:
    address = ipaddress.ip_address(text)
    return (address.version, int(address))


def _node_meets(mine: RouterSession, theirs: Session, node: SessionNode) -> bool:
    """AS numbers and password agree, and one side connects where the other listens (BIRD
    connects to port 179 and listens there)."""
    if theirs.peer_as != mine.local_as or theirs.local_as != mine.peer_as:
        return False
    if (theirs.password or None) != (mine.password or None):
        return False
    node_connects = not theirs.passive and theirs.peer_port == BIRD_PORT
    router_connects = node.listen_port == BIRD_PORT
    return node_connects or router_connects


def _routers_meet(mine: RouterSession, theirs: RouterSession) -> bool:
    return (
        mine.peer_as == theirs.local_as
        and theirs.peer_as == mine.local_as
        and (mine.password or None) == (theirs.password or None)
    )


def _router_link(
    router: RouterPlan, session: RouterSession, prefixes: Mapping[tuple[str, int], str]
) -> Link:
    at = _attachment(router, session.peer_ip, prefixes)
    return Link(
        peer_ip=session.peer_ip,
        peer_as=session.peer_as,
        local_as=session.local_as,
        rr_client=session.rr_client,
        allow_local_as=session.allow_local_as,
        local_ip=session.local_ip,
        keep_on=at.prefix if at is not None else None,
        self_for_ebgp=session.next_hop_self_ebgp,
    )


def router_speakers(topo: Topology, routers: Sequence[RouterPlan]) -> dict[str, Speaker]:
    """The BGP routers as speakers of the propagation (a reflector's cluster ID is its
    router ID: BIRD's `rr cluster id` default)."""
    out = {}
    for router in routers:
        spec = topo.routers[router.name].bgp
        if spec is None:
            continue
        rid = router_id(topo, router)
        first = {f: a for i in reversed(router.interfaces) for f in FAMILIES if (a := i.address(f))}
        out[router.name] = Speaker(
            name=router.name,
            router_id=rid,
            as_number=spec.as_number,
            cluster_id=rid if spec.route_reflector else None,
            addresses=first,
        )
    return out


def router_routes(
    topo: Topology,
    router: RouterPlan,
    candidates: Mapping[str, tuple[Path, ...]],
) -> tuple[RouterRoute, ...]:
    """The kernel routes BIRD installs: each learned best path whose next hop is on a
    connected subnet or resolves through a static route (else BIRD holds it unreachable and
    installs nothing), with the next hops of the paths `merge paths` merges into it (ECMP,
    `_merged`). `candidates`: prefix -> the router's paths, best first. Sorted by prefix."""
    prefixes = subnet_prefixes(topo)
    out = []
    for prefix in sorted(candidates, key=_prefix_key):
        paths = candidates[prefix]
        path, count = paths[0], len(paths)
        if path.learned_from is None:
            continue
        resolved = _resolve(router, path.next_hop, prefixes)
        if resolved is None:
            continue
        via, dev, how = resolved
        hops = _merged(router, paths, prefixes)
        reason = (
            f"best of {count} path{'s' if count != 1 else ''}, learned from "
            f"{path.learned_from}; next hop {path.next_hop} {how}"
        )
        if len(hops) > 1:
            reason += (
                f"; ECMP over {len(hops)} next hops ({', '.join(h.via for h in hops)}): BIRD's "
                "`merge paths` adds every path as good as the best (same local preference, AS "
                "path length, eBGP or iBGP, IGP metric)"
            )
        out.append(
            RouterRoute(
                prefix=prefix,
                next_hop=path.next_hop,
                via=via,
                dev=dev,
                learned_from=path.learned_from,
                as_path=path.as_path,
                paths=count,
                reason=reason,
                multipath=hops if len(hops) > 1 else (),
            )
        )
    return tuple(out)


# BIRD's `merge paths on` without `limit` (sysdep/unix/krt.Y kern_mp_limit, krt.h
# KRT_DEFAULT_ECMP_LIMIT).
MERGE_LIMIT = 16
# The IGP metric of a next hop resolved through a static route: static routes carry none
# (nest/rt-table.c rt_get_igp_metric, nest/route.h IGP_METRIC_UNKNOWN); a direct session's is
# its channel's `cost` (0, proto/bgp/packets.c bgp_apply_next_hop) and a connected route's 0.
_IGP_UNKNOWN = 0x80000000


def _merged(
    router: RouterPlan, paths: Sequence[Path], prefixes: Mapping[tuple[str, int], str]
) -> tuple[RouterHop, ...]:
    """The next hops of the kernel route BIRD 2.0.12 exports with `merge paths on`, sorted as
    BIRD sorts them: the best path's and those of every other reachable path `rte_mergable`
    with it (nest/rt-table.c rt_export_merged; proto/bgp/attrs.c bgp_rte_mergable: the same
    local preference, AS path length, origin, MED from one neighbour AS, eBGP or iBGP alike,
    and IGP metric; BGP has one preference, 100, for every session). Every origin in a lab is
    IGP (BIRD's for a route it did not learn over BGP, attrs.c bgp_update_attrs; ExaBGP's
    default) and no one sets a MED, so those two never differ. Next hops are merged by gateway
    (rt-attr.c nexthop_merge: equal ones once, in address order, at most `MERGE_LIMIT`)."""
    best = paths[0]
    hops: dict[tuple[int, int, str], RouterHop] = {}
    best_metric = None
    for path in paths:
        resolved = _resolve(router, path.next_hop, prefixes)
        if resolved is None or path.learned_from is None:
            continue  # unreachable: BIRD merges no next hop of it (rte_is_reachable)
        via, dev, _how = resolved
        metric = 0 if _attachment(router, path.next_hop, prefixes) is not None else _IGP_UNKNOWN
        if path is best:
            best_metric = metric
        elif not _mergable(best, path) or metric != best_metric:
            continue
        hop = RouterHop(next_hop=path.next_hop, via=via, dev=dev, learned_from=path.learned_from)
        hops.setdefault((*_address_key(via), dev), hop)
    return tuple(hops[k] for k in sorted(hops))[:MERGE_LIMIT]


def _mergable(best: Path, other: Path) -> bool:
    """bgp_rte_mergable's attributes that the lab's paths carry (the IGP metric aside)."""
    return (
        other.local_pref == best.local_pref
        and len(other.as_path) == len(best.as_path)
        and other.ebgp == best.ebgp
    )


def _prefix_key(prefix: str) -> tuple[int, int, int]:
    network = ipaddress.ip_network(prefix)
    return (network.version, int(network.network_address), network.prefixlen)


def _resolve(
    router: RouterPlan, next_hop: str, prefixes: Mapping[tuple[str, int], str]
) -> tuple[str, str, str] | None:
    """(gateway, interface, how) for a BGP next hop, as BIRD resolves it."""
    at = _attachment(router, next_hop, prefixes)
    if at is not None:
        return next_hop, at.ifname, f"is on {at.ifname}'s subnet {at.prefix}"
    ip = ipaddress.ip_address(next_hop)
    for route in router.routes:
        network = ipaddress.ip_network(route.prefix)
        if network.version == ip.version and ip in network:
            gateway = _attachment(router, route.via, prefixes)
            if gateway is not None:
                return (
                    route.via,
                    gateway.ifname,
                    f"resolves through the static route {route.prefix} via {route.via}",
                )
    return None


def with_router_bgp(
    topo: Topology,
    routers: Sequence[RouterPlan],
    sessions: Mapping[str, tuple[RouterSession, ...]],
    up: Mapping[str, tuple[str, ...]],
    best: Mapping[str, Mapping[str, tuple[Path, ...]]],
) -> tuple[RouterPlan, ...]:
    """The routers, each BGP router with its speaker's plan: its sessions and those that come
    up (pass 5), and the kernel routes of its best paths (pass 6)."""
    out = []
    for router in routers:
        spec = topo.routers[router.name].bgp
        if spec is None:
            out.append(router)
            continue
        rid = router_id(topo, router)
        bgp = RouterBgp(
            as_number=spec.as_number,
            router_id=rid,
            cluster_id=rid if spec.route_reflector else None,
            sessions=sessions.get(router.name, ()),
            expected_up=up.get(router.name, ()),
            routes=router_routes(topo, router, best.get(router.name, {})),
            config_file=spec.config,
        )
        out.append(replace(router, bgp=bgp))
    return tuple(out)


def installed_routes(routers: Sequence[RouterPlan]) -> dict[str, frozenset[str]]:
    """Router address -> the prefixes its BIRD installs from BGP (every address of a router:
    it forwards whatever arrives on any of its interfaces)."""
    out = {}
    for router in routers:
        if router.bgp is None:
            continue
        prefixes = frozenset(r.prefix for r in router.bgp.routes)
        for interface in router.interfaces:
            for family in FAMILIES:
                address = interface.address(family)
                if address is not None:
                    out[address] = prefixes
    return out
