"""ExaBGP's JSON API messages -> meshemu events, and meshemu paths -> ExaBGP API commands.

Owns the wire format between ExaBGP 5.0 and the agent (pure, unit-testable): `state` messages
(connected / up / down with a reason), `update` messages (announce per family and next hop with
the path attributes, withdraw, end-of-RIB), and the text commands the agent writes back
(`neighbor <peer> announce route ... originator-id ... cluster-list [...]`, `... withdraw route`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from meshemu.model.bgp import Path


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
    kind: str
    raw: dict[str, object] = field(default_factory=dict)


Event = StateEvent | UpdateEvent | OtherEvent


def _as_path(attribute: dict[str, object]) -> tuple[int, ...]:
    raw = attribute.get("as-path")
    if isinstance(raw, list):
        return tuple(int(a) for a in raw)
    if isinstance(raw, dict):
        out: list[int] = []
        for key in sorted(raw, key=lambda k: int(k)):
            segment = raw[key]
            if isinstance(segment, dict):
                out += [int(a) for a in segment.get("value", [])]
        return tuple(out)
    return ()


def parse_message(line: str) -> Event | None:
    """One line from ExaBGP; None for lines that are not JSON (acknowledgements)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    kind = data.get("type")
    neighbor = data.get("neighbor") or {}
    address = neighbor.get("address") or {}
    peer, local = str(address.get("peer", "")), str(address.get("local", ""))
    if kind == "state":
        return StateEvent(peer, local, str(neighbor.get("state")), str(neighbor.get("reason", "")))
    if kind != "update":
        return OtherEvent(str(kind), data)
    message = neighbor.get("message") or {}
    if "eor" in message:
        return UpdateEvent(peer, local, end_of_rib=True)
    update = message.get("update") or {}
    attribute = update.get("attribute") or {}
    announced = []
    for _family, by_next_hop in (update.get("announce") or {}).items():
        for next_hop, nlris in by_next_hop.items():
            for nlri in nlris:
                prefix = nlri.get("nlri") if isinstance(nlri, dict) else nlri
                announced.append(
                    Path(
                        prefix=str(prefix),
                        next_hop=str(next_hop),
                        as_path=_as_path(attribute),
                        local_pref=int(attribute.get("local-preference", 100)),
                        originator_id=attribute.get("originator-id"),
                        cluster_list=tuple(attribute.get("cluster-list", ())),
                    )
                )
    withdrawn = []
    for _family, nlris in (update.get("withdraw") or {}).items():
        for nlri in nlris:
            withdrawn.append(str(nlri.get("nlri") if isinstance(nlri, dict) else nlri))
    return UpdateEvent(peer, local, tuple(announced), tuple(withdrawn))


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
