"""How a scenario's problems quote what the input said and list what there is instead.

Owns the wording helpers every scenario check shares: a quoted value cut to a readable length
(a hostile file may name a node with a megabyte of text), and a list of names cut to its first
few (a lab may have thousands of nodes).
"""

from __future__ import annotations

from meshemu.model.topology import Topology


def short(text: object, limit: int = 120) -> str:
    """`text` cut to `limit` characters, for messages that quote what the input said."""
    text = str(text)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def listed(names: list[str], most: int = 12) -> str:
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown}, ... ({len(names)} in all)"


def node_names(topo: Topology) -> str:
    return listed(sorted(topo.nodes))
