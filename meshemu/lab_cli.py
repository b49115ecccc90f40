"""Lab commands of the CLI: up, down, status, routes, exec, demo (parsing and printing only)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from meshemu.cli import load_input
from meshemu.errors import LabError
from meshemu.state import LabState, list_labs
from meshemu.verify.results import Report

PEER_TYPE = {"mesh": "node-to-node mesh", "global": "global", "node": "node specific"}


def _say(message: str) -> None:
    print(message, flush=True)


def resolve_lab(name: str | None) -> str:
    if name:
        if not LabState(name).exists:
            raise LabError(
                f"no lab named {name!r} is up (labs up: {', '.join(list_labs()) or 'none'})"
            )
        return name
    labs = list_labs()
    if len(labs) == 1:
        return labs[0]
    if not labs:
        raise LabError("no lab is up: start one with `meshemu up TOPOLOGY`")
    raise LabError(f"several labs are up ({', '.join(labs)}): say which with --lab NAME")


def cmd_up(args: argparse.Namespace) -> int:
    from meshemu.lab import up
    from meshemu.model.plan import build_plan

    topo = load_input(args)
    plan = build_plan(topo)
    _say(f"bringing up lab {plan.name} from {args.file}")
    result = up(plan, Path(args.file), _say, timeout=args.timeout, topo=topo)
    if result.converged:
        _say(
            f"lab {plan.name} is up and converged in {result.seconds['total']:.2f}s "
            f"(IPIP: {result.ipip}); `meshemu status` shows it, `meshemu down {plan.name}` "
            "removes it"
        )
        return 0
    _say(f"lab {plan.name} is up but did NOT converge; nodes lacking routes:")
    for diff in result.diffs:
        for line in diff.describe():
            _say(f"  {line}")
    _say(f"the lab stays up for inspection; `meshemu down {plan.name}` removes it")
    return 1


def cmd_down(args: argparse.Namespace) -> int:
    from meshemu.lab import down

    if args.recover:
        from meshemu.lab import recover_state
        from meshemu.model.load import load_topology
        from meshemu.model.plan import build_plan

        plan = build_plan(load_topology(Path(args.recover), name=args.name))
        found = recover_state(plan)
        _say(f"lab {plan.name}: state folder rebuilt from the plan, {found} namespaces found")
        names = [plan.name]
    elif args.all:
        names = list_labs()
    elif args.name:
        names = [args.name]
    else:
        names = [resolve_lab(None)]
    if not names:
        _say("no lab is up")
    for name in names:
        result = down(name, _say)
        if not result.existed:
            _say(f"lab {name} is not up: nothing to do")
    return 0


def _since(value: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(value)) if value else "-"


def _table(rows: list[list[str]], headers: list[str]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [
        rule,
        "| " + " | ".join(h.center(w) for h, w in zip(headers, widths, strict=True)) + " |",
        rule,
    ]
    out += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    out.append(rule)
    return out


def render_status(status: dict[str, Any]) -> str:
    lines = [
        f"lab {status['name']} ({status['phase']}); IPIP: {status['ipip']}; "
        f"state folder {status['state_dir']}"
    ]
    established = total = 0
    for node in status["nodes"]:
        lines.append("")
        lines.append(
            f"node {node['name']} ({node['netns']}): speaker {node['speaker']}, agent "
            f"{node['agent']}; {node['ipv4'] or ''} {node['ipv6'] or ''}".rstrip()
        )
        for family in ("ipv4", "ipv6"):
            rows = []
            for s in node["sessions"]:
                if s["family"] != family:
                    continue
                total += 1
                up = s["state"] == "established"
                established += up
                rows.append(
                    [
                        s["peer_ip"],
                        PEER_TYPE.get(s["kind"], s["kind"]),
                        "up" if up else "start" if s["state"] != "not emulated" else "-",
                        _since(s["since"]),
                        "Established" if up else (s["info"] or s["state"]).capitalize(),
                    ]
                )
            title = "IPv4" if family == "ipv4" else "IPv6"
            if rows:
                lines.append(f"{title} BGP status")
                lines += _table(rows, ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"])
            else:
                lines.append(f"No {title} peers found.")
        if node["agent_errors"]:
            lines.append("agent errors: " + "; ".join(node["agent_errors"][-3:]))
    pods = sum(len(n["pods"]) for n in status["nodes"])
    dead = [
        n["name"] for n in status["nodes"] if n["speaker"] != "running" or n["agent"] != "running"
    ]
    lines.append("")
    lines.append(
        f"summary: {len(status['nodes'])} nodes, {pods} pods, {established}/{total} sessions "
        "established" + (f"; NOT RUNNING: {', '.join(dead)}" if dead else "")
    )
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    from meshemu.lab import lab_status

    names = list_labs() if args.all else [resolve_lab(args.lab)]
    statuses = [lab_status(name) for name in names]
    if args.json:
        print(json.dumps(statuses[0] if not args.all else {"labs": statuses}, indent=2))
    else:
        print("\n\n".join(render_status(s) for s in statuses) or "no lab is up")
    unhealthy = any(
        n["speaker"] != "running" or n["agent"] != "running" for s in statuses for n in s["nodes"]
    )
    return 1 if unhealthy else 0


def cmd_routes(args: argparse.Namespace) -> int:
    from meshemu.dataplane.netlink import in_netns
    from meshemu.model.routes import FibRoute
    from meshemu.verify.fib import managed

    name = resolve_lab(args.lab)
    state = LabState(name)
    plan = state.plan()
    node = next((n for n in plan["nodes"] if n["name"] == args.node), None)
    if node is None:
        raise LabError(f"lab {name} has no node {args.node!r}")
    agent = state.agent_state(args.node) or {}
    with in_netns(node["netns"]) as ns:
        observed = ns.routes()
    pools = [p["cidr"] for p in plan["pools"]]
    expected = {
        r["prefix"]: FibRoute(r["prefix"], r["type"], r["via"], r["dev"], r["onlink"])
        for r in node["fib"]
    }
    fib = {r.prefix: r for r in managed(observed, pools)}
    best = {r["prefix"]: r for r in agent.get("rib", []) if r["best"]}
    prefixes = sorted(set(expected) | set(fib) | set(best), key=_net_sort)
    rows = []
    for prefix in prefixes:
        rib = best.get(prefix)
        kernel = fib.get(prefix)
        want = expected.get(prefix)
        match = kernel is not None and want is not None and kernel.key() == want.key()
        rows.append(
            {
                "prefix": prefix,
                "rib_next_hop": rib["next_hop"] if rib else None,
                "rib_learned_from": rib["learned_from"] if rib else None,
                "originator_id": rib["originator_id"] if rib else None,
                "cluster_list": rib["cluster_list"] if rib else [],
                "fib": kernel.text() if kernel else None,
                "expected": want.text() if want else None,
                "matches_plan": match,
            }
        )
    if args.json:
        print(json.dumps({"lab": name, "node": args.node, "routes": rows}, indent=2))
    else:
        table = [
            [
                r["prefix"],
                (r["rib_next_hop"] or "-")
                + (f" from {r['rib_learned_from']}" if r["rib_learned_from"] else ""),
                r["fib"] or "-",
                "ok" if r["matches_plan"] else f"expected: {r['expected'] or 'absent'}",
            ]
            for r in rows
        ]
        print(f"lab {name}, node {args.node}: BGP best paths (RIB) beside kernel routes (FIB)")
        print("\n".join(_table(table, ["PREFIX", "RIB NEXT HOP", "KERNEL ROUTE", "PLAN"])))
    return 0 if all(r["matches_plan"] for r in rows) else 1


def _net_sort(prefix: str) -> tuple[int, int, int]:
    import ipaddress

    network = ipaddress.ip_network(prefix)
    return (network.version, int(network.network_address), network.prefixlen)


def cmd_exec(args: argparse.Namespace) -> int:
    from pyroute2 import netns

    from meshemu.lab import netns_of

    command = list(args.command)
    # argparse hands everything after the target over; options may still precede `--`.
    lab = args.lab
    while command and command[0] != "--":
        if command[0] == "--lab" and len(command) > 1:
            lab, command = command[1], command[2:]
        elif command[0].startswith("--lab="):
            lab, command = command[0].split("=", 1)[1], command[1:]
        else:
            break
    if command[:1] == ["--"]:
        command = command[1:]
    name = resolve_lab(lab)
    if not command:
        raise LabError("give a command after --, e.g. meshemu exec node1 -- ip route")
    target = netns_of(name, args.target)
    netns.setns(target, flags=0)
    try:
        os.execvp(command[0], command)
    except FileNotFoundError:
        print(f"error: command not found: {command[0]}", file=sys.stderr)
        return 127
    return 0  # not reached


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: up, status, verify with real packets (paths seen on the wire), down."""
    from meshemu.lab import down, lab_status, up
    from meshemu.model.plan import build_plan
    from meshemu.report.plan_text import plan_summary
    from meshemu.report.terminal import render_report
    from meshemu.verify.checks import verify_results
    from meshemu.verify.observe import observe
    from meshemu.verify.probe import render_observed_matrix

    topo = load_input(args)
    plan = build_plan(topo)
    _say(plan_summary(plan))
    code = 1
    try:
        result = up(plan, Path(args.file), _say, timeout=args.timeout, topo=topo)
        _say("")
        _say(render_status(lab_status(plan.name)))
        started = time.monotonic()
        observation = observe(plan)
        results = sorted(verify_results(plan, observation), key=lambda r: r.ok)
        report = Report(
            f"verify lab {plan.name}",
            plan.name,
            tuple(results),
            round(time.monotonic() - started, 3),
            {"lab": plan.name},
        )
        _say("")
        _say(render_observed_matrix(plan, observation.matrix))
        _say("")
        _say(render_report(report))
        cells = [r for r in results if r.category == "dataplane"]
        ok = result.converged and report.ok
        _say(
            f"RESULT: {'PASS' if ok else 'FAIL'}: up and converged in "
            f"{result.seconds.get('total', 0):.2f}s; {sum(r.ok for r in cells)}/{len(cells)} "
            "pod pairs reachable (ICMP and TCP) by the path Calico would use, as seen on the wire"
        )
        code = 0 if ok else 1
    finally:
        if not args.keep:
            down(plan.name, _say)
    return code


