"""Commands on running labs: up, down, status, routes, exec, repair, demo (parse and print)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from meshemu.cli.common import (
    differences,
    input_args,
    json_arg,
    load_input,
    print_json,
    progress_bar,
    say,
    sayer,
)
from meshemu.dataplane.netlink import enter_for_good, read_fib
from meshemu.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from meshemu.lab import UpResult, down, lab_status, recover_state, repair, resolve_lab, up
from meshemu.lab.running import netns_of, node_of
from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan
from meshemu.report.lab_text import render_observed_matrix, render_routes, render_status
from meshemu.report.plan_text import plan_summary
from meshemu.report.terminal import render_report
from meshemu.state import LabState, check_lab_name, list_labs
from meshemu.verify.observe import node_state
from meshemu.verify.routes import route_rows
from meshemu.verify.run import verify_lab


def _up_json(result: UpResult) -> dict[str, Any]:
    return {
        "lab": result.name,
        "converged": result.converged,
        "seconds": dict(result.seconds),
        "ipip": result.ipip,
        "differences": differences(result.diffs),
    }


def cmd_up(args: argparse.Namespace) -> int:
    topo = load_input(args)
    plan = build_plan(topo)
    tell = sayer(args)
    tell(f"bringing up lab {plan.name} from {args.file}")
    with progress_bar(args) as bar:
        progress = bar.lines(tell, f"up {plan.name}")
        result = up(plan, topo, Path(args.file), progress, timeout=args.timeout)
    if args.json:
        print_json(_up_json(result))
        return EXIT_OK if result.converged else EXIT_CHECK_FAILED
    if result.converged:
        say(
            f"lab {plan.name} is up and converged in {result.seconds['total']:.2f}s "
            f"(IPIP: {result.ipip}); `meshemu status` shows it, `meshemu down {plan.name}` "
            "removes it"
        )
        return EXIT_OK
    say(f"lab {plan.name} is up but did NOT converge; nodes lacking routes:")
    for line in differences(result.diffs):
        say(f"  {line}")
    say(f"the lab stays up for inspection; `meshemu down {plan.name}` removes it")
    return EXIT_CHECK_FAILED


def _down_names(args: argparse.Namespace) -> list[str]:
    if args.recover:
        plan = build_plan(load_topology(Path(args.recover), name=args.name))
        found = recover_state(plan)
        sayer(args)(
            f"lab {plan.name}: state folder rebuilt from the plan, {found} namespaces found"
        )
        return [plan.name]
    if args.all:
        return list_labs()
    if args.name is not None:  # "" is a bad name, not "the only lab up"
        return [check_lab_name(args.name)]
    return [resolve_lab(None).name]


def cmd_down(args: argparse.Namespace) -> int:
    names = _down_names(args)
    tell = sayer(args)
    if not names:
        tell("no lab is up")
    results = [down(name, tell) for name in names]
    for result in results:
        if not result.existed:
            tell(f"lab {result.name} is not up: nothing to do")
    if args.json:
        print_json({"labs": [dict(result.__dict__) for result in results]})
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    states = [LabState(n) for n in list_labs()] if args.all else [resolve_lab(args.lab)]
    statuses = [lab_status(state) for state in states]
    if args.json:
        data = [s.to_json() for s in statuses]
        print_json({"labs": data} if args.all else data[0])
    else:
        print("\n\n".join(render_status(s) for s in statuses) or "no lab is up")
    return EXIT_OK if all(s.healthy for s in statuses) else EXIT_CHECK_FAILED


def cmd_routes(args: argparse.Namespace) -> int:
    state = resolve_lab(args.lab)
    plan = state.plan()
    node = node_of(plan, args.node)
    rows = route_rows(plan, node, node_state(state, node), read_fib(node.netns))
    if args.json:
        print_json({"lab": state.name, "node": node.name, "routes": [r.to_json() for r in rows]})
    else:
        print(render_routes(state.name, node.name, rows))
    return EXIT_OK if all(r.matches_plan for r in rows) else EXIT_CHECK_FAILED


def _exec_split(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """argparse hands everything after the target over; options may still precede `--`."""
    command, lab = list(args.command), args.lab
    while command and command[0] != "--":
        if command[0] == "--lab" and len(command) > 1:
            lab, command = command[1], command[2:]
        elif command[0].startswith("--lab="):
            lab, command = command[0].split("=", 1)[1], command[1:]
        else:
            break
    if command[:1] == ["--"]:
        command = command[1:]
    return lab, command


def cmd_exec(args: argparse.Namespace) -> int:
    lab, command = _exec_split(args)
    state = resolve_lab(lab)
    if not command:
        raise UsageError("give a command after --, e.g. meshemu exec node1 -- ip route")
    enter_for_good(netns_of(state.plan(), args.target))
    try:
        os.execvp(command[0], command)
    except FileNotFoundError:
        print(f"error: command not found: {command[0]}", file=sys.stderr)
        return 127
    return EXIT_OK  # not reached


def cmd_repair(args: argparse.Namespace) -> int:
    state = resolve_lab(args.lab)
    tell = sayer(args)
    with progress_bar(args) as bar:
        result = repair(state, bar.lines(tell, f"repair {state.name}"), timeout=args.timeout)
    if args.json:
        print_json(
            {
                "lab": result.name,
                "actions": list(result.actions),
                "converged": result.converged,
                "differences": differences(result.diffs),
            }
        )
    else:
        say(result.text())
    return EXIT_OK if result.converged else EXIT_CHECK_FAILED


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: up, status, verify with real packets (paths seen on the wire), down."""
    topo = load_input(args)
    plan = build_plan(topo)
    tell = sayer(args)
    tell(plan_summary(plan))
    try:
        with progress_bar(args) as bar:
            progress = bar.lines(tell, f"up {plan.name}")
            result = up(plan, topo, Path(args.file), progress, timeout=args.timeout)
            state = LabState(plan.name)
            status = lab_status(state)
            report, observation = verify_lab(state, plan, step=bar.step)
        cells = [r for r in report.results if r.category == "dataplane"]
        ok = result.converged and report.ok
        if args.json:
            print_json(
                {
                    "ok": ok,
                    "up": _up_json(result),
                    "status": status.to_json(),
                    "verify": report.to_json(),
                }
            )
            return EXIT_OK if ok else EXIT_CHECK_FAILED
        say("")
        say(render_status(status))
        say("")
        say(render_observed_matrix(plan, observation.matrix))
        say("")
        say(render_report(report))
        say(
            f"RESULT: {'PASS' if ok else 'FAIL'}: up and converged in "
            f"{result.seconds.get('total', 0):.2f}s; {sum(r.ok for r in cells)}/{len(cells)} "
            "pod pairs reachable (ICMP and TCP) by the path Calico would use, as seen on the wire"
        )
        return EXIT_OK if ok else EXIT_CHECK_FAILED
    finally:
        if not args.keep:
            down(plan.name, tell)


