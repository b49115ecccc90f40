"""Tests of meshemu.controlplane.agent.AgentCore: BGP events in, ExaBGP commands and routes out.

No ExaBGP, no kernel: the core is fed the events ExaBGP would deliver and its commands are read
back as the updates its peers would receive. Covered: the node's own blocks, sessions going up
and down, learning and withdrawing, route reflection as RFC 4456 says (ORIGINATOR_ID,
CLUSTER_LIST, loop drops, client and non-client rules), eBGP export, a restarted agent taking
over its predecessor's state, and, for every shipped topology, that the routes the agents
program once BGP has converged are exactly the plan's expected FIB. Graceful restart (RFC 4724):
a peer gone without a NOTIFICATION keeps its routes, stale, for its restart time, until it
sends them again and End-of-RIB; this node's speaker stopping keeps its routes for the agent
under the next speaker, which takes them over as stale; a stop for a configuration change
withdraws everything first (the runtime waits for ExaBGP's answers).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path as FsPath
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshemu.controlplane.agent import AGENT_CONFIG, AgentCore, Runtime, SpeakerPipe
from meshemu.controlplane.events import (
    LOCAL_SHUTDOWN,
    SILENT_CLOSE,
    GracefulRestart,
    OpenEvent,
    StateEvent,
    UpdateEvent,
)
from meshemu.model.agent_config import AgentConfig, agent_config_of
from meshemu.model.bgp import Link, Path, Speaker, export
from meshemu.model.load import load_topology, load_topology_text
from meshemu.model.plan import LabPlan, NodePlan, build_plan
from meshemu.model.routes import FibRoute

TOPOLOGIES = FsPath(__file__).resolve().parents[2] / "topologies"


def make_core(plan: LabPlan, node_name: str) -> AgentCore:
    """The one place a core is built: from the node's typed agent configuration, as the lab
    writes it and the agent reads it (through its JSON form)."""
    config = agent_config_of(plan, node_name)
    return AgentCore(AgentConfig.from_json(json.loads(json.dumps(config.to_json()))))


# Three reflectors of one cluster (each other's non-clients) and two clients, one subnet, no
# encapsulation: every rule of RFC 4456 has a case here.
REFLECTORS = """
name: rrx
subnets:
  lan: {ipv4: 10.5.0.0/24}
nodes:
  rr1: {subnet: lan, ipv4: 10.5.0.11, labels: {rr: "yes"}, routeReflectorClusterID: 244.0.0.1,
        pods: 1}
  rr2: {subnet: lan, ipv4: 10.5.0.12, labels: {rr: "yes"}, routeReflectorClusterID: 244.0.0.1,
        pods: 1}
  rr3: {subnet: lan, ipv4: 10.5.0.13, labels: {rr: "yes"}, routeReflectorClusterID: 244.0.0.1,
        pods: 1}
  c1: {subnet: lan, ipv4: 10.5.0.21}
  c2: {subnet: lan, ipv4: 10.5.0.22}
pools:
  p4: {cidr: 10.244.0.0/16, ipipMode: Never}
bgp:
  nodeToNodeMeshEnabled: false
  peers:
    to-rr: {nodeSelector: all(), peerSelector: "rr == 'yes'"}
"""
RR1, RR2, RR3, C1, C2 = "10.5.0.11", "10.5.0.12", "10.5.0.13", "10.5.0.21", "10.5.0.22"
CLUSTER = "244.0.0.1"
FOREIGN = "10.99.0.0/26"  # a prefix nobody in the lab owns, announced by hand

# Two ASes: an eBGP edge node peering with a mesh node, both dual-stack.
EBGP = """
name: ebgp
subnets:
  lan: {ipv4: 10.6.0.0/24, ipv6: "fd00:6::/64"}
nodes:
  inner: {subnet: lan, ipv4: 10.6.0.10, ipv6: "fd00:6::10"}
  edge: {subnet: lan, ipv4: 10.6.0.20, ipv6: "fd00:6::20", asNumber: 65010}
pools:
  p4: {cidr: 10.246.0.0/16, ipipMode: Always}
  p6: {cidr: "fd80:6::/64", vxlanMode: Always}
# The classic behaviour: BIRD (here the agents) writes the IP-in-IP routes.
felix: {programClusterRoutes: Disabled}
bgp:
  programClusterRoutes: Enabled
  nodeToNodeMeshEnabled: false
  peers:
    inner-edge: {node: inner, peerIP: 10.6.0.20, asNumber: 65010}
    inner-edge6: {node: inner, peerIP: "fd00:6::20", asNumber: 65010}
    edge-inner: {node: edge, peerIP: 10.6.0.10, asNumber: 64512}
    edge-inner6: {node: edge, peerIP: "fd00:6::10", asNumber: 64512}
