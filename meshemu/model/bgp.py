"""BGP path attributes, best-path selection, route reflection and propagation, without I/O.

Owns the decision rules both sides of meshemu need: the planner runs `propagate` to compute
every node's expected RIB, and each node's agent uses the same `accept`, `best_path` and
`export` on live updates, so the oracle and the running lab cannot disagree on the rules.
Reflection follows RFC 4456: a reflector sends routes from clients to everyone and routes from
non-clients to clients only, sets ORIGINATOR_ID once, prepends its CLUSTER_ID to CLUSTER_LIST,
and a speaker drops a route carrying its own router ID as originator or its cluster ID in the list.

`propagate` runs the rules to a fixpoint the way the rounds of a synchronous simulation would
(every speaker exports its best paths of the last round, then every speaker selects again), but
prefix by prefix and only from speakers whose best path changed, so a full mesh costs about one
message per session and prefix instead of a pass over every session per round.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from meshemu.errors import PlanError

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


# Parsing address text is the dearest step of the rules; the same few addresses recur in every
# comparison, so each is parsed once. The caches are bounded; invalid text still raises.
@functools.lru_cache(maxsize=1 << 16)
def _prefix_family(prefix: str) -> int:
    return ipaddress.ip_network(prefix).version


@functools.lru_cache(maxsize=1 << 16)
def _address_family(address: str) -> int:
    return ipaddress.ip_address(address).version


@functools.lru_cache(maxsize=1 << 16)
def _ipv4_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def _sort_key(path: Path) -> tuple[object, ...]:
    originator = path.originator_id or path.learned_router_id
    return (
        -path.local_pref,
        len(path.as_path),
        path.learned_from is not None,  # own route first
        not path.ebgp,  # eBGP over iBGP
        len(path.cluster_list),
        _ipv4_int(originator) if originator else 0,
        _address_key(path.learned_from),
    )


@functools.lru_cache(maxsize=1 << 16)
def _parsed_address_key(text: str) -> tuple[int, int]:
    address = ipaddress.ip_address(text)
    return (address.version, int(address))


def _address_key(text: str | None) -> tuple[int, int]:
    return (0, 0) if text is None else _parsed_address_key(text)


def best_path(paths: Iterable[Path]) -> Path | None:
    """RFC 4271 decision process, reduced to the attributes a Calico mesh carries."""
    candidates = sorted(paths, key=_sort_key)
    return candidates[0] if candidates else None


def export(path: Path, me: Speaker, link: Link) -> Path | None:
    """The path `me` sends over `link`, or None when the rules forbid it."""
    if not _may_send(path, link.peer_ip):
        return None
    return _exported(path, me, link)


def _may_send(path: Path, peer_ip: str) -> bool:
    """The export rules that depend on the peer's address; `_exported` reads it nowhere."""
    if path.learned_from == peer_ip:
        return False  # never back to the sender
    # Like Calico's bird/bird6 split, a session carries its own family only.
    return _address_family(peer_ip) == _prefix_family(path.prefix)


def _exported(path: Path, me: Speaker, link: Link) -> Path | None:
    """The rest of `export`: reflection rules and attributes, the same for every peer address."""
    own = path.learned_from is None
    if not own and not path.ebgp and not link.ebgp:
        # iBGP-learned towards an iBGP peer: only a reflector may, per RFC 4456.
        if me.cluster_id is None:
            return None
        if not path.from_rr_client and not link.rr_client:
            return None
    if link.ebgp:
        family = _prefix_family(path.prefix)
        next_hop = path.next_hop if link.keep_next_hop else me.addresses.get(family, path.next_hop)
        return Path(
            prefix=path.prefix,
            next_hop=next_hop,
            as_path=(link.local_as, *path.as_path),
            local_pref=DEFAULT_LOCAL_PREF,
        )
    if own or path.ebgp or me.cluster_id is None:
        # (A speaker without a cluster ID reaches here only with its own or eBGP routes.)
        return Path(
            prefix=path.prefix,
            next_hop=path.next_hop,
            as_path=path.as_path,
            local_pref=path.local_pref,
        )
    # Reflected: keep the next hop, set the originator once, prepend our cluster ID.
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


# speaker -> prefix -> (best path, every candidate path, best first)
Ribs = dict[str, dict[str, tuple[Path, tuple[Path, ...]]]]


# One speaker a sender's updates reach over one session: its name, the speaker, its address as
# the sender peers with it (the sender's `link.peer_ip`) and its own side of the session. A
# plain tuple: a mesh has one per session, and building them is most of the setup.
_Receiver = tuple[str, Speaker, str, Link]


