"""ExaBGP's JSON API messages -> meshemu events, and meshemu paths -> ExaBGP API commands.

Owns the wire format between ExaBGP 5.0 and the agent (pure, unit-testable): `state` messages
(connected / up / down with a reason, and what the reason says about how the session ended:
`down_kind`), `update` messages (announce per family and next hop with the path attributes,
withdraw, end-of-RIB), `open` messages (the graceful restart capability, RFC 4724 section 3,
each side sent: `GracefulRestart`), and the text commands the agent writes back
(`neighbor <peer> announce route ... originator-id ... cluster-list [...]`, `... withdraw route`,
`... announce eor`), and the JSON form in which the agent records the paths it sent
(`path_to_json`, `path_from_json`: a restarted agent reads them back from its state file) and
the capabilities it saw (`GracefulRestart.to_json`, `from_json`).

`parse_message` is called on every line ExaBGP writes and the agent has no handler around it,
so it never raises: a line that is not a JSON object is None, and a JSON object of a shape
ExaBGP does not write (a field of the wrong type, an NLRI that is not a prefix, a next hop that
is not an address) is an `OtherEvent` naming the problem, never a half-trusted `Path`. The
shapes follow ExaBGP 5.0's encoder: `reactor/api/response/json.py` (`JSON._update`: announce is
{family: {next-hop: [nlri, ...]}}, withdraw is {family: [nlri, ...]}), `nlri/inet.py`
(`{"nlri": "<prefix>"}`, or the bare prefix with `exabgp.api.compact`),
`attribute/aspath.py` ({"<position>": {"element": ..., "value": [asn, ...]}}),
`attribute/clusterlist.py` (a list of IPv4 texts) and `attribute/originatorid.py`; an OPEN's
capabilities are `reactor/api/response/json.py` (`JSON.open`) with
`bgp/message/open/capability/graceful.py` (`Graceful.json`).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import TypeVar

from meshemu.model.bgp import DEFAULT_LOCAL_PREF, Path
from meshemu.model.routes import parsed_address, parsed_network

U32_MAX = 2**32 - 1  # AS numbers and LOCAL_PREF are four-octet unsigned fields
GR_TIME_MAX = 0x0FFF  # the graceful restart time's 12 bits (RFC 4724 section 3)

T = TypeVar("T")


@dataclass(frozen=True)
class StateEvent:
    peer: str
    local: str
    state: str  # connected | up | down
    reason: str = ""


@dataclass(frozen=True)
class UpdateEvent:
    peer: str
    local: str
    announced: tuple[Path, ...] = ()
    withdrawn: tuple[str, ...] = ()
    end_of_rib: bool = False


@dataclass(frozen=True)
class OtherEvent:
    """A message the agent does not act on: another type, or one of a shape ExaBGP does not
    write (then `problem` says what was wrong)."""

    kind: str
    raw: dict[str, object] = field(default_factory=dict)
    problem: str = ""


@dataclass(frozen=True)
class GracefulRestart:
    """A graceful restart capability as an OPEN carried it (RFC 4724 section 3).

    `time`: the restart time, seconds (12 bits on the wire); `restarting`: the Restart State
    bit (the sender has just restarted); `families`: (IP version, Forwarding State bit) of each
    unicast family listed, in order. A family not listed is one the sender keeps no routes of
    across a restart; a listed family with its Forwarding State bit clear is one whose routes
    it did not keep forwarding while it restarted.
    """

    time: int
    restarting: bool = False
    families: tuple[tuple[int, bool], ...] = ()

    def lists(self, family: int) -> bool:
        return any(f == family for f, _ in self.families)

    def forwarding(self, family: int) -> bool:
        return any(f == family and kept for f, kept in self.families)

    def to_json(self) -> dict[str, object]:
        return {
            "time": self.time,
            "restarting": self.restarting,
            "families": [[f, kept] for f, kept in self.families],
        }

    @classmethod
    def from_json(cls, data: object) -> GracefulRestart | None:
        """`to_json`'s form back; None for anything of another shape (never raises)."""
        if not isinstance(data, dict):
            return None
        time, restarting, families = data.get("time"), data.get("restarting"), data.get("families")
        if (
            isinstance(time, bool)
            or not isinstance(time, int)
            or not 0 <= time <= GR_TIME_MAX
            or not isinstance(restarting, bool)
            or not isinstance(families, list)
        ):
            return None
        out = []
        for entry in families:
            if (
                not isinstance(entry, list)
                or len(entry) != 2
                or entry[0] not in (4, 6)
                or isinstance(entry[0], bool)
                or not isinstance(entry[1], bool)
            ):
                return None
            out.append((int(entry[0]), entry[1]))
        return cls(time, restarting, tuple(out))