"""


def _plan_text(text: str) -> LabPlan:
    return build_plan(load_topology_text(text, "test.yaml", "test"))


REFLECTORS_PLAN = _plan_text(REFLECTORS)


@pytest.fixture(scope="module")
def reflectors() -> LabPlan:
    return REFLECTORS_PLAN


@pytest.fixture(scope="module")
def ebgp() -> LabPlan:
    return _plan_text(EBGP)


# --- reading the core's commands -----------------------------------------------------------------


def _bracketed(words: list[str], start: int) -> tuple[list[str], int]:
    """`[ a b ]` starting at words[start] -> ([a, b], index after `]`)."""
    assert words[start] == "[", words
    end = words.index("]", start)
    return words[start + 1 : end], end + 1


def parse_command(command: str) -> tuple[str, str, Path]:
    """`neighbor P announce|withdraw route ...` -> (P, action, the path as sent on the wire)."""
    words = command.split()
    assert words[0] == "neighbor" and words[3] == "route" and words[5] == "next-hop", command
    peer, action, prefix, next_hop = words[1], words[2], words[4], words[6]
    fields: dict[str, Any] = {}
    i = 7
    while i < len(words):
        key = words[i]
        if key == "local-preference":
            fields["local_pref"], i = int(words[i + 1]), i + 2
        elif key == "originator-id":
            fields["originator_id"], i = words[i + 1], i + 2
        elif key == "as-path":
            values, i = _bracketed(words, i + 1)
            fields["as_path"] = tuple(int(v) for v in values)
        elif key == "cluster-list":
            values, i = _bracketed(words, i + 1)
            fields["cluster_list"] = tuple(values)
        else:
            raise AssertionError(f"unknown attribute {key!r} in {command!r}")
    return peer, action, Path(prefix=prefix, next_hop=next_hop, **fields)


def sent(commands: list[str]) -> dict[tuple[str, str], tuple[str, Path]]:
    """(peer, prefix) -> (action, path) of the last command for it."""
    out = {}
    for command in commands:
        peer, action, path = parse_command(command)
        out[(peer, path.prefix)] = (action, path)
    return out


def announced_to(commands: list[str], peer: str) -> dict[str, Path]:
    return {
        prefix: path
        for (to, prefix), (action, path) in sent(commands).items()
        if to == peer and action == "announce"
    }


def withdrawn_from(commands: list[str], peer: str) -> set[str]:
    return {
        prefix
        for (to, prefix), (action, _) in sent(commands).items()
        if to == peer and action == "withdraw"
    }


def up(core: AgentCore, peer: str, local: str = "") -> list[str]:
    return core.on_state(StateEvent(peer, local, "up"))


def announce(core: AgentCore, peer: str, *paths: Path) -> list[str]:
    return core.on_update(UpdateEvent(peer, "", announced=paths))


def withdraw(core: AgentCore, peer: str, *prefixes: str) -> list[str]:
    return core.on_update(UpdateEvent(peer, "", withdrawn=prefixes))


def peers_of(node: NodePlan) -> list[str]:
    return [s.peer_ip for s in node.sessions if s.peer_node is not None]


def started(plan: LabPlan, name: str) -> tuple[AgentCore, list[str]]:
    core = make_core(plan, name)
    commands = core.start()
    for peer in plan.node(name).expected_up:
        commands += up(core, peer)
    return core, commands


# --- own blocks ----------------------------------------------------------------------------------


def test_start_announces_own_blocks_to_every_peer_with_itself_as_next_hop(
    reflectors: LabPlan,
) -> None:
    node = reflectors.node("c1")
    core = make_core(reflectors, "c1")
    commands = core.start()
    (block,) = [b.cidr for b in node.blocks]
    for peer in peers_of(node):
        assert announced_to(commands, peer) == {block: Path(block, C1)}
    assert len(commands) == len(peers_of(node))


def test_own_blocks_are_blackholes_before_and_after_anything(reflectors: LabPlan) -> None:
    node = reflectors.node("c1")
    core = make_core(reflectors, "c1")
    (block,) = [b.cidr for b in node.blocks]
    assert core.route(block) == FibRoute(block, "blackhole", source="local")
    core.start()
    # A peer announcing the node's own block does not replace the blackhole.
    announce(core, RR1, Path(block, RR1))
    assert core.route(block) == FibRoute(block, "blackhole", source="local")


def test_start_announces_per_family(ebgp: LabPlan) -> None:
    node = ebgp.node("inner")
    core = make_core(ebgp, "inner")
    commands = core.start()
    v4 = [b.cidr for b in node.blocks if ":" not in b.cidr]
    v6 = [b.cidr for b in node.blocks if ":" in b.cidr]
    assert v4 and v6
    # eBGP: the own AS is prepended, LOCAL_PREF reset to the default.
    assert announced_to(commands, "10.6.0.20") == {
        b: Path(b, "10.6.0.10", as_path=(64512,)) for b in v4
    }
    assert announced_to(commands, "fd00:6::20") == {
        b: Path(b, "fd00:6::10", as_path=(64512,)) for b in v6
    }


def test_a_pool_without_bgp_export_is_not_announced_but_still_blackholed() -> None:
    plan = _plan_text(
        REFLECTORS.replace("ipipMode: Never}", "ipipMode: Never, disableBGPExport: true}")
    )
    core = make_core(plan, "c1")
    assert core.start() == []
    (block,) = [b.cidr for b in plan.node("c1").blocks]
    assert core.route(block) == FibRoute(block, "blackhole", source="local")


# --- learning, withdrawing, sessions -------------------------------------------------------------


def test_a_learned_route_is_programmed_and_withdrawn(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "c1")
    assert core.route(FOREIGN) is None
    announce(core, RR1, Path(FOREIGN, C2, originator_id=C2, cluster_list=(CLUSTER,)))
    # Same subnet, no encapsulation: straight to the next hop over the uplink.
    route = core.route(FOREIGN)
    assert route is not None
    assert (route.type, route.via, route.dev, route.onlink) == ("unicast", C2, "eth0", False)
    withdraw(core, RR1, FOREIGN)
    assert core.route(FOREIGN) is None


def test_withdrawing_one_of_two_paths_keeps_the_other(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "c1")
    announce(core, RR1, Path(FOREIGN, C2, originator_id=C2, cluster_list=(CLUSTER,)))
    announce(
        core, RR2, Path(FOREIGN, "10.5.0.23", originator_id="10.5.0.23", cluster_list=(CLUSTER,))
    )
    # Equal but for the originator: the lower ORIGINATOR_ID wins (RFC 4456 section 9).
    assert core.route(FOREIGN) == core.route(FOREIGN) and core.route(FOREIGN) is not None
    assert core.route(FOREIGN).via == C2  # type: ignore[union-attr]
    withdraw(core, RR1, FOREIGN)
    assert core.route(FOREIGN).via == "10.5.0.23"  # type: ignore[union-attr]


def test_a_withdrawal_of_an_unknown_prefix_changes_nothing(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "rr1")
    before = core.snapshot()
    assert withdraw(core, C1, FOREIGN) == []
    assert core.snapshot()["rib"] == before["rib"]


def test_session_down_drops_what_the_peer_sent_and_withdraws_it_from_others(
    reflectors: LabPlan,
) -> None:
    core, _ = started(reflectors, "rr1")
    commands = announce(core, C1, Path(FOREIGN, C1))
    assert set(announced_to(commands, C2)) == {FOREIGN}
    commands = core.on_state(StateEvent(C1, RR1, "down", "hold timer expired"))
    assert core.route(FOREIGN) is None
    for peer in (C2, RR2, RR3):
        assert withdrawn_from(commands, peer) == {FOREIGN}
    assert C1 not in {peer for peer, _ in sent(commands)}
    session = next(s for s in core.snapshot()["sessions"] if s["peer_ip"] == C1)
    assert (session["state"], session["info"]) == ("down", "hold timer expired")


def test_session_states_are_reported(reflectors: LabPlan) -> None:
    core = make_core(reflectors, "c1")
    core.on_state(StateEvent(RR1, C1, "connected"))
    core.on_state(StateEvent(RR2, C1, "up"))
    states = {s["peer_ip"]: s["state"] for s in core.snapshot()["sessions"]}
    assert states == {RR1: "connected", RR2: "established", RR3: "idle"}
    for session in core.snapshot()["sessions"]:
        assert session["peer_node"] == {RR1: "rr1", RR2: "rr2", RR3: "rr3"}[session["peer_ip"]]


def test_events_from_unknown_peers_are_ignored(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "c1")
    before = core.snapshot()
    assert core.on_state(StateEvent("10.9.9.9", C1, "down")) == []
    assert announce(core, "10.9.9.9", Path(FOREIGN, "10.9.9.9")) == []
    assert core.route(FOREIGN) is None
    assert core.snapshot()["rib"] == before["rib"]


def test_end_of_rib_changes_nothing(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "c1")
    before = core.snapshot()
    assert core.on_update(UpdateEvent(RR1, C1, end_of_rib=True)) == []
    assert core.snapshot()["rib"] == before["rib"]


def test_received_prefix_count(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "rr1")
    announce(core, C1, Path(FOREIGN, C1), Path("10.99.1.0/26", C1))
    count = {s["peer_ip"]: s["prefixes_received"] for s in core.snapshot()["sessions"]}
    assert count[C1] == 2
    withdraw(core, C1, FOREIGN)
    count = {s["peer_ip"]: s["prefixes_received"] for s in core.snapshot()["sessions"]}
    assert count[C1] == 1


# --- route reflection (RFC 4456) -----------------------------------------------------------------


def test_a_plain_ibgp_speaker_does_not_pass_on_ibgp_routes(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "c1")
    commands = announce(core, RR1, Path(FOREIGN, C2, originator_id=C2, cluster_list=(CLUSTER,)))
    assert commands == []


def test_a_client_route_is_reflected_to_clients_and_non_clients(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "rr1")
    commands = announce(core, C1, Path(FOREIGN, C1))
    expected = Path(FOREIGN, C1, originator_id=C1, cluster_list=(CLUSTER,))
    for peer in (C2, RR2, RR3):
        assert announced_to(commands, peer) == {FOREIGN: expected}, peer
    assert announced_to(commands, C1) == {}  # never back to the sender


def test_a_non_client_route_is_reflected_to_clients_only(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "rr1")
    commands = announce(core, RR2, Path(FOREIGN, RR2))
    expected = Path(FOREIGN, RR2, originator_id=RR2, cluster_list=(CLUSTER,))
    assert announced_to(commands, C1) == {FOREIGN: expected}
    assert announced_to(commands, C2) == {FOREIGN: expected}
    assert announced_to(commands, RR3) == {}
    assert announced_to(commands, RR2) == {}


def test_originator_id_is_kept_once_set_and_the_cluster_is_prepended() -> None:
    """A reflector in another cluster passes on a reflected route: ORIGINATOR_ID unchanged,
    its cluster ID first in CLUSTER_LIST."""
    text = REFLECTORS.replace(
        "c2: {subnet: lan, ipv4: 10.5.0.22}",
        "c2: {subnet: lan, ipv4: 10.5.0.22, labels: {rr: 'yes'}, "
        "routeReflectorClusterID: 244.0.0.2}",
    )
    plan = _plan_text(text)
    core, _ = started(plan, "c2")
    commands = announce(core, RR1, Path(FOREIGN, C1, originator_id=C1, cluster_list=(CLUSTER,)))
    # rr1 is outside c2's cluster, so a client of c2: reflected to every other peer.
    expected = Path(FOREIGN, C1, originator_id=C1, cluster_list=("244.0.0.2", CLUSTER))
    for peer in (RR2, RR3):
        assert announced_to(commands, peer) == {FOREIGN: expected}
    assert announced_to(commands, RR1) == {}


def test_a_route_carrying_our_cluster_id_is_dropped(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "rr1")
    commands = announce(core, RR2, Path(FOREIGN, C1, originator_id=C1, cluster_list=(CLUSTER,)))
    assert commands == []
    assert core.route(FOREIGN) is None
    assert all(r["prefix"] != FOREIGN for r in core.snapshot()["rib"])


def test_a_route_carrying_our_router_id_as_originator_is_dropped(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "c1")
    commands = announce(core, RR1, Path(FOREIGN, C1, originator_id=C1, cluster_list=("244.0.0.7",)))
    assert commands == []
    assert core.route(FOREIGN) is None


def test_under_calicos_defaults_the_agent_writes_no_ipip_or_vxlan_route_but_advertises_them() -> (
    None
):
    """v3.33 defaults: Felix owns IPIP (and always VXLAN) routes; BIRD's kernel filter rejects
    them, so a learned block of such a pool is in the RIB, exported, and not in the FIB; its
    own blackhole is Felix's too."""
    plan = _plan_text(
        EBGP.replace("felix: {programClusterRoutes: Disabled}\n", "").replace(
            "  programClusterRoutes: Enabled\n", ""
        )
    )
    core, _ = started(plan, "edge")
    inner = [b.cidr for b in plan.node("inner").blocks]
    announce(core, "10.6.0.10", *(Path(b, "10.6.0.10", as_path=(64512,)) for b in inner[:1]))
    assert inner[0] in core.best and core.route(inner[0]) is None
    assert all(core.route(b.cidr) is None for b in plan.node("edge").blocks)
    classic = _plan_text(EBGP)
    core, _ = started(classic, "edge")
    announce(core, "10.6.0.10", *(Path(b, "10.6.0.10", as_path=(64512,)) for b in inner[:1]))
    assert core.route(inner[0]) is not None
    assert core.route(inner[0]).metric == 2147483647 - 100  # type: ignore[union-attr]