@dataclass(frozen=True)
class _ExportGroup:
    """A sender's sessions of one family that `_exported` and `received` treat alike.

    `_exported` reads the link's AS numbers, `rr_client` and `keep_next_hop`, never its peer
    address; `received` reads the reverse link's peer address, AS numbers and `rr_client`.
    Sessions equal in those get the same path object, computed once per group.
    """

    link: Link  # any of the group's links (their differences `_exported` does not read)
    receivers: tuple[tuple[Link, tuple[_Receiver, ...]], ...]  # per kind of reverse link


class Propagation:
    """The sessions of a lab arranged for `propagate`: who sends to whom, grouped."""

    def __init__(self, speakers: Mapping[str, Speaker], adjacencies: Sequence[Adjacency]) -> None:
        self.speakers = speakers
        # Two speakers may share a session per family (IPv4 and IPv6 transport). Where one
        # pair has several sessions of one family (two ports), the last one's reverse link and
        # the last adjacency's export win, as a round of updates in input order would leave it.
        back: dict[tuple[str, str, int], Link] = {
            (a.speaker, a.peer, _address_family(a.link.peer_ip)): a.link for a in adjacencies
        }
        sends: dict[tuple[str, int], dict[str, tuple[Link, Link]]] = {}
        for adj in adjacencies:
            family = _address_family(adj.link.peer_ip)
            reverse = back.get((adj.peer, adj.speaker, family))
            if reverse is not None:
                sends.setdefault((adj.speaker, family), {})[adj.peer] = (adj.link, reverse)
        self.groups: dict[tuple[str, int], tuple[_ExportGroup, ...]] = {
            key: self._group(targets) for key, targets in sends.items()
        }

    def _group(self, targets: Mapping[str, tuple[Link, Link]]) -> tuple[_ExportGroup, ...]:
        grouped: dict[tuple[object, ...], dict[tuple[object, ...], list[_Receiver]]] = {}
        links: dict[tuple[object, ...], Link] = {}
        reverses: dict[tuple[object, ...], Link] = {}
        for peer, (link, reverse) in targets.items():
            out_kind = (link.peer_as, link.local_as, link.rr_client, link.keep_next_hop)
            in_kind = (reverse.peer_ip, reverse.peer_as, reverse.local_as, reverse.rr_client)
            links.setdefault(out_kind, link)
            reverses.setdefault(in_kind, reverse)
            grouped.setdefault(out_kind, {}).setdefault(in_kind, []).append(
                (peer, self.speakers[peer], link.peer_ip, reverse)
            )
        return tuple(
            _ExportGroup(
                links[out_kind],
                tuple((reverses[k], tuple(rs)) for k, rs in by_reverse.items()),
            )
            for out_kind, by_reverse in grouped.items()
        )

    def run(
        self, family: int, origin: Mapping[str, Sequence[Path]], max_rounds: int
    ) -> dict[str, tuple[Path, ...]] | None:
        """One prefix (every path in `origin` has it): each speaker's candidates, best first;
        None when it has not settled after `max_rounds` rounds.

        Round by round like the synchronous simulation: in a round every speaker whose best
        path changed in the last one sends its new best to its peers; then the receivers
        select again. A speaker whose best did not change would send what its peers hold.
        """
        adj_in: dict[str, dict[str, Path]] = {}
        best: dict[str, Path] = {}
        for name, paths in origin.items():
            chosen = best_path(paths)
            if chosen is not None:
                best[name] = chosen
        senders = sorted(best)
        holding: set[tuple[str, int]] = set()
        for _ in range(max_rounds):
            touched: set[str] = set()
            for name in senders:
                self._send(name, best.get(name), family, adj_in, touched, holding)
            senders = []
            for name in sorted(touched):
                chosen = _best_of(origin.get(name, ()), adj_in[name])
                if chosen != best.get(name):
                    senders.append(name)
                    if chosen is None:
                        del best[name]
                    else:
                        best[name] = chosen
            if not senders:
                break
        else:
            return None  # best paths still changed in the last round
        out: dict[str, tuple[Path, ...]] = {}
        for name in best:
            candidates = (*origin.get(name, ()), *adj_in.get(name, {}).values())
            out[name] = (
                candidates if len(candidates) == 1 else tuple(sorted(candidates, key=_sort_key))
            )
        return out

    def _send(
        self,
        name: str,
        path: Path | None,
        family: int,
        adj_in: dict[str, dict[str, Path]],
        touched: set[str],
        holding: set[tuple[str, int]],
    ) -> None:
        """`name` sends `path` (None: withdraws) to its peers of `family`; record what changed.

        `holding` remembers which of a sender's receiver lists hold a path from it in this
        run, so that a sender with nothing to send skips the peers that hold nothing from it
        (in a mesh, every receiver of a route; without this a mesh costs a cube of its size).
        """
        me = self.speakers[name]
        for group in self.groups.get((name, family), ()):
            out = None if path is None else _exported(path, me, group.link)
            for reverse, receivers in group.receivers:
                held = (name, id(receivers))
                if out is None and held not in holding:
                    continue
                stored = None if out is None else received(out, reverse, me.router_id)
                key = reverse.peer_ip  # the receivers tell their peers apart by address
                any_stored = False
                for receiver, speaker, address, back in receivers:
                    wanted = stored
                    if wanted is not None and (
                        path is None
                        or not _may_send(path, address)
                        or not accept(wanted, speaker, back)
                    ):
                        wanted = None
                    table = adj_in.setdefault(receiver, {})
                    current = table.get(key)
                    any_stored = any_stored or wanted is not None
                    if wanted is current or wanted == current:
                        continue
                    if wanted is None:
                        del table[key]
                    else:
                        table[key] = wanted
                    touched.add(receiver)
                if any_stored:
                    holding.add(held)
                else:
                    holding.discard(held)


