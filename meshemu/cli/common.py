"""What the commands share: printing progress, reading the input file, writing reports."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from meshemu.model.load import load_topology
from meshemu.model.topology import Topology
from meshemu.report.junit import render_junit
from meshemu.verify.results import Report

PODS_MAX = 250


def say(message: str) -> None:
    print(message, flush=True)


def input_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="native topology YAML or Calico resource bundle")
    parser.add_argument("--name", help="lab name (default: from the file)")
    parser.add_argument(
        "--pods", type=int, help="pods per node (overrides the file; a bundle's default is 2)"
    )


def load_input(args: argparse.Namespace) -> Topology:
    """The FILE, --name and --pods arguments of a command, as a validated topology."""
    return load_topology(Path(args.file), name=args.name, pods_per_node=args.pods)


def write_reports(report: Report, json_path: str | None, junit_path: str | None) -> None:
    if json_path:
        Path(json_path).write_text(json.dumps(report.to_json(), indent=2) + "\n")
    if junit_path:
        Path(junit_path).write_text(render_junit([report]))