@dataclass(frozen=True)
class OpenEvent:
    """An OPEN message of a session: the one the peer sent (`direction` receive) or the one
    this node's speaker sent (send); `graceful_restart` None: no such capability in it."""

    peer: str
    local: str
    direction: str  # receive | send
    graceful_restart: GracefulRestart | None


Event = StateEvent | UpdateEvent | OpenEvent | OtherEvent

# How a session ended, from the reason ExaBGP 5.0 gives in its `down` message
# (reactor/peer.py): `Peer.shutdown` closes every session with `_stop('shutting down')`, which
# reports "stop, message [shutting down]": this node's own speaker is stopping (SIGTERM, or
# the `shutdown` command), and it closes without a NOTIFICATION. A read or write that fails
# (the peer closed the TCP session, or reset it) is a `NetworkError`, reported by
# `_reset('closing connection', ...)`: the session ended without a NOTIFICATION either way,
# what BIRD takes for the peer restarting (bgp_sock_err -> bgp_handle_graceful_restart,
# proto/bgp/bgp.c of BIRD 2.0.12). Everything else (a NOTIFICATION sent or received, the hold
# timer, an internal error) ends the session for good.
LOCAL_SHUTDOWN = "stop, message [shutting down]"
SILENT_CLOSE = "closing connection"


def down_kind(reason: str) -> str:
    """`shutdown` (this node's speaker stops), `silent` (the peer went without a NOTIFICATION)
    or `final` (any other end of a session)."""
    if reason == LOCAL_SHUTDOWN:
        return "shutdown"
    if reason == SILENT_CLOSE:
        return "silent"
    return "final"


class _Malformed(ValueError):
    """A field is not of the shape it must have; caught only in `parse_message` and
    `path_from_json`."""


# -- shape checks: each returns the value in the type it promises, or raises _Malformed ---------


def _obj(parent: dict[str, object], key: str) -> dict[str, object]:
    """`parent[key]` as a JSON object; absent or null is an empty one."""
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Malformed(f"{key!r} is not an object")
    return value


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise _Malformed(f"{what} is not a list")
    return value


def _text(parent: dict[str, object], key: str, default: str | None = None) -> str:
    value = parent.get(key, default)
    if not isinstance(value, str):
        raise _Malformed(f"{key!r} is not text")
    return value


def _u32(value: object, what: str) -> int:
    # bool is an int in Python but never a number in ExaBGP's JSON.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U32_MAX:
        raise _Malformed(f"{what} is not a number from 0 to {U32_MAX}")
    return value


def _ip_text(value: object, what: str, parse: Callable[[str], T]) -> T:
    """`parse(value)` for a text `value`: `model.routes.parsed_network` or `parsed_address`,
    cached there, as the same few hundred prefixes and next hops come in every update of a
    lab (parsing them again was a third of an agent's CPU)."""
    if not isinstance(value, str):
        raise _Malformed(f"{what} is not text")
    try:
        return parse(value)
    except ValueError:
        raise _Malformed(f"{what} {value!r} is not an IP address") from None


