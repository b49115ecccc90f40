"""What a routing change does, before it is merged: the difference between two plans (pure).

Owns `impact(old_topo, old_plan, new_topo, new_plan)`: per node the BGP sessions added, removed
or changed (with each side's reason), the kernel routes added, removed or taking another path
(direct, IP-in-IP, VXLAN, through the fabric's router), the pod pairs that lose or gain
reachability or change path, and the input fields that changed (in the native topology's
terms: a Calico bundle is converted to them). Also the reachability the plan expects
(`pod_reachability`: a packet walked hop by hop through the plan's node FIBs, tunnels and BGP
routers' routes, both ways), the protect spec (`ProtectSpec`: pod pairs, nodes and prefixes that
must stay reachable; validated, located problems) and its verdict (`breaches`).
Nothing here reads files or runs anything: `cli.insight_cmds` reads the inputs, `lab.impact_run`
brings the labs up, `verify.impact_check` compares the prediction with what they show.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshemu.errors import ConfigError, Problem
from meshemu.model.explain import longest_match, route_path, router_addresses, session_words
from meshemu.model.labplan import LabPlan, NodePlan, PodPlan
from meshemu.model.policy_eval import Verdicts, echo, endpoints_of
from meshemu.model.routes import FibRoute, prefix_sort_key
from meshemu.model.sessions import Session
from meshemu.model.topology import Topology
from meshemu.model.wire import Wire

FAMILIES = (4, 6)
# A packet crosses at most this many nodes and routers; more is a forwarding loop.
MAX_HOPS = 16

PairKey = tuple[str, str, int]  # (node/pod, node/pod, family)


# -- reachability --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reach:
    """Whether a pod reaches another (and hears back), the path the first hop takes, and why."""

    path: str  # local | direct | ipip | vxlan | router | none
    why: str

    @property
    def ok(self) -> bool:
        return self.path != "none"


def _lookup(routes: Iterable[FibRoute], address: str) -> FibRoute | None:
    """The longest-prefix route for `address` among `routes`."""
    return longest_match(routes, lambda r: r.prefix, ipaddress.ip_network(address))


class _Forwarding:
    """The plan's forwarding state, as a packet between pods meets it."""

    def __init__(self, plan: LabPlan) -> None:
        self.plan = plan
        self.nodes = {n.name: n for n in plan.nodes}
        self.node_at = {a: n.name for n in plan.nodes for a in (n.ipv4, n.ipv6) if a}
        self.vtep_of = {v.address: n.name for n in plan.nodes for v in n.vteps}
        self.router_at = router_addresses(plan)
        self.router_fib = {r.name: (r.bgp.fib() if r.bgp is not None else ()) for r in plan.routers}
        self.plain = {r.name for r in plan.routers if r.bgp is None}

    def walk(self, start: str, address: str, target: str) -> Reach:
        """From node `start` to `address`, a pod on node `target`: the first hop's path."""
        first, how = "", ""
        at, kind = start, "node"
        for _ in range(MAX_HOPS):
            if kind == "node":
                node = self.nodes[at]
                if at == target and not first:
                    return Reach("local", "both pods on the same node")
                route = _lookup(node.fib, address)
                if route is None:
                    gateway = node.gateway(ipaddress.ip_address(address).version)
                    if at == target:
                        return Reach("none", f"{at} has no route to its own pod {address}")
                    if gateway is None:
                        return Reach("none", f"{at} has no route to {address}")
                    route = FibRoute(address, "unicast", gateway, node.uplink)
                    step = "router"
                else:
                    step = route_path(node, route)
                if step == "blackhole":
                    return Reach("none", f"{at} drops it: blackhole {route.prefix}")
                if step == "local":
                    if at == target:
                        return Reach(first or "local", how or "both pods on the same node")
                    return Reach("none", f"{at} sends it to a local interface {route.dev}")
                if not first:
                    first, how = step, f"{at}: {route.text()}"
                hop = route.via or ""
                if step == "vxlan":
                    at = self.vtep_of.get(hop, "")
                    if not at:
                        return Reach("none", f"{node.name}: VTEP {hop} belongs to no node")
                    continue
                at, kind = self._owner(hop)
                if not at:
                    return Reach("none", f"{node.name}: next hop {hop} is nobody in the lab")
                continue
            route = _lookup(self.router_fib[at], address)
            if route is None:
                plain = " (a plain router: it learns no pod routes)" if at in self.plain else ""
                return Reach("none", f"router {at} has no route to {address}{plain}")
            if not first:
                first, how = "router", f"router {at}: {route.text()}"
            # (An ECMP route's next hops all lead on alike: the first stands for them.)
            at, kind = self._owner(route.via or next((h.via or "" for h in route.nexthops), ""))
            if not at:
                return Reach("none", f"router {at}: next hop {route.via} is nobody in the lab")
        return Reach("none", f"a forwarding loop from {start} towards {address}")

    def _owner(self, address: str) -> tuple[str, str]:
        if address in self.node_at:
            return self.node_at[address], "node"
        if address in self.router_at:
            return self.router_at[address], "router"
        return "", ""


