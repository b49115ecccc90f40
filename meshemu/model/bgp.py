"""BGP path attributes, best-path selection, route reflection and propagation, without I/O.

Owns the decision rules both sides of meshemu need: the planner runs `propagate` to compute
every node's expected RIB, and each node's agent uses the same `accept`, `best_path` and
`export` on live updates, so the oracle and the running lab cannot disagree on the rules.
Reflection follows RFC 4456: a reflector sends routes from clients to everyone and routes from
non-clients to clients only, sets ORIGINATOR_ID once, prepends its CLUSTER_ID to CLUSTER_LIST,
and a speaker drops a route carrying its own router ID as originator or its cluster ID in the list.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

DEFAULT_LOCAL_PREF = 100


@dataclass(frozen=True)
class Path:
    """One path to a prefix as a speaker holds it (own or learned)."""

    prefix: str
    next_hop: str
    as_path: tuple[int, ...] = ()
    local_pref: int = DEFAULT_LOCAL_PREF
    originator_id: str | None = None
    cluster_list: tuple[str, ...] = ()
    learned_from: str | None = None  # peer address; None for the speaker's own route
    learned_router_id: str = ""  # router ID of the peer it came from
    ebgp: bool = False
    from_rr_client: bool = False


@dataclass(frozen=True)
class Speaker:
    """What the rules need to know about the speaker holding and exporting paths."""

    name: str
    router_id: str
    as_number: int
    cluster_id: str | None
    addresses: Mapping[int, str]  # family -> own address


@dataclass(frozen=True)
class Link:
    """One session as seen from the speaker: towards `peer_ip`."""

    peer_ip: str
    peer_as: int
    local_as: int
    rr_client: bool
    keep_next_hop: bool = False
    allow_local_as: int = 0

    @property
    def ebgp(self) -> bool:
        return self.peer_as != self.local_as


def router_id_for(ipv4: str | None, name: str) -> str:
    """Calico uses the node's IPv4 address; an IPv6-only node gets a stable hashed ID."""
    if ipv4 is not None:
        return ipv4
    digest = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    return str(ipaddress.IPv4Address(digest | 0x01000000))


def accept(path: Path, me: Speaker, link: Link) -> bool:
    """Loop checks a receiver applies to an update before it enters the Adj-RIB-In."""
    if path.originator_id is not None and path.originator_id == me.router_id:
        return False
    if me.cluster_id is not None and me.cluster_id in path.cluster_list:
        return False
    return not (link.ebgp and path.as_path.count(link.local_as) > link.allow_local_as)


def _sort_key(path: Path) -> tuple[object, ...]:
    originator = path.originator_id or path.learned_router_id
    return (
        -path.local_pref,
        len(path.as_path),
        path.learned_from is not None,  # own route first
        not path.ebgp,  # eBGP over iBGP
        len(path.cluster_list),
        int(ipaddress.IPv4Address(originator)) if originator else 0,
        _address_key(path.learned_from),
    )


def _address_key(text: str | None) -> tuple[int, int]:
    if text is None:
        return (0, 0)
    address = ipaddress.ip_address(text)
    return (address.version, int(address))


def best_path(paths: Iterable[Path]) -> Path | None:
    """RFC 4271 decision process, reduced to the attributes a Calico mesh carries."""
    candidates = sorted(paths, key=_sort_key)
    return candidates[0] if candidates else None


def export(path: Path, me: Speaker, link: Link) -> Path | None:
    """The path `me` sends over `link`, or None when the rules forbid it."""
    if path.learned_from == link.peer_ip:
        return None  # never back to the sender
    family = ipaddress.ip_network(path.prefix).version
    if ipaddress.ip_address(link.peer_ip).version != family:
        return None  # like Calico's bird/bird6 split, a session carries its own family only
    own = path.learned_from is None
    if not own and not path.ebgp and not link.ebgp:
        # iBGP-learned towards an iBGP peer: only a reflector may, per RFC 4456.
        if me.cluster_id is None:
            return None
        if not path.from_rr_client and not link.rr_client:
            return None
    if link.ebgp:
        next_hop = path.next_hop if link.keep_next_hop else me.addresses.get(family, path.next_hop)
        return Path(
            prefix=path.prefix,
            next_hop=next_hop,
            as_path=(link.local_as, *path.as_path),
            local_pref=DEFAULT_LOCAL_PREF,
        )
    if own or path.ebgp:
        return Path(
            prefix=path.prefix,
            next_hop=path.next_hop,
            as_path=path.as_path,
            local_pref=path.local_pref,
        )
    # Reflected: keep the next hop, set the originator once, prepend our cluster ID.
    assert me.cluster_id is not None
    return Path(
        prefix=path.prefix,
        next_hop=path.next_hop,
        as_path=path.as_path,
        local_pref=path.local_pref,
        originator_id=path.originator_id or path.learned_router_id,
        cluster_list=(me.cluster_id, *path.cluster_list),
    )


