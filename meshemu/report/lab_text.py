"""Text of the lab commands: status (like `calicoctl node status`), routes, the path matrix.

Pure rendering of typed results; the lab's status and route rows are computed elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from meshemu.report.tables import table
from meshemu.verify.observation import PathCell, pods_of

if TYPE_CHECKING:
    from meshemu.lab.status import LabStatus, NodeStatus, RouterStatus
    from meshemu.model.plan import LabPlan
    from meshemu.verify.routes import RouteRow

PEER_TYPE = {
    "mesh": "node-to-node mesh",
    "global": "global",
    "node": "node specific",
    "router": "router",
}
PATH_LETTER = {
    "local": "L",
    "direct": "D",
    "ipip": "I",
    "vxlan": "V",
    "router": "R",
    "none": "?",
    "unseen": "?",
}


def _since(value: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(value)) if value else "-"


def _node_lines(node: NodeStatus) -> tuple[list[str], int, int]:
    tunnel = "" if node.tunnel == "none" else f", tunnel {node.tunnel}"
    lines = [
        "",
        f"node {node.name} ({node.netns}): speaker {node.speaker}, agent {node.agent}{tunnel}; "
        f"{node.ipv4 or ''} {node.ipv6 or ''}".rstrip(),
    ]
    established = total = 0
    for family in ("ipv4", "ipv6"):
        rows = []
        for s in node.sessions:
            if s.family != family:
                continue
            total += 1
            up = s.state == "established"
            established += up
            rows.append(
                [
                    s.peer_ip,
                    PEER_TYPE.get(s.kind, s.kind),
                    "up" if up else "start" if s.state != "not emulated" else "-",
                    _since(s.since),
                    "Established" if up else (s.info or s.state).capitalize(),
                ]
            )
        title = "IPv4" if family == "ipv4" else "IPv6"
        if rows:
            lines.append(f"{title} BGP status")
            lines += table(rows, ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"])
        else:
            lines.append(f"No {title} peers found.")
    if node.agent_errors:
        lines.append("agent errors: " + "; ".join(node.agent_errors[-3:]))
    return lines, established, total


def _router_lines(router: RouterStatus) -> tuple[list[str], int, int]:
    """A BGP router: its BIRD and each of its sessions as BIRD reports it."""
    lines = [
        "",
        f"router {router.name} ({router.netns}): BIRD {router.bird}; {router.config}; "
        f"`birdc -s {router.socket}` talks to it",
    ]
    rows = [
        [
            s.peer_ip,
            f"{s.kind} {s.peer_node}",
            "up" if s.state == "established" else "start",
            "Established" if s.state == "established" else (s.info or s.state).capitalize(),
        ]
        for s in router.sessions
    ]
    if rows:
        lines += table(rows, ["PEER ADDRESS", "PEER", "STATE", "INFO"])
    up = sum(s.state == "established" for s in router.sessions)
    return lines, up, len(router.sessions)


def render_status(status: LabStatus) -> str:
    lines = [
        f"lab {status.name} ({status.phase}); IPIP: {status.ipip}; route programmer "
        f"{status.fibd}; state folder {status.state_dir}"
    ]
    established = total = 0
    for part in (*map(_node_lines, status.nodes), *map(_router_lines, status.routers)):
        part_lines, up, count = part
        lines += part_lines
        established, total = established + up, total + count
    pods = sum(len(n.pods) for n in status.nodes)
    problems = status.problems()
    lines.append("")
    lines.append(
        f"summary: {len(status.nodes)} nodes, "
        + (f"{len(status.routers)} BGP routers, " if status.routers else "")
        + f"{pods} pods, {established}/{total} sessions "
        "established" + (f"; DEAD OR GONE: {'; '.join(problems)}" if problems else "")
    )
    if problems:
        lines.append(f"`meshemu repair {status.name}` restarts and rebuilds what is dead or gone")
    if status.ipam_notes:
        lines.append("not created (IPAM):")
        lines += [f"  {note}" for note in status.ipam_notes]
    return "\n".join(lines)


def render_routes(lab: str, node: str, rows: list[RouteRow]) -> str:
    body = [
        [
            r.prefix,
            (r.rib_next_hop or "-") + (f" from {r.rib_learned_from}" if r.rib_learned_from else ""),
            r.source or "-",
            r.fib or "-",
            "ok" if r.matches_plan else f"expected: {r.expected or 'absent'}",
        ]
        for r in rows
    ]
    lines = [f"lab {lab}, node {node}: BGP best paths (RIB) beside kernel routes (FIB)"]
    lines += table(body, ["PREFIX", "RIB NEXT HOP", "WRITER", "KERNEL ROUTE", "PLAN"])
    return "\n".join(lines)


def render_observed_matrix(plan: LabPlan, cells: Iterable[PathCell]) -> str:
    """The matrix with the path each probe was *seen* taking on the fabric.

    Upper case: reached by the expected path; lower case: unreachable; `!`: reached but by
    another path than the plan's.
    """
    entries = list(cells)
    names = [f"{n.name}/{p.name}" for n, p in pods_of(plan)]
    lines = []
    for family in (4, 6):
        subset = {(e.cell.source, e.cell.target): e for e in entries if e.cell.family == family}
        if not subset:
            continue
        lines.append(
            f"IPv{family} pods, path seen on the wire (L local, D direct, R router, I IP-in-IP, "
            "V VXLAN; lower case: no answer; ! other path than planned)"
        )
        lines.append(" " * 16 + " ".join(str(i + 1).rjust(2) for i in range(len(names))))
        for i, source in enumerate(names):
            row = []
            for target in names:
                entry = subset.get((source, target))
                if entry is None:
                    row.append(" .")
                    continue
                mark = PATH_LETTER.get(entry.observed_path, "?")
                if not entry.cell.ok:
                    mark = PATH_LETTER.get(entry.cell.path, "?").lower()
                elif entry.observed_path != entry.cell.path:
                    mark = "!" + mark
                row.append(mark.rjust(2))
            lines.append(f"{i + 1:>2} {source:<13}" + " ".join(row))
    return "\n".join(lines)