def pod_reachability(plan: LabPlan) -> dict[PairKey, Reach]:
    """Every ordered pair of pods (and family both have) with what the plan's forwarding does
    to a packet from one to the other and to the answer."""
    fwd = _Forwarding(plan)
    # Network policy (model.policy_eval) decides an echo as Felix's chains would; the verify
    # matrix probes with echoes.
    verdicts = Verdicts(plan.policy, endpoints_of(plan, plan.policy)) if plan.policy else None
    pods = [(n, p) for n in plan.nodes for p in n.pods]
    out: dict[PairKey, Reach] = {}
    for src_node, src in pods:
        for dst_node, dst in pods:
            if src is dst:
                continue
            for family in FAMILIES:
                there, back = dst.address(family), src.address(family)
                if there is None or back is None:
                    continue
                key = (_pod(src_node, src), _pod(dst_node, dst), family)
                go = fwd.walk(src_node.name, there, dst_node.name)
                if go.ok:
                    ret = fwd.walk(dst_node.name, back, src_node.name)
                    if not ret.ok:
                        go = Reach("none", f"no way back: {ret.why}")
                if go.ok and verdicts is not None:
                    decision = verdicts.decide(
                        verdicts.by_ref[key[0]], verdicts.by_ref[key[1]], echo(family)
                    )
                    if not decision.allowed:
                        go = Reach("none", f"network policy denies it: {decision.reason}")
                out[key] = go
    return out


def _pod(node: NodePlan, pod: PodPlan) -> str:
    return f"{node.name}/{pod.name}"


# -- the difference ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionChange(Wire):
    node: str
    change: str  # added | removed | changed
    peer: str  # the peer's name, or its address outside the lab
    family: int
    peer_ip: str
    what: tuple[str, ...]  # for `changed`: "field: old -> new"
    old_reason: str
    new_reason: str


@dataclass(frozen=True)
class RouteChange(Wire):
    node: str
    change: str  # added | removed | path | changed
    prefix: str
    old_route: str
    new_route: str
    old_path: str  # a PATHS word, "" when absent
    new_path: str
    why: str  # the new route's reason (the old one's when removed)


@dataclass(frozen=True)
class PairChange(Wire):
    source: str  # node/pod
    target: str
    family: int
    change: str  # lost | gained | path
    old_path: str  # local | direct | ipip | vxlan | router | none | absent
    new_path: str
    why: str

    @property
    def key(self) -> PairKey:
        return (self.source, self.target, self.family)


@dataclass(frozen=True)
class NodeImpact(Wire):
    node: str
    status: str  # kept | added | removed
    sessions: tuple[SessionChange, ...]
    routes: tuple[RouteChange, ...]

    @property
    def changed(self) -> bool:
        return self.status != "kept" or bool(self.sessions or self.routes)


@dataclass(frozen=True)
class Breach(Wire):
    """A protected pod pair that the change would break."""

    rule: str  # the protect entry, e.g. "pairs[0] node1/pod1 -> node3/pod1"
    source: str
    target: str
    family: int
    why: str


