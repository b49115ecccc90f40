"""The meshemu command line: argument parsing, printing and exit codes, nothing else.

Exit codes: 0 all good; 1 a check failed; 2 bad input or usage; 3 this machine cannot run it.
Only this module prints to the terminal or exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from meshemu.errors import ConfigError, EnvironmentProblem, MeshemuError, Problem
from meshemu.model.load import load_topology
from meshemu.model.plan import LabPlan, build_plan
from meshemu.model.topology import Topology
from meshemu.report.plan_text import plan_summary, render_plan

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_ENVIRONMENT = 0, 1, 2, 3


def load_input(args: argparse.Namespace) -> Topology:
    """The FILE, --name and --pods arguments of a command, as a validated topology."""
    return load_topology(Path(args.file), name=args.name, pods_per_node=args.pods)


def _load_plan(args: argparse.Namespace) -> LabPlan:
    return build_plan(load_input(args))


def cmd_validate(args: argparse.Namespace) -> int:
    plan = _load_plan(args)
    print(f"valid: {plan_summary(plan)}")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    plan = _load_plan(args)
    known = [n.name for n in plan.nodes]
    if args.node is not None and args.node not in known:
        raise ConfigError(
            [Problem("--node", f"unknown node {args.node!r}", f"nodes: {', '.join(known)}")]
        )
    if args.json:
        data = plan.to_json()
        if args.node is not None:
            data["nodes"] = [n for n in data["nodes"] if n["name"] == args.node]
        print(json.dumps(data, indent=2))
    else:
        print(render_plan(plan, args.node))
    return EXIT_OK


def _input_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="native topology YAML or Calico resource bundle")
    parser.add_argument("--name", help="lab name (default: from the file)")
    parser.add_argument(
        "--pods", type=int, help="pods per node (overrides the file; a bundle's default is 2)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshemu",
        description="Emulate the BGP route mesh of a Calico-networked Kubernetes cluster.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="check a topology or Calico bundle, report every problem")
    _input_args(p)
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("plan", help="show the resolved plan: sessions and routes, with why")
    _input_args(p)
    p.add_argument("--node", help="show only this node")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plan)
    from meshemu import lab_cli

    lab_cli.add_commands(sub)
    return parser


_MAIN_PID = 0


def _terminate(_signum: int, _frame: object) -> None:
    # SIGTERM (from `meshemu down` or a CI runner) takes the same clean-up path as Ctrl-C, in
    # this process only: libraries fork helpers (pyroute2 does, to open sockets in other
    # namespaces) and stop them with SIGTERM; those must just end.
    if os.getpid() != _MAIN_PID:
        os._exit(143)
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    signal.signal(signal.SIGTERM, _terminate)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "pods", None) is not None and not 0 <= args.pods <= 250:
        parser.error("--pods must be between 0 and 250")
    try:
        code: int = args.func(args)
        return code
    except ConfigError as err:
        count = len(err.problems)
        print(f"{count} problem{'s' if count != 1 else ''} found:", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except EnvironmentProblem as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except MeshemuError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