def _network(text: object, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    # strict: a prefix with host bits set is not a block any node announces.
    network = _ip_text(text, what, parsed_network)  # strict (ipaddress's default)
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.scope_id:
        raise _Malformed(f"{what} {text!r} carries a scope")
    return network


def _prefix(nlri: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An NLRI: `{"nlri": "<prefix>", ...}` or, compact, the bare prefix text."""
    return _network(nlri.get("nlri") if isinstance(nlri, dict) else nlri, "nlri")


def _next_hop(text: object, version: int) -> str:
    address = _ip_text(text, "next hop", parsed_address)
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        raise _Malformed(f"next hop {text!r} carries a scope")
    if address.version != version:
        raise _Malformed(f"next hop {text!r} is not of the prefix's family")
    return str(address)


def _ipv4(value: object, what: str) -> str:
    address = _ip_text(value, what, parsed_address)
    if address.version != 4:
        raise _Malformed(f"{what} {value!r} is not an IP address")
    return str(address)


def _as_path(attribute: dict[str, object]) -> tuple[int, ...]:
    """A plain list of AS numbers, or ExaBGP's segments by position (concatenated in order)."""
    raw = attribute.get("as-path")
    if raw is None:
        return ()
    if isinstance(raw, list):
        return _as_numbers(raw)
    if not isinstance(raw, dict):
        raise _Malformed("'as-path' is neither a list nor an object")
    out: list[int] = []
    for key in sorted(raw, key=_segment_position):
        segment = raw[key]
        if not isinstance(segment, dict):
            raise _Malformed(f"as-path segment {key!r} is not an object")
        out += _as_numbers(_list(segment.get("value", []), f"as-path segment {key!r} value"))
    return tuple(out)


def _as_numbers(values: list[object]) -> tuple[int, ...]:
    return tuple(_u32(a, "as-path entry") for a in values)


def _segment_position(key: str) -> int:
    if not (key.isascii() and key.isdigit()):
        raise _Malformed(f"as-path segment key {key!r} is not a position")
    return int(key)


def _local_pref(attribute: dict[str, object]) -> int:
    if "local-preference" not in attribute:
        return DEFAULT_LOCAL_PREF  # eBGP routes carry none
    return _u32(attribute["local-preference"], "'local-preference'")


def _originator_id(value: object) -> str | None:
    return None if value is None else _ipv4(value, "'originator-id'")


def _cluster_list(value: object) -> tuple[str, ...]:
    return tuple(_ipv4(c, "cluster-list entry") for c in _list(value, "'cluster-list'"))


# -- messages ---------------------------------------------------------------------------------


def _announced(update: dict[str, object]) -> list[Path]:
    attribute = _obj(update, "attribute")
    as_path, local_pref = _as_path(attribute), _local_pref(attribute)
    originator_id = _originator_id(attribute.get("originator-id"))
    cluster_list = _cluster_list(attribute.get("cluster-list", []))
    paths = []
    for family, by_next_hop in _obj(update, "announce").items():
        if not isinstance(by_next_hop, dict):
            raise _Malformed(f"announce {family!r} is not an object")
        for next_hop, nlris in _global_next_hops(by_next_hop).items():
            for nlri in _list(nlris, f"announce {family!r} {next_hop!r}"):
                prefix = _prefix(nlri)
                paths.append(
                    Path(
                        prefix=str(prefix),
                        next_hop=_next_hop(next_hop, prefix.version),
                        as_path=as_path,
                        local_pref=local_pref,
                        originator_id=originator_id,
                        cluster_list=cluster_list,
                    )
                )
    return paths


def _global_next_hops(by_next_hop: dict[str, object]) -> dict[str, object]:
    """An IPv6 next hop of two addresses (RFC 2545: global, then link-local; BIRD sends both
    to a peer on its link) reaches ExaBGP's JSON as the same NLRI under each address. The
    global one is the route's next hop; the link-local copy is dropped when a global one is
    there (alone, it stays: then it is all the peer said)."""
    if len(by_next_hop) < 2:
        return by_next_hop
    local = {hop for hop in by_next_hop if _is_link_local(hop)}
    if not local or len(local) == len(by_next_hop):
        return by_next_hop
    return {hop: nlris for hop, nlris in by_next_hop.items() if hop not in local}


def _is_link_local(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_link_local
    except ValueError:
        return False  # (reported as malformed where it is read)


def _withdrawn(update: dict[str, object]) -> list[str]:
    prefixes = []
    for family, nlris in _obj(update, "withdraw").items():
        prefixes += [str(_prefix(nlri)) for nlri in _list(nlris, f"withdraw {family!r}")]
    return prefixes


def _graceful_restart(capabilities: dict[str, object]) -> GracefulRestart | None:
    """The graceful restart capability (code 64) as `Graceful.json` writes it. ExaBGP's labels
    are crossed: a family's list holds "restart" when that family's Forwarding State bit (0x80)
    is set, and "restart-flags" holds "forwarding" when the Restart State bit is
    (`Graceful.json`, checked against `Graceful.set` in tests); the bits are read by what they
    are."""
    # An OPEN ExaBGP parsed (received) has its capabilities under their codes, one it built
    # (sent) under their names (`Capabilities` keys of either kind, `JSON._json_kv`).
    key = next((k for k in ("64", "graceful-restart") if k in capabilities), None)
    if key is None:
        return None
    capability = _obj(capabilities, key)
    time = capability.get("time")
    if isinstance(time, bool) or not isinstance(time, int) or not 0 <= time <= GR_TIME_MAX:
        raise _Malformed("graceful restart 'time' is not a number from 0 to 4095")
    flags = _list(capability.get("restart-flags", []), "'restart-flags'")
    families = []
    for name, family_flags in _obj(capability, "address-family-flags").items():
        bits = _list(family_flags, f"address family {name!r} flags")
        version = {"ipv4/unicast": 4, "ipv6/unicast": 6}.get(name)
        if version is not None:  # (other families are no session's of the lab)
            families.append((version, "restart" in bits))
    return GracefulRestart(time, "forwarding" in flags, tuple(families))


def _event(kind: str, data: dict[str, object]) -> Event:
    neighbor = _obj(data, "neighbor")
    address = _obj(neighbor, "address")
    peer, local = _text(address, "peer", ""), _text(address, "local", "")
    if kind == "open":
        direction = _text(neighbor, "direction")
        if direction not in ("receive", "send"):
            raise _Malformed(f"'direction' {direction!r} is neither receive nor send")
        capabilities = _obj(_obj(neighbor, "open"), "capabilities")
        return OpenEvent(peer, local, direction, _graceful_restart(capabilities))
    if kind == "state":
        return StateEvent(peer, local, _text(neighbor, "state"), _text(neighbor, "reason", ""))
    message = _obj(neighbor, "message")
    if "eor" in message:
        return UpdateEvent(peer, local, end_of_rib=True)
    update = _obj(message, "update")
    return UpdateEvent(peer, local, tuple(_announced(update)), tuple(_withdrawn(update)))


def _load(line: str) -> dict[str, object] | None:
    """The JSON object on the line, or None (an acknowledgement, a cut line, not an object)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    # RecursionError: nesting deeper than the interpreter's stack (json.loads raises it).
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def parse_message(line: str) -> Event | None:
    """One line from ExaBGP; None for lines that are not JSON objects (acknowledgements).

    Never raises: a message of a shape ExaBGP does not write is an `OtherEvent` with a problem.
    """
    data = _load(line)
    if data is None:
        return None
    kind = data.get("type")
    if kind not in ("state", "update", "open"):
        return OtherEvent(kind if isinstance(kind, str) else "", data)
    try:
        return _event(kind, data)
    except _Malformed as err:
        return OtherEvent(kind, data, problem=str(err))


def announce_command(peer: str, path: Path) -> str:
    parts = [f"neighbor {peer} announce route {path.prefix} next-hop {path.next_hop}"]
    parts.append(f"local-preference {path.local_pref}")
    if path.as_path:
        parts.append(f"as-path [ {' '.join(str(a) for a in path.as_path)} ]")
    if path.originator_id:
        parts.append(f"originator-id {path.originator_id}")
    if path.cluster_list:
        parts.append(f"cluster-list [ {' '.join(path.cluster_list)} ]")
    return " ".join(parts)


def withdraw_command(peer: str, path: Path) -> str:
    return f"neighbor {peer} withdraw route {path.prefix} next-hop {path.next_hop}"


def coalesce_commands(commands: Iterable[str]) -> list[str]:
    """Adjacent route commands that differ only in their peer, as one command naming every peer
    (`neighbor A , neighbor B announce route ...`, ExaBGP's `reactor/api/command/limit.py`
    `extract_neighbors`), in the same order otherwise.

    ExaBGP parses a route once per command; a reflector that sends each route to 199 clients
    one by one parses it 199 times, and so does a mesh node announcing its own blocks. Only
    adjacent commands are joined, so what one peer is sent keeps its order; a peer already in
    the group ends it (its two commands stay two, in order). ExaBGP answers a joined command
    once, so a caller counting answers counts the returned lines.
    """
    joined: list[str] = []
    peers: list[str] = []
    rest = ""
    for command in commands:
        words = command.split(" ", 2)
        if (
            len(words) == 3
            and words[0] == "neighbor"
            and words[2].startswith(("announce ", "withdraw "))
        ):
            if peers and words[2] == rest and words[1] not in peers:
                peers.append(words[1])
                continue
            _flush_group(joined, peers, rest)
            peers, rest = [words[1]], words[2]
            continue
        _flush_group(joined, peers, rest)
        peers = []
        joined.append(command)
    _flush_group(joined, peers, rest)
    return joined


def _flush_group(joined: list[str], peers: list[str], rest: str) -> None:
    if peers:
        joined.append(" , ".join(f"neighbor {peer}" for peer in peers) + f" {rest}")


def end_of_rib_command(peer: str) -> str:
    """End-of-RIB of the session's family (the lab's sessions carry one unicast family each):
    everything this node has to say was sent before it (RFC 4724 section 2)."""
    return f"neighbor {peer} announce eor {'ipv6' if ':' in peer else 'ipv4'} unicast"


# -- the agent's record of the paths it sent (agent.json's adj_out) ----------------------------


class RecordedPath(Path):
    """A path a previous agent of the node recorded as sent to a peer.

    It never equals a `Path` this agent computes (a dataclass compares equal to its own class
    only), so after a takeover the agent announces everything it wants again, and withdraws
    what it no longer wants: the record can lag behind what was written to ExaBGP, and a
    restarted ExaBGP holds nothing at all.
    """

    @classmethod
    def of(cls, path: Path) -> RecordedPath:
        return cls(**{f.name: getattr(path, f.name) for f in fields(path)})


def path_to_json(path: Path) -> dict[str, object]:
    """The attributes a path carries on the wire, as the agent records them."""
    return {
        "prefix": path.prefix,
        "next_hop": path.next_hop,
        "as_path": list(path.as_path),
        "local_pref": path.local_pref,
        "originator_id": path.originator_id,
        "cluster_list": list(path.cluster_list),
    }


def path_from_json(data: object) -> Path | None:
    """`path_to_json`'s form back (a RIB entry of agent.json has these keys too), checked like
    a message from ExaBGP; None for anything of another shape, never an exception."""
    if not isinstance(data, dict):
        return None
    try:
        return _recorded(data)
    except _Malformed:
        return None


def _recorded(data: dict[str, object]) -> Path:
    prefix = _network(data.get("prefix"), "prefix")
    return Path(
        prefix=str(prefix),
        next_hop=_next_hop(data.get("next_hop"), prefix.version),
        as_path=_as_numbers(_list(data.get("as_path"), "as_path")),
        local_pref=_u32(data.get("local_pref"), "local_pref"),
        originator_id=_originator_id(data.get("originator_id")),
        cluster_list=_cluster_list(data.get("cluster_list")),
    )
