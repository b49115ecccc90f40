"""Snapshots for regression: a lab's sessions, best paths and FIBs, normalized, saved and compared.

Owns the snapshot format (`meshemu-snapshot/1`), its normalization (no timestamps, no process
ids, no counters, stable order, canonical address text), reading and writing snapshot files,
and the per-node comparison of two snapshots. It is pure apart from `write_snapshot` and
`read_snapshot`: it must not read the lab's state folder or the kernel (callers pass in what
they observed) and must not print.

Format:

    {"format": "meshemu-snapshot/1", "lab": "<name>",
     "nodes": {"<node>": {"sessions": [{peer_ip, peer_node, kind, state}],
                          "rib": [{prefix, next_hop, learned_from, as_path, originator_id,
                                   cluster_list}],
                          "fib": [{prefix, type, via, dev, onlink}]}}}
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshemu.errors import ConfigError, Problem
from meshemu.model.load import read_input
from meshemu.model.routes import prefix_sort_key
from meshemu.state import write_text_atomic

FORMAT = "meshemu-snapshot/1"

SESSION_KEYS = ("peer_ip", "peer_node", "kind", "state")
RIB_KEYS = ("prefix", "next_hop", "learned_from", "as_path", "originator_id", "cluster_list")
FIB_KEYS = ("prefix", "type", "via", "dev", "onlink")
# A snapshot of a 1,000-node lab is tens of MiB; anything larger is not one.
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024
SECTIONS: dict[str, tuple[str, ...]] = {"sessions": SESSION_KEYS, "rib": RIB_KEYS, "fib": FIB_KEYS}

# Kinds of `Change`, in the order a person reads them within a node.
NODE_ADDED, NODE_REMOVED = "node added", "node removed"
SESSION_ADDED, SESSION_REMOVED = "session added", "session removed"
SESSION_STATE_CHANGED = "session state changed"
RIB_CHANGED = "rib changed"
ROUTE_ADDED, ROUTE_REMOVED = "route added", "route removed"
NEXT_HOP_CHANGED, DEVICE_CHANGED, ROUTE_CHANGED = (
    "next hop changed",
    "device changed",
    "route changed",
)
KINDS = (
    NODE_ADDED,
    NODE_REMOVED,
    SESSION_ADDED,
    SESSION_REMOVED,
    SESSION_STATE_CHANGED,
    RIB_CHANGED,
    ROUTE_ADDED,
    ROUTE_REMOVED,
    NEXT_HOP_CHANGED,
    DEVICE_CHANGED,
    ROUTE_CHANGED,
)


@dataclass(frozen=True)
class Change:
    """One difference between snapshot A (before) and B (after) on one node."""

    node: str
    kind: str  # one of KINDS
    prefix_or_peer: str  # the prefix (routes, RIB), the peer address (sessions), "" (nodes)
    before: str | None
    after: str | None

    def text(self) -> str:
        if self.before is not None and self.after is not None:
            what = f"{self.before} -> {self.after}"
        else:
            what = self.after if self.after is not None else (self.before or "")
        subject = f"{self.prefix_or_peer}: " if self.prefix_or_peer else ""
        return f"{self.kind}: {subject}{what}".rstrip(": ")


# --- normalization --------------------------------------------------------------------------


def _canonical_address(value: Any) -> Any:
    """An address or prefix in canonical text (compressed IPv6, lowercase); others unchanged."""
    if not isinstance(value, str) or not value:
        return value
    try:
        if "/" in value:
            return str(ipaddress.ip_network(value, strict=False))
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


def _address_order(value: Any) -> tuple[int, int, int, str]:
    """Addresses and prefixes numerically (`prefix_sort_key`), anything else after."""
    return prefix_sort_key("" if value is None else str(value))


def _sort_key(entry: Mapping[str, Any], first: str) -> tuple[Any, ...]:
    return (_address_order(entry.get(first)), json.dumps(entry, sort_keys=True))


def _session(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "peer_ip": _canonical_address(raw.get("peer_ip")),
        "peer_node": raw.get("peer_node"),
        "kind": raw.get("kind"),
        "state": raw.get("state"),
    }


def _rib_entry(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "prefix": _canonical_address(raw.get("prefix")),
        "next_hop": _canonical_address(raw.get("next_hop")),
        "learned_from": _canonical_address(raw.get("learned_from")),
        "as_path": list(raw.get("as_path") or []),
        "originator_id": raw.get("originator_id"),
        "cluster_list": [str(c) for c in raw.get("cluster_list") or []],
    }


def _fib_entry(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "prefix": _canonical_address(raw.get("prefix")),
        "type": raw.get("type") or "unicast",
        "via": _canonical_address(raw.get("via")),
        "dev": raw.get("dev"),
        "onlink": bool(raw.get("onlink")),
    }


def normalize(
    lab_plan_json: Mapping[str, Any],
    agent_states: Mapping[str, Mapping[str, Any]],
    fibs: Mapping[str, Sequence[Mapping[str, Any]]],
) -> dict[str, Any]:
    """The snapshot of a lab: its plan's name, and per node what its agent and kernel show.

    `agent_states` maps a node to its agent's state JSON (`Runtime.write_state`); only the best
    paths of its RIB are kept. `fibs` maps a node to its observed kernel routes (dicts with
    prefix, type, via, dev, onlink); a node absent from `fibs` falls back to the FIB its agent
    reports. Nodes are those of the plan plus any that appear in the observations (a node
    added by a scenario). Times, pids, counters, `since`, `info` and `errors` are dropped.
    """
    planned = [str(n["name"]) for n in lab_plan_json.get("nodes", []) if "name" in n]
    names = sorted(set(planned) | set(agent_states) | set(fibs))
    nodes: dict[str, Any] = {}
    for name in names:
        state = agent_states.get(name) or {}
        sessions = [_session(s) for s in state.get("sessions") or []]
        rib = [_rib_entry(p) for p in state.get("rib") or [] if p.get("best")]
        fib_source = fibs[name] if name in fibs else state.get("fib") or []
        fib = [_fib_entry(r) for r in fib_source]
        nodes[name] = {
            "sessions": sorted(sessions, key=lambda e: _sort_key(e, "peer_ip")),
            "rib": sorted(rib, key=lambda e: _sort_key(e, "prefix")),
            "fib": sorted(fib, key=lambda e: _sort_key(e, "prefix")),
        }
    return {"format": FORMAT, "lab": str(lab_plan_json.get("name", "")), "nodes": nodes}


# --- files ----------------------------------------------------------------------------------


def dumps(data: Mapping[str, Any]) -> str:
    """The snapshot's file text: sorted keys, two-space indent, UTF-8 as is, trailing newline."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_snapshot(path: Path | str, data: Mapping[str, Any]) -> None:
    """Write `data` to `path` deterministically, atomically (a reader never sees half a file)."""
    write_text_atomic(Path(path), dumps(data))


