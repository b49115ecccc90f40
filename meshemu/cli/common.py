"""What the commands share: printing progress, reading the input file, writing reports, and
the two outputs of a command: text for a person, or `--json` for a program (then stdout holds
only the JSON; progress lines go to stderr and no progress bar is drawn)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shtab

from meshemu.model.load import load_topology
from meshemu.model.topology import Topology
from meshemu.report.junit import render_junit
from meshemu.report.progress import ProgressBar
from meshemu.verify.fib import FibDiff
from meshemu.verify.results import Report

PODS_MAX = 250


def say(message: str) -> None:
    print(message, flush=True)


def say_aside(message: str) -> None:
    """Progress while stdout carries JSON: on stderr."""
    print(message, file=sys.stderr, flush=True)


def sayer(args: argparse.Namespace) -> Callable[[str], None]:
    """Where a command's progress lines go: stdout, or stderr when it prints JSON."""
    return say_aside if getattr(args, "json", False) else say


def progress_bar(args: argparse.Namespace) -> ProgressBar:
    """The command's progress bar: on a terminal, never with --json."""
    return ProgressBar(enabled=False if getattr(args, "json", False) else None)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def differences(diffs: list[FibDiff]) -> list[str]:
    """FIB differences left after a wait, one line each (the JSON of up, repair, demo)."""
    return [line for diff in diffs for line in diff.describe()]


def file_arg(action: argparse.Action) -> argparse.Action:
    """Mark an argument as a file name for shell completion (`meshemu completion`)."""
    action.complete = shtab.FILE  # type: ignore[attr-defined]
    return action


def input_args(parser: argparse.ArgumentParser) -> None:
    file_arg(parser.add_argument("file", help="native topology YAML or Calico resource bundle"))
    parser.add_argument("--name", help="lab name (default: from the file)")
    parser.add_argument(
        "--pods", type=int, help="pods per node (overrides the file; a bundle's default is 2)"
    )


def load_input(args: argparse.Namespace) -> Topology:
    """The FILE, --name and --pods arguments of a command, as a validated topology."""
    return load_topology(Path(args.file), name=args.name, pods_per_node=args.pods)


def write_reports(report: Report, json_path: str | None, junit_path: str | None) -> None:
    if json_path and json_path != "-":
        Path(json_path).write_text(json.dumps(report.to_json(), indent=2) + "\n")
    if junit_path:
        Path(junit_path).write_text(render_junit([report]))