@dataclass(frozen=True)
class Impact:
    old: str  # the inputs' labels (file names)
    new: str
    inputs: tuple[str, ...]  # input fields that changed: "pools.p.ipipMode: Always -> Never"
    nodes: tuple[NodeImpact, ...]
    pairs: tuple[PairChange, ...]
    reachable_old: int  # pod pairs (and families) reachable before / after
    reachable_new: int
    total_old: int
    total_new: int
    breaches: tuple[Breach, ...] = ()
    protected: int = 0  # protected pod pairs checked
    old_reach: Mapping[PairKey, Reach] = field(default_factory=dict, compare=False)
    new_reach: Mapping[PairKey, Reach] = field(default_factory=dict, compare=False)

    @property
    def changed(self) -> bool:
        return bool(self.pairs) or any(n.changed for n in self.nodes)

    def counts(self) -> dict[str, int]:
        sessions = [s for n in self.nodes for s in n.sessions]
        routes = [r for n in self.nodes for r in n.routes]
        return {
            "nodes_changed": sum(1 for n in self.nodes if n.changed),
            "sessions_added": sum(1 for s in sessions if s.change == "added"),
            "sessions_removed": sum(1 for s in sessions if s.change == "removed"),
            "sessions_changed": sum(1 for s in sessions if s.change == "changed"),
            "routes_added": sum(1 for r in routes if r.change == "added"),
            "routes_removed": sum(1 for r in routes if r.change == "removed"),
            "routes_path": sum(1 for r in routes if r.change == "path"),
            "routes_changed": sum(1 for r in routes if r.change == "changed"),
            "pairs_lost": sum(1 for p in self.pairs if p.change == "lost"),
            "pairs_gained": sum(1 for p in self.pairs if p.change == "gained"),
            "pairs_path": sum(1 for p in self.pairs if p.change == "path"),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "changed": self.changed,
            "summary": self.counts(),
            "reachable": {
                "old": {"pairs": self.total_old, "reachable": self.reachable_old},
                "new": {"pairs": self.total_new, "reachable": self.reachable_new},
            },
            "inputs": list(self.inputs),
            "nodes": [n.to_json() for n in self.nodes if n.changed],
            "pairs": [p.to_json() for p in self.pairs],
            "protected": {
                "pairs_checked": self.protected,
                "ok": not self.breaches,
                "breaches": [b.to_json() for b in self.breaches],
            },
        }


def impact(
    old_topo: Topology,
    old_plan: LabPlan,
    new_topo: Topology,
    new_plan: LabPlan,
    old_label: str = "old",
    new_label: str = "new",
    protect: ProtectSpec | None = None,
) -> Impact:
    old_reach, new_reach = pod_reachability(old_plan), pod_reachability(new_plan)
    old_nodes = {n.name: n for n in old_plan.nodes}
    new_nodes = {n.name: n for n in new_plan.nodes}
    nodes = []
    for name in [*old_nodes, *(n for n in new_nodes if n not in old_nodes)]:
        before, after = old_nodes.get(name), new_nodes.get(name)
        status = "removed" if after is None else "added" if before is None else "kept"
        nodes.append(
            NodeImpact(
                name,
                status,
                _session_changes(name, before, after, old_topo, old_plan, new_topo, new_plan),
                _route_changes(name, before, after),
            )
        )
    pairs = _pair_changes(old_reach, new_reach)
    breaches = protect.breaches(old_reach, new_reach) if protect is not None else ()
    return Impact(
        old=old_label,
        new=new_label,
        inputs=tuple(input_changes(old_topo, new_topo)),
        nodes=tuple(nodes),
        pairs=tuple(pairs),
        reachable_old=sum(1 for r in old_reach.values() if r.ok),
        reachable_new=sum(1 for r in new_reach.values() if r.ok),
        total_old=len(old_reach),
        total_new=len(new_reach),
        breaches=tuple(breaches),
        protected=protect.count(old_reach) if protect is not None else 0,
        old_reach=old_reach,
        new_reach=new_reach,
    )


def _session_key(s: Session) -> tuple[int, str]:
    return (s.family, s.peer_name or s.peer_ip)


def _session_facts(s: Session, up: bool) -> dict[str, str]:
    """What a change of a session is judged on (not its reason's wording)."""
    return {
        "peer_ip": s.peer_ip,
        "peer_port": str(s.peer_port),
        "kind": s.kind,
        "source": s.source,
        "peer_as": str(s.peer_as),
        "local_as": str(s.local_as),
        "passive": str(s.passive).lower(),
        "rr_client": str(s.rr_client).lower(),
        "password": "set" if s.password else "none",
        "keep_next_hop": str(s.keep_next_hop).lower(),
        "next_hop_self": str(s.next_hop_self).lower(),
        "filters": ",".join((*s.import_filters, *s.export_filters)) or "none",
        "expected_up": str(up).lower(),
    }