def _check_entries(where: str, section: str, entries: Any, problems: list[Problem]) -> None:
    if not isinstance(entries, list):
        problems.append(Problem(where, f"expected a list, found {type(entries).__name__}"))
        return
    required = set(SECTIONS[section])
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(Problem(f"{where}[{i}]", "expected an object"))
            continue
        missing = sorted(required - set(entry))
        if missing:
            problems.append(Problem(f"{where}[{i}]", f"missing {', '.join(missing)}"))


def validate_snapshot(data: Any, source: str = "snapshot") -> list[Problem]:
    """Every problem with the structure of `data`, each located under `source`."""
    hint = "write it with `meshemu snapshot`"
    if not isinstance(data, dict):
        return [Problem(source, "a snapshot is a JSON object", hint)]
    problems: list[Problem] = []
    if data.get("format") != FORMAT:
        problems.append(
            Problem(
                f"{source}: format",
                f"expected {FORMAT!r}, found {data.get('format')!r}",
                hint,
            )
        )
    if not isinstance(data.get("lab"), str):
        problems.append(Problem(f"{source}: lab", "missing or not a string", hint))
    nodes = data.get("nodes")
    if not isinstance(nodes, dict):
        problems.append(Problem(f"{source}: nodes", "missing or not an object", hint))
        return problems
    for name, node in nodes.items():
        where = f"{source}: nodes.{name}"
        if not isinstance(node, dict):
            problems.append(Problem(where, "expected an object with sessions, rib, fib"))
            continue
        for section in SECTIONS:
            _check_entries(f"{where}.{section}", section, node.get(section, []), problems)
    return problems