def add_commands(sub: Any) -> None:
    p = sub.add_parser("up", help="bring a lab up and wait until every FIB equals the plan")
    input_args(p)
    p.add_argument("--timeout", type=float, help="seconds to wait for convergence")
    json_arg(p)
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="remove a lab (exactly what its state folder lists)")
    p.add_argument("name", nargs="?", help="lab name (default: the only lab up)")
    p.add_argument("--all", action="store_true", help="every lab that is up")
    p.add_argument(
        "--recover",
        metavar="TOPOLOGY",
        help="the lab's state folder is lost: find its namespaces from the plan of TOPOLOGY "
        "(with NAME as the lab name) and remove them",
    )
    json_arg(p)
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="sessions per node, like `calicoctl node status`")
    p.add_argument("lab", nargs="?", help="lab name (default: the only lab up)")
    p.add_argument("--all", action="store_true")
    json_arg(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("routes", help="a node's BGP best paths beside its kernel routes")
    p.add_argument("node")
    p.add_argument("--lab")
    json_arg(p)
    p.set_defaults(func=cmd_routes)

    p = sub.add_parser("exec", help="run a command in a node's or pod's namespace")
    p.add_argument("target", help="NODE, NODE/POD or ROUTER")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.add_argument("--lab")
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser(
        "repair", help="heal a running lab: restart what died, rebuild what is gone, resync routes"
    )
    p.add_argument("lab", nargs="?", help="lab name (default: the only lab up)")
    p.add_argument("--timeout", type=float, help="seconds to wait for convergence afterwards")
    json_arg(p)
    p.set_defaults(func=cmd_repair)

    p = sub.add_parser("demo", help="up, status, pod reachability matrix, down")
    input_args(p)
    p.add_argument("--timeout", type=float)
    p.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    json_arg(p)
    p.set_defaults(func=cmd_demo)