def _best_of(own: Sequence[Path], learned: Mapping[str, Path]) -> Path | None:
    if not own and len(learned) == 1:
        return next(iter(learned.values()))  # one path: no decision to make
    return best_path([*own, *learned.values()])


def propagate(
    speakers: Mapping[str, Speaker],
    adjacencies: Sequence[Adjacency],
    originated: Mapping[str, Sequence[Path]],
    max_rounds: int = 64,
) -> Ribs:
    """Run BGP to a fixpoint; per speaker, per prefix: (best path, all candidate paths).

    Prefixes originated alike (the same speakers with the same paths but for the prefix)
    propagate alike, so each such set is run once. Raises PlanError when a prefix still changes
    after `max_rounds` rounds: its RIBs oscillate, and no plan can say what they hold.
    """
    network = Propagation(speakers, adjacencies)
    groups: dict[tuple[int, object], list[tuple[str, dict[str, list[Path]]]]] = {}
    for prefix, origin in _origins(speakers, originated).items():
        signature = (
            _prefix_family(prefix),
            tuple(
                (name, tuple(replace(p, prefix="") for p in paths))
                for name, paths in sorted(origin.items())
            ),
        )
        groups.setdefault(signature, []).append((prefix, origin))
    result: Ribs = {name: {} for name in speakers}
    shared: dict[tuple[int, ...], tuple[Path, tuple[Path, ...]]] = {}
    for (family, _), members in groups.items():
        first_prefix, first_origin = members[0]
        ribs = network.run(family, first_origin, max_rounds)
        if ribs is None:
            raise PlanError(
                f"BGP does not settle for {first_prefix}: best paths still change after "
                f"{max_rounds} rounds, so the lab's routes cannot be predicted"
            )
        for prefix, _origin in members:
            renamed: dict[int, Path] = {}
            for name, candidates in ribs.items():
                if prefix != first_prefix:
                    candidates = tuple(_renamed(p, prefix, renamed) for p in candidates)
                # Many speakers hold the very same candidates (a mesh: the owner's path):
                # one tuple for all of them keeps the result's memory linear.
                key = tuple(id(p) for p in candidates)
                entry = shared.get(key)
                if entry is None:
                    entry = shared[key] = (candidates[0], candidates)
                result[name][prefix] = entry
    return result


def _origins(
    speakers: Mapping[str, Speaker], originated: Mapping[str, Sequence[Path]]
) -> dict[str, dict[str, list[Path]]]:
    """prefix -> speaker -> its own paths to it (speakers not in the lab originate nothing)."""
    out: dict[str, dict[str, list[Path]]] = {}
    for name, paths in originated.items():
        if name in speakers:
            for path in paths:
                out.setdefault(path.prefix, {}).setdefault(name, []).append(path)
    return out


def _renamed(path: Path, prefix: str, cache: dict[int, Path]) -> Path:
    out = cache.get(id(path))
    if out is None:
        out = cache[id(path)] = replace(path, prefix=prefix)
    return out