def test_a_looped_announcement_replaces_the_peers_earlier_path(reflectors: LabPlan) -> None:
    """An UPDATE replaces the peer's previous path for the prefix even when it is dropped."""
    core, _ = started(reflectors, "rr1")
    announce(core, RR2, Path(FOREIGN, RR2))
    assert core.route(FOREIGN) is not None
    commands = announce(core, RR2, Path(FOREIGN, C1, originator_id=C1, cluster_list=(CLUSTER,)))
    assert core.route(FOREIGN) is None
    assert withdrawn_from(commands, C1) == {FOREIGN}


def test_a_shorter_cluster_list_wins(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "c1")
    announce(
        core,
        RR1,
        Path(
            FOREIGN, "10.5.0.30", originator_id="10.5.0.30", cluster_list=("244.0.0.8", "244.0.0.9")
        ),
    )
    announce(
        core,
        RR2,
        Path(FOREIGN, "10.5.0.31", originator_id="10.5.0.31", cluster_list=("244.0.0.8",)),
    )
    assert core.route(FOREIGN).via == "10.5.0.31"  # type: ignore[union-attr]


def test_ebgp_export_sets_next_hop_self_and_prepends_the_as(ebgp: LabPlan) -> None:
    core, _ = started(ebgp, "edge")
    inner_block = next(b.cidr for b in ebgp.node("inner").blocks if ":" not in b.cidr)
    announce(core, "10.6.0.10", Path(inner_block, "10.6.0.10", as_path=(64512,)))
    route = core.route(inner_block)
    # IPIP Always for the IPv4 pool.
    assert route is not None and (route.via, route.dev, route.onlink) == (
        "10.6.0.10",
        "tunl0",
        True,
    )
    # A route whose AS path already holds the edge's AS is a loop.
    announce(core, "10.6.0.10", Path(FOREIGN, "10.6.0.10", as_path=(64512, 65010)))
    assert core.route(FOREIGN) is None


# --- a restarted agent ---------------------------------------------------------------------------


def _restarted(plan: LabPlan, name: str, old: AgentCore) -> AgentCore:
    """What `Runtime` does: a new core from the same configuration, fed the last state file."""
    new = make_core(plan, name)
    new.restore(json.loads(json.dumps(old.snapshot())))
    return new


def _all_routes(core: AgentCore, prefixes: set[str]) -> dict[str, FibRoute | None]:
    return {p: core.route(p) for p in sorted(prefixes)}


def test_restore_takes_over_rib_routes_and_sessions(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "c1")
    announce(core, RR1, Path(FOREIGN, C2, originator_id=C2, cluster_list=(CLUSTER,)))
    announce(core, RR2, Path(FOREIGN, C2, originator_id=C2, cluster_list=(CLUSTER,)))
    announce(core, RR2, Path("10.99.1.0/26", RR2))
    core.on_state(StateEvent(RR3, C1, "down", "gone"))
    new = _restarted(reflectors, "c1", core)
    prefixes = {FOREIGN, "10.99.1.0/26", *(b.cidr for b in reflectors.node("c1").blocks)}
    assert _all_routes(new, prefixes) == _all_routes(core, prefixes)
    assert new.snapshot()["rib"] == core.snapshot()["rib"]
    old_sessions = {s["peer_ip"]: (s["state"], s["info"]) for s in core.snapshot()["sessions"]}
    new_sessions = {s["peer_ip"]: (s["state"], s["info"]) for s in new.snapshot()["sessions"]}
    assert new_sessions == old_sessions


