"""Planning at scale: BGP propagation gives what the round-based simulation gave, and a
1,000-node dual-stack mesh plans in bounded time and memory.

`reference_propagate` is the propagation meshemu used before it was made fast (every speaker
exports every best path over every session, round after round, until nothing changes): cubic in
the node count, but plain. The fast one (`model.bgp.propagate`) must agree with it on every
random lab of reflectors, clusters, eBGP and odd sessions.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import pickle
import random
import time

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from meshemu.errors import PlanError
from meshemu.model.bgp import (
    Adjacency,
    Link,
    Path,
    Speaker,
    accept,
    best_path,
    export,
    propagate,
    received,
)
from meshemu.model.load import load_topology_text
from meshemu.model.plan import LabPlan, build_plan
from meshemu.model.sessions import Session

Ribs = dict[str, dict[str, tuple[Path, tuple[Path, ...]]]]


def _candidate_key(path: Path) -> tuple[object, ...]:
    """The decision order of `model.bgp` (best first), written out again for the reference."""
    originator = path.originator_id or path.learned_router_id
    learned = ipaddress.ip_address(path.learned_from) if path.learned_from else None
    return (
        -path.local_pref,
        len(path.as_path),
        path.learned_from is not None,
        not path.ebgp,
        len(path.cluster_list),
        int(ipaddress.IPv4Address(originator)) if originator else 0,
        (learned.version, int(learned)) if learned else (0, 0),
    )


def reference_propagate(
    speakers: dict[str, Speaker],
    adjacencies: list[Adjacency],
    originated: dict[str, list[Path]],
    max_rounds: int = 64,
) -> tuple[Ribs, bool]:
    """The old algorithm, verbatim in its rules; also says whether it settled."""
    out_links: dict[str, list[Adjacency]] = {}
    for adj in adjacencies:
        out_links.setdefault(adj.speaker, []).append(adj)
    back = {
        (a.speaker, a.peer, ipaddress.ip_address(a.link.peer_ip).version): a.link
        for a in adjacencies
    }
    adj_in: dict[str, dict[tuple[str, str], Path]] = {name: {} for name in speakers}

    def compute_best(name: str) -> dict[str, Path]:
        table: dict[str, list[Path]] = {}
        for path in [*originated.get(name, ()), *adj_in[name].values()]:
            table.setdefault(path.prefix, []).append(path)
        return {prefix: p for prefix, paths in table.items() if (p := best_path(paths))}

    best = {name: compute_best(name) for name in speakers}
    settled = False
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
        best = {name: compute_best(name) for name in speakers}
        if not changed:
            settled = True
            break
    result: Ribs = {}
    for name in speakers:
        result[name] = {}
        for prefix, chosen in best[name].items():
            candidates = [p for p in adj_in[name].values() if p.prefix == prefix]
            candidates += [p for p in originated.get(name, ()) if p.prefix == prefix]
            result[name][prefix] = (chosen, tuple(sorted(candidates, key=_candidate_key)))
    return result, settled


PREFIXES = ["192.168.0.0/26", "192.168.0.64/26", "192.168.1.0/24", "fd80::/122", "fd80::40/122"]


def random_lab(
    rng: random.Random, duplicate_sessions: bool
) -> tuple[dict[str, Speaker], list[Adjacency], dict[str, list[Path]]]:
    """Up to 8 speakers: several ASes, reflectors of two clusters, sessions in one or both
    families, some one-sided, random client flags, next-hop-keeping and allowed own AS; with
    `duplicate_sessions`, also second sessions of a pair (another port) that differ."""
    names = [f"s{i}" for i in range(rng.randint(2, 8))]
    speakers = {}
    for i, name in enumerate(names):
        addresses = {4: f"10.0.0.{i + 1}"}
        if rng.random() < 0.6:
            addresses[6] = f"fd00::{i + 1}"
        speakers[name] = Speaker(
            name,
            addresses[4],
            rng.choice([64512, 64512, 65001, 65002]),
            rng.choice([None, None, "244.0.0.1", "244.0.0.2"]),
            addresses,
        )
    adjacencies = []
    for a in names:
        for b in names:
            if a >= b or rng.random() < 0.4:
                continue
            for family in (4, 6):
                sa, sb = speakers[a], speakers[b]
                if family not in sa.addresses or family not in sb.addresses:
                    continue
                if rng.random() < 0.3:
                    continue
                ab = Link(
                    sb.addresses[family],
                    sb.as_number,
                    sa.as_number,
                    rng.random() < 0.5,
                    rng.random() < 0.2,
                    rng.choice([0, 0, 1]),
                )
                ba = Link(
                    sa.addresses[family],
                    sa.as_number,
                    sb.as_number,
                    rng.random() < 0.5,
                    rng.random() < 0.2,
                    rng.choice([0, 0, 1]),
                )
                if rng.random() < 0.95:
                    adjacencies.append(Adjacency(a, b, ab))
                if rng.random() < 0.95:
                    adjacencies.append(Adjacency(b, a, ba))
                if duplicate_sessions and rng.random() < 0.3:
                    other = Link(ab.peer_ip, ab.peer_as, ab.local_as, not ab.rr_client)
                    adjacencies.append(Adjacency(a, b, other))
    rng.shuffle(adjacencies)
    originated: dict[str, list[Path]] = {}
    for name in names:
        for prefix in PREFIXES:
            if rng.random() < 0.25:
                family = 6 if ":" in prefix else 4
                next_hop = speakers[name].addresses.get(family, "192.0.2.9")
                originated.setdefault(name, []).append(Path(prefix=prefix, next_hop=next_hop))
    return speakers, adjacencies, originated


@settings(max_examples=400, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), duplicates=st.booleans())
def test_propagation_matches_the_round_based_reference(seed: int, duplicates: bool) -> None:
    speakers, adjacencies, originated = random_lab(random.Random(seed), duplicates)
    expected, settled = reference_propagate(speakers, adjacencies, originated)
    try:
        got = propagate(speakers, adjacencies, originated)
    except PlanError:
        # Only a lab the reference could not settle either may be refused.
        assert not settled
        return
    # (With two sessions of one pair, the reference keeps rewriting the same entries and
    # never says it settled, though its state is the fixpoint: the states must agree.)
    assert got == expected


def test_propagation_that_does_not_settle_is_a_plan_error() -> None:
    """A prefix still changing after the last round has no predictable RIB."""
    speakers = {
        n: Speaker(n, f"10.0.0.{i}", 64512 + i, None, {4: f"10.0.0.{i}"})
        for i, n in enumerate(("a", "b", "c"), start=1)
    }
    chain = [
        Adjacency("a", "b", Link("10.0.0.2", 64514, 64513, False)),
        Adjacency("b", "a", Link("10.0.0.1", 64513, 64514, False)),
        Adjacency("b", "c", Link("10.0.0.3", 64515, 64514, False)),
        Adjacency("c", "b", Link("10.0.0.2", 64514, 64515, False)),
    ]
    originated = {"a": [Path(prefix="192.168.0.0/26", next_hop="10.0.0.1")]}
    assert "192.168.0.0/26" in propagate(speakers, chain, originated)["c"]
    with pytest.raises(PlanError, match=r"does not settle for 192\.168\.0\.0/26"):
        propagate(speakers, chain, originated, max_rounds=1)


def mesh_topology(nodes: int, pods: int = 2) -> str:
    return yaml.safe_dump(
        {
            "name": "scale",
            "subnets": {"lan": {"ipv4": "10.77.0.0/16", "ipv6": "fd00:77::/64"}},
            "nodes": {f"n{i:04d}": {"subnet": "lan", "pods": pods} for i in range(nodes)},
            "pools": {
                "v4": {"cidr": "10.244.0.0/16", "ipipMode": "Never"},
                "v6": {"cidr": "fd00:244::/64", "vxlanMode": "Never"},
            },
        }
    )


def _plan(nodes: int) -> tuple[LabPlan, float]:
    topo = load_topology_text(mesh_topology(nodes), "scale.yaml", "scale")
    start = time.perf_counter()
    plan = build_plan(topo)
    return plan, time.perf_counter() - start


@pytest.mark.timeout(300)  # a guard against a hang (cubic planning never ended), not a speed test
def test_a_1000_node_dual_stack_mesh_plans() -> None:
    """A 1,000-node dual-stack mesh (two million sessions) plans, with the right addresses and
    routes. Before: cubic propagation, 600 nodes never ended. How fast is the benchmark's to
    say (about 6 s on a quiet machine); a timed assertion failed only when the machine was busy."""
    plan, seconds = _plan(1000)
    print(f"1,000-node plan in {seconds:.1f} s")  # speed is the benchmark's to measure
    assert len(plan.nodes) == 1000
    first, last = plan.nodes[0], plan.nodes[-1]
    assert (first.ipv4, last.ipv4) == ("10.77.0.1", "10.77.3.232")
    for node in (first, plan.nodes[500], last):
        assert len(node.sessions) == 2 * 999
        learned = [r for r in node.rib if r.learned_from is not None]
        assert len(learned) == 2 * 999
        assert {r.origin_node for r in learned} == {n.name for n in plan.nodes} - {node.name}
        assert len(node.fib) == 2 + 4 + 2 * 999  # own blocks, own pods, everyone's blocks
    assert len(set(last.expected_up)) == 2 * 999
    assert not plan.notes
    print(f"1,000-node dual-stack mesh planned in {seconds:.1f} s")


def test_a_mesh_shares_its_routes_between_nodes() -> None:
    """Memory grows with the distinct routes, plus a reference per node and route: every
    node of a mesh holds the very same RIB entry and kernel route for a remote block."""
    plan, _ = _plan(40)
    block = plan.nodes[0].blocks[0].cidr
    entries = {id(r) for n in plan.nodes[1:] for r in n.rib if r.prefix == block}
    routes = {id(r) for n in plan.nodes[1:] for r in n.fib if r.prefix == block}
    assert len(entries) == 1 and len(routes) == 1


def test_a_100_node_mesh_plans_well_under_a_second() -> None:
    # Generous against a busy machine; the real figure is about a fifth of a second.
    _, seconds = _plan(100)
    assert seconds < 3, seconds


def test_mesh_sessions_are_sessions_like_any_other() -> None:
    """Mesh sessions are made slot by slot and word their reason when it is read (two million
    in a 1,000-node mesh): each must be a frozen Session that equals, hashes, prints and
    serializes like the one the constructor makes from its fields."""
    plan, _ = _plan(4)
    mesh = [s for node in plan.nodes for s in node.sessions]
    assert len(mesh) == 4 * 3 * 2 and {s.kind for s in mesh} == {"mesh"}
    for session in mesh:
        assert type(session) is Session
        made = Session(**{f.name: getattr(session, f.name) for f in dataclasses.fields(Session)})
        assert made == session and session == made
        assert hash(made) == hash(session) and repr(made) == repr(session)
        assert session.to_json(secrets=True) == made.to_json(secrets=True)
        assert Session.from_json(session.to_json(secrets=True)) == session
        assert pickle.loads(pickle.dumps(session)) == session
        assert dataclasses.replace(session, passive=not session.passive) != session
        for field in ("reason", "peer_ip", "route_priority"):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(session, field, None)
    n0, n1 = plan.nodes[0], plan.nodes[1]
    assert n0.sessions[0].reason == (
        "node-to-node mesh with n0001; passive: 10.77.0.2 > 10.77.0.1 as text, so n0001 connects"
    )
    assert n1.sessions[0].reason == (
        "node-to-node mesh with n0000; active: 10.77.0.2 > 10.77.0.1 as text, so this node connects"
    )


def test_a_session_given_a_reason_keeps_it() -> None:
    """Only mesh sessions word their reason; any other keeps the text it was made with."""
    session = Session(
        4,
        "10.0.0.1",
        1,
        "10.0.0.2",
        179,
        1,
        "mesh",
        True,
        False,
        None,
        None,
        "b",
        "mesh",
        "because",
    )
    assert session.reason == "because"
    assert dataclasses.replace(session, reason="why not").reason == "why not"