def read_snapshot(path: Path | str) -> dict[str, Any]:
    """The snapshot in `path`; `ConfigError` with located problems if it is missing or bad."""
    source = str(path)
    if not os.path.lexists(path):
        raise ConfigError(
            [Problem(source, "no such snapshot file", "write one with `meshemu snapshot`")]
        )
    # Bounded, never blocking on a FIFO, UTF-8 only: the reader of every input file.
    text = read_input(Path(path), limit=MAX_SNAPSHOT_BYTES)
    try:
        data = json.loads(text)
    except RecursionError:
        raise ConfigError([Problem(source, "is nested too deeply to be a snapshot")]) from None
    except json.JSONDecodeError as err:
        raise ConfigError(
            [
                Problem(
                    f"{source}:{err.lineno}:{err.colno}",
                    f"not valid JSON: {err.msg}",
                    "a snapshot is the JSON `meshemu snapshot` writes",
                )
            ]
        ) from err
    problems = validate_snapshot(data, source)
    if problems:
        raise ConfigError(problems)
    nodes = data["nodes"]
    for node in nodes.values():
        for section in SECTIONS:
            node.setdefault(section, [])
    return dict(data)


# --- comparison -----------------------------------------------------------------------------


def session_text(entry: Mapping[str, Any]) -> str:
    peer = entry.get("peer_node") or "external peer"
    return f"{peer} ({entry.get('kind')}) {entry.get('state')}"


def rib_text(entry: Mapping[str, Any]) -> str:
    parts = [f"next hop {entry.get('next_hop')}"]
    learned = entry.get("learned_from")
    parts.append(f"from {learned}" if learned else "originated here")
    as_path = entry.get("as_path") or []
    if as_path:
        parts.append("AS path " + " ".join(str(a) for a in as_path))
    if entry.get("originator_id"):
        parts.append(f"originator {entry.get('originator_id')}")
    cluster_list = entry.get("cluster_list") or []
    if cluster_list:
        parts.append("cluster list " + " ".join(str(c) for c in cluster_list))
    return ", ".join(parts)


def fib_text(entry: Mapping[str, Any]) -> str:
    """A kernel route as `ip route` would show it (same shape as `FibRoute.text`)."""
    if entry.get("type") == "blackhole":
        return f"blackhole {entry.get('prefix')}"
    parts = [str(entry.get("prefix"))]
    if entry.get("type") not in (None, "unicast"):
        parts.insert(0, str(entry.get("type")))
    if entry.get("via"):
        parts.append(f"via {entry.get('via')}")
    if entry.get("dev"):
        parts.append(f"dev {entry.get('dev')}")
    if entry.get("onlink"):
        parts.append("onlink")
    return " ".join(parts)


