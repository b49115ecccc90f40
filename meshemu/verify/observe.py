"""Observe a running lab: health, agents' sessions and RIBs, kernel FIBs, and real packets.

Owns collecting everything `verify` judges (the one place that reads a running lab): which of
each node's processes and namespaces still exist, each agent's state (asked to write it out
first, so nothing is read from before its last update), each node's kernel routes, the
pod-to-pod matrix (ICMP echo and a TCP connect, IPv4 and IPv6) with the path each probe
actually took, read from a capture on the fabric, and snapshots. It changes nothing in the lab
and never creates a namespace (a deleted one is reported as gone).

A BIRD node (`speaker: bird`) has no agent: its state is read from its BIRD daemons over their
control sockets (`show protocols all`, `show route all`) and given the shape an agent writes
(`bird_node_state`, `bird_report`), so `verify.checks` judges it like any node. Its health:
the speaker is its BIRD daemons (both of a dual-stack node), and the agent's part (programming
the FIB) is BIRD's kernel protocol, so it runs when they run.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meshemu import process
from meshemu.controlplane import agent_control
from meshemu.controlplane.birdc import BirdControl
from meshemu.dataplane.netlink import enter_for_good, netns_exists, read_fib
from meshemu.errors import DataplaneError, SpeakerError
from meshemu.model.plan import LabPlan, NodePlan, RouterPlan
from meshemu.model.routes import FibRoute
from meshemu.state import LabState
from meshemu.verify.bird_output import BirdProtocol, BirdRoute, parse_protocols, parse_routes
from meshemu.verify.observation import (
    Frame,
    NodeHealth,
    Observation,
    PathCell,
    RouterObservation,
    observed_path,
    pods_of,
    targets_of,
)
from meshemu.verify.outside_probe import probe_outside
from meshemu.verify.probe import capture, in_child, reachability_matrix

TCP_PORT = 7077
# How long an agent may take to write its state out when asked (it answers within a few ms).
FLUSH_SECONDS = 2.0


def observe_health(state: LabState, plan: LabPlan) -> dict[str, NodeHealth]:
    """Per node: does its namespace exist, do its speaker, agent and tunnel run."""
    ipip = state.summary().ipip
    running = state.running_names()
    speakers = state.speakers()
    health = {}
    for node in plan.nodes:
        if node.speaker == "none":
            speaker = agent = True  # BGP off: nothing to run, nothing dead
        elif node.speaker == "bird":
            # Every BIRD daemon the node runs (one per family it has); BIRD's kernel protocol
            # is what an agent is to an ExaBGP node.
            records = speakers.get(node.name, [])
            speaker = len(records) == _bird_daemons(node) and all(
                process.same_process(r.pid, r.start_time) for r in records
            )
            agent = speaker
        else:
            speaker = f"speaker:{node.name}" in running
            agent = speaker and agent_control.running(state.dir, node.name)
        has_tunnel = ipip == "userspace" and node.ipv4 is not None
        health[node.name] = NodeHealth(
            netns=netns_exists(node.netns),
            speaker=speaker,
            agent=agent,
            tunnel=f"tunnel:{node.name}" in running if has_tunnel else None,
            missing_pods=tuple(p.name for p in node.pods if not netns_exists(p.netns)),
            bgp=node.speaker != "none",
        )
    return health


def fresh_agent_states(
    state: LabState, plan: LabPlan, health: dict[str, NodeHealth]
) -> dict[str, dict[str, Any] | None]:
    """Each node's state as it is now: a live agent's written out on request
    (`asked_agent_states`), a BIRD node's read from its BIRD. A dead node's state is None."""
    agents: dict[str, dict[str, Any] | None] = {n.name: None for n in plan.nodes}
    alive_agents = []
    for node in plan.nodes:
        if node.speaker == "none":
            agents[node.name] = node_state(state, node)
        elif node.speaker == "bird":
            alive = health[node.name].control_alive
            agents[node.name] = bird_node_state(state, node) if alive else None
        elif health[node.name].control_alive:
            alive_agents.append(node.name)
    agents.update(asked_agent_states(state, alive_agents))
    return agents


def asked_agent_states(state: LabState, nodes: Sequence[str]) -> dict[str, dict[str, Any] | None]:
    """The agents' states, each written out on request (WRITE_STATE) so none is older than its
    agent's last update: agents write on their own only when quiet. An agent that cannot be
    asked (none runs) or does not answer within FLUSH_SECONDS: its last state (None: none)."""
    asked = {}
    for node in nodes:
        before = state.agent_state_version(node)
        if agent_control.tell(state.dir, node, agent_control.WRITE_STATE):
            asked[node] = before
    deadline = time.monotonic() + FLUSH_SECONDS
    waiting = dict(asked)
    while waiting and time.monotonic() <= deadline:
        waiting = {n: v for n, v in waiting.items() if state.agent_state_version(n) == v}
        if waiting:
            time.sleep(0.01)
    return {node: state.agent_state(node) for node in nodes}


def current_node_state(
    state: LabState, node: NodePlan, routes: bool = True
) -> dict[str, Any] | None:
    """`node_state`, with an ExaBGP node's agent asked to write its state first."""
    if node.speaker == "exabgp":
        return asked_agent_states(state, [node.name])[node.name]
    return node_state(state, node, routes)