def write_reports(report: Report, json_path: str | None, junit_path: str | None) -> None:
    from meshemu.report.junit import render_junit

    if json_path:
        Path(json_path).write_text(json.dumps(report.to_json(), indent=2) + "\n")
    if junit_path:
        Path(junit_path).write_text(render_junit([report]))


def cmd_verify(args: argparse.Namespace) -> int:
    from meshemu.lab import load_running_plan
    from meshemu.report.terminal import render_report
    from meshemu.verify.checks import verify_results
    from meshemu.verify.observe import observe

    name = resolve_lab(args.lab)
    started = time.monotonic()
    plan = load_running_plan(name)
    observation = observe(plan, dataplane=not args.no_dataplane)
    results = verify_results(plan, observation)
    # Failing checks first, so the first lines say what is wrong.
    results.sort(key=lambda r: r.ok)
    report = Report(
        f"verify lab {name}",
        name,
        tuple(results),
        round(time.monotonic() - started, 3),
        {"lab": name, "nodes": str(len(plan.nodes))},
    )
    write_reports(report, args.json_file, args.junit)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(render_report(report))
        if observation.matrix:
            from meshemu.verify.probe import render_observed_matrix

            print()
            print(render_observed_matrix(plan, observation.matrix))
    return 0 if report.ok else 1


