"""Probing the outside host (I/O): a UDP echo in its namespace answers each datagram with the
source address it saw; every pod sends one to each outside address of its families.

Owns the echo (a forked child inside the outside namespace, never outliving one run) and the
probes (one forked child per pod, `verify.probe.in_child`). Reads the plan; changes nothing.
The verdicts are `verify.outside.check_outside`'s.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time

from meshemu.dataplane.netlink import enter_for_good
from meshemu.errors import DataplaneError
from meshemu.model.plan import LabPlan
from meshemu.verify.outside import OutsideSeen
from meshemu.verify.probe import in_child


def _serve(addresses: list[str], port: int, ready_w: int, seconds: float) -> None:
    sockets = []
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((address, port))
        sockets.append(sock)
    os.write(ready_w, b"1")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select(sockets, [], [], 0.5)
        for sock in ready:
            _data, peer = sock.recvfrom(512)
            sock.sendto(str(peer[0]).encode(), peer)


def start_echo(netns: str, addresses: list[str], port: int, seconds: float = 120) -> int:
    """The echo, in a forked child inside `netns`; returns its pid once it listens."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        try:
            enter_for_good(netns)
            _serve(addresses, port, ready_w, seconds)
        except BaseException:  # never run on into the parent's code
            pass
        finally:
            os._exit(0)
    os.close(ready_w)
    ok = os.read(ready_r, 1)
    os.close(ready_r)
    if not ok:
        os.waitpid(pid, 0)
        raise DataplaneError(f"the outside host's echo did not start in {netns}")
    return pid


def ask(targets: list[tuple[str, str]], port: int, timeout: float, attempts: int) -> dict[str, str]:
    """From the current namespace: (source, target) pairs -> the address the echo saw."""
    seen: dict[str, str] = {}
    for source, target in targets:
        family = socket.AF_INET6 if ":" in target else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
            sock.settimeout(timeout)
            for _ in range(attempts):
                sock.sendto(b"meshemu-outside", (target, port))
                try:
                    data, _peer = sock.recvfrom(512)
                except OSError:
                    continue
                seen[target] = data.decode(errors="replace")
                break
    return seen


def probe_outside(
    plan: LabPlan, timeout: float = 0.5, attempts: int = 3
) -> tuple[OutsideSeen, ...]:
    outside = plan.outside
    if outside is None:
        return ()
    addresses = [a for a in (outside.ipv4, outside.ipv6) if a is not None]
    echo = start_echo(outside.netns, addresses, outside.port)
    out: list[OutsideSeen] = []
    try:
        for node in plan.nodes:
            for pod in node.pods:
                pairs = [
                    (src, dst)
                    for family, src in ((4, pod.ipv4), (6, pod.ipv6))
                    if src is not None and (dst := outside.address(family)) is not None
                ]
                if not pairs:
                    continue
                error = None
                answers: dict[str, str] = {}
                try:
                    got = in_child(pod.netns, ask, pairs, outside.port, timeout, attempts)
                    assert isinstance(got, dict)
                    answers = {str(k): str(v) for k, v in got.items()}
                except DataplaneError as err:
                    error = str(err)
                for src, dst in pairs:
                    out.append(
                        OutsideSeen(
                            node.name,
                            pod.name,
                            6 if ":" in dst else 4,
                            src,
                            dst,
                            answers.get(dst),
                            error,
                        )
                    )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(echo, signal.SIGKILL)
        os.waitpid(echo, 0)
    return tuple(out)
