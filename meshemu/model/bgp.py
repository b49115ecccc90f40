"""BGP path attributes, best-path selection, route reflection and propagation, without I/O.

Owns the decision rules both sides of meshemu need: the planner runs `propagate` to compute
every node's expected RIB, and each node's agent uses the same `accept`, `best_path` and
`export` on live updates, so the oracle and the running lab cannot disagree on the rules.
Reflection follows RFC 4456: a reflector sends routes from clients to everyone and routes from
non-clients to clients only, sets ORIGINATOR_ID once, prepends its CLUSTER_ID to CLUSTER_LIST,
and a speaker drops a route carrying its own router ID as originator or its cluster ID in the list.

A session may apply Calico BGPFilters (`Link.policy`): its import filter runs on what it
receives after the loop checks (`imported`), its export filter on what it sends after the
reflection rules and before the attributes change (`export`), as in BIRD (`model.bgp_policy`).

`propagate` runs the rules to a fixpoint the way the rounds of a synchronous simulation would
(every speaker exports its best paths of the last round, then every speaker selects again), but
prefix by prefix and only from speakers whose best path changed, so a full mesh costs about one
message per session and prefix instead of a pass over every session per round.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import repeat
from typing import Protocol, cast

from meshemu.errors import PlanError
from meshemu.model.bgp_policy import BIRD_INT_MAX, Filter, Route, evaluate

DEFAULT_LOCAL_PREF = 100
# Calico's normal route priority when BGPConfiguration sets none (bgp_processor.go
# getNormalRoutePriority).
NORMAL_ROUTE_PRIORITY = 1024


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Policy:
    """The BGPFilters one session applies (Calico: its BGPPeer's `filters`, those with rules
    for the session's family), in order, and the family's normal route priority, which
    Calico's filters convert bgp_local_pref with."""

    imports: tuple[Filter, ...] = ()
    exports: tuple[Filter, ...] = ()
    route_priority: int = NORMAL_ROUTE_PRIORITY


@dataclass(frozen=True, slots=True)
class Link:
    """One session as seen from the speaker: towards `peer_ip`."""

    peer_ip: str
    peer_as: int
    local_as: int
    rr_client: bool
    keep_next_hop: bool = False
    allow_local_as: int = 0
    # Only a router's (BIRD's) sessions set these three:
    local_ip: str = ""  # the address it speaks from: its eBGP next hop self ("": own address)
    # A directly connected peer's subnet: over eBGP, a path learned from a peer on the same
    # subnet keeps its next hop (BIRD `bgp_use_next_hop`: "Keep it when forwarded between
    # single-hop BGPs on the same iface", proto/bgp/attrs.c v2.0.12).
    keep_on: str | None = None
    self_for_ebgp: bool = False  # iBGP: eBGP-learned paths go out with `local_ip` as next hop
    # A node's session to a BGPPeer that names BGPFilters; None: it applies none (every mesh
    # session, every router's), and the rules cost nothing.
    policy: Policy | None = None

    @property
    def ebgp(self) -> bool:
        return self.peer_as != self.local_as


class SessionFields(Protocol):
    """What a link reads of a node's session: a planned `Session` or an agent's copy."""

    @property
    def peer_ip(self) -> str: ...
    @property
    def peer_as(self) -> int: ...
    @property
    def local_as(self) -> int: ...
    @property
    def rr_client(self) -> bool: ...
    @property
    def keep_next_hop(self) -> bool: ...
    @property
    def allow_local_as(self) -> int | None: ...


def session_link(session: SessionFields, policy: Policy | None = None) -> Link:
    """A node's session as BGP sees it (the planner's and the agent's: one construction)."""
    return Link(
        peer_ip=session.peer_ip,
        peer_as=session.peer_as,
        local_as=session.local_as,
        rr_client=session.rr_client,
        keep_next_hop=session.keep_next_hop,
        allow_local_as=session.allow_local_as or 0,
        policy=policy,
    )


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


def _receiver_matters(path: Path) -> bool:
    """Whether `accept` of `path` reads the receiver at all (its router and cluster IDs);
    if not, every receiver over an equal link decides alike."""
    return path.originator_id is not None or bool(path.cluster_list)


# Parsing address text is the dearest step of the rules; the same few addresses recur in every
# comparison, so each is parsed once. The caches are bounded; invalid text still raises.
@functools.lru_cache(maxsize=1 << 16)
def prefix_family(prefix: str) -> int:
    return ipaddress.ip_network(prefix).version


@functools.lru_cache(maxsize=1 << 16)
def _address_family(address: str) -> int:
    return ipaddress.ip_address(address).version


@functools.lru_cache(maxsize=1 << 16)
def _ipv4_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def calico_local_pref(path: Path, route_priority: int = NORMAL_ROUTE_PRIORITY) -> int:
    """`path`'s bgp_local_pref as Calico's BIRD holds it where a BGPFilter rule reads it
    (`priority`), where this lab's paths keep 100.

    Calico's export filter gives a route the node originates bgp_local_pref 2^31-1 minus the
    normal route priority (bgp_processor.go buildExportFilter: `bgp_local_pref = 2147483647 -
    krt_metric`, krt_metric defaulting to the priority), which iBGP carries along; a path
    received over eBGP gets BIRD's default, 100 (proto/bgp/attrs.c: LOCAL_PREF is not taken
    from an eBGP peer; "If there is no local preference, define one"), and keeps it over iBGP
    after. The lab's speakers keep 100 for both. The two are told apart by the AS path: only a
    path that never crossed eBGP has none (eBGP prepends an AS). A path whose local preference
    a BGPFilter set (setPriority) holds Calico's value itself, on the wire too.

    Best-path selection still compares the paths' own local preference (`best_path`): a path
    a BGPFilter gave any priority (2^31-1 - priority, far above 100) is preferred to every
    path no filter touched, where Calico's BIRD would prefer an unfiltered path originated in
    the node's own AS (2^31-1 - 1024) to one given a priority above the normal one.
    """
    if path.local_pref != DEFAULT_LOCAL_PREF or path.as_path:
        return path.local_pref
    return BIRD_INT_MAX - route_priority


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
    if path.learned_from == link.peer_ip:
        return None  # never back to the sender
    if not _same_family(path, link.peer_ip):
        return None
    return _exported(path, me, link)


def _same_family(path: Path, peer_ip: str) -> bool:
    """Like Calico's bird/bird6 split, a session carries its own family only."""
    return _address_family(peer_ip) == prefix_family(path.prefix)


def stays_off_ibgp(path: Path, me: Speaker) -> bool:
    """`me` passes `path` to no iBGP peer: learned over iBGP by a speaker that reflects
    nothing (RFC 4271 9.1.1; a reflector may, RFC 4456)."""
    return path.learned_from is not None and not path.ebgp and me.cluster_id is None


def _exported(path: Path, me: Speaker, link: Link) -> Path | None:
    """The rest of `export`: reflection rules, the export filter, attributes. It reads neither
    the peer's address nor its `allow_local_as`, so sessions that differ only there get the
    same path (a router's `local_ip`, `keep_on` and `self_for_ebgp` it does read, and the
    session's `policy`)."""
    if not link.ebgp and path.learned_from is not None and not path.ebgp:
        # iBGP-learned towards an iBGP peer: only a reflector may, per RFC 4456.
        if stays_off_ibgp(path, me):
            return None
        if not path.from_rr_client and not link.rr_client:
            return None
    policy = link.policy
    if policy is not None and policy.exports:
        # BIRD rejects what the rules above reject before any filter runs (bgp_preexport in
        # proto/bgp/attrs.c), and changes the attributes (next hop, own AS prepended over
        # eBGP) after the filter accepted: the filter sees the path as this speaker holds it.
        kept = _filtered(path, policy.exports, policy, not link.ebgp)
        if kept is None:
            return None
        path = kept
    if link.ebgp:
        family = prefix_family(path.prefix)
        next_hop = (
            path.next_hop
            if link.keep_next_hop or _kept_on_subnet(path, link)
            else link.local_ip or me.addresses.get(family, path.next_hop)
        )
        return Path(
            prefix=path.prefix,
            next_hop=next_hop,
            as_path=(link.local_as, *path.as_path),
            local_pref=DEFAULT_LOCAL_PREF,
        )
    if path.learned_from is None or path.ebgp or me.cluster_id is None:
        # (A speaker without a cluster ID reaches here only with its own or eBGP routes.)
        return Path(
            prefix=path.prefix,
            next_hop=link.local_ip if link.self_for_ebgp and path.ebgp else path.next_hop,
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


def _kept_on_subnet(path: Path, link: Link) -> bool:
    """BIRD's single-hop rule: learned from a peer on the subnet `link`'s peer is on."""
    return (
        link.keep_on is not None
        and path.learned_from is not None
        and _address_family(path.learned_from) == _network(link.keep_on).version
        and ipaddress.ip_address(path.learned_from) in _network(link.keep_on)
    )


@functools.lru_cache(maxsize=1 << 10)
def _network(prefix: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(prefix)


def imported(path: Path, link: Link) -> Path | None:
    """The path as the session's import filter leaves it (`received` and `accept` first, as
    BIRD checks loops before its filter runs), or None when the filter rejects it: then the
    peer's update takes the place of what it sent before as a withdrawal would."""
    policy = link.policy
    if policy is None or not policy.imports:
        return path
    return _filtered(path, policy.imports, policy, not link.ebgp)


def _filtered(
    path: Path, filters: tuple[Filter, ...], policy: Policy, same_as: bool
) -> Path | None:
    """`path` through a session's BGPFilters (`bgp_policy.evaluate`): None when a rule rejects
    it; else as an accepting rule's operations leave it. No rule matching is the session's
    default, which is what the lab's speakers do without filters: import accepts, and export
    (Calico's calico_export_to_bgp_peers) sends the pools' blocks, which are all this lab's
    speakers hold."""
    local_pref = calico_local_pref(path, policy.route_priority)
    own = path.learned_from is None
    # A node's own block is a blackhole in Calico's BIRD: no interface, `ifname` is "". The
    # interface BIRD resolves a learned path's next hop through the lab does not name (None).
    route = Route(path.prefix, path.as_path, local_pref, not own, ifname="" if own else None)
    verdict = evaluate(filters, route, same_as)
    if verdict is None:
        return path
    if not verdict.accept:
        return None
    if not verdict.prepend and verdict.set_priority is None:
        return path
    chosen = verdict.local_pref
    # (Without setPriority the path keeps this lab's local preference, which the selection
    # compares: a path that only had its AS path prepended is not preferred for it. Where it
    # was 100 and is now prepended, a later rule's `priority` reads it as eBGP-born: 100.)
    return replace(
        path,
        as_path=(*verdict.prepend, *path.as_path),
        local_pref=path.local_pref if chosen is None else chosen,
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


@dataclass(frozen=True, slots=True)
class Adjacency:
    """An established session between two speakers, seen from `speaker` towards `peer`."""

    speaker: str
    peer: str
    link: Link


# speaker -> prefix -> (best path, every candidate path, best first)
Ribs = dict[str, dict[str, tuple[Path, tuple[Path, ...]]]]


@dataclass(frozen=True)
class _Fanout:
    """A sender's sessions of one family that the rules treat alike, so the path each
    receiver stores and whether it accepts it are decided once for all of them (except where
    `_receiver_matters`).

    `_exported` reads the link's AS numbers, `rr_client`, `keep_next_hop`, a router's three
    next-hop fields (`local_ip`, `keep_on`, `self_for_ebgp`) and its `policy`; `received` the
    reverse link's peer address, AS numbers and `rr_client`; `accept` the reverse link's AS
    numbers and `allow_local_as`; `imported` the reverse link's AS numbers and `policy`.
    Sessions equal in all of those form one fanout (so sessions that apply different
    BGPFilters never share one).
    """

    link: Link  # any of the fanout's links (they differ only where `_exported` does not read)
    reverse: Link  # any of the receivers' links back (they differ in nothing the rules read)
    receivers: tuple[str, ...]  # the speakers it reaches ...
    addresses: tuple[str, ...]  # ... and their addresses as the sender peers with them


# family -> speaker -> peer -> the speaker's link to that peer over an established session
LinkTable = Mapping[int, Mapping[str, Mapping[str, Link]]]


def link_table(adjacencies: Iterable[Adjacency]) -> dict[int, dict[str, dict[str, Link]]]:
    """The adjacencies by family, speaker and peer. Where one pair has several sessions of one
    family (two ports), the last one counts, as a round of updates in input order leaves it."""
    family_of: dict[int, int] = {}  # a mesh has a million adjacencies but few distinct links
    links: dict[int, dict[str, dict[str, Link]]] = {4: {}, 6: {}}
    for adj in adjacencies:
        family = family_of.get(id(adj.link))
        if family is None:
            family = family_of[id(adj.link)] = _address_family(adj.link.peer_ip)
        of_speaker = links[family].get(adj.speaker)
        if of_speaker is None:
            of_speaker = links[family][adj.speaker] = {}
        of_speaker[adj.peer] = adj.link
    return links


class Propagation:
    """The sessions of a lab arranged for propagating one prefix at a time."""

    def __init__(self, speakers: Mapping[str, Speaker], links: LinkTable) -> None:
        self.speakers = speakers
        # A session carries updates both ways: a speaker sends to a peer whose link back
        # (its "reverse") exists, and the receiver stamps the path with that reverse link.
        # (Each speaker's targets become fanouts at once: a mesh's targets are a pair of links
        # per session, and holding them all would double the memory propagation needs.)
        kinds = _LinkKinds()
        self.fanouts: dict[tuple[str, int], tuple[_Fanout, ...]] = {}
        none: Mapping[str, Link] = {}
        for family, by_speaker in links.items():
            for speaker, peers in by_speaker.items():
                names, sent = list(peers), list(peers.values())
                backs = [b.get(speaker) for b in map(by_speaker.get, names, repeat(none))]
                if any(map(operator.is_, backs, repeat(None))):  # (`in` calls Link.__eq__)
                    kept = [i for i, back in enumerate(backs) if back is not None]
                    names = [names[i] for i in kept]
                    sent = [sent[i] for i in kept]
                    backs = [backs[i] for i in kept]
                if names:
                    self.fanouts[(speaker, family)] = kinds.fanouts(
                        names, sent, cast(list[Link], backs)
                    )
        # Speakers whose every session of a family is iBGP and that reflect nothing: an
        # iBGP-learned best path of theirs goes nowhere (`stays_off_ibgp`).
        self.ibgp_only = {
            key: all(not f.link.ebgp for f in fanouts) for key, fanouts in self.fanouts.items()
        }
        # ... and per family, the speakers for which that holds: what such a speaker learns
        # over iBGP, it keeps to itself.
        self.leaves = {
            family: {
                name
                for name, speaker in speakers.items()
                if speaker.cluster_id is None and self.ibgp_only.get((name, family), True)
            }
            for family in (4, 6)
        }

    def run(
        self, family: int, origin: Mapping[str, Sequence[Path]], max_rounds: int
    ) -> dict[str, tuple[Path, ...]] | None:
        """One prefix (every path in `origin` has it): each speaker's candidates, best first;
        None when it has not settled after `max_rounds` rounds.

        Round by round like the synchronous simulation: in a round every speaker whose best
        path changed in the last one sends its new best to its peers; then the receivers
        select again. A speaker whose best did not change would send what its peers hold.
        """
        state = _RunState(family, origin)
        best = state.best
        for name, paths in origin.items():
            chosen = best_path(paths)
            if chosen is not None:
                best[name] = chosen
        senders = sorted(best)
        for _ in range(max_rounds):
            for name in senders:
                self._send(name, best.get(name), state)
            senders = [
                name
                for name in sorted(state.touched)
                if state.reselect(name, origin) and not self._silent(name, state)
            ]
            state.touched.clear()
            if not senders:
                break
        else:
            return None  # best paths still changed in the last round
        out: dict[str, tuple[Path, ...]] = {}
        single: dict[int, tuple[Path, ...]] = {}  # one shared tuple per lone candidate
        adj_in = state.adj_in
        nothing: dict[str, Path] = {}
        for name in best:
            learned = adj_in.get(name, nothing)
            if len(learned) == 1 and name not in origin:
                (path,) = learned.values()
                found = single.get(id(path))
                if found is None:
                    found = single[id(path)] = (path,)
                out[name] = found
            else:
                own = origin.get(name, ())
                out[name] = tuple(sorted((*own, *learned.values()), key=_sort_key))
        return out

    def _silent(self, name: str, state: _RunState) -> bool:
        """Whether `name` has nothing to send with its new best path and nothing to take back
        (every receiver of a route in a mesh): `_send` would change nothing."""
        key = (name, state.family)
        path = state.best.get(name)
        return (
            path is not None
            and self.ibgp_only.get(key, True)
            and stays_off_ibgp(path, self.speakers[name])
            and key not in state.holding
        )

    def _send(self, name: str, path: Path | None, state: _RunState) -> None:
        """`name` sends `path` (None: withdraws) to its peers of the run's family."""
        me = self.speakers[name]
        key = (name, state.family)
        for fanout in self.fanouts.get(key, ()):
            out = None
            if path is not None and _same_family(path, fanout.link.peer_ip):
                out = _exported(path, me, fanout.link)
            held = (name, id(fanout))
            if out is None and held not in state.holding:
                continue
            stored = None if out is None else received(out, fanout.reverse, me.router_id)
            for_all = stored is not None and not _receiver_matters(stored)
            if for_all and stored is not None and not accept(stored, me, fanout.reverse):
                stored, for_all = None, False  # (`me` is not read: see `_receiver_matters`)
            kept = stored
            if stored is not None and fanout.reverse.policy is not None:
                # The receivers' import filter: it reads their link back, alike for them all.
                kept = imported(stored, fanout.reverse)
                if kept is None:
                    stored, for_all = None, False
            any_stored = self._deliver(name, path, stored, kept, for_all, fanout, state)
            if any_stored:
                state.holding.add(held)
                state.holding.add(key)
            else:
                state.holding.discard(held)

    def _deliver(
        self,
        name: str,
        path: Path | None,
        stored: Path | None,
        kept: Path | None,
        for_all: bool,
        fanout: _Fanout,
        state: _RunState,
    ) -> bool:
        """Put `kept` (`stored` as the import filter left it; None with it: nothing) into each
        receiver's Adj-RIB-In under the sender's address as the receiver knows it, where
        `accept` of `stored` lets it; whether any receiver holds it now."""
        key = fanout.reverse.peer_ip
        sender = path.learned_from if path is not None else None
        # A receiver that holds nothing yet, originates nothing and keeps what it learns over
        # iBGP to itself (`leaves`) selects this path and sends nothing: decided here, it
        # skips the round's reselection (in a mesh, every receiver of every route).
        leaves = self.leaves[state.family] if not fanout.reverse.ebgp else ()
        any_stored = False
        adj_in, touched, origin, best = state.adj_in, state.touched, state.origin, state.best
        for receiver, address in zip(fanout.receivers, fanout.addresses, strict=True):
            wanted = kept
            if stored is not None and (
                (sender is not None and address == sender)  # never back to the sender
                or not (for_all or accept(stored, self.speakers[receiver], fanout.reverse))
            ):
                wanted = None
            table = adj_in.get(receiver)
            if table is None:  # (the first path this receiver hears of: most, in a mesh)
                if wanted is None:
                    continue
                any_stored = True
                adj_in[receiver] = {key: wanted}
                if receiver in leaves and receiver not in origin:
                    best[receiver] = wanted
                else:
                    touched.add(receiver)
                continue
            current = table.get(key)
            if wanted is None:
                if current is not None:
                    del table[key]
                    touched.add(receiver)
                continue
            any_stored = True
            if wanted is current or (current is not None and wanted == current):
                continue
            if not table and receiver in leaves and receiver not in origin:
                table[key] = best[receiver] = wanted
                continue
            table[key] = wanted
            touched.add(receiver)
        return any_stored


class _RunState:
    """What one prefix's run holds: best paths, Adj-RIBs-In, and who changed."""

    def __init__(self, family: int, origin: Mapping[str, Sequence[Path]]) -> None:
        self.family = family
        self.origin = origin
        self.best: dict[str, Path] = {}
        self.adj_in: dict[str, dict[str, Path]] = {}  # receiver -> sender address -> path
        self.touched: set[str] = set()
        # Senders (and their fanouts) some receiver holds a path from: a withdrawal must
        # visit those, and only those.
        self.holding: set[object] = set()

    def reselect(self, name: str, origin: Mapping[str, Sequence[Path]]) -> bool:
        """Select `name`'s best path again; whether it changed."""
        own, learned = origin.get(name, ()), self.adj_in[name]
        chosen: Path | None
        if not own and len(learned) == 1:
            (chosen,) = learned.values()  # one path: no decision to make
        else:
            chosen = best_path([*own, *learned.values()])
        previous = self.best.get(name)
        if chosen is previous or (chosen is not None and chosen == previous):
            return False
        if chosen is None:
            del self.best[name]
        else:
            self.best[name] = chosen
        return True


class _LinkKinds:
    """Groups a sender's sessions into fanouts by what the rules read of their links
    (`_Fanout`), each distinct link object looked at once."""

    def __init__(self) -> None:
        self.numbers: dict[tuple[object, ...], int] = {}
        self.out_kind: dict[int, int] = {}
        self.in_kind: dict[int, int] = {}

    def _number(self, fields: tuple[object, ...]) -> int:
        return self.numbers.setdefault(fields, len(self.numbers))

    def _out_kind(self, link: Link) -> int:
        """What `_exported` reads of a link."""
        out = self.out_kind[id(link)] = self._number(
            (
                "out",
                link.peer_as,
                link.local_as,
                link.rr_client,
                link.keep_next_hop,
                link.local_ip,
                link.keep_on,
                link.self_for_ebgp,
                link.policy,
            )
        )
        return out

    def _in_kind(self, reverse: Link) -> int:
        """What `received`, `accept` and `imported` read of the receiver's link back."""
        back = self.in_kind[id(reverse)] = self._number(
            (
                "in",
                reverse.peer_ip,
                reverse.peer_as,
                reverse.local_as,
                reverse.rr_client,
                reverse.allow_local_as,
                reverse.policy,
            )
        )
        return back

    def fanouts(
        self, peers: Sequence[str], links: Sequence[Link], reverses: Sequence[Link]
    ) -> tuple[_Fanout, ...]:
        """A sender's fanouts: `links[i]` is its link to `peers[i]`, `reverses[i]` the link
        back. (A mesh has two million of them, but few distinct links: each distinct link's
        kind is found once, then looked up a list at a time.)"""
        outs = self._kinds(links, self.out_kind, self._out_kind)
        ins = self._kinds(reverses, self.in_kind, self._in_kind)
        addresses = list(map(_peer_ip, links))
        if outs.count(outs[0]) == len(outs) and ins.count(ins[0]) == len(ins):
            # One kind: all peers alike (a mesh).
            return (_Fanout(links[0], reverses[0], tuple(peers), tuple(addresses)),)
        grouped: dict[tuple[int, int], tuple[list[str], list[str]]] = {}
        first: dict[tuple[int, int], tuple[Link, Link]] = {}
        for i, kind in enumerate(zip(outs, ins, strict=True)):
            group = grouped.get(kind)
            if group is None:
                group = grouped[kind] = ([], [])
                first[kind] = (links[i], reverses[i])
            group[0].append(peers[i])
            group[1].append(addresses[i])
        return tuple(
            _Fanout(first[kind][0], first[kind][1], tuple(names), tuple(at))
            for kind, (names, at) in grouped.items()
        )

    @staticmethod
    def _kinds(
        links: Sequence[Link], known: dict[int, int], find: Callable[[Link], int]
    ) -> list[int]:
        try:
            return list(map(known.__getitem__, map(id, links)))
        except KeyError:  # a link not seen before
            for link in links:
                if id(link) not in known:
                    find(link)
            return list(map(known.__getitem__, map(id, links)))


_peer_ip = operator.attrgetter("peer_ip")


# prefix -> speaker -> (best path, every candidate path, best first)
RibsByPrefix = dict[str, dict[str, tuple[Path, tuple[Path, ...]]]]


def propagate(
    speakers: Mapping[str, Speaker],
    adjacencies: Sequence[Adjacency],
    originated: Mapping[str, Sequence[Path]],
    max_rounds: int = 64,
) -> Ribs:
    """Run BGP to a fixpoint; per speaker, per prefix: (best path, all candidate paths).

    Raises PlanError when a prefix still changes after `max_rounds` rounds: its RIBs
    oscillate, and no plan can say what they hold.
    """
    result: Ribs = {name: {} for name in speakers}
    by_prefix = propagate_links(speakers, link_table(adjacencies), originated, max_rounds)
    for prefix, ribs in by_prefix.items():
        for name, entry in ribs.items():
            result[name][prefix] = entry
    return result


def propagate_links(
    speakers: Mapping[str, Speaker],
    links: LinkTable,
    originated: Mapping[str, Sequence[Path]],
    max_rounds: int = 64,
) -> RibsByPrefix:
    """`propagate` over a `link_table`, its result by prefix."""
    return {
        prefix: _entries(ribs)
        for prefix, ribs in propagate_prefixes(speakers, links, originated, max_rounds)
    }


def propagate_prefixes(
    speakers: Mapping[str, Speaker],
    links: LinkTable,
    originated: Mapping[str, Sequence[Path]],
    max_rounds: int = 64,
) -> Iterator[tuple[str, Mapping[str, tuple[Path, ...]]]]:
    """`propagate_links`'s result one prefix at a time, each speaker's candidate paths best
    first (speakers holding the same candidates share one tuple), so that a planner can keep
    what it needs of a prefix and let the rest go (a 1,000-node mesh: a thousand entries per
    prefix).

    Prefixes originated alike (the same speakers with the same paths but for the prefix)
    propagate alike, so each such set is run once.
    """
    network = Propagation(speakers, links)
    groups: dict[tuple[int, object], list[tuple[str, dict[str, list[Path]]]]] = {}
    for prefix, origin in _origins(speakers, originated).items():
        signature = (
            prefix_family(prefix),
            tuple(
                (name, tuple(replace(p, prefix="") for p in paths))
                for name, paths in sorted(origin.items())
            ),
        )
        groups.setdefault(signature, []).append((prefix, origin))
    for (family, _), members in groups.items():
        first_prefix, first_origin = members[0]
        ribs = network.run(family, first_origin, max_rounds)
        if ribs is None:
            raise PlanError(
                f"BGP does not settle for {first_prefix}: best paths still change after "
                f"{max_rounds} rounds, so the lab's routes cannot be predicted"
            )
        for prefix, _origin in members:
            yield prefix, _for_prefix(ribs, prefix, first_prefix)


def _entries(ribs: Mapping[str, tuple[Path, ...]]) -> dict[str, tuple[Path, tuple[Path, ...]]]:
    """Each speaker's (best, candidates). Speakers holding the very same candidates (a mesh:
    every receiver holds the owner's path) share one pair, which keeps the result's memory
    linear."""
    shared: dict[int, tuple[Path, tuple[Path, ...]]] = {}
    out = {}
    for name, candidates in ribs.items():
        entry = shared.get(id(candidates))
        if entry is None:
            entry = shared[id(candidates)] = (candidates[0], candidates)
        out[name] = entry
    return out


def _for_prefix(
    ribs: Mapping[str, tuple[Path, ...]], prefix: str, ran_as: str
) -> Mapping[str, tuple[Path, ...]]:
    """A run made for `ran_as` as the run for `prefix` (originated alike) would have ended;
    speakers holding the very same candidates still share them."""
    if prefix == ran_as:
        return ribs
    renamed: dict[int, Path] = {}
    shared: dict[int, tuple[Path, ...]] = {}
    out = {}
    for name, candidates in ribs.items():
        found = shared.get(id(candidates))
        if found is None:
            found = shared[id(candidates)] = tuple(_renamed(p, prefix, renamed) for p in candidates)
        out[name] = found
    return out


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