def received(path: Path, link: Link, peer_router_id: str) -> Path:
    """The path as the receiver stores it: stamped with where it came from."""
    return replace(
        path,
        learned_from=link.peer_ip,
        learned_router_id=peer_router_id,
        ebgp=link.ebgp,
        from_rr_client=link.rr_client,
        local_pref=path.local_pref if not link.ebgp else DEFAULT_LOCAL_PREF,
    )


@dataclass(frozen=True)
class Adjacency:
    """An established session between two speakers, seen from `speaker` towards `peer`."""

    speaker: str
    peer: str
    link: Link


def propagate(
    speakers: Mapping[str, Speaker],
    adjacencies: Sequence[Adjacency],
    originated: Mapping[str, Sequence[Path]],
    max_rounds: int = 64,
) -> dict[str, dict[str, tuple[Path, list[Path]]]]:
    """Run BGP to a fixpoint; per speaker, per prefix: (best path, all candidate paths)."""
    out_links: dict[str, list[Adjacency]] = {}
    for adj in adjacencies:
        out_links.setdefault(adj.speaker, []).append(adj)
    # Two speakers may share a session per family (IPv4 and IPv6 transport).
    back: dict[tuple[str, str, int], Link] = {
        (a.speaker, a.peer, ipaddress.ip_address(a.link.peer_ip).version): a.link
        for a in adjacencies
    }
    # adj_in[speaker][(peer_ip, prefix)] = path
    adj_in: dict[str, dict[tuple[str, str], Path]] = {name: {} for name in speakers}
    best: dict[str, dict[str, Path]] = {}

    def compute_best(name: str) -> dict[str, Path]:
        table: dict[str, list[Path]] = {}
        for path in originated.get(name, ()):
            table.setdefault(path.prefix, []).append(path)
        for path in adj_in[name].values():
            table.setdefault(path.prefix, []).append(path)
        result = {}
        for prefix, paths in table.items():
            chosen = best_path(paths)
            if chosen is not None:
                result[prefix] = chosen
        return result

    for name in speakers:
        best[name] = compute_best(name)
    for _ in range(max_rounds):
        changed = False
        for name, me in sorted(speakers.items()):
            for adj in out_links.get(name, ()):
                receiver = speakers[adj.peer]
                family = ipaddress.ip_address(adj.link.peer_ip).version
                reverse = back.get((adj.peer, name, family))
                if reverse is None:
                    continue
                sent = {}
                for prefix, path in best[name].items():
                    out = export(path, me, adj.link)
                    if out is None:
                        continue
                    stored = received(out, reverse, me.router_id)
                    if accept(stored, receiver, reverse):
                        sent[(reverse.peer_ip, prefix)] = stored
                current = {k: v for k, v in adj_in[adj.peer].items() if k[0] == reverse.peer_ip}
                if current != sent:
                    for key in current:
                        del adj_in[adj.peer][key]
                    adj_in[adj.peer].update(sent)
                    changed = True
        for name in speakers:
            best[name] = compute_best(name)
        if not changed:
            break
    result: dict[str, dict[str, tuple[Path, list[Path]]]] = {}
    for name in speakers:
        per_prefix: dict[str, tuple[Path, list[Path]]] = {}
        for prefix, chosen in best[name].items():
            candidates = [p for p in adj_in[name].values() if p.prefix == prefix]
            candidates += [p for p in originated.get(name, ()) if p.prefix == prefix]
            per_prefix[prefix] = (chosen, sorted(candidates, key=_sort_key))
        result[name] = per_prefix
    return result
