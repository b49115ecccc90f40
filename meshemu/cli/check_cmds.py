"""Commands that judge a lab: verify, run (a scenario), snapshot and diff (parse and print)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from meshemu.cli.common import (
    file_arg,
    json_arg,
    print_json,
    progress_bar,
    say,
    say_aside,
    write_reports,
)
from meshemu.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from meshemu.lab import resolve_lab
from meshemu.report.convergence import plot_convergence, plot_path
from meshemu.report.figures import check_output
from meshemu.report.lab_text import render_observed_matrix
from meshemu.report.policy_text import render_policy_matrix
from meshemu.report.progress import ProgressBar
from meshemu.report.terminal import render_report
from meshemu.scenario.model import load_scenario
from meshemu.scenario.runner import Runner
from meshemu.verify.observe import take_snapshot
from meshemu.verify.run import verify_lab
from meshemu.verify.snapshot import diff_snapshots, read_snapshot, render_diff, write_snapshot


def cmd_verify(args: argparse.Namespace) -> int:
    state = resolve_lab(args.lab)
    plan = state.plan()
    with progress_bar(args) as bar:
        report, observation = verify_lab(
            state, plan, dataplane=not args.no_dataplane, step=bar.step
        )
    write_reports(report, args.json_file, args.junit)
    if args.json:
        print_json(report.to_json())
    else:
        print(render_report(report))
        if observation.matrix:
            print()
            print(render_observed_matrix(plan, observation.matrix))
        policy = render_policy_matrix(report.results)
        if policy:
            print()
            print(policy)
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    path = Path(args.scenario)
    scenario, topo, topo_path = load_scenario(path)
    to_stdout = args.json == "-"  # the JSON report on stdout: everything else on stderr
    tell = say_aside if to_stdout else say
    plot = args.plot or next(
        (plot_path(f) for f in (args.json, args.junit) if f and f != "-"), None
    )
    if plot is not None:
        check_output(Path(plot))  # a wrong suffix is exit 2 before the lab is built
    tell(
        f"scenario {scenario.name}: {len(scenario.steps)} steps on lab {topo.name} "
        f"({topo_path.name})"
    )
    with ProgressBar(enabled=False if to_stdout else None) as bar:
        report = Runner(scenario, topo, topo_path, path.parent, tell, bar.step).run()
    if plot is not None:
        expectations = [s.expect is not None for s in scenario.steps]
        try:
            plot_convergence(report, expectations, Path(plot))
        except UsageError as err:  # the run's reports matter more than its picture
            tell(f"no convergence plot: {err}")
        else:
            report = replace(
                report, properties={**report.properties, "convergence_plot": str(plot)}
            )
            tell(f"convergence plot: {plot}")
    write_reports(report, args.json, args.junit)
    if to_stdout:
        print_json(report.to_json())
    else:
        say("")
        say(render_report(report))
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def cmd_snapshot(args: argparse.Namespace) -> int:
    state = resolve_lab(args.lab)
    data = take_snapshot(state, state.plan())
    write_snapshot(Path(args.output), data)
    say(f"snapshot of lab {state.name} written to {args.output} ({len(data['nodes'])} nodes)")
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    before = read_snapshot(Path(args.a))
    if args.b is None:
        state = resolve_lab(args.lab)
        after = take_snapshot(state, state.plan())
    else:
        after = read_snapshot(Path(args.b))
    changes = diff_snapshots(before, after)
    if args.json:
        print_json({"changes": [asdict(c) for c in changes]})
    else:
        print(render_diff(changes), end="")
    return EXIT_CHECK_FAILED if changes else EXIT_OK


def add_commands(sub: Any) -> None:
    p = sub.add_parser("verify", help="check a running lab against its plan, with real packets")
    p.add_argument("lab", nargs="?", help="lab name (default: the only lab up)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--json-file", help="also write the JSON report to this file")
    p.add_argument("--junit", help="also write a JUnit XML report to this file")
    p.add_argument(
        "--no-dataplane", action="store_true", help="sessions, RIB and FIB only (no packets)"
    )
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("run", help="run a scenario: up, faults and changes, timed expectations")
    file_arg(p.add_argument("scenario"))
    p.add_argument("--json", help="write the JSON report to this file ('-': print it)")
    p.add_argument("--junit", help="write a JUnit XML report to this file")
    p.add_argument(
        "--plot",
        help="the convergence-time plot (.svg or .png; default: beside the report file, "
        "<report>.convergence.svg)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("snapshot", help="write a running lab's sessions, RIBs and FIBs to a file")
    p.add_argument("lab", nargs="?")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser("diff", help="compare two snapshots, or a snapshot with the running lab")
    p.add_argument("a", help="snapshot file (before)")
    p.add_argument("b", nargs="?", help="snapshot file (after); default: the running lab")
    p.add_argument("--lab")
    json_arg(p)
    p.set_defaults(func=cmd_diff)