def _group(entries: Iterable[Mapping[str, Any]], *keys: str) -> dict[str, list[Mapping[str, Any]]]:
    """Entries by their identity (`keys` joined); a prefix may have several kernel routes."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for entry in entries:
        ident = " ".join(str(entry.get(k)) for k in keys if entry.get(k) is not None)
        out.setdefault(ident, []).append(entry)
    return out


def _ordered(keys: Iterable[str]) -> list[str]:
    return sorted(keys, key=lambda k: (*_address_order(k.split(" ")[0]), k))


def _diff_sessions(node: str, a: list[Any], b: list[Any]) -> list[Change]:
    before, after = _group(a, "peer_ip", "kind"), _group(b, "peer_ip", "kind")
    changes = []
    for key in _ordered(set(before) | set(after)):
        peer = key.split(" ")[0]
        old, new = before.get(key), after.get(key)
        if old is None and new is not None:
            for entry in new:
                changes.append(Change(node, SESSION_ADDED, peer, None, session_text(entry)))
        elif new is None and old is not None:
            for entry in old:
                changes.append(Change(node, SESSION_REMOVED, peer, session_text(entry), None))
        elif old != new and old is not None and new is not None:
            changes.append(
                Change(
                    node,
                    SESSION_STATE_CHANGED,
                    peer,
                    "; ".join(session_text(e) for e in old),
                    "; ".join(session_text(e) for e in new),
                )
            )
    return changes


def _diff_rib(node: str, a: list[Any], b: list[Any]) -> list[Change]:
    before, after = _group(a, "prefix"), _group(b, "prefix")
    changes = []
    for prefix in _ordered(set(before) | set(after)):
        old, new = before.get(prefix), after.get(prefix)
        if old != new:
            changes.append(
                Change(
                    node,
                    RIB_CHANGED,
                    prefix,
                    "; ".join(rib_text(e) for e in old) if old else None,
                    "; ".join(rib_text(e) for e in new) if new else None,
                )
            )
    return changes


def _fib_kind(old: list[Mapping[str, Any]], new: list[Mapping[str, Any]]) -> str:
    if len(old) == 1 and len(new) == 1:
        differing = {k for k in FIB_KEYS if old[0].get(k) != new[0].get(k)}
        if differing == {"via"}:
            return NEXT_HOP_CHANGED
        # Moving into or out of a tunnel changes the device, and the onlink flag with it.
        if "dev" in differing and differing <= {"dev", "onlink"}:
            return DEVICE_CHANGED
    return ROUTE_CHANGED


def _diff_fib(node: str, a: list[Any], b: list[Any]) -> list[Change]:
    before, after = _group(a, "prefix"), _group(b, "prefix")
    changes = []
    for prefix in _ordered(set(before) | set(after)):
        old, new = before.get(prefix), after.get(prefix)
        if old is None and new is not None:
            changes.append(
                Change(node, ROUTE_ADDED, prefix, None, "; ".join(fib_text(e) for e in new))
            )
        elif new is None and old is not None:
            changes.append(
                Change(node, ROUTE_REMOVED, prefix, "; ".join(fib_text(e) for e in old), None)
            )
        elif old is not None and new is not None and old != new:
            changes.append(
                Change(
                    node,
                    _fib_kind(old, new),
                    prefix,
                    "; ".join(fib_text(e) for e in old),
                    "; ".join(fib_text(e) for e in new),
                )
            )
    return changes


def _summary(node: Mapping[str, Any]) -> str:
    return (
        f"{len(node.get('sessions') or [])} sessions, {len(node.get('rib') or [])} best paths, "
        f"{len(node.get('fib') or [])} routes"
    )


def diff_snapshots(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    """What changed from snapshot `a` (before) to `b` (after), per node in name order.

    Within a node: sessions, then best paths, then kernel routes, each in address order.
    Empty when the two are the same lab state (the lab names themselves are not compared, so a
    snapshot kept in a repository can be checked against a lab with another name).
    """
    nodes_a: Mapping[str, Any] = a.get("nodes") or {}
    nodes_b: Mapping[str, Any] = b.get("nodes") or {}
    changes: list[Change] = []
    for name in sorted(set(nodes_a) | set(nodes_b)):
        if name not in nodes_b:
            changes.append(Change(name, NODE_REMOVED, "", _summary(nodes_a[name]), None))
            continue
        if name not in nodes_a:
            changes.append(Change(name, NODE_ADDED, "", None, _summary(nodes_b[name])))
            continue
        old, new = nodes_a[name], nodes_b[name]
        changes += _diff_sessions(name, old.get("sessions") or [], new.get("sessions") or [])
        changes += _diff_rib(name, old.get("rib") or [], new.get("rib") or [])
        changes += _diff_fib(name, old.get("fib") or [], new.get("fib") or [])
    return changes


def render_diff(changes: Sequence[Change]) -> str:
    """The changes as text, grouped per node; says so when there are none."""
    if not changes:
        return "no differences\n"
    lines: list[str] = []
    by_node: dict[str, list[Change]] = {}
    for change in changes:
        by_node.setdefault(change.node, []).append(change)
    width = max(len(c.kind) for c in changes)
    for node in sorted(by_node):
        items = by_node[node]
        lines.append(f"{node}: {len(items)} change{'s' if len(items) != 1 else ''}")
        for change in items:
            texts = [t for t in (change.before, change.after) if t is not None]
            subject = change.prefix_or_peer
            # A kernel route's text starts with its prefix already; do not say it twice.
            shown = f"{subject}: " if subject and not all(subject in t for t in texts) else ""
            head = f"  {change.kind:<{width}}  "
            if change.before is not None and change.after is not None:
                lines.append(f"{head}{shown}{change.before}")
                lines.append(f"{' ' * len(head)}-> {change.after}")
            else:
                lines.append(f"{head}{shown}{texts[0] if texts else ''}")
    return "\n".join(lines) + "\n"
