"""Commands that explain: `explain` (why a node has its sessions and routes) and `impact` (what
a change of the input does), parse and print only.

`explain NODE [PREFIX | PEER] [--lab NAME | FILE]`: from an input file (no root, no lab) or a
running lab (its plan and topology from the state folder, and what it shows now).
`impact OLD NEW`: exit 1 when something protected would break (or, with `--run`, when the labs
do not show what was predicted), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from meshemu.errors import EXIT_CHECK_FAILED, EXIT_OK, ConfigError, Problem
from meshemu.lab import resolve_lab
from meshemu.lab.impact_run import lab_names, run_lab
from meshemu.lab.preflight import require_root
from meshemu.model.explain import explain_node
from meshemu.model.impact import ProtectSpec, impact, parse_protect, parse_protect_pairs
from meshemu.model.load import load_topology, parse_yaml, read_input
from meshemu.model.plan import LabPlan, build_plan
from meshemu.report.explain_text import render_explanation
from meshemu.report.impact_text import render_impact_markdown, render_impact_text
from meshemu.verify.explain import observed_explanation
from meshemu.verify.impact_check import check_prediction
from meshemu.verify.observe import observe

_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def _split_explain_args(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The optional TARGET and FILE, in either order after NODE: a FILE is an existing file or
    a name ending in .yaml/.yml/.json; anything else is the target."""
    target, file = None, args.file
    for word in args.rest:
        is_file = word.endswith(_FILE_SUFFIXES) or Path(word).is_file()
        if is_file and file is None:
            file = word
        elif not is_file and target is None:
            target = word
        else:
            raise ConfigError(
                [
                    Problem(
                        "arguments",
                        f"unexpected {word!r}",
                        "meshemu explain NODE [PREFIX | PEER] [--lab NAME | FILE]",
                    )
                ]
            )
    if file is not None and args.lab is not None:
        raise ConfigError(
            [Problem("--lab", "give a running lab or an input FILE, not both", "drop one")]
        )
    return target, file


