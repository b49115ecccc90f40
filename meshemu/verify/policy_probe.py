"""Probing the policy matrix (I/O): TCP and UDP to every port a pod declares, from every other
pod, all probes of one source at once.

Owns the listeners (one forked child per pod with ports, inside its namespace, binding every
declared port in each of its families, never outliving one run; a port the lab's own responder
already holds is left to it) and the probes (one forked child per source pod: non-blocking TCP
connects and UDP datagrams to all its targets together, so that the dropped ones cost one
timeout per source, not one each). A TCP connection or refusal, or a UDP answer or refusal,
means the packet passed every policy on its way (Felix drops silently; a refusal comes from
the target itself). ICMP is `verify.probe.reachability_matrix`'s. It reads the plan; it
changes nothing. The verdicts are `verify.policy`'s.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import signal
import socket
import time

from meshemu.dataplane.netlink import enter_for_good
from meshemu.model.labplan import LabPlan, PodPlan
from meshemu.model.policy_eval import TCP, UDP, ExpectedCell, pod_ports

Target = tuple[str, int, int]  # (address, protocol number, port)


def _serve(pod: PodPlan, ready_w: int, seconds: float) -> None:
    socks: list[tuple[socket.socket, socket.SocketKind]] = []
    for address in (pod.ipv4, pod.ipv6):
        if not address:
            continue
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        for port in pod_ports(pod):
            kind = socket.SOCK_STREAM if port.protocol == "TCP" else socket.SOCK_DGRAM
            sock = socket.socket(family, kind)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port.port))
            except OSError as err:
                sock.close()
                if err.errno == errno.EADDRINUSE:
                    continue  # (the lab's responder answers on it)
                raise
            if kind == socket.SOCK_STREAM:
                sock.listen(128)
            socks.append((sock, kind))
    os.write(ready_w, b"1")
    deadline = time.monotonic() + seconds
    by_fd = {s.fileno(): (s, k) for s, k in socks}
    while time.monotonic() < deadline and socks:
        ready, _, _ = select.select([s for s, _ in socks], [], [], 0.5)
        for sock in ready:
            if by_fd[sock.fileno()][1] == socket.SOCK_STREAM:
                conn, _ = sock.accept()
                conn.close()
            else:
                _data, peer = sock.recvfrom(512)
                sock.sendto(b"meshemu", peer)


def start_listeners(plan: LabPlan, seconds: float = 120) -> list[int]:
    """A listener in every pod that declares ports; their pids once each listens."""
    pids = []
    for node in plan.nodes:
        for pod in node.pods:
            if not pod_ports(pod):
                continue
            ready_r, ready_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(ready_r)
                try:
                    enter_for_good(pod.netns)
                    _serve(pod, ready_w, seconds)
                except BaseException:  # never run on into the parent's code
                    pass
                finally:
                    os._exit(0)
            os.close(ready_w)
            os.read(ready_r, 1)
            os.close(ready_r)
            pids.append(pid)
    return pids


def stop(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def probe_targets(targets: list[Target], timeout: float) -> list[bool]:
    """From the current namespace: whether each target let the probe through (TCP connected
    or refused, UDP answered or refused), all at once within `timeout`."""
    result = [False] * len(targets)
    pending: dict[int, tuple[int, socket.socket, int]] = {}
    for i, (address, proto, port) in enumerate(targets):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        kind = socket.SOCK_STREAM if proto == TCP else socket.SOCK_DGRAM
        sock = socket.socket(family, kind)
        sock.setblocking(False)
        code = sock.connect_ex((address, port))
        if proto == UDP:
            with contextlib.suppress(OSError):
                sock.send(b"meshemu-policy")
        elif code not in (0, errno.EINPROGRESS):
            result[i] = code == errno.ECONNREFUSED
            sock.close()
            continue
        pending[sock.fileno()] = (i, sock, proto)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        reads = [s for _, s, p in pending.values() if p == UDP]
        writes = [s for _, s, p in pending.values() if p == TCP]
        ready_r, ready_w, _ = select.select(reads, writes, [], 0.05)
        for sock in [*ready_r, *ready_w]:
            i, _, proto = pending.pop(sock.fileno())
            if proto == TCP:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                result[i] = code in (0, errno.ECONNREFUSED)
            else:
                try:
                    sock.recv(512)
                    result[i] = True
                except ConnectionRefusedError:
                    result[i] = True  # (an ICMP port unreachable from the target itself)
                except OSError:
                    result[i] = False
            sock.close()
    for _, sock, _ in pending.values():
        sock.close()
    return result


def port_matrix(
    plan: LabPlan, cells: list[ExpectedCell], timeout: float = 1.5
) -> dict[tuple[str, str, int, str], bool | str]:
    """Every TCP/UDP cell of the expected matrix probed: passed (True), dropped (False), or why
    it could not be probed (text)."""
    wanted = [c for c in cells if c.packet.protocol in (TCP, UDP) and c.packet.port]
    by_source: dict[str, list[ExpectedCell]] = {}
    for cell in wanted:
        by_source.setdefault(cell.source, []).append(cell)
    netns = {f"{n.name}/{p.name}": p.netns for n in plan.nodes for p in n.pods}
    listeners = start_listeners(plan)
    seen: dict[tuple[str, str, int, str], bool | str] = {}
    children: list[tuple[list[ExpectedCell], int, int]] = []
    try:
        for source, mine in by_source.items():
            targets = [(c.target_ip, c.packet.protocol, c.packet.port or 0) for c in mine]
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                payload = '{"error": "interrupted"}'
                try:
                    enter_for_good(netns[source])
                    payload = json.dumps(probe_targets(targets, timeout))
                except BaseException as err:  # reported, never raised past the fork
                    payload = json.dumps({"error": str(err)})
                finally:
                    with os.fdopen(write_fd, "w") as out:
                        out.write(payload)
                    os._exit(0)
            os.close(write_fd)
            children.append((mine, pid, read_fd))
        for mine, pid, read_fd in children:
            with os.fdopen(read_fd) as inp:
                answers = json.loads(inp.read() or '{"error": "prober died"}')
            os.waitpid(pid, 0)
            for i, cell in enumerate(mine):
                if isinstance(answers, dict):
                    seen[cell.key] = f"not probed: {answers.get('error')}"
                else:
                    seen[cell.key] = bool(answers[i])
    finally:
        stop(listeners)
    return seen
