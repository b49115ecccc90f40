"""The lab's route programmer: one process per lab applying the agents' FIB changes.

Owns the kernel side of every agent's FIB: agents (one per node, inside the node's namespace)
send route changes as JSON lines over a unix socket in the lab's state folder; this process
holds one netlink handle per node namespace and applies them with `dataplane.netlink`, then
answers each line with `ok` or the kernel's error. One process for the whole lab keeps pyroute2
(about 20 MiB per Python process) out of the agents, which keeps each node small.

It also writes Felix's routes of every node (`FelixPart`, `dataplane.felix`): the lab's one
Felix-like route source, independent of the agents and speakers.

Run by `lab` as `python -m meshemu.dataplane.fibd --state DIR`; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from meshemu.dataplane import felix
from meshemu.dataplane.netlink import Batch, NetnsHandle, netns_inode
from meshemu.errors import DataplaneError, MeshemuError
from meshemu.model.labplan import LabPlan
from meshemu.model.routes import PROTO_BIRD, FibRoute
from meshemu.state import read_json, write_json_atomic

SOCKET_NAME = "fib.sock"


def apply_all(handles: dict[str, NetnsHandle], lines: list[bytes]) -> list[str]:
    """The agents' changes, one JSON object a line: {"netns", "op": replace|del, "prefix",
    "type", "via", "dev", "onlink", "proto", "metric"} (the agents write as BIRD: protocol 12
    and BIRD's metric); per line `ok` or the error. The changes of one namespace that follow
    each other go to the kernel in one netlink write (`netlink.Batch`): an agent sends all its
    changes at once, and a 100-node mesh is 20,000 routes (measured: 11 s of this process's
    CPU through pyroute2, one round trip per route)."""
    replies: list[str] = []
    group: list[int] = []  # positions in `replies` of the changes queued in `batch`
    batch: Batch | None = None
    for line in lines:
        try:
            request = json.loads(line)
            netns = str(request["netns"])
            if batch is None or batch.netns != netns:
                _send(handles, batch, group, replies)
                batch, group = None, []
                batch = Batch(netns, _handle(handles, netns).index)
            _queue(batch, request)
        except (ValueError, KeyError, TypeError) as err:
            replies.append(f"error bad request: {err}")
            continue
        except DataplaneError as err:  # no such namespace or interface
            replies.append(f"error {err}")
            if batch is not None and batch.netns in handles:
                handles[batch.netns].forget_indexes()  # an interface may be new (tunl0)
            continue
        group.append(len(replies))
        replies.append("ok")
    _send(handles, batch, group, replies)
    return replies


def _queue(batch: Batch, request: dict[str, Any]) -> None:
    metric = request.get("metric")
    batch.route(
        str(request["op"]),
        str(request["prefix"]),
        via=request.get("via"),
        dev=request.get("dev"),
        onlink=bool(request.get("onlink")),
        kind=str(request.get("type", "unicast")),
        proto=int(request.get("proto", PROTO_BIRD)),
        metric=int(metric) if metric is not None else None,
    )


def _send(
    handles: dict[str, NetnsHandle], batch: Batch | None, group: list[int], replies: list[str]
) -> None:
    if batch is None or not group:
        return
    try:
        errors = batch.send()
    except DataplaneError as err:
        errors = [str(err)] * len(group)
    for position, error in zip(group, errors, strict=True):
        if error is not None:
            replies[position] = f"error {error}"
    if any(errors) and batch.netns in handles:
        handles[batch.netns].forget_indexes()  # an interface may be new (tunl0 restarting)


def _handle(handles: dict[str, NetnsHandle], netns: str) -> NetnsHandle:
    """The open handle of `netns`, opened again when the namespace of that name is a new one
    (`repair` rebuilt a node): a handle on the old one would program a namespace nobody sees."""
    inode = netns_inode(netns)
    handle = handles.get(netns)
    if handle is not None and handle.inode != inode:
        handle.close()
        handle = None
    if handle is None:
        handle = handles[netns] = NetnsHandle(netns)
        handle.inode = inode
    return handle


class FelixPart:
    """Felix's routes of every node (`dataplane.felix`), from the lab's plan: written at start,
    again on SIGHUP (the lab sends it after a change of the plan, a link brought up, a repair)
    and every `REFRESH` seconds, as Felix's periodic route resync. Its last result goes to
    `felix.json` in the state folder.

    It runs in a thread of its own with its own netlink handles (`run`): a pass reads every
    node's table, 2.8 s of CPU at 100 nodes, and the agents' route changes must not wait for
    it (measured: while it ran in the loop that serves them, every agent's FIB writes, and so
    its ExaBGP, stalled for that long every 30 s)."""

    REFRESH = 30.0
    STOP_WAIT = 5.0  # seconds the route programmer waits for a pass to end when it stops

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.due = 0.0
        self.plan_mtime = -1.0
        self.wanted: dict[str, list[FibRoute]] = {}

    def wake(self, *_: object) -> None:
        self.due = 0.0

    def timeout(self) -> float:
        return max(0.05, min(1.0, self.due - time.monotonic()))

    def run(self, running: threading.Event) -> None:
        """Passes while `running` is set, each when due (`wake` makes the next one due)."""
        handles: dict[str, NetnsHandle] = {}
        try:
            while running.is_set():
                try:
                    self.tick(handles)
                except Exception as err:  # the thread must outlive one bad pass, and say so
                    self._report([f"pass failed: {err!r}"], 0)
                time.sleep(self.timeout())
        finally:
            for handle in handles.values():
                handle.close()

    def tick(self, handles: dict[str, NetnsHandle]) -> None:
        now = time.monotonic()
        if now < self.due:
            return
        self.due = now + self.REFRESH
        path = self.state_dir / "plan.json"
        try:
            mtime = path.stat().st_mtime
            if mtime != self.plan_mtime:
                data = read_json(path)
                if isinstance(data, dict):
                    self.wanted = felix.wanted_routes(LabPlan.from_json(data))
                    self.plan_mtime = mtime
        except (OSError, MeshemuError) as err:
            self._report([f"plan: {err}"], 0)
            return
        errors = []
        opened = {}
        for netns in self.wanted:
            try:
                opened[netns] = _handle(handles, netns)
            except DataplaneError as err:
                errors.append(f"{netns}: {err}")
        errors += felix.reconcile_all(opened, self.wanted)
        self._report(errors, sum(len(r) for r in self.wanted.values()))

    def _report(self, errors: list[str], routes: int) -> None:
        write_json_atomic(
            self.state_dir / "felix.json",
            {"time": time.time(), "routes": routes, "errors": errors[-50:]},
        )


def serve(state_dir: Path) -> int:
    path = state_dir / SOCKET_NAME
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(256)
    server.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ)
    buffers: dict[socket.socket, bytes] = {}
    handles: dict[str, NetnsHandle] = {}
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    felix = FelixPart(state_dir)
    signal.signal(signal.SIGHUP, felix.wake)
    running = threading.Event()
    running.set()
    felix_thread = threading.Thread(target=felix.run, args=(running,), name="felix", daemon=True)
    # Ready once the agents can connect; Felix's routes follow in its thread's first pass (`up`
    # waits until every FIB equals the plan, so nothing depends on their order).
    felix_thread.start()
    (state_dir / "fibd.ready").write_text(f"{os.getpid()}\n")
    while not stop and state_dir.is_dir():  # a lab whose state folder is gone is down
        for key, _ in selector.select(1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is server:
                try:
                    conn, _addr = server.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(True)
                selector.register(conn, selectors.EVENT_READ)
                buffers[conn] = b""
                continue
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                selector.unregister(sock)
                buffers.pop(sock, None)
                sock.close()
                continue
            data = buffers[sock] + chunk
            *lines, buffers[sock] = data.split(b"\n")
            replies = apply_all(handles, lines)
            if replies:
                sock.sendall(("\n".join(replies) + "\n").encode())
    running.clear()
    felix_thread.join(FelixPart.STOP_WAIT)
    for handle in handles.values():
        handle.close()
    path.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="meshemu route programmer of one lab")
    parser.add_argument("--state", required=True, type=Path)
    args = parser.parse_args(argv)
    return serve(args.state)


if __name__ == "__main__":
    sys.exit(main())
