"""Saving a matplotlib figure to the file a user named (.svg or .png), whole or not at all.

Owns the formats pictures may have and the one way a figure reaches disk: `check_output` (a
`UsageError`, exit 2, for any other suffix, before any work is done) and `write_figure`
(through `report.files.write_whole`). No pyplot: figures are drawn on the Agg canvas, so no
display is ever needed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from meshemu.errors import UsageError
from meshemu.report.files import write_whole

FORMATS = {".svg": "svg", ".png": "png"}


def check_output(path: Path) -> str:
    """The format of an output path (from its suffix); UsageError for any other suffix."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"cannot draw into {path}: give a file ending in .svg or .png")
    return fmt


def write_figure(fig: Figure, path: Path) -> None:
    """Save `fig` to `path` whole or not at all; UsageError (exit 2) if it cannot be written."""
    fmt = check_output(path)
    canvas = FigureCanvasAgg(fig)
    # The same lab gives the same file: no date, fixed SVG element ids (a picture kept in a
    # repository changes only when the lab does).
    metadata = {"Date": None} if fmt == "svg" else {}
    with matplotlib.rc_context({"svg.hashsalt": "meshemu"}):
        write_whole(
            path,
            lambda out: canvas.print_figure(
                out, format=fmt, bbox_inches="tight", metadata=metadata
            ),
        )