def _session_changes(
    name: str,
    before: NodePlan | None,
    after: NodePlan | None,
    old_topo: Topology,
    old_plan: LabPlan,
    new_topo: Topology,
    new_plan: LabPlan,
) -> tuple[SessionChange, ...]:
    old = {_session_key(s): s for s in (before.sessions if before else ())}
    new = {_session_key(s): s for s in (after.sessions if after else ())}
    if old == new:
        return ()
    was = session_words(old_topo, old_plan, name) if before else (lambda s: s.reason)
    now = session_words(new_topo, new_plan, name) if after else (lambda s: s.reason)
    out = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        family, peer = key
        if a is None and b is not None:
            out.append(SessionChange(name, "added", peer, family, b.peer_ip, (), "", now(b)))
        elif b is None and a is not None:
            out.append(SessionChange(name, "removed", peer, family, a.peer_ip, (), was(a), ""))
        elif a is not None and b is not None and before is not None and after is not None:
            fa = _session_facts(a, a.peer_ip in before.expected_up)
            fb = _session_facts(b, b.peer_ip in after.expected_up)
            what = tuple(f"{k}: {fa[k]} -> {fb[k]}" for k in fa if fa[k] != fb[k])
            if what:
                out.append(
                    SessionChange(name, "changed", peer, family, b.peer_ip, what, was(a), now(b))
                )
    return tuple(out)


def _route_changes(
    name: str, before: NodePlan | None, after: NodePlan | None
) -> tuple[RouteChange, ...]:
    old = {r.prefix: r for r in (before.fib if before else ())}
    new = {r.prefix: r for r in (after.fib if after else ())}
    out = []
    for prefix in sorted(old.keys() | new.keys(), key=prefix_sort_key):
        a, b = old.get(prefix), new.get(prefix)
        pa = route_path(before, a) if a is not None and before is not None else ""
        pb = route_path(after, b) if b is not None and after is not None else ""
        if a is None and b is not None:
            out.append(RouteChange(name, "added", prefix, "", b.text(), "", pb, b.reason))
        elif b is None and a is not None:
            why = _gone(prefix, before, after)
            out.append(RouteChange(name, "removed", prefix, a.text(), "", pa, "", why))
        elif a is not None and b is not None and _route_key(before, a) != _route_key(after, b):
            change = "path" if pa != pb else "changed"
            out.append(RouteChange(name, change, prefix, a.text(), b.text(), pa, pb, b.reason))
    return tuple(out)


def _route_key(node: NodePlan | None, route: FibRoute) -> tuple[object, ...]:
    """What a route change is judged on: a pod's route by the pod's name, not its interface's
    (the `cali` name hashes the lab's name, which `--run` gives each side its own of)."""
    pods = {p.host_ifname: p.name for p in (node.pods if node else ())}
    dev = f"pod {pods[route.dev]}" if route.dev in pods else route.dev
    return (route.prefix, route.type, route.via, dev, route.onlink)


def _gone(prefix: str, before: NodePlan | None, after: NodePlan | None) -> str:
    """Why a route of the old plan is not in the new one."""
    if after is None:
        return "the node is gone"
    old_route = next((r for r in (before.fib if before else ()) if r.prefix == prefix), None)
    was = next(
        (
            p.name
            for p in (before.pods if before else ())
            if old_route and p.host_ifname == old_route.dev
        ),
        None,
    )
    pod = next((p for p in after.pods if p.name == was), None)
    if pod is not None:
        family = ipaddress.ip_network(prefix).version
        return f"pod {pod.name} has another address now: {pod.address(family) or 'none'}"
    entry = next((e for e in (before.rib if before else ()) if e.prefix == prefix), None)
    if entry is None or entry.learned_from is None:
        return "this node no longer owns that block or pod"
    return (
        f"was {entry.origin_node}'s block, learned from {entry.learned_from}; the new plan "
        "learns no path for it (the block moved, or no session carries it here)"
    )


def _absent(key: PairKey) -> str:
    return (
        f"the new plan has no such pair: {key[0]} or {key[1]} is gone or has no ipv{key[2]} address"
    )


def _pair_changes(old: Mapping[PairKey, Reach], new: Mapping[PairKey, Reach]) -> list[PairChange]:
    out = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        pa = a.path if a is not None else "absent"
        pb = b.path if b is not None else "absent"
        was, now = a is not None and a.ok, b is not None and b.ok
        if was and not now:
            why = b.why if b is not None else _absent(key)
            out.append(PairChange(*key, "lost", pa, pb, why))
        elif now and not was and b is not None:
            why = f"now {b.why}" + (f"; before: {a.why}" if a is not None else " (a new pair)")
            out.append(PairChange(*key, "gained", pa, pb, why))
        elif was and now and pa != pb and b is not None:
            out.append(PairChange(*key, "path", pa, pb, f"now {b.why}"))
    return out