def _bird_daemons(node: NodePlan) -> int:
    return sum(1 for family in (4, 6) if node.address(family) is not None)


def node_state(state: LabState, node: NodePlan, routes: bool = True) -> dict[str, Any] | None:
    """A node's state in the agent's shape as last known: its agent's file, or for a BIRD
    node what its BIRD says now (None when it cannot be read at all). `routes` False: a BIRD
    node's sessions only (its RIB is not asked for)."""
    if node.speaker == "bird":
        return bird_node_state(state, node, routes)
    if node.speaker == "none":
        return {"sessions": {}, "rib": [], "speaker": "none"}  # BGP off: nothing learned
    return state.agent_state(node.name)


def bird_node_state(state: LabState, node: NodePlan, routes: bool = True) -> dict[str, Any] | None:
    """A BIRD node's sessions and (`routes`) routes, read from each of its daemons, in the
    agent's shape (`bird_report`); a daemon that cannot be read adds its error to `errors`, and
    None when none could be."""
    protocols: list[BirdProtocol] = []
    learned: list[BirdRoute] = []
    errors: list[str] = []
    read = 0
    for family in (4, 6):
        if node.address(family) is None:
            continue
        try:
            seen = read_bird(state.node_bird_socket(node.index, family), ("",) if routes else ())
            protocols += seen[0]
            learned += seen[1]
            read += 1
        except SpeakerError as err:
            errors.append(f"BIRD (IPv{family}) of {node.name} cannot be read: {err}")
    if not read:
        return None
    report = bird_report(node, protocols, learned)
    report["errors"] = errors
    return report


def bird_report(
    node: NodePlan, protocols: Sequence[BirdProtocol], routes: Sequence[BirdRoute]
) -> dict[str, Any]:
    """What BIRD says, as an agent writes it (`agent.json`: `AgentCore.snapshot`), pure.

    Sessions: every BGP protocol by its neighbor address (`established` when BIRD's BGP state
    is, otherwise BIRD's state in lower case, with its last error as `info`). RIB: every BGP
    route, learned from its protocol's neighbor, `best` when BIRD selected it, with its
    BGP.next_hop (the global address of an IPv6 pair), AS path, LOCAL_PREF, ORIGINATOR_ID and
    CLUSTER_LIST; and the node's own blocks (the static blackholes confd's bird_aggr.cfg
    originates), learned from no one, with the node's address as next hop.
    """
    planned = {s.peer_ip: s for s in node.sessions}
    neighbor = {}
    sessions = []
    for p in protocols:
        if p.proto != "BGP" or p.neighbor_address is None:
            continue
        neighbor[p.name] = p.neighbor_address
        session = planned.get(p.neighbor_address)
        state = "established" if p.established else (p.bgp_state or p.state).lower()
        sessions.append(
            {
                "peer_ip": p.neighbor_address,
                "peer_node": session.peer_name if session is not None else None,
                "kind": session.kind if session is not None else "bgp",
                "state": state,
                "since": None,  # BIRD prints a time of day, not a Unix time
                "info": p.last_error or "",
                "prefixes_received": p.routes_imported or 0,
                "protocol": p.name,
            }
        )
    blocks = {b.cidr for b in node.blocks}
    rib = []
    for r in routes:
        if r.source == "BGP" and r.protocol in neighbor:
            rib.append(
                {
                    "prefix": r.prefix,
                    "next_hop": r.bgp_next_hop,
                    "learned_from": neighbor[r.protocol],
                    "as_path": list(r.as_path or ()),
                    "local_pref": r.local_pref,
                    "originator_id": r.originator_id,
                    "cluster_list": list(r.cluster_list),
                    "best": r.selected,
                }
            )
        elif r.source == "static" and r.prefix in blocks and r.destination == "blackhole":
            family = 6 if ":" in r.prefix else 4
            rib.append(
                {
                    "prefix": r.prefix,
                    "next_hop": node.address(family),
                    "learned_from": None,
                    "as_path": [],
                    "local_pref": None,
                    "originator_id": None,
                    "cluster_list": [],
                    "best": r.selected,
                }
            )
    return {"sessions": sessions, "rib": rib, "speaker": "bird"}


def observe_fibs(plan: LabPlan, health: dict[str, NodeHealth]) -> dict[str, list[FibRoute]]:
    return {n.name: read_fib(n.netns) for n in plan.nodes if health[n.name].netns}


def _listen_everywhere(plan: LabPlan, port: int) -> list[int]:
    """A TCP listener in every pod (IPv4 and IPv6), each a forked child; returns their pids."""
    pids = []
    for _node, pod in pods_of(plan):
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            try:
                enter_for_good(pod.netns)
                servers = []
                for family, address in ((socket.AF_INET, pod.ipv4), (socket.AF_INET6, pod.ipv6)):
                    if address:
                        server = socket.socket(family, socket.SOCK_STREAM)
                        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        server.bind((address, port))
                        server.listen(128)
                        servers.append(server)
                os.write(ready_w, b"1")
                deadline = time.monotonic() + 120  # never outlives a verify run
                while time.monotonic() < deadline:
                    ready, _, _ = select.select(servers, [], [], 0.5)
                    for server in ready:
                        conn, _ = server.accept()
                        conn.close()
            except BaseException:  # never run on into the parent's code
                pass
            finally:
                os._exit(0)
        os.close(ready_w)
        os.read(ready_r, 1)
        os.close(ready_r)
        pids.append(pid)
    return pids


