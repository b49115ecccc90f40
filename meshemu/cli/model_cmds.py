"""Commands that need no lab and no root: validate (topology, bundle or scenario) and plan."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from meshemu.cli.common import input_args, json_arg, load_input, print_json, say
from meshemu.errors import EXIT_OK, ConfigError, Problem
from meshemu.lab.routers import check_user_configs
from meshemu.model.plan import build_plan
from meshemu.report.plan_text import plan_summary, render_plan
from meshemu.scenario.model import is_scenario_document, load_scenario

WARNING = "warning: "  # the plan notes that are warnings (model.phases.notes, model.policy)


def cmd_validate(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if is_scenario_document(path):
        # Everything `run` checks before it creates anything, without root.
        scenario, topo, topo_path = load_scenario(path)
        if args.json:
            print_json(
                {
                    "valid": True,
                    "kind": "scenario",
                    "scenario": scenario.name,
                    "steps": len(scenario.steps),
                    "lab": topo.name,
                    "topology": str(topo_path),
                }
            )
            return EXIT_OK
        say(
            f"valid scenario {scenario.name}: {len(scenario.steps)} steps on lab {topo.name} "
            f"({topo_path.name})"
        )
        return EXIT_OK
    plan = build_plan(load_input(args))
    # A router's own BIRD configuration is checked by BIRD itself (`bird -p`), as `up` does.
    check_user_configs(plan)
    placed = plan.description.splitlines()[1:]  # what a bundle's conversion placed, and why
    if args.json:
        print_json(
            {
                "valid": True,
                "kind": "topology",
                "lab": plan.name,
                "summary": plan_summary(plan),
                "placed": placed,
                "notes": list(plan.notes),
                "warnings": [n.removeprefix(WARNING) for n in plan.notes if n.startswith(WARNING)],
            }
        )
        return EXIT_OK
    say(f"valid: {plan_summary(plan)}")
    for line in placed:
        say(f"  {line}")
    # A warning (a setting Calico accepts that cannot work) does not make the input invalid.
    for note in plan.notes:
        say(f"  {note}" if note.startswith(WARNING) else f"  note: {note}")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    plan = build_plan(load_input(args))
    known = [n.name for n in plan.nodes]
    if args.node is not None and args.node not in known:
        raise ConfigError(
            [Problem("--node", f"unknown node {args.node!r}", f"nodes: {', '.join(known)}")]
        )
    if args.json:
        data = plan.to_json()
        if args.node is not None:
            data["nodes"] = [n for n in data["nodes"] if n["name"] == args.node]
        print_json(data)
    else:
        print(render_plan(plan, args.node))
    return EXIT_OK


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "validate", help="check a topology, Calico bundle or scenario; report every problem"
    )
    input_args(p)
    json_arg(p)
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("plan", help="show the resolved plan: sessions and routes, with why")
    input_args(p)
    p.add_argument("--node", help="show only this node")
    json_arg(p)
    p.set_defaults(func=cmd_plan)