# -- the inputs' own difference -----------------------------------------------------------------

# Not the network: a label of the lab, or meshemu's list of fields it does not emulate.
_NOT_NETWORK = ("name", "description", "unsupported")


def input_changes(old: Topology, new: Topology) -> list[str]:
    """Every input field that differs, as `path: old -> new` in the native topology's names
    (Calico's field names: the topology uses them); an entry only one side has (a node, a
    pool, a BGPPeer) is one line, `added` or `removed`."""
    out: list[str] = []
    _diff(
        old.model_dump(by_alias=True, exclude_none=True, exclude=set(_NOT_NETWORK)),
        new.model_dump(by_alias=True, exclude_none=True, exclude=set(_NOT_NETWORK)),
        "",
        out,
    )
    return out


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in b:
                out.append(f"{where}: removed")
            elif key not in a:
                out.append(f"{where}: added")
            else:
                _diff(a[key], b[key], where, out)
    elif a != b:
        out.append(f"{path}: {_text(a)} -> {_text(b)}")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_text, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) + "}"
    return str(value)


# -- what must not break -------------------------------------------------------------------------


@dataclass(frozen=True)
class ProtectRule:
    """One entry of a protect spec: which pod pairs it covers."""

    label: str  # e.g. "pairs[0] node1/pod1 -> node3" (for messages)
    kind: str  # pair | node | prefix
    source: str = ""  # pair: NODE or NODE/POD
    target: str = ""
    family: int | None = None  # None: both
    node: str = ""
    prefix: str = ""

    def covers(self, key: PairKey) -> bool:
        src, dst, family = key
        if self.family is not None and family != self.family:
            return False
        if self.kind == "pair":
            return _names(self.source, src) and _names(self.target, dst)
        if self.kind == "node":
            return src.split("/")[0] == self.node or dst.split("/")[0] == self.node
        return False  # prefixes: by address, see ProtectSpec


def _names(pattern: str, pod: str) -> bool:
    return pod == pattern if "/" in pattern else pod.split("/")[0] == pattern


@dataclass(frozen=True)
class ProtectSpec:
    """What must stay reachable: pod pairs (NODE or NODE/POD each side), every pod of a node
    (to and from every pod it reached), and every pod whose address is in a prefix (from every
    pod that reached it). A covered pair breaks when it was reachable in the old plan and is
    not in the new one (a pod that is gone breaks its pairs too)."""

    rules: tuple[ProtectRule, ...]
    # (node/pod, family) -> address in the old plan: which pods a prefix rule covers.
    addresses: Mapping[tuple[str, int], str] = field(default_factory=dict)

    def _covered(self, rule: ProtectRule, key: PairKey) -> bool:
        if rule.kind != "prefix":
            return rule.covers(key)
        address = self.addresses.get((key[1], key[2]))
        if address is None:
            return False
        network = ipaddress.ip_network(rule.prefix)
        ip = ipaddress.ip_address(address)
        return ip.version == network.version and ip in network

    def count(self, old: Mapping[PairKey, Reach]) -> int:
        return sum(
            1 for key, r in old.items() if r.ok and any(self._covered(x, key) for x in self.rules)
        )

    def breaches(self, old: Mapping[PairKey, Reach], new: Mapping[PairKey, Reach]) -> list[Breach]:
        out = []
        for key, before in sorted(old.items()):
            if not before.ok:
                continue
            after = new.get(key)
            if after is not None and after.ok:
                continue
            for rule in self.rules:
                if self._covered(rule, key):
                    why = after.why if after is not None else _absent(key)
                    out.append(Breach(rule.label, *key, why))
                    break
        return out


