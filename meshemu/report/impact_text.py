"""`meshemu impact` as text (a terminal) and Markdown (a pull-request comment).

Owns formatting only; every fact comes from a `model.impact.Impact` (and, with `--run`, the
`CheckResult`s of `verify.impact_check`). Long lists are cut at `LIMIT` lines per section with
the count of the rest: the JSON form always lists everything.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshemu.model.explain import PATH_WORDS
from meshemu.model.impact import Impact, NodeImpact, PairChange, RouteChange, SessionChange
from meshemu.verify.results import CheckResult

LIMIT = 40
_SIGN = {"added": "+", "removed": "-", "changed": "~", "path": "~", "lost": "-", "gained": "+"}


def _path(word: str) -> str:
    return PATH_WORDS.get(word, word) if word not in ("", "absent") else "absent"


def summary_line(impact: Impact) -> str:
    c = impact.counts()
    return (
        f"{c['nodes_changed']} node(s) changed; sessions +{c['sessions_added']} "
        f"-{c['sessions_removed']} ~{c['sessions_changed']}; routes +{c['routes_added']} "
        f"-{c['routes_removed']}, {c['routes_path']} take another path, "
        f"{c['routes_changed']} otherwise changed; pod pairs: {c['pairs_lost']} lose "
        f"reachability, {c['pairs_gained']} gain it, {c['pairs_path']} change path "
        f"(reachable {impact.reachable_old}/{impact.total_old} -> "
        f"{impact.reachable_new}/{impact.total_new})"
    )


def _session(s: SessionChange) -> list[str]:
    head = f"{_SIGN[s.change]} ipv{s.family} {s.peer} ({s.peer_ip})"
    if s.change == "added":
        return [head, f"    why: {s.new_reason}"]
    if s.change == "removed":
        return [head, f"    was: {s.old_reason}"]
    return [f"{head}: {'; '.join(s.what)}", f"    now: {s.new_reason}"]


def _route(r: RouteChange) -> list[str]:
    if r.change == "added":
        return [f"+ {r.new_route} ({_path(r.new_path)})", f"    why: {r.why}"]
    if r.change == "removed":
        return [f"- {r.old_route} ({_path(r.old_path)})", f"    why gone: {r.why}"]
    what = f"{_path(r.old_path)} -> {_path(r.new_path)}" if r.change == "path" else "changed"
    return [f"~ {r.prefix}: {what}", f"    was {r.old_route}", f"    now {r.new_route}"] + (
        [f"    why: {r.why}"] if r.why else []
    )


def _pair(p: PairChange) -> str:
    return (
        f"{_SIGN[p.change]} {p.change:<6} {p.source} -> {p.target} ipv{p.family}: "
        f"{_path(p.old_path)} -> {_path(p.new_path)}" + (f" ({p.why})" if p.why else "")
    )


def _cut(lines: Sequence[str], items: int, indent: str = "  ") -> list[str]:
    """At most LIMIT items (of several lines each, the item's first line not indented)."""
    out, seen = [], 0
    for line in lines:
        if not line.startswith("    "):
            seen += 1
            if seen > LIMIT:
                out.append(f"{indent}... and {items - LIMIT} more (--format json lists all)")
                break
        out.append(indent + line)
    return out


def _node_lines(node: NodeImpact) -> list[str]:
    lines = [f"node {node.node}" + ("" if node.status == "kept" else f" ({node.status})") + ":"]
    if node.sessions:
        lines.append("  sessions:")
        body = [line for s in node.sessions for line in _session(s)]
        lines += _cut(body, len(node.sessions), "    ")
    if node.routes:
        lines.append("  routes:")
        body = [line for r in node.routes for line in _route(r)]
        lines += _cut(body, len(node.routes), "    ")
    return lines


def render_impact_text(impact: Impact, run: Sequence[CheckResult] = ()) -> str:
    lines = [f"impact of {impact.old} -> {impact.new}", summary_line(impact)]
    if impact.inputs:
        lines += ["", "input changes:", *_cut(impact.inputs, len(impact.inputs))]
    for node in impact.nodes:
        if node.changed:
            lines += ["", *_node_lines(node)]
    if impact.pairs:
        lines += ["", "pod pairs:", *_cut([_pair(p) for p in impact.pairs], len(impact.pairs))]
    if not impact.changed:
        lines += ["", "no session, route or pod pair changes"]
    lines += ["", *_protect_lines(impact)]
    if run:
        lines += ["", *_run_lines(run)]
    return "\n".join(lines)


def _protect_lines(impact: Impact) -> list[str]:
    if not impact.protected and not impact.breaches:
        return ["protected: nothing marked (--protect FILE or --protect-pairs)"]
    if not impact.breaches:
        return [f"protected: OK, {impact.protected} protected pod pair(s) stay reachable"]
    lines = [f"protected: BREAKS {len(impact.breaches)} of {impact.protected} protected pod pairs"]
    body = [f"{b.source} -> {b.target} ipv{b.family} ({b.rule}): {b.why}" for b in impact.breaches]
    return lines + _cut(body, len(body))


def _run_lines(run: Sequence[CheckResult]) -> list[str]:
    bad = [r for r in run if not r.ok]
    lines = [
        f"--run: {len(run) - len(bad)}/{len(run)} predictions confirmed by the running labs"
        + ("" if not bad else f", {len(bad)} NOT")
    ]
    body = [f"FAIL {r.name}: expected {r.expected}, observed {r.observed}" for r in bad]
    return lines + _cut(body, len(body))


# -- Markdown ------------------------------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_impact_markdown(impact: Impact, run: Sequence[CheckResult] = ()) -> str:
    c = impact.counts()
    mark = "✅" if not impact.breaches else "❌"
    protect = _protect_lines(impact)[0]
    lines = [
        f"### meshemu impact: `{impact.old}` → `{impact.new}`",
        "",
        f"{mark} **{_md(protect)}**",
        "",
        "| | added | removed | other path | changed |",
        "|---|---:|---:|---:|---:|",
        f"| BGP sessions | {c['sessions_added']} | {c['sessions_removed']} | | "
        f"{c['sessions_changed']} |",
        f"| kernel routes | {c['routes_added']} | {c['routes_removed']} | {c['routes_path']} | "
        f"{c['routes_changed']} |",
        f"| pod pairs reachable | {c['pairs_gained']} | {c['pairs_lost']} | {c['pairs_path']} | |",
        "",
        f"Reachable pod pairs: {impact.reachable_old}/{impact.total_old} → "
        f"{impact.reachable_new}/{impact.total_new}; {c['nodes_changed']} node(s) changed.",
    ]
    if run:
        bad = [r for r in run if not r.ok]
        lines += [
            "",
            f"{'✅' if not bad else '❌'} `--run`: {len(run) - len(bad)}/{len(run)} "
            "predictions confirmed by the running labs",
        ]
        lines += [
            f"- `{_md(r.name)}`: expected {_md(r.expected)}, observed {_md(r.observed)}"
            for r in bad[:LIMIT]
        ]
    if impact.breaches:
        lines += ["", "**Protected pod pairs that break:**", ""]
        lines += [
            f"- `{b.source}` → `{b.target}` ipv{b.family} ({_md(b.rule)}): {_md(b.why)}"
            for b in impact.breaches[:LIMIT]
        ]
    if impact.inputs:
        lines += _details(
            f"Input changes ({len(impact.inputs)})", [f"- `{x}`" for x in impact.inputs]
        )
    if impact.pairs:
        rows = ["| pair | family | before | after | why |", "|---|---|---|---|---|"]
        rows += [
            f"| `{p.source}` → `{p.target}` | ipv{p.family} | {_path(p.old_path)} | "
            f"{_path(p.new_path)} | {_md(p.why)} |"
            for p in impact.pairs[:LIMIT]
        ]
        if len(impact.pairs) > LIMIT:
            rows.append(f"\n… and {len(impact.pairs) - LIMIT} more")
        lines += _details(f"Pod pairs ({len(impact.pairs)})", rows)
    for node in impact.nodes:
        if not node.changed:
            continue
        rows = []
        if node.sessions:
            rows += ["| session | change | why |", "|---|---|---|"]
            rows += [
                f"| ipv{s.family} {s.peer} `{s.peer_ip}` | {s.change}"
                + (f": {_md('; '.join(s.what))}" if s.what else "")
                + f" | {_md(s.new_reason or s.old_reason)} |"
                for s in node.sessions[:LIMIT]
            ]
            rows.append("")
        if node.routes:
            rows += ["| prefix | before | after | why |", "|---|---|---|---|"]
            rows += [
                f"| `{r.prefix}` | {_md(r.old_route) or '—'} ({_path(r.old_path)}) | "
                f"{_md(r.new_route) or '—'} ({_path(r.new_path)}) | {_md(r.why)} |"
                for r in node.routes[:LIMIT]
            ]
        status = "" if node.status == "kept" else f" ({node.status})"
        title = (
            f"node {node.node}{status}: {len(node.sessions)} session and {len(node.routes)} "
            "route change(s)"
        )
        lines += _details(title, rows)
    return "\n".join(lines) + "\n"


def _details(summary: str, body: list[str]) -> list[str]:
    return ["", f"<details><summary>{_md(summary)}</summary>", "", *body, "", "</details>"]