def cmd_explain(args: argparse.Namespace) -> int:
    target, file = _split_explain_args(args)
    if file is not None:
        topo = load_topology(Path(file), name=args.name, pods_per_node=args.pods)
        explanation = explain_node(topo, build_plan(topo), args.node, target)
    else:
        state = resolve_lab(args.lab)
        plan = state.plan()
        explanation = explain_node(state.topology(), plan, args.node, target)
        if not args.plan_only:
            require_root("explain on a running lab")
            explanation = observed_explanation(
                explanation, plan, observe(state, plan, dataplane=False)
            )
    if args.json:
        print(json.dumps(explanation.to_json(), indent=2))
    else:
        print(render_explanation(explanation))
    return EXIT_OK if not explanation.differences else EXIT_CHECK_FAILED


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "explain",
        help="why a node has each BGP session and route, naming the Calico field behind each",
    )
    p.add_argument("node", help="the node to explain")
    p.add_argument(
        "rest",
        nargs="*",
        metavar="PREFIX|PEER|FILE",
        help="what to explain (a peer's name or address, NODE/POD, an address or a prefix; "
        "default: everything) and the input FILE (default: the running lab)",
    )
    p.add_argument("--lab", help="a running lab (default: the only lab up)")
    p.add_argument("--file", help="an input file (native topology or Calico bundle)")
    p.add_argument("--name", help="lab name for a FILE (default: from the file)")
    p.add_argument("--pods", type=int, help="pods per node for a FILE (overrides it)")
    p.add_argument(
        "--plan-only",
        action="store_true",
        help="on a running lab, explain its plan without reading what it shows (no root)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_explain)
    add_impact_command(sub)


# -- impact --------------------------------------------------------------------------------------


def _protect(args: argparse.Namespace, plan: LabPlan) -> ProtectSpec | None:
    """The protect spec of --protect FILE and --protect-pairs, checked against the old plan."""
    data: dict[str, Any] = {}
    if args.protect is not None:
        path = Path(args.protect)
        documents = parse_yaml(read_input(path), str(path))
        if len(documents) != 1:
            raise ConfigError(
                [Problem(str(path), "expected one YAML document", "pairs, nodes, prefixes")]
            )
        if not isinstance(documents[0], dict):
            return parse_protect(documents[0], plan, str(path))  # refuses it, located
        data = documents[0]
    if args.protect_pairs:
        pairs = data.get("pairs") if isinstance(data.get("pairs"), list) else []
        data = {**data, "pairs": [*(pairs or []), *parse_protect_pairs(args.protect_pairs)]}
    if not data:
        return None
    return parse_protect(data, plan, args.protect or "--protect-pairs")


def cmd_impact(args: argparse.Namespace) -> int:
    names: tuple[str | None, str | None] = (None, None)
    if args.run:
        names = lab_names(args.lab_prefix)
    old_path, new_path = Path(args.old), Path(args.new)
    old_topo = load_topology(old_path, name=names[0], pods_per_node=args.pods)
    new_topo = load_topology(new_path, name=names[1], pods_per_node=args.pods)
    old_plan, new_plan = build_plan(old_topo), build_plan(new_topo)
    protect = _protect(args, old_plan)
    result = impact(old_topo, old_plan, new_topo, new_plan, args.old, args.new, protect=protect)
    checks = []
    if args.run:
        require_root("impact --run")
        labs = {}
        for side, plan, topo, path in (
            ("old", old_plan, old_topo, old_path),
            ("new", new_plan, new_topo, new_path),
        ):
            say_progress(f"bringing up the {side} lab {plan.name} from {path}")
            run = run_lab(plan, topo, path, say_progress, args.timeout)
            labs[side] = (plan, run.observation)
        checks = check_prediction(result, labs)
    if args.format == "json":
        data = result.to_json()
        if args.run:
            data["run"] = {
                "ok": all(c.ok for c in checks),
                "checks": [c.to_json() for c in checks],
            }
        print(json.dumps(data, indent=2))
    elif args.format == "markdown":
        print(render_impact_markdown(result, checks), end="")
    else:
        print(render_impact_text(result, checks))
    broken = bool(result.breaches) or not all(c.ok for c in checks)
    return EXIT_CHECK_FAILED if broken else EXIT_OK


def say_progress(message: str) -> None:
    """Progress of --run goes to stderr, so that stdout stays the report (JSON, Markdown)."""
    print(message, file=sys.stderr, flush=True)


def add_impact_command(sub: Any) -> None:
    p = sub.add_parser(
        "impact",
        help="what changing OLD into NEW does to every node's sessions, routes and pod pairs",
    )
    p.add_argument("old", help="the input before (native topology or Calico bundle)")
    p.add_argument("new", help="the input after")
    p.add_argument(
        "--protect",
        metavar="FILE",
        help="YAML: pairs: [{from: NODE[/POD], to: NODE[/POD], family: ipv4}], nodes: [NODE], "
        "prefixes: [CIDR]; exit 1 when one of them loses reachability",
    )
    p.add_argument(
        "--protect-pairs",
        nargs="+",
        metavar="FROM:TO[:FAMILY]",
        help="pod pairs that must stay reachable, e.g. node1/pod1:node3/pod1 node1:node4:ipv4",
    )
    p.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    p.add_argument("--pods", type=int, help="pods per node (overrides both inputs)")
    p.add_argument(
        "--run",
        action="store_true",
        help="bring up both labs one after the other and check the prediction against them (root)",
    )
    p.add_argument(
        "--lab-prefix",
        default="impact",
        help="prefix of the --run labs' names (default: impact)",
    )
    p.add_argument("--timeout", type=float, help="--run: seconds each lab may take to converge")
    p.set_defaults(func=cmd_impact)