def _connect_all(targets: list[str], port: int, timeout: float) -> dict[str, bool]:
    results = {}
    for target in targets:
        family = socket.AF_INET6 if ":" in target else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((target, port))
            results[target] = True
        except OSError:
            results[target] = False
        finally:
            sock.close()
    return results


def tcp_matrix(
    plan: LabPlan, port: int = TCP_PORT, timeout: float = 1.0
) -> dict[tuple[str, str], bool]:
    """(source pod IP, target pod IP) -> whether a TCP connection was accepted."""
    listeners = _listen_everywhere(plan, port)
    results: dict[tuple[str, str], bool] = {}
    try:
        pods = pods_of(plan)
        for _node, pod in pods:
            targets = targets_of(pod, pods)
            try:
                answers = in_child(pod.netns, _connect_all, targets, port, timeout)
            except DataplaneError:
                continue  # the pod's namespace is gone: its ICMP cells say so
            assert isinstance(answers, dict)
            for target, ok in answers.items():
                source = pod.ipv6 if ":" in target else pod.ipv4
                results[(str(source), target)] = bool(ok)
    finally:
        for pid in listeners:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    return results


def observe_dataplane(plan: LabPlan, tcp: bool = True) -> list[PathCell]:
    frames: list[Frame] = []
    seconds = 2.0 + 0.05 * sum(len(n.pods) for n in plan.nodes)
    sniffer = threading.Thread(target=lambda: frames.extend(capture(plan.fabric_netns, seconds)))
    sniffer.start()
    time.sleep(0.3)  # the capture socket is open before the first probe leaves
    cells = reachability_matrix(plan)
    tcp_results = tcp_matrix(plan) if tcp else {}
    sniffer.join()
    return [
        PathCell(
            cell, tcp_results.get((cell.source_ip, cell.target_ip)), observed_path(cell, frames)
        )
        for cell in cells
    ]


def observe_router(state: LabState, index: int, router: RouterPlan) -> RouterObservation:
    """A BGP router: is its BIRD running, what does it say over its control socket, and the
    kernel routes of its namespace."""
    running = state.running(f"bird:{router.name}")
    fib = tuple(read_fib(router.netns)) if netns_exists(router.netns) else ()
    if not running:
        return RouterObservation(False, fib=fib)
    try:
        # (BIRD 2 has one daemon for both families and always both master tables.)
        protocols, routes = read_bird(state.bird_socket(index), ("master4", "master6"))
    except SpeakerError as err:
        return RouterObservation(True, fib=fib, error=str(err))
    return RouterObservation(True, protocols, routes, fib)


def read_bird(
    socket_path: Path, tables: Sequence[str]
) -> tuple[tuple[BirdProtocol, ...], tuple[BirdRoute, ...]]:
    """What one BIRD says over its control socket: `show protocols all`, and `show route all`
    of each table ("": its default one, as BIRD 1.6 has). SpeakerError when it cannot answer
    (a too long socket path included)."""
    control = BirdControl(socket_path)
    protocols = parse_protocols(control.command("show protocols all").lines)
    routes: list[BirdRoute] = []
    for table in tables:
        command = f"show route all table {table}" if table else "show route all"
        routes += parse_routes(control.command(command).lines)
    return protocols, tuple(routes)


def observe_routers(state: LabState, plan: LabPlan) -> dict[str, RouterObservation]:
    return {
        router.name: observe_router(state, index, router)
        for index, router in enumerate(plan.routers)
        if router.bgp is not None
    }


def observe(state: LabState, plan: LabPlan, dataplane: bool = True) -> Observation:
    health = observe_health(state, plan)
    agents = fresh_agent_states(state, plan, health)
    fibs = observe_fibs(plan, health)
    routers = observe_routers(state, plan)
    # (With network policy the TCP probes are the policy matrix's, to the ports pods declare.)
    matrix = observe_dataplane(plan, tcp=plan.policy is None) if dataplane else []
    outside = probe_outside(plan) if dataplane else ()
    return Observation(agents, fibs, matrix, health, state.running("fibd"), routers, outside)


def take_snapshot(state: LabState, plan: LabPlan) -> dict[str, Any]:
    """The lab's normalized sessions, RIBs and FIBs (see `verify.snapshot.normalize`)."""
    from meshemu.verify.snapshot import normalize

    health = observe_health(state, plan)
    agents = {k: v or {} for k, v in fresh_agent_states(state, plan, health).items()}
    fibs = {k: [r.to_json() for r in v] for k, v in observe_fibs(plan, health).items()}
    return normalize(plan.to_json(), agents, fibs)