def test_refresh_asks_established_peers_only_per_family(ebgp: LabPlan, reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "c1")
    core.on_state(StateEvent(RR3, C1, "down"))
    new = _restarted(reflectors, "c1", core)
    assert sorted(new.refresh_commands()) == [
        f"neighbor {RR1} announce route-refresh ipv4 unicast",
        f"neighbor {RR2} announce route-refresh ipv4 unicast",
    ]
    edge, _ = started(ebgp, "edge")
    assert sorted(_restarted(ebgp, "edge", edge).refresh_commands()) == [
        "neighbor 10.6.0.10 announce route-refresh ipv4 unicast",
        "neighbor fd00:6::10 announce route-refresh ipv6 unicast",
    ]


def test_a_restarted_core_announces_its_blocks_again(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "c1")
    new = _restarted(reflectors, "c1", core)
    (block,) = [b.cidr for b in reflectors.node("c1").blocks]
    commands = new.start()
    for peer in (RR1, RR2, RR3):
        assert announced_to(commands, peer) == {block: Path(block, C1)}


def test_a_restarted_reflector_goes_on_reflecting(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "rr1")
    announce(core, C1, Path(FOREIGN, C1))
    new = _restarted(reflectors, "rr1", core)
    new.start()
    commands = withdraw(new, C1, FOREIGN)
    assert withdrawn_from(commands, C2) == {FOREIGN}
    assert new.route(FOREIGN) is None


def test_after_takeover_start_withdraws_what_the_node_no_longer_announces(
    reflectors: LabPlan,
) -> None:
    core, _ = started(reflectors, "c1")
    (block,) = [b.cidr for b in reflectors.node("c1").blocks]
    # A live change moved c1's block away (here: its pool stops being exported).
    changed = _plan_text(
        REFLECTORS.replace("ipipMode: Never}", "ipipMode: Never, disableBGPExport: true}")
    )
    new = make_core(changed, "c1")
    new.restore(json.loads(json.dumps(core.snapshot())))
    commands = new.start()
    for peer in (RR1, RR2, RR3):
        assert withdrawn_from(commands, peer) == {block}, peer
    assert new.snapshot()["adj_out"] == {RR1: [], RR2: [], RR3: []}


def test_after_takeover_a_reflector_withdraws_a_route_it_no_longer_has(
    reflectors: LabPlan,
) -> None:
    """The record holds reflected paths with all their attributes, and the withdrawal goes
    out with the next hop they were announced with."""
    core, _ = started(reflectors, "rr1")
    announce(core, C1, Path(FOREIGN, C1))
    state = core.snapshot()
    assert {p["prefix"] for p in state["adj_out"][C2]} >= {FOREIGN}
    for entry in state["rib"]:  # the new agent never heard of FOREIGN
        entry["learned_from"] = None if entry["prefix"] == FOREIGN else entry["learned_from"]
    new = make_core(reflectors, "rr1")
    new.restore(json.loads(json.dumps(state)))
    commands = new.start()
    assert f"neighbor {C2} withdraw route {FOREIGN} next-hop {C1}" in commands
    assert withdrawn_from(commands, C1) == set()  # never sent back to where it came from


def test_the_record_of_what_was_sent_is_json_with_every_attribute(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "rr1")
    announce(core, C1, Path(FOREIGN, C1, as_path=(65001,), local_pref=150))
    adj_out = json.loads(json.dumps(core.snapshot()))["adj_out"]
    (to_c2,) = [p for p in adj_out[C2] if p["prefix"] == FOREIGN]
    assert to_c2 == {
        "prefix": FOREIGN,
        "next_hop": C1,
        "as_path": [65001],
        "local_pref": 150,
        "originator_id": C1,
        "cluster_list": [CLUSTER],
    }
    assert all(entry["prefix"] != FOREIGN for entry in adj_out[C1])


def test_a_restored_record_round_trips(reflectors: LabPlan) -> None:
    core, _ = started(reflectors, "rr1")
    announce(core, C1, Path(FOREIGN, C1, as_path=(65001,)))
    new = _restarted(reflectors, "rr1", core)
    assert new.snapshot()["adj_out"] == core.snapshot()["adj_out"]
    new.start()  # announces again what it wants: the record is the same afterwards
    assert new.snapshot()["adj_out"] == core.snapshot()["adj_out"]


def _fresh_view(core: AgentCore) -> tuple[object, ...]:
    state = core.snapshot()
    sessions = [(s["peer_ip"], s["state"], s["info"]) for s in state["sessions"]]
    return state["rib"], state["adj_out"], sessions, core.start()


_GOOD_RIB = {
    "prefix": FOREIGN,
    "next_hop": C2,
    "learned_from": RR1,
    "as_path": [],
    "local_pref": 100,
    "originator_id": C2,
    "cluster_list": [CLUSTER],
    "best": True,
}


def _with(**changes: object) -> dict[str, object]:
    return {**_GOOD_RIB, **changes}


# Agent states of other shapes (another version, a cut file, a hand edit): restore ignores
# what it does not expect and never raises.
FOREIGN_STATES: dict[str, object] = {
    "not an object": [1, 2],
    "null": None,
    "text": "agent",
    "rib is a number": {"rib": 5},
    "rib entries of every wrong kind": {
        "rib": [
            5,
            "x",
            None,
            [],
            {"learned_from": RR1},
            _with(prefix="garbage"),
            _with(prefix=None),
            _with(prefix="10.99.0.1/26"),
            _with(next_hop="not-an-address"),
            _with(next_hop="fd00::1"),
            _with(as_path=["x"]),
            _with(as_path=5),
            _with(local_pref="high"),
            _with(local_pref=None),
            _with(local_pref=True),
            _with(originator_id=5),
            _with(cluster_list="244.0.0.1"),
            _with(learned_from=["x"]),
            _with(learned_from="10.9.9.9"),  # not a peer of this node
        ]
    },
    "adj_out is a list": {"adj_out": [1]},
    "adj_out of prefixes (the old form)": {"adj_out": {RR1: ["10.99.0.0/26"]}},
    "adj_out of prefix to next hop": {"adj_out": {RR1: {"10.99.0.0/26": C1}}},
    "adj_out entries of the wrong kind": {
        "adj_out": {RR1: "x", RR2: [5, {"prefix": "10.99.0.0/26"}, _with(next_hop=None)]}
    },
    "adj_out for a peer it does not have": {"adj_out": {"10.9.9.9": [_GOOD_RIB], "5": 5}},
    "sessions is an object": {"sessions": {"peer_ip": RR1}},
    "sessions entries of every wrong kind": {
        "sessions": [
            5,
            {"peer_ip": RR1},
            {"peer_ip": [RR1], "state": "down", "since": 1.0, "info": ""},
            {"peer_ip": RR1, "state": 5, "since": 1.0, "info": ""},
            {"peer_ip": RR1, "state": "exploded", "since": 1.0, "info": ""},
            {"peer_ip": RR1, "state": "down", "since": "yesterday", "info": ""},
            {"peer_ip": RR1, "state": "down", "since": True, "info": ""},
            {"peer_ip": RR1, "state": "down", "since": 10**400, "info": ""},
            {"peer_ip": RR1, "state": "down", "since": float("nan"), "info": ""},
            {"peer_ip": RR1, "state": "down", "since": float("inf"), "info": ""},
            {"peer_ip": RR1, "state": "down", "since": -1, "info": ""},
            {"peer_ip": RR1, "state": "down", "since": 1.0, "info": 5},
        ]
    },
}


