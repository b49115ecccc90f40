"""Drawing a lab (`meshemu graph`): a `TopologyGraph` to an SVG or PNG file, with networkx and
matplotlib.

Owns the look only: two panels side by side, "BGP" (subnets as boxes around their nodes and
pods, routers joined to their subnets, route reflectors as diamonds coloured by cluster, every
BGP session an edge coloured by its state, an arrow from a reflector to its client) and "pod
traffic" (the nodes on a circle, one edge per pair and family coloured by the path a pod's
packet takes: IP-in-IP, VXLAN, direct, through a router). What is drawn, and where, is
`report.graph_data`'s decision. The file is written whole or not at all (a temporary file in
the same folder, then renamed); a path that cannot be written is a `UsageError` (exit 2).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import matplotlib
import networkx as nx
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch

from meshemu.report.figures import check_output, write_figure
from meshemu.report.graph_data import (
    DOWN,
    ESTABLISHED,
    EXTERNAL,
    NOT_EXPECTED,
    PARTIAL,
    PLANNED,
    TopologyGraph,
)

# Files only: no display, whatever the environment says (networkx draws through pyplot).
matplotlib.use("Agg")

STATE_COLOURS = {
    ESTABLISHED: "#2ca02c",
    PARTIAL: "#ff9f1c",
    DOWN: "#d62728",
    PLANNED: "#1f77b4",
    NOT_EXPECTED: "#9e9e9e",
    EXTERNAL: "#7f7f7f",
}
PATH_COLOURS = {
    "ipip": "#ff7f0e",
    "vxlan": "#9467bd",
    "direct": "#2ca02c",
    "router": "#1f77b4",
    "none": "#d62728",
}
MIXED_PATH = "#8c564b"  # the two directions take different paths
PATH_WORDS = {
    "ipip": "IP-in-IP (tunl0)",
    "vxlan": "VXLAN",
    "direct": "direct (same subnet)",
    "router": "through a router, no tunnel",
    "none": "no route",
}
CLUSTER_COLOURS = ("#e377c2", "#17becf", "#bcbd22", "#ff9896", "#c5b0d5", "#c49c94")
SUBNET_COLOURS = ("#393b79", "#8c6d31", "#637939", "#843c39", "#7b4173", "#3182bd")
NODE_COLOUR, ROUTER_COLOUR, POD_COLOUR = "#aec7e8", "#d9d9d9", "#ffffff"


def render_graph(graph: TopologyGraph, path: Path) -> None:
    """Draw `graph` into `path` (.svg or .png)."""
    check_output(path)
    nodes = sum(1 for e in graph.elements if e.kind == "node")
    width = max(7.0, min(30.0, 1.1 * len({x for x, _ in graph.positions.values()})))
    fig = Figure(figsize=(width + max(6.0, 0.6 * nodes), max(6.0, width * 0.55)))
    fabric_ax, paths_ax = fig.subplots(
        1, 2, gridspec_kw={"width_ratios": [width, max(6.0, 0.6 * nodes)]}
    )
    state = "running: sessions as observed now" if graph.running else "plan: not running"
    fig.suptitle(f"lab {graph.name} ({state})\n{graph.description}", fontsize=12)
    _draw_fabric(fabric_ax, graph)
    _draw_paths(paths_ax, graph)
    write_figure(fig, path)


def _draw_fabric(ax: Any, graph: TopologyGraph) -> None:
    pos = dict(graph.positions)
    ax.set_title("BGP sessions")
    clusters = sorted({e.cluster_id for e in graph.elements if e.cluster_id})
    cluster_colour = {c: CLUSTER_COLOURS[i % len(CLUSTER_COLOURS)] for i, c in enumerate(clusters)}
    xs = sorted({round(pos[e.key][0], 6) for e in graph.elements if e.kind in ("node", "pod")})
    gaps = [b - a for a, b in itertools.pairwise(xs) if b - a > 1e-6]
    pad = 0.4 * min(gaps) if gaps else 0.3
    for subnet in (e for e in graph.elements if e.kind == "subnet"):
        members = [pos[m] for m in graph.members(subnet.name) if m in pos]
        if not members:
            continue
        x0, x1 = min(p[0] for p in members) - pad, max(p[0] for p in members) + pad
        y0, y1 = min(p[1] for p in members) - pad, max(p[1] for p in members) + pad
        ax.add_patch(
            FancyBboxPatch(
                (x0, y0),
                x1 - x0,
                y1 - y0,
                boxstyle=f"round,pad=0,rounding_size={pad / 2}",
                facecolor="#f2f2f2",
                edgecolor="#999999",
                zorder=0,
            )
        )
        ax.text(x0, y1, f" {subnet.name}\n {subnet.detail}", va="bottom", ha="left", fontsize=7)
        pos[subnet.key] = ((x0 + x1) / 2, y1)  # routers join the subnet at its box's top
    g = nx.Graph()
    g.add_nodes_from(pos)
    links = [(a, b) for a, b in graph.links if a in pos and b in pos]
    nx.draw_networkx_edges(g, pos, edgelist=links, ax=ax, edge_color="#bbbbbb", width=1.0)
    pods = [(e.key, "node:" + e.key.split(":", 1)[1].split("/")[0]) for e in graph.elements]
    pod_links = [(a, b) for a, b in pods if a.startswith("pod:")]
    nx.draw_networkx_edges(g, pos, edgelist=pod_links, ax=ax, edge_color="#cccccc", width=0.8)
    for edge in graph.sessions:
        a, b = edge.a, edge.b
        if edge.reflector == b or (edge.reflector is None and pos[a][0] > pos[b][0]):
            a, b = b, a
        # Nodes share a row: their sessions arc above it (left of a left-to-right edge)
        # instead of running through the nodes between them.
        same_row = abs(pos[a][1] - pos[b][1]) < 1e-9
        rad = (-0.35 if pos[a][0] < pos[b][0] else 0.35) if same_row else 0.0
        nx.draw_networkx_edges(
            nx.DiGraph(),
            pos,
            edgelist=[(a, b)],
            ax=ax,
            edge_color=STATE_COLOURS[edge.state],
            width=1.0 + 0.8 * len(edge.families),
            style="dashed" if edge.state in (NOT_EXPECTED, EXTERNAL) else "solid",
            arrows=True,
            arrowstyle="-|>" if edge.reflector else "-",
            arrowsize=14,
            node_size=700,
            connectionstyle=f"arc3,rad={rad}",
        )
    for kind, shape, size in (("router", "s", 700), ("peer", "^", 500), ("pod", "o", 120)):
        keys = [e.key for e in graph.elements if e.kind == kind and e.key in pos]
        colour = POD_COLOUR if kind == "pod" else ROUTER_COLOUR
        nx.draw_networkx_nodes(
            g, pos, nodelist=keys, ax=ax, node_shape=shape, node_size=size,
            node_color=colour, edgecolors="#555555",
        )  # fmt: skip
    transit = [e.key for e in graph.elements if e.kind == "subnet" and not graph.members(e.name)]
    nx.draw_networkx_nodes(
        g, pos, nodelist=transit, ax=ax, node_shape="s", node_size=60, node_color="#999999"
    )
    for e in graph.elements:
        if e.kind != "node":
            continue
        nx.draw_networkx_nodes(
            g,
            pos,
            nodelist=[e.key],
            ax=ax,
            node_shape="D" if e.cluster_id else "o",
            node_size=700,
            node_color=cluster_colour[e.cluster_id] if e.cluster_id else NODE_COLOUR,
            edgecolors=cluster_colour[e.reflected_by[0]] if e.reflected_by else "#555555",
            linewidths=3 if e.reflected_by else 1,
        )
    big = len(pos) > 40
    labels = {}
    for e in graph.elements:
        if e.key not in pos or (e.kind == "subnet" and graph.members(e.name)):
            continue
        if e.kind == "pod":
            labels[e.key] = "" if big else e.name
        elif e.kind == "subnet":
            labels[e.key] = e.name
        else:
            rr = f"\nRR {e.cluster_id}" if e.cluster_id else ""
            detail = "" if big else "\n" + e.detail.replace(", ", "\n").replace("; ", "\n")
            labels[e.key] = e.name + rr + detail
    for key, text in labels.items():
        kind = key.split(":", 1)[0]
        x, y = pos[key]
        below = kind in ("node", "pod")
        ax.annotate(
            text,
            (x, y),
            xytext=(0, -14 if below else 12),
            textcoords="offset points",
            ha="center",
            va="top" if below else "bottom",
            fontsize=6 if kind in ("pod", "subnet") else 7,
        )
    handles = [
        _line(STATE_COLOURS[s], f"session {s}", ls="--" if s in (NOT_EXPECTED, EXTERNAL) else "-")
        for s in dict.fromkeys(e.state for e in graph.sessions)
    ]
    handles += [_mark(c, f"RR cluster {cid}", "D") for cid, c in cluster_colour.items()]
    if any(e.reflector for e in graph.sessions):
        handles.append(_line("#555555", "reflects to client", marker=">"))
    handles.append(_mark(ROUTER_COLOUR, "router", "s", mec="#555555"))
    _legend(ax, handles, 3)


def _draw_paths(ax: Any, graph: TopologyGraph) -> None:
    ax.set_title("pod traffic between nodes (the plan's routes)")
    nodes = [e for e in graph.elements if e.kind == "node"]
    g = nx.MultiGraph()
    g.add_nodes_from(e.key for e in nodes)
    pos = nx.circular_layout(g)
    for edge in graph.paths:
        colour = PATH_COLOURS.get(edge.kind, MIXED_PATH)
        nx.draw_networkx_edges(
            nx.DiGraph(),
            pos,
            edgelist=[(edge.a, edge.b)],
            ax=ax,
            edge_color=colour,
            width=2.0,
            style="solid" if edge.family == 4 else "dashed",
            arrows=True,
            arrowstyle="-",
            node_size=700,
            connectionstyle=f"arc3,rad={0.08 if edge.family == 4 else -0.08}",
        )
    subnet_names = sorted({e.subnet for e in nodes if e.subnet})
    subnet_colour = {s: SUBNET_COLOURS[i % len(SUBNET_COLOURS)] for i, s in enumerate(subnet_names)}
    nx.draw_networkx_nodes(
        g, pos, ax=ax, node_size=700, node_color=NODE_COLOUR,
        edgecolors=[subnet_colour.get(e.subnet or "", "#555555") for e in nodes], linewidths=3,
    )  # fmt: skip
    nx.draw_networkx_labels(g, pos, labels={e.key: e.name for e in nodes}, ax=ax, font_size=7)
    kinds = dict.fromkeys(p.kind for p in graph.paths)
    handles = [
        _line(PATH_COLOURS.get(k, MIXED_PATH), PATH_WORDS.get(k, f"{k} (differs by direction)"))
        for k in kinds
    ]
    handles += [_line("#555555", "IPv4"), _line("#555555", "IPv6", ls="--")]
    handles += [
        _mark(NODE_COLOUR, f"subnet {s}", "o", mec=c, mew=3) for s, c in subnet_colour.items()
    ]
    _legend(ax, handles, 2)


def _line(colour: str, label: str, **style: Any) -> Line2D:
    return Line2D([], [], color=colour, lw=2.5, label=label, **style)


def _mark(colour: str, label: str, marker: str, **style: Any) -> Line2D:
    return Line2D([], [], marker=marker, ls="", color=colour, markersize=9, label=label, **style)


def _legend(ax: Any, handles: list[Line2D], columns: int) -> None:
    """The legend below the panel, and no axes: positions mean nothing but layout."""
    ax.legend(
        handles=handles,
        loc="upper left",
        fontsize=7,
        frameon=False,
        bbox_to_anchor=(0, -0.01),
        ncol=columns,
    )
    ax.margins(0.12)
    ax.set_axis_off()
