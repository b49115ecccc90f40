"""Commands that fit meshemu into a user's tools: graph (a picture), init (a starter
topology) and completion (shell completion scripts); parse and print only.

`graph` draws a topology file's plan, or a running lab with its sessions as observed now; a
lab that is not running, an output that cannot be written or has another suffix than .svg or
.png is exit 2, and nothing is half-written. `init` writes the commented starter topology and
refuses to overwrite a file without --force. `completion` prints shtab's script for the whole
command line. matplotlib is imported only when a picture is drawn.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any, BinaryIO

from meshemu.cli.common import file_arg, say
from meshemu.errors import EXIT_OK, UsageError
from meshemu.lab import lab_status, resolve_lab
from meshemu.model.load import lab_name_from_path, load_topology
from meshemu.model.plan import LabPlan, build_plan
from meshemu.model.starter import starter_topology
from meshemu.report.files import write_whole

COMPLETION_SHELLS = ("bash", "zsh")


def _graph_input(target: str | None) -> tuple[LabPlan, dict[tuple[str, str], str] | None]:
    """The plan to draw, and the observed session states when `target` is a running lab."""
    from meshemu.report.graph_data import session_states

    if target is not None and (Path(target).is_file() or _looks_like_file(target)):
        return build_plan(load_topology(Path(target))), None
    try:
        state = resolve_lab(target)
    except UsageError as err:
        raise UsageError(
            f"cannot draw {target or 'the running lab'}: {err}; to draw a topology file, give "
            "its path (meshemu graph topologies/flagship.yaml -o lab.svg)"
        ) from None
    summary = state.summary()
    if summary.phase != "up":
        raise UsageError(
            f"lab {state.name} is not running (its state says {summary.phase!r}): bring it "
            f"up, or draw its topology file ({summary.topology or 'TOPOLOGY'})"
        )
    return state.plan(), session_states(lab_status(state))


def _looks_like_file(target: str) -> bool:
    """A path the user meant as a file (it is not a lab name): a missing file is then
    reported as such, not as an unknown lab."""
    return "/" in target or target.endswith((".yaml", ".yml", ".json"))


def cmd_graph(args: argparse.Namespace) -> int:
    from meshemu.report.figures import check_output
    from meshemu.report.graph import render_graph
    from meshemu.report.graph_data import build_graph

    output = Path(args.output)
    check_output(output)  # before any work: a wrong suffix is exit 2 at once
    plan, states = _graph_input(args.target)
    graph = build_graph(plan, states, pods=args.pods)
    render_graph(graph, output)
    what = "as running now" if states is not None else "from its plan"
    if args.json:
        print(json.dumps(graph.to_json() | {"output": str(output)}, indent=2))
    else:
        say(
            f"lab {plan.name} drawn {what}: {len(plan.nodes)} nodes, {len(graph.sessions)} "
            f"BGP session edges, {len(graph.paths)} node-pair paths -> {output}"
        )
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.is_dir():
        raise UsageError(f"{path} is a folder: give the topology file to write")
    if (path.exists() or path.is_symlink()) and not args.force:
        raise UsageError(f"{path} exists: choose another name, or overwrite it with --force")
    name = lab_name_from_path(path)
    shown = shlex.quote(str(path))  # the commands shown are pasted into a shell
    text = starter_topology(name, shown)
    write_whole(path, lambda out: _write(out, text))
    say(f"wrote {path} (lab {name}): edit it, then `meshemu validate {shown}`")
    return EXIT_OK


def _write(out: BinaryIO, text: str) -> None:
    out.write(text.encode())


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    # The completion parser's own subcommand action holds every command of the CLI.
    root = argparse.ArgumentParser(prog="meshemu")
    root._actions.append(args.subcommands)
    sys.stdout.write(shtab.complete(root, shell=args.shell))
    return EXIT_OK


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "graph",
        help="draw a topology or a running lab: subnets, routers, nodes, reflectors, BGP "
        "sessions (coloured by state when running), the path between each pair of nodes",
    )
    file_arg(
        p.add_argument(
            "target",
            nargs="?",
            metavar="LAB|FILE",
            help="a topology file (its plan) or a running lab (default: the only lab up)",
        )
    )
    file_arg(
        p.add_argument("-o", "--output", required=True, help="picture to write: *.svg or *.png")
    )
    p.add_argument("--pods", action="store_true", help="draw the pods too")
    p.add_argument("--json", action="store_true", help="also print what was drawn, as JSON")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("init", help="write a commented starter topology")
    file_arg(
        p.add_argument(
            "file", nargs="?", default="lab.yaml", help="file to write (default lab.yaml)"
        )
    )
    p.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("completion", help="print a shell completion script (bash or zsh)")
    p.add_argument("shell", choices=COMPLETION_SHELLS)
    p.set_defaults(func=cmd_completion, subcommands=sub)
