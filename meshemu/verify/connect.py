"""TCP connects and UDP exchanges from inside a namespace: the probe of pod ports and Services.

Owns `connect` (one target) and `connect_many` (several targets from one namespace, all at once:
non-blocking connects and datagrams, so that the unanswered ones cost one timeout together,
not one each), run in a forked child that enters the source namespace
(`verify.probe.in_child`). The lab's responder (`dataplane.responder`) answers every declared
pod port with a line naming the pod and the source address it saw, which a result carries:
which endpoint a Service's DNAT chose, and whether the client's address was kept. It reads
nothing of the lab and changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import time
from dataclasses import dataclass
from typing import Any

from meshemu.dataplane.responder import parse_answer
from meshemu.errors import DataplaneError
from meshemu.verify.probe import in_child

PROTOCOLS = ("TCP", "UDP")


@dataclass(frozen=True)
class Target:
    address: str
    port: int
    protocol: str  # "TCP" or "UDP"


@dataclass(frozen=True)
class ConnectResult:
    """One probe. `ok`: the TCP handshake completed, or a UDP answer came back. `refused`: a
    TCP reset or an ICMP port unreachable (the packet reached a host that has no listener:
    it passed every filter on the way). Neither: dropped or unanswered within the timeout.
    `answered_by`/`seen_from`: the responder's line (`node/pod`, the source it saw)."""

    target: Target
    ok: bool
    refused: bool
    answered_by: str | None
    seen_from: str | None
    seconds: float
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.target.address,
            "port": self.target.port,
            "protocol": self.target.protocol,
            "ok": self.ok,
            "refused": self.refused,
            "answered_by": self.answered_by,
            "seen_from": self.seen_from,
            "seconds": self.seconds,
            "error": self.error,
        }


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


_REFUSED = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH)


def probe_here(
    targets: list[tuple[str, int, str]], timeout: float, source: str | None = None
) -> list[dict[str, Any]]:
    """From the current namespace: every target at once; one JSON-able result per target."""
    sel = selectors.DefaultSelector()
    started = time.monotonic()
    results: list[dict[str, Any]] = [
        {"ok": False, "refused": False, "answer": None, "seconds": None, "error": None}
        for _ in targets
    ]
    socks: list[socket.socket] = []
    for index, (address, port, proto) in enumerate(targets):
        kind = socket.SOCK_STREAM if proto == "TCP" else socket.SOCK_DGRAM
        sock = socket.socket(_family(address), kind)
        socks.append(sock)
        sock.setblocking(False)
        try:
            if source is not None and _family(source) == _family(address):
                sock.bind((source, 0))
            if kind == socket.SOCK_STREAM:
                code = sock.connect_ex((address, port))
                if code not in (0, errno.EINPROGRESS):
                    results[index]["refused"] = code in _REFUSED
                    results[index]["error"] = None if code in _REFUSED else errno.errorcode[code]
                    continue
                sel.register(sock, selectors.EVENT_WRITE, (index, "connecting"))
            else:
                sock.connect((address, port))  # so that an ICMP error is reported on it
                sock.send(b"meshemu-probe")
                sel.register(sock, selectors.EVENT_READ, (index, "waiting"))
        except OSError as err:
            results[index]["refused"] = err.errno in _REFUSED
            results[index]["error"] = None if err.errno in _REFUSED else err.strerror
    deadline = started + timeout
    resend = started + timeout / 3
    while sel.get_map():
        now = time.monotonic()
        if now >= deadline:
            break
        if now >= resend:  # a datagram lost to a neighbour resolution still in progress
            resend = deadline + 1
            for key in list(sel.get_map().values()):
                pending = key.fileobj
                if isinstance(pending, socket.socket) and pending.type == socket.SOCK_DGRAM:
                    with contextlib.suppress(OSError):
                        pending.send(b"meshemu-probe")
        for key, _mask in sel.select(min(deadline, resend) - now):
            fileobj = key.fileobj
            assert isinstance(fileobj, socket.socket)
            sock = fileobj
            index, phase = key.data
            result = results[index]
            if phase == "connecting":
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code != 0:
                    result["refused"] = code in _REFUSED
                    result["error"] = None if code in _REFUSED else errno.errorcode.get(code)
                    sel.unregister(sock)
                    continue
                result["ok"] = True
                result["seconds"] = round(time.monotonic() - started, 4)
                sel.modify(sock, selectors.EVENT_READ, (index, "reading"))
                continue
            try:
                data = sock.recv(512)
            except OSError as err:
                if phase == "waiting":
                    result["refused"] = err.errno in _REFUSED
                    result["error"] = None if err.errno in _REFUSED else err.strerror
                sel.unregister(sock)
                continue
            if phase == "waiting":
                result["ok"] = True
                result["seconds"] = round(time.monotonic() - started, 4)
            result["answer"] = data.decode(errors="replace")
            sel.unregister(sock)
    for sock in socks:
        sock.close()
    return results


def connect_many(
    src_netns: str, targets: list[Target], timeout: float = 1.0, source: str | None = None
) -> list[ConnectResult]:
    """Probe every target from namespace `src_netns`, all at once; one result per target, in
    order. A namespace that cannot be entered gives every target that error."""
    for target in targets:
        if target.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {target.protocol!r} is not TCP or UDP")
    if not targets:
        return []
    try:
        raw = in_child(
            src_netns,
            probe_here,
            [(t.address, t.port, t.protocol) for t in targets],
            timeout,
            source,
        )
    except DataplaneError as err:
        return [ConnectResult(t, False, False, None, None, timeout, str(err)) for t in targets]
    assert isinstance(raw, list)
    out = []
    for target, result in zip(targets, raw, strict=True):
        answer = parse_answer(result["answer"].encode()) if result["answer"] else None
        out.append(
            ConnectResult(
                target,
                bool(result["ok"]),
                bool(result["refused"]),
                answer[0] if answer else None,
                answer[1] if answer else None,
                float(result["seconds"]) if result["seconds"] is not None else timeout,
                result["error"],
            )
        )
    return out


def connect(
    src_netns: str,
    dst_ip: str,
    port: int,
    proto: str = "TCP",
    timeout: float = 1.0,
    source: str | None = None,
) -> ConnectResult:
    """One TCP connect or UDP exchange from `src_netns` to `dst_ip`:`port`."""
    return connect_many(src_netns, [Target(dst_ip, port, proto)], timeout, source)[0]