def cmd_run(args: argparse.Namespace) -> int:
    from meshemu.report.terminal import render_report
    from meshemu.scenario.model import load_scenario
    from meshemu.scenario.runner import Runner

    path = Path(args.scenario)
    scenario, topo, topo_path = load_scenario(path)
    _say(
        f"scenario {scenario.name}: {len(scenario.steps)} steps on lab {topo.name} "
        f"({topo_path.name})"
    )
    report = Runner(scenario, topo, topo_path, path.parent, _say).run()
    write_reports(report, args.json, args.junit)
    _say("")
    _say(render_report(report))
    return 0 if report.ok else 1


def cmd_snapshot(args: argparse.Namespace) -> int:
    from meshemu.lab import load_running_plan
    from meshemu.scenario.runner import take_snapshot
    from meshemu.verify.snapshot import write_snapshot

    name = resolve_lab(args.lab)
    data = take_snapshot(load_running_plan(name))
    write_snapshot(Path(args.output), data)
    _say(f"snapshot of lab {name} written to {args.output} ({len(data['nodes'])} nodes)")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from meshemu.lab import load_running_plan
    from meshemu.scenario.runner import take_snapshot
    from meshemu.verify.snapshot import diff_snapshots, read_snapshot, render_diff

    before = read_snapshot(Path(args.a))
    if args.b is None:
        after = take_snapshot(load_running_plan(resolve_lab(args.lab)))
    else:
        after = read_snapshot(Path(args.b))
    changes = diff_snapshots(before, after)
    print(render_diff(changes), end="")
    return 1 if changes else 0


def add_commands(sub: Any) -> None:
    from meshemu.cli import _input_args

    p = sub.add_parser("up", help="bring a lab up and wait until every FIB equals the plan")
    _input_args(p)
    p.add_argument("--timeout", type=float, help="seconds to wait for convergence")
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
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="sessions per node, like `calicoctl node status`")
    p.add_argument("lab", nargs="?", help="lab name (default: the only lab up)")
    p.add_argument("--all", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("routes", help="a node's BGP best paths beside its kernel routes")
    p.add_argument("node")
    p.add_argument("--lab")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_routes)

    p = sub.add_parser("exec", help="run a command in a node's or pod's namespace")
    p.add_argument("target", help="NODE, NODE/POD or ROUTER")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.add_argument("--lab")
    p.set_defaults(func=cmd_exec)

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
    p.add_argument("scenario")
    p.add_argument("--json", help="write the JSON report to this file")
    p.add_argument("--junit", help="write a JUnit XML report to this file")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("snapshot", help="write a running lab's sessions, RIBs and FIBs to a file")
    p.add_argument("lab", nargs="?")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser("diff", help="compare two snapshots, or a snapshot with the running lab")
    p.add_argument("a", help="snapshot file (before)")
    p.add_argument("b", nargs="?", help="snapshot file (after); default: the running lab")
    p.add_argument("--lab")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("demo", help="up, status, pod reachability matrix, down")
    _input_args(p)
    p.add_argument("--timeout", type=float)
    p.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    p.set_defaults(func=cmd_demo)
