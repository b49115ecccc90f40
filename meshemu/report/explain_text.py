"""`meshemu explain` as text: a node's sessions and routes, each with its reasons and the Calico
field that decided each reason.

Owns formatting only; every fact comes from a `model.explain.Explanation`.
"""

from __future__ import annotations

from meshemu.model.explain import Explanation, Reason


def _reason(reason: Reason, indent: str) -> str:
    line = f"{indent}- {reason.text}"
    if reason.field:
        line += f"  [{reason.field}" + (f" = {reason.value}" if reason.value else "") + "]"
    return line


def render_explanation(ex: Explanation) -> str:
    about = f" about {ex.target}" if ex.target else ""
    lines = [f"why {ex.node} (lab {ex.lab}) has what it has{about}"]
    if ex.target is None:
        lines.append("")
        lines.append("the node:")
        lines += [_reason(r, "  ") for r in ex.facts]
    if ex.sessions or ex.target is None:
        lines.append("")
        lines.append(f"BGP sessions ({len(ex.sessions)}):")
    for s in ex.sessions:
        lines.append(f"  {s.peer_ip}: {s.summary}")
        lines += [_reason(r, "    ") for r in s.reasons]
        if s.observed is not None:
            lines.append(f"    observed: {s.observed}")
    if ex.routes or ex.target is None:
        lines.append("")
        lines.append(f"kernel routes ({len(ex.routes)}):")
    for r in ex.routes:
        lines.append(f"  {r.route}")
        lines.append(f"    {r.summary}")
        lines += [_reason(reason, "    ") for reason in r.reasons]
        if r.observed is not None:
            lines.append(f"    observed: {r.observed}")
    if ex.absent:
        lines.append("")
        lines.append("not there, and why:")
        lines += [_reason(r, "  ") for r in ex.absent]
    if ex.notes:
        lines.append("")
        lines.append("plan notes about this node:")
        lines += [f"  - {note}" for note in ex.notes]
    if ex.observed:
        lines.append("")
        if ex.differences:
            lines.append("the running lab differs from the plan:")
            # (A difference's detail lines come indented: they belong to the line above.)
            lines += [
                f"      {d.strip()}" if d.startswith(" ") else f"  - {d}" for d in ex.differences
            ]
        else:
            lines.append("the running lab matches the plan for this node")
    return "\n".join(lines)
