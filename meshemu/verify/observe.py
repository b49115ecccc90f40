"""Observe a running lab: agents' sessions and RIBs, kernel FIBs, and real packets.

Owns collecting everything `verify` judges: each agent's state file, each node's kernel routes,
and the pod-to-pod matrix (ICMP echo and a TCP connect, IPv4 and IPv6) with the path each
probe actually took, read from a capture on the fabric (the bridges joining the nodes and the
routers), not inferred from routes. It changes nothing in the lab.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from meshemu.lab import observe_fib
from meshemu.model.plan import LabPlan
from meshemu.model.routes import FibRoute
from meshemu.state import LabState
from meshemu.verify.probe import (
    Cell,
    Frame,
    _enter,
    _pods,
    capture,
    reachability_matrix,
    targets_of,
)

TCP_PORT = 7077


@dataclass(frozen=True)
class PathCell:
    """One probe of the matrix with what the fabric showed."""

    cell: Cell
    tcp_ok: bool | None  # None: not probed
    observed_path: str  # local | direct | router | ipip | vxlan | unseen


@dataclass(frozen=True)
class Observation:
    agents: dict[str, dict[str, Any] | None]
    fibs: dict[str, list[FibRoute]]
    matrix: list[PathCell]


def observe_control(
    plan: LabPlan,
) -> tuple[dict[str, dict[str, Any] | None], dict[str, list[FibRoute]]]:
    state = LabState(plan.name)
    agents = {n.name: state.agent_state(n.name) for n in plan.nodes}
    fibs = {n.name: observe_fib(n) for n in plan.nodes}
    return agents, fibs


def _listen_everywhere(plan: LabPlan, port: int) -> list[int]:
    """A TCP listener in every pod (IPv4 and IPv6), each a forked child; returns their pids."""
    pids = []
    for _node, pod in _pods(plan):
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            try:
                _enter(pod.netns)
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
    from meshemu.verify.probe import in_child

    listeners = _listen_everywhere(plan, port)
    results: dict[tuple[str, str], bool] = {}
    try:
        pods = _pods(plan)
        for _node, pod in pods:
            targets = targets_of(pod, pods)
            answers = in_child(pod.netns, _connect_all, targets, port, timeout)
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


def observed_path(cell: Cell, frames: list[Frame]) -> str:
    if cell.path == "local":
        return "local"
    kinds = set()
    for frame in frames:
        if frame.encap in ("ipip", "vxlan"):
            if (frame.inner_src, frame.inner_dst) == (cell.source_ip, cell.target_ip):
                kinds.add(frame.encap)
        elif (frame.outer_src, frame.outer_dst) == (cell.source_ip, cell.target_ip):
            kinds.add("router" if frame.ifname.startswith("r") else "direct")
    for kind in ("ipip", "vxlan", "router", "direct"):
        if kind in kinds:
            return kind
    return "unseen"


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


def observe(plan: LabPlan, dataplane: bool = True) -> Observation:
    agents, fibs = observe_control(plan)
    matrix = observe_dataplane(plan) if dataplane else []
    return Observation(agents, fibs, matrix)