@pytest.mark.parametrize("state", list(FOREIGN_STATES.values()), ids=list(FOREIGN_STATES))
def test_restore_ignores_a_state_of_another_shape(reflectors: LabPlan, state: Any) -> None:
    new = make_core(reflectors, "c1")
    new.restore(state)
    assert _fresh_view(new) == _fresh_view(make_core(reflectors, "c1"))


def test_restore_keeps_the_good_entries_among_bad_ones(reflectors: LabPlan) -> None:
    new = make_core(reflectors, "c1")
    session = {"peer_ip": RR3, "state": "down", "since": 5.0, "info": "gone"}
    new.restore({"rib": [5, _with(prefix="garbage"), _GOOD_RIB], "sessions": [5, session]})
    assert new.route(FOREIGN) is not None
    (rr3,) = [s for s in new.snapshot()["sessions"] if s["peer_ip"] == RR3]
    assert (rr3["state"], rr3["since"], rr3["info"]) == ("down", 5.0, "gone")


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from([RR1, C1, FOREIGN, "established", "10.244.0.0/26"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["rib", "adj_out", "sessions", *_GOOD_RIB, "peer_ip", "state", "since", "info", RR1]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(JSON)
def test_restore_never_raises(state: object) -> None:
    new = make_core(REFLECTORS_PLAN, "c1")
    new.restore(state)
    new.start()
    json.dumps(new.snapshot())


# --- converged lab: the agents' routes are the plan's FIB ----------------------------------------


def _plans() -> list[LabPlan]:
    """Every shipped lab whose speakers are all nodes: these tests wire agent cores together.
    (Labs with BGP routers have BIRD at the other end of some sessions: the fabric's
    integration tests run them against BIRD itself. Labs without BGP run no agent.)"""
    plans = [build_plan(load_topology(path)) for path in sorted(TOPOLOGIES.glob("*.yaml"))]
    plans = [p for p in plans if not any(r.bgp for r in p.routers)]
    plans = [p for p in plans if all(n.speaker != "none" for n in p.nodes)]
    return [*plans, _plan_text(REFLECTORS), _plan_text(EBGP)]


PLANS = _plans()


def _pod_prefixes(node: NodePlan) -> set[str]:
    out = set()
    for pod in node.pods:
        for address in (pod.ipv4, pod.ipv6):
            if address is not None:
                out.add(f"{address}/{128 if ':' in address else 32}")
    return out


def _agent_fib(node: NodePlan, plan: LabPlan) -> dict[str, FibRoute]:
    """The plan's FIB as BIRD writes it: without the pods' host routes (the dataplane builder
    installs those) and without Felix's routes (the route programmer's Felix part)."""
    return {r.prefix: r for r in node.bird_fib(plan.pools)}


def _key(route: FibRoute | None) -> tuple[object, ...] | None:
    return None if route is None else route.key()


def _all_prefixes(plan: LabPlan) -> set[str]:
    return {r.prefix for n in plan.nodes for r in n.rib} | {
        b.cidr for n in plan.nodes for b in n.blocks
    }


def _link_of(node: NodePlan, peer_ip: str) -> Link:
    s = next(s for s in node.sessions if s.peer_ip == peer_ip)
    return Link(
        s.peer_ip, s.peer_as, s.local_as, s.rr_client, s.keep_next_hop, s.allow_local_as or 0
    )


def _speaker(node: NodePlan) -> Speaker:
    return Speaker(
        node.name,
        node.router_id,
        node.as_number,
        node.cluster_id,
        {f: a for f in (4, 6) if (a := node.address(f)) is not None},
    )


def _best_paths_of(plan: LabPlan, node: NodePlan) -> list[Path]:
    """A node's expected Loc-RIB (the plan's RIB entries) as the paths `export` takes."""
    router_id = {a: n.router_id for n in plan.nodes for a in (n.ipv4, n.ipv6) if a is not None}
    out = []
    for entry in node.rib:
        if entry.learned_from is None:
            out.append(Path(entry.prefix, entry.next_hop))
            continue
        link = _link_of(node, entry.learned_from)
        out.append(
            Path(
                entry.prefix,
                entry.next_hop,
                as_path=entry.as_path,
                originator_id=entry.originator_id,
                cluster_list=entry.cluster_list,
                learned_from=entry.learned_from,
                learned_router_id=router_id[entry.learned_from],
                ebgp=link.ebgp,
                from_rr_client=link.rr_client,
            )
        )
    return out


@pytest.mark.parametrize("plan", PLANS, ids=[p.name for p in PLANS])
def test_driven_with_the_neighbours_expected_rib_each_core_wants_the_plans_fib(
    plan: LabPlan,
) -> None:
    """Each node's core alone: every neighbour announces what its expected RIB makes it send."""
    prefixes = _all_prefixes(plan)
    for node in plan.nodes:
        core, _ = started(plan, node.name)
        for session in node.sessions:
            if session.peer_ip not in node.expected_up or session.peer_node is None:
                continue
            neighbour = plan.node(session.peer_node)
            link_back = _link_of(neighbour, session.local_ip)
            paths = [
                export(p, _speaker(neighbour), link_back) for p in _best_paths_of(plan, neighbour)
            ]
            announce(core, session.peer_ip, *(p for p in paths if p is not None))
        wanted = _agent_fib(node, plan)
        for prefix in sorted(prefixes):
            assert _key(core.route(prefix)) == _key(wanted.get(prefix)), f"{node.name} {prefix}"


def _run_lab(plan: LabPlan) -> dict[str, AgentCore]:
    """Every node's core, wired together: each command becomes the peer's update event."""
    cores = {n.name: make_core(plan, n.name) for n in plan.nodes}
    owner = {a: n for n in plan.nodes for a in (n.ipv4, n.ipv6) if a is not None}
    queue: deque[tuple[str, str]] = deque()
    for node in plan.nodes:
        queue.extend((node.name, c) for c in cores[node.name].start())
        for peer in node.expected_up:
            queue.extend((node.name, c) for c in up(cores[node.name], peer))
    delivered = 0
    while queue:
        delivered += 1
        assert delivered < 100_000, "the lab does not converge"
        sender, command = queue.popleft()
        peer, action, path = parse_command(command)
        node = plan.node(sender)
        if peer not in node.expected_up:
            continue  # ExaBGP holds it until a session that never comes up
        receiver = owner[peer]
        session = next(s for s in node.sessions if s.peer_ip == peer)
        event = (
            UpdateEvent(session.local_ip, peer, announced=(path,))
            if action == "announce"
            else UpdateEvent(session.local_ip, peer, withdrawn=(path.prefix,))
        )
        queue.extend((receiver.name, c) for c in cores[receiver.name].on_update(event))
    return cores


@pytest.mark.parametrize("plan", PLANS, ids=[p.name for p in PLANS])
def test_a_converged_lab_of_cores_programs_the_plans_fib(plan: LabPlan) -> None:
    cores = _run_lab(plan)
    prefixes = _all_prefixes(plan)
    for node in plan.nodes:
        wanted = _agent_fib(node, plan)
        have = {p: r for p in prefixes if (r := cores[node.name].route(p)) is not None}
        assert {p: r.key() for p, r in have.items()} == {p: r.key() for p, r in wanted.items()}, (
            node.name
        )


@pytest.mark.parametrize("plan", PLANS, ids=[p.name for p in PLANS])
def test_a_converged_lab_of_cores_holds_the_plans_rib(plan: LabPlan) -> None:
    """Best paths (next hop, peer, AS path, ORIGINATOR_ID, CLUSTER_LIST) and candidate counts."""
    cores = _run_lab(plan)
    for node in plan.nodes:
        rib = cores[node.name].snapshot()["rib"]
        best = {
            r["prefix"]: (
                r["next_hop"],
                r["learned_from"],
                tuple(r["as_path"]),
                r["originator_id"],
                tuple(r["cluster_list"]),
            )
            for r in rib
            if r["best"]
        }
        expected = {
            e.prefix: (e.next_hop, e.learned_from, e.as_path, e.originator_id, e.cluster_list)
            for e in node.rib
        }
        assert best == expected, node.name
        candidates: dict[str, int] = {}
        for r in rib:
            candidates[r["prefix"]] = candidates.get(r["prefix"], 0) + 1
        assert candidates == {e.prefix: e.paths for e in node.rib}, node.name


# --- graceful restart (RFC 4724) -----------------------------------------------------------------

GR_V4 = GracefulRestart(120, False, ((4, True),))
OTHER = "10.99.1.0/26"  # a second prefix nobody owns


def _opened(
    core: AgentCore,
    peer: str,
    theirs: GracefulRestart | None = GR_V4,
    ours: GracefulRestart | None = GR_V4,
    now: float = 1000.0,
) -> list[str]:
    """The session comes up with these OPENs (what ExaBGP reports: the OPENs, then `up`)."""
    core.on_open(OpenEvent(peer, "", "send", ours))
    core.on_open(OpenEvent(peer, "", "receive", theirs))
    return core.on_state(StateEvent(peer, "", "up"), now=now)


def _learned(
    reflectors: LabPlan,
    theirs: GracefulRestart | None = GR_V4,
    ours: GracefulRestart | None = GR_V4,
) -> AgentCore:
    """c1 with every session up, FOREIGN and OTHER learned from RR1 only."""
    core = make_core(reflectors, "c1")
    core.start()
    for peer in (RR2, RR3):
        _opened(core, peer)
    _opened(core, RR1, theirs, ours)
    announce(core, RR1, Path(FOREIGN, C2, originator_id=C2, cluster_list=(CLUSTER,)))
    announce(core, RR1, Path(OTHER, C2, originator_id=C2, cluster_list=(CLUSTER,)))
    return core


def _down(core: AgentCore, peer: str, reason: str, now: float = 1000.0) -> list[str]:
    return core.on_state(StateEvent(peer, "", "down", reason), now=now)


def _stale(core: AgentCore) -> dict[str, set[str]]:
    return {
        peer: set(entry["prefixes"])
        for peer, entry in json.loads(json.dumps(core.snapshot()))["stale"].items()
    }


def test_a_peer_gone_without_notification_keeps_its_routes_for_its_restart_time(
    reflectors: LabPlan,
) -> None:
    core = _learned(reflectors, theirs=GracefulRestart(30, False, ((4, True),)))
    commands = _down(core, RR1, SILENT_CLOSE, now=1000.0)
    assert commands == []  # nothing withdrawn from anyone
    assert core.route(FOREIGN) is not None and core.route(OTHER) is not None
    assert _stale(core) == {RR1: {FOREIGN, OTHER}}
    entries = [e for e in core.snapshot()["rib"] if e["learned_from"] == RR1]
    assert entries and all(e["stale"] for e in entries)
    assert core.next_expiry() == 1030.0  # the peer's restart time, from its OPEN
    assert core.expire(1029.9) == [] and core.route(FOREIGN) is not None
    core.expire(1030.0)
    assert core.route(FOREIGN) is None and core.route(OTHER) is None
    assert _stale(core) == {} and core.next_expiry() is None


def test_a_restarted_peer_replaces_what_it_sends_again_and_the_rest_goes_at_its_end_of_rib(
    reflectors: LabPlan,
) -> None:
    core = _learned(reflectors)
    _down(core, RR1, SILENT_CLOSE)
    _opened(core, RR1, theirs=GracefulRestart(120, True, ((4, True),)), now=1005.0)
    assert core.route(FOREIGN) is not None and core.route(OTHER) is not None
    announce(core, RR1, Path(FOREIGN, C2, originator_id=C2, cluster_list=(CLUSTER,)))
    assert _stale(core) == {RR1: {OTHER}}
    core.on_update(UpdateEvent(RR1, C1, end_of_rib=True))
    assert core.route(FOREIGN) is not None
    assert core.route(OTHER) is None
    assert _stale(core) == {}


def test_stale_routes_of_a_peer_that_never_sends_end_of_rib_go_after_the_restart_time(
    reflectors: LabPlan,
) -> None:
    """BIRD 2.0.12 waits for End-of-RIB without a timer; the agent gives it the restart time
    again once the session is back (RFC 4724's optional stale path timer)."""
    core = _learned(reflectors)
    _down(core, RR1, SILENT_CLOSE, now=1000.0)
    _opened(core, RR1, now=1100.0)
    assert core.expire(1219.0) == [] and core.route(OTHER) is not None
    core.expire(1220.0)
    assert core.route(OTHER) is None


def test_a_peer_back_without_its_forwarding_state_loses_its_stale_routes_at_once(
    reflectors: LabPlan,
) -> None:
    core = _learned(reflectors)
    _down(core, RR1, SILENT_CLOSE)
    _opened(core, RR1, theirs=GracefulRestart(120, True, ((4, False),)))
    assert core.route(FOREIGN) is None and _stale(core) == {}


@pytest.mark.parametrize(
    ("theirs", "ours", "reason"),
    [
        (GR_V4, GR_V4, "notification received (6,2)"),
        (GR_V4, GR_V4, "notification sent (4,0)"),  # the hold timer
        (None, GR_V4, SILENT_CLOSE),  # the peer advertised no graceful restart
        (GracefulRestart(120, False, ((6, True),)), GR_V4, SILENT_CLOSE),  # not for IPv4
        (GracefulRestart(120, False, ()), GR_V4, SILENT_CLOSE),  # BIRD's `aware`: no family
        (GracefulRestart(0, False, ((4, True),)), GR_V4, SILENT_CLOSE),  # restart time 0
        (GR_V4, None, SILENT_CLOSE),  # this node advertised none
    ],
    ids=["cease", "hold-timer", "no-capability", "other-family", "aware", "zero", "not-ours"],
)
def test_any_other_end_of_a_session_withdraws_its_routes_at_once(
    reflectors: LabPlan, theirs: GracefulRestart | None, ours: GracefulRestart | None, reason: str
) -> None:
    core = _learned(reflectors, theirs, ours)
    commands = _down(core, RR1, reason)
    assert core.route(FOREIGN) is None and core.route(OTHER) is None
    assert _stale(core) == {}
    assert commands == []  # (a plain client passes on no iBGP route: nothing to withdraw)


def test_a_reflector_keeps_reflecting_a_restarting_clients_routes(reflectors: LabPlan) -> None:
    core = make_core(reflectors, "rr1")
    core.start()
    for peer in (C1, C2, RR2, RR3):
        _opened(core, peer)
    announce(core, C1, Path(FOREIGN, C1))
    assert _down(core, C1, SILENT_CLOSE) == []  # C2 keeps hearing of it
    commands = core.on_update(UpdateEvent(C1, RR1, end_of_rib=True))
    assert withdrawn_from(commands, C2) == {FOREIGN}


def test_a_second_silent_end_before_end_of_rib_drops_what_the_first_left_stale(
    reflectors: LabPlan,
) -> None:
    """BIRD's BGP_GRS_ACTIVE case of bgp_handle_graceful_restart."""
    core = _learned(reflectors)
    _down(core, RR1, SILENT_CLOSE, now=1000.0)
    _opened(core, RR1, now=1001.0)
    announce(core, RR1, Path(FOREIGN, C2, originator_id=C2, cluster_list=(CLUSTER,)))
    _down(core, RR1, SILENT_CLOSE, now=1002.0)
    assert core.route(OTHER) is None  # stale since the first restart, not sent again
    assert core.route(FOREIGN) is not None and _stale(core) == {RR1: {FOREIGN}}
    assert core.next_expiry() == 1122.0


def test_a_connection_that_never_came_up_takes_no_stale_route_away(reflectors: LabPlan) -> None:
    core = _learned(reflectors)
    _down(core, RR1, SILENT_CLOSE)
    core.on_state(StateEvent(RR1, C1, "connected"))
    _down(core, RR1, "notification sent (6,7)")  # a collision, say, before it was established
    assert core.route(FOREIGN) is not None and _stale(core) == {RR1: {FOREIGN, OTHER}}


def test_this_nodes_speaker_stopping_keeps_its_routes_and_records_them_stale(
    reflectors: LabPlan,
) -> None:
    core = _learned(reflectors, ours=GracefulRestart(45, True, ((4, True),)))
    assert _down(core, RR1, LOCAL_SHUTDOWN, now=1000.0) == []
    assert core.route(FOREIGN) is not None
    assert _stale(core) == {RR1: {FOREIGN, OTHER}}
    assert core.next_expiry() == 1045.0  # this node's restart time, not the peer's


def test_this_nodes_speaker_stopping_without_graceful_restart_drops_its_routes(
    reflectors: LabPlan,
) -> None:
    core = _learned(reflectors, ours=None)
    _down(core, RR1, LOCAL_SHUTDOWN)
    assert core.route(FOREIGN) is None


def _speaker_restart(
    reflectors: LabPlan, old: AgentCore, stopped: float = 1000.0, now: float = 1002.0
) -> AgentCore:
    """What `Runtime._take_over` does under a new ExaBGP."""
    state = json.loads(json.dumps(old.snapshot()))
    state["updated"] = stopped  # (Runtime.write_state's last write)
    new = make_core(reflectors, "c1")
    new.restore(state, speaker_restarted=True, now=now)
    return new


def test_a_new_speakers_agent_takes_over_the_routes_as_stale_until_each_end_of_rib(
    reflectors: LabPlan,
) -> None:
    core = _learned(reflectors, ours=GracefulRestart(45, True, ((4, True),)))
    announce(core, RR2, Path(FOREIGN, C2, originator_id=C2, cluster_list=(CLUSTER,)))
    for peer in (RR1, RR2, RR3):
        _down(core, peer, LOCAL_SHUTDOWN)
    new = _speaker_restart(reflectors, core)
    prefixes = {FOREIGN, OTHER, *(b.cidr for b in reflectors.node("c1").blocks)}
    assert _all_routes(new, prefixes) == _all_routes(core, prefixes)
    assert {s["peer_ip"]: s["state"] for s in new.snapshot()["sessions"]} == {
        RR1: "idle",
        RR2: "idle",
        RR3: "idle",
    }
    assert _stale(new) == {RR1: {FOREIGN, OTHER}, RR2: {FOREIGN}}
    assert new.refresh_commands() == []  # new sessions: the peers send everything anyway
    # RR2 comes back first: nothing to send again, End-of-RIB. RR1 still has FOREIGN.
    _opened(new, RR2, now=1003.0)
    new.on_update(UpdateEvent(RR2, C1, end_of_rib=True))
    assert new.route(FOREIGN) is not None and _stale(new) == {RR1: {FOREIGN, OTHER}}
    _opened(new, RR1, now=1004.0)
    announce(new, RR1, Path(OTHER, C2, originator_id=C2, cluster_list=(CLUSTER,)))
    new.on_update(UpdateEvent(RR1, C1, end_of_rib=True))
    assert new.route(FOREIGN) is None and new.route(OTHER) is not None
    assert _stale(new) == {}


def test_a_new_speakers_agent_drops_the_routes_of_peers_not_back_in_its_restart_time(
    reflectors: LabPlan,
) -> None:
    core = _learned(reflectors, ours=GracefulRestart(45, True, ((4, True),)))
    _down(core, RR1, LOCAL_SHUTDOWN)
    new = _speaker_restart(reflectors, core, stopped=1000.0, now=1010.0)
    # Counted from when the last agent stopped, not from the takeover.
    assert new.next_expiry() == 1045.0
    new.expire(1045.0)
    assert new.route(FOREIGN) is None


def test_a_new_speakers_agent_keeps_nothing_of_a_session_without_graceful_restart(
    reflectors: LabPlan,
) -> None:
    core = _learned(reflectors, ours=None)
    new = _speaker_restart(reflectors, core)  # (the old speaker was killed: no `down` seen)
    assert new.route(FOREIGN) is None and _stale(new) == {}


def test_a_new_speakers_agent_waits_bird_s_default_when_no_open_was_recorded(
    reflectors: LabPlan,
) -> None:
    core = _learned(reflectors)
    state = json.loads(json.dumps(core.snapshot()))
    for session in state["sessions"]:
        del session["graceful_restart"]  # an agent of an earlier version
    state["updated"] = 1000.0
    new = make_core(reflectors, "c1")
    new.restore(state, speaker_restarted=True, now=1001.0)
    assert new.next_expiry() == 1000.0 + 120


def test_an_agent_restarted_alone_keeps_the_stale_routes_and_their_time(
    reflectors: LabPlan,
) -> None:
    core = _learned(reflectors)
    _down(core, RR1, SILENT_CLOSE, now=1000.0)
    new = _restarted(reflectors, "c1", core)
    assert _stale(new) == {RR1: {FOREIGN, OTHER}} and new.next_expiry() == 1120.0
    assert {s["peer_ip"]: s["state"] for s in new.snapshot()["sessions"]}[RR2] == "established"
    _opened(new, RR1, theirs=GracefulRestart(120, True, ((4, False),)))
    assert new.route(FOREIGN) is None  # the restored capability rules still apply


def test_end_of_rib_after_a_takeover_goes_to_established_peers_only(reflectors: LabPlan) -> None:
    core = _learned(reflectors)
    _down(core, RR3, "notification received (6,2)")
    assert sorted(_restarted(reflectors, "c1", core).end_of_rib_commands()) == [
        f"neighbor {RR1} announce eor ipv4 unicast",
        f"neighbor {RR2} announce eor ipv4 unicast",
    ]


def test_cease_withdraws_everything_sent_and_forgets_what_was_learned(reflectors: LabPlan) -> None:
    core = make_core(reflectors, "rr1")
    core.start()
    for peer in (C1, C2, RR2, RR3):
        _opened(core, peer)
    announce(core, C1, Path(FOREIGN, C1))
    announce(core, RR2, Path(OTHER, RR2))
    sent = core.snapshot()["adj_out"]
    commands = core.cease()
    for peer, paths in sent.items():
        assert withdrawn_from(commands, peer) == {p["prefix"] for p in paths}, peer
    assert core.snapshot()["adj_out"] == {peer: [] for peer in sent}
    assert core.route(FOREIGN) is None and core.route(OTHER) is None
    (block,) = [b.cidr for b in reflectors.node("rr1").blocks]
    assert core.route(block) == FibRoute(block, "blackhole", source="local")
    assert {FOREIGN, OTHER} <= core.dirty  # their kernel routes go
    # ExaBGP's last messages change nothing: the peers were told to forget this node.
    assert announce(core, C1, Path(OTHER, C1)) == []
    assert _down(core, C2, LOCAL_SHUTDOWN) == [] and core.route(OTHER) is None
    assert core.snapshot()["ceased"] is True


BAD_CAPABILITIES: list[object] = [
    5,
    [],
    {"time": 5000},
    {"time": 5, "restarting": 1, "families": []},
]
STALE_RECORDS: dict[str, object] = {
    "stale is a list": {"stale": [RR1]},
    "stale of every wrong kind": {
        "stale": {
            RR1: {"prefixes": FOREIGN, "until": 5.0, "peer_restarted": True},
            RR2: {"prefixes": [FOREIGN], "until": "soon", "peer_restarted": True},
            RR3: {"prefixes": [FOREIGN], "until": 5.0, "peer_restarted": "yes"},
            "10.9.9.9": {"prefixes": [FOREIGN], "until": 5.0, "peer_restarted": True},
        }
    },
    **{
        f"stale time {name}": {
            "stale": {RR1: {"prefixes": [FOREIGN], "until": u, "peer_restarted": True}}
        }
        for name, u in (
            ("true", True),
            ("nan", float("nan")),
            ("inf", float("inf")),
            ("negative", -1),
            ("huge", 10**400),
        )
    },
    "capabilities of every wrong kind": {
        "sessions": [
            {
                "peer_ip": RR1,
                "state": "established",
                "since": 1.0,
                "info": "",
                "graceful_restart": {"received": bad, "sent": bad},
            }
            for bad in BAD_CAPABILITIES
        ]
    },
    "families of every wrong kind": {
        "sessions": [
            {
                "peer_ip": RR1,
                "state": "established",
                "since": 1.0,
                "info": "",
                "graceful_restart": {"received": {"time": 5, "restarting": False, "families": f}},
            }
            for f in ([[5, True]], [[4]], [[True, True]], [[4, 1]], "ipv4")
        ]
    },
}


@pytest.mark.parametrize("state", list(STALE_RECORDS.values()), ids=list(STALE_RECORDS))
@pytest.mark.parametrize("speaker_restarted", [False, True])
def test_restore_ignores_graceful_restart_records_of_another_shape(
    reflectors: LabPlan, state: dict[str, object], speaker_restarted: bool
) -> None:
    new = make_core(reflectors, "c1")
    new.restore({**state, "rib": [_GOOD_RIB]}, speaker_restarted=speaker_restarted, now=50.0)
    session = next(s for s in new.snapshot()["sessions"] if s["peer_ip"] == RR1)
    assert session["graceful_restart"] == {"received": None}  # none of them was read
    if not speaker_restarted:
        assert _stale(new) == {}  # no valid stale record: nothing stale
    else:
        assert new.next_expiry() == 50.0 + 120  # ("updated" missing: from now)
    json.dumps(new.snapshot())


# --- the runtime: a new speaker or the agent alone; a stop for a configuration change ------------


def _runtime(
    tmp_path: FsPath, plan: LabPlan, node: str, previous: dict[str, Any] | None
) -> Runtime:
    node_dir = tmp_path / "nodes" / node
    node_dir.mkdir(parents=True)
    (node_dir / AGENT_CONFIG).write_text(json.dumps(agent_config_of(plan, node).to_json()))
    if previous is not None:
        (node_dir / "agent.json").write_text(json.dumps(previous))
    return Runtime(tmp_path, node)


@pytest.mark.parametrize(
    ("speaker_pid", "speaker_restarted"),
    [("parent", False), ("other", True), (None, False)],
    ids=["same-exabgp", "new-exabgp", "no-record"],
)
def test_the_runtime_takes_over_as_stale_only_under_a_new_speaker(
    reflectors: LabPlan, tmp_path: FsPath, speaker_pid: str | None, speaker_restarted: bool
) -> None:
    core = _learned(reflectors)
    previous = {**core.snapshot(), "pid": 1, "updated": time.time()}
    if speaker_pid is not None:
        # ExaBGP is the agent's parent: the predecessor recorded its own.
        previous["speaker_pid"] = os.getppid() + (0 if speaker_pid == "parent" else 1)
    runtime = _runtime(tmp_path, reflectors, "c1", previous)
    assert runtime.restarted and runtime.speaker_restarted is speaker_restarted
    assert runtime.core.route(FOREIGN) is not None  # kept either way
    assert bool(_stale(runtime.core)) is speaker_restarted
    states = {s["state"] for s in runtime.core.snapshot()["sessions"]}
    assert states == ({"idle"} if speaker_restarted else {"established"})


def test_the_runtime_says_when_exabgp_has_taken_every_withdrawal(
    reflectors: LabPlan, tmp_path: FsPath
) -> None:
    runtime = _runtime(tmp_path, reflectors, "rr1", None)
    sent: list[str] = []
    queue = sent.extend  # what the real `send` hands its pipe, one line per command

    class Pipe:
        def queue(self, data: bytes) -> None:
            queue(data.decode().splitlines())

    runtime.pipe = cast(SpeakerPipe, Pipe())
    runtime.send(runtime.core.start())
    for peer in (C1, C2, RR2, RR3):
        _opened(runtime.core, peer)
    announce(runtime.core, C1, Path(FOREIGN, C1))
    sent.clear()
    runtime.cease()
    assert sent[0] == "enable-ack"  # ExaBGP answers every command from here on
    withdrawals = sent[1:]
    assert withdrawals and all(" withdraw route " in c for c in withdrawals)

    def stopping() -> object:
        return json.loads((tmp_path / "nodes" / "rr1" / "agent.json").read_text())["stopping"]

    assert stopping() == "withdrawing"
    runtime.on_answer('{ "exabgp": "5.0" }')  # (no answer)
    for _ in withdrawals:
        runtime.on_answer("done")
    assert stopping() == "withdrawing"  # one answer short: enable-ack's own
    runtime.on_answer("error\n")  # (a refused withdrawal is an answer too)
    assert stopping() == "withdrawn"
    runtime.cease()  # asked twice: nothing more to say
    assert len(sent) == 1 + len(withdrawals)