def parse_protect(data: object, plan: LabPlan, where: str = "protect") -> ProtectSpec:
    """A protect spec from its parsed YAML/JSON form, checked against the old plan:

        pairs:   [{from: node1/pod1, to: node3, family: ipv4}, ...]   (family optional)
        nodes:   [node1, ...]
        prefixes: [10.244.0.0/16, ...]

    ConfigError (exit 2) with every problem, located."""
    problems: list[Problem] = []
    rules: list[ProtectRule] = []
    if not isinstance(data, dict):
        raise ConfigError(
            [Problem(where, "expected a mapping with pairs, nodes and/or prefixes", _HINT)]
        )
    for key in data:
        if key not in ("pairs", "nodes", "prefixes"):
            problems.append(Problem(f"{where}.{key}", "unknown key", _HINT))
    known = _known_names(plan)
    for i, entry in enumerate(_list(data, "pairs", where, problems)):
        at = f"{where}.pairs[{i}]"
        if not isinstance(entry, dict):
            problems.append(Problem(at, "expected a mapping with from, to and optional family"))
            continue
        extra = set(entry) - {"from", "to", "family"}
        for key in sorted(map(str, extra)):
            problems.append(Problem(f"{at}.{key}", "unknown key", "use from, to, family"))
        ends = []
        for end in ("from", "to"):
            value = entry.get(end)
            if not isinstance(value, str) or value not in known:
                problems.append(
                    Problem(
                        f"{at}.{end}",
                        f"{value!r} is no node or NODE/POD of the old input",
                        f"nodes: {', '.join(n.name for n in plan.nodes)}",
                    )
                )
            ends.append(value if isinstance(value, str) else "")
        family = _family(entry.get("family"), f"{at}.family", problems)
        rules.append(
            ProtectRule(
                f"pairs[{i}] {ends[0]} -> {ends[1]}" + (f" ipv{family}" if family else ""),
                "pair",
                source=ends[0],
                target=ends[1],
                family=family,
            )
        )
    nodes = {n.name for n in plan.nodes}
    for i, entry in enumerate(_list(data, "nodes", where, problems)):
        if not isinstance(entry, str) or entry not in nodes:
            problems.append(
                Problem(
                    f"{where}.nodes[{i}]",
                    f"{entry!r} is no node of the old input",
                    f"nodes: {', '.join(sorted(nodes))}",
                )
            )
            continue
        rules.append(ProtectRule(f"nodes[{i}] {entry}", "node", node=entry))
    for i, entry in enumerate(_list(data, "prefixes", where, problems)):
        try:
            network = ipaddress.ip_network(str(entry), strict=False)
            if not isinstance(entry, str):
                raise ValueError
        except ValueError:
            problems.append(
                Problem(
                    f"{where}.prefixes[{i}]", f"{entry!r} is not a prefix", "e.g. 10.244.0.0/16"
                )
            )
            continue
        rules.append(ProtectRule(f"prefixes[{i}] {network}", "prefix", prefix=str(network)))
    if problems:
        raise ConfigError(problems)
    if not rules:
        raise ConfigError([Problem(where, "protects nothing", _HINT)])
    addresses = {
        (f"{n.name}/{p.name}", family): a
        for n in plan.nodes
        for p in n.pods
        for family in FAMILIES
        if (a := p.address(family)) is not None
    }
    return ProtectSpec(tuple(rules), addresses)


def parse_protect_pairs(texts: Sequence[str]) -> list[dict[str, str]]:
    """`--protect-pairs FROM:TO[:ipv4|ipv6] ...` as the `pairs` entries of a protect spec."""
    out = []
    problems = []
    for i, text in enumerate(texts):
        parts = text.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            problems.append(
                Problem(
                    f"--protect-pairs[{i}]",
                    f"{text!r} is not FROM:TO or FROM:TO:FAMILY",
                    "e.g. node1/pod1:node3/pod1 or node1:node3:ipv4",
                )
            )
            continue
        entry = {"from": parts[0], "to": parts[1]}
        if len(parts) == 3:
            entry["family"] = parts[2]
        out.append(entry)
    if problems:
        raise ConfigError(problems)
    return out


_HINT = (
    "a protect file is YAML: pairs: [{from: NODE[/POD], to: NODE[/POD], family: ipv4}], "
    "nodes: [NODE], prefixes: [CIDR]"
)


def _list(data: dict[Any, Any], key: str, where: str, problems: list[Problem]) -> list[Any]:
    value = data.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(Problem(f"{where}.{key}", "expected a list", _HINT))
        return []
    return value


def _family(value: object, where: str, problems: list[Problem]) -> int | None:
    if value is None:
        return None
    families = {"ipv4": 4, "ipv6": 6, 4: 4, 6: 6}
    if isinstance(value, bool) or value not in families:
        problems.append(Problem(where, f"{value!r} is not a family", "ipv4 or ipv6"))
        return None
    return families[value]


def _known_names(plan: LabPlan) -> set[str]:
    return {n.name for n in plan.nodes} | {f"{n.name}/{p.name}" for n in plan.nodes for p in n.pods}
