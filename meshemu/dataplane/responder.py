"""The lab's responder: one process answering on every port every pod declares.

Owns the sockets that make pods "listen": for each pod of `responder.json` (written by
`lab.responders` in the state folder) a TCP listener and a UDP socket per declared port and
family, each created inside the pod's namespace (the process enters it, creates the socket,
and returns: a socket stays in the namespace it was made in). A TCP connection is answered
with one line and closed; a UDP datagram with the same line. The line says who answered and
which source address it saw (`meshemu <node>/<pod> <port>/<proto> <peer>`), which is how a
Service probe tells which endpoint the DNAT chose and whether the source was kept.

One process for the whole lab, not one per pod: a few hundred sockets cost little, a Python
process per pod costs 10 MiB each. It imports no pyroute2 (20 MiB) for the same reason, so it
enters namespaces with its own `setns` call. SIGHUP reads `responder.json` again: sockets of
pods gone (or whose namespace is a new one of the same name) are closed, new ones opened; then
`responder.ready` says which generation is served. SIGTERM ends it.

Run by `lab.responders` as `python -m meshemu.dataplane.responder --state DIR`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import selectors
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

CONFIG = "responder.json"
READY = "responder.ready"
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

# (namespace name, namespace inode, family, port, protocol)
Key = tuple[str, int, int, int, str]


@dataclass
class _Listener:
    key: Key
    sock: socket.socket
    who: str


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def answer_line(who: str, port: int, proto: str, peer: str) -> bytes:
    """What the responder answers: `meshemu <node>/<pod> <port>/<proto> <peer address>`."""
    return f"meshemu {who} {port}/{proto} {peer}\n".encode()


def parse_answer(data: bytes) -> tuple[str, str] | None:
    """(who answered, the source address it saw) from an answer line, or None."""
    parts = data.decode(errors="replace").split()
    if len(parts) != 4 or parts[0] != "meshemu":
        return None
    return parts[1], parts[3]


class Responder:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.selector = selectors.DefaultSelector()
        self.listeners: dict[Key, _Listener] = {}
        self.own = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.reload_wanted = True
        # Signals wake the select at once (signal.set_wakeup_fd) rather than at its timeout.
        self.wake, self.waker = socket.socketpair()
        self.wake.setblocking(False)
        self.waker.setblocking(False)
        self.selector.register(self.wake, selectors.EVENT_READ, None)
        signal.set_wakeup_fd(self.waker.fileno(), warn_on_full_buffer=False)

    def _open(self, netns: str, fd: int, inode: int, who: str, wanted: list[Key]) -> list[str]:
        errors = []
        _setns(fd)
        try:
            for key in wanted:
                _name, _inode, family, port, proto = key
                kind = socket.SOCK_STREAM if proto == "TCP" else socket.SOCK_DGRAM
                af = socket.AF_INET if family == 4 else socket.AF_INET6
                sock = socket.socket(af, kind)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if af == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind(("0.0.0.0" if family == 4 else "::", port))
                    if kind == socket.SOCK_STREAM:
                        sock.listen(128)
                    sock.setblocking(False)
                except OSError as err:
                    sock.close()
                    errors.append(f"{who} {port}/{proto} IPv{family}: {err.strerror}")
                    continue
                listener = _Listener(key, sock, who)
                self.listeners[key] = listener
                self.selector.register(sock, selectors.EVENT_READ, listener)
        finally:
            _setns(self.own)
        return errors

    def _close(self, key: Key) -> None:
        listener = self.listeners.pop(key)
        self.selector.unregister(listener.sock)
        listener.sock.close()

    def reload(self) -> None:
        self.reload_wanted = False
        try:
            config = json.loads((self.state / CONFIG).read_text())
        except (OSError, ValueError) as err:
            self._ready(-1, [f"cannot read {CONFIG}: {err}"])
            return
        wanted: dict[Key, str] = {}
        opened: dict[str, tuple[int, int]] = {}  # netns -> (fd, inode)
        errors: list[str] = []
        try:
            for pod in config.get("pods", []):
                netns = str(pod["netns"])
                if "/" in netns or netns.startswith("."):
                    errors.append(f"{netns!r} is no namespace name")
                    continue
                if netns not in opened:
                    try:
                        fd = os.open(NETNS_DIR / netns, os.O_RDONLY)
                    except OSError as err:
                        errors.append(f"{pod['who']}: namespace {netns}: {err.strerror}")
                        continue
                    opened[netns] = (fd, os.fstat(fd).st_ino)
                inode = opened[netns][1]
                for family in pod["families"]:
                    for port, proto in pod["ports"]:
                        wanted[(netns, inode, int(family), int(port), str(proto))] = str(pod["who"])
            for key in [k for k in self.listeners if k not in wanted]:
                self._close(key)
            for netns, (fd, inode) in opened.items():
                new = [k for k in wanted if k[0] == netns and k not in self.listeners]
                if new:
                    errors += self._open(netns, fd, inode, wanted[new[0]], new)
        finally:
            for fd, _inode in opened.values():
                os.close(fd)
        self._ready(int(config.get("generation", 0)), errors)

    def _ready(self, generation: int, errors: list[str]) -> None:
        path = self.state / READY
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"generation": generation, "listening": len(self.listeners), "errors": errors}
            )
        )
        os.replace(tmp, path)

    def serve_once(self, timeout: float) -> None:
        try:
            events = self.selector.select(timeout)
        except InterruptedError:
            return
        for selected, _mask in events:
            if selected.data is None:  # the signal wake-up: the main loop acts on the flag
                with contextlib.suppress(OSError):
                    self.wake.recv(64)
                continue
            listener: _Listener = selected.data
            _name, _inode, _family, port, proto = listener.key
            try:
                if proto == "TCP":
                    conn, peer = listener.sock.accept()
                    with conn:
                        conn.setblocking(False)
                        conn.send(answer_line(listener.who, port, proto, str(peer[0])))
                else:
                    _data, peer = listener.sock.recvfrom(2048)
                    listener.sock.sendto(answer_line(listener.who, port, proto, str(peer[0])), peer)
            except OSError:
                # A peer gone before the answer, or an ICMP error queued on a UDP socket:
                # nothing to answer, and no reason to stop answering the others.
                continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshemu-responder")
    parser.add_argument("--state", required=True, type=Path)
    args = parser.parse_args(argv)
    # Several hundred pods with a few ports each, in two families: more than the default 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    responder = Responder(args.state)
    stop = False

    def on_hup(_signum: int, _frame: object) -> None:
        responder.reload_wanted = True

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    while not stop:
        if responder.reload_wanted:
            responder.reload()
        responder.serve_once(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
