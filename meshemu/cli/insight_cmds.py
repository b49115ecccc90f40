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
from pathlib import Path
from typing import Any

from meshemu.errors import EXIT_CHECK_FAILED, EXIT_OK, ConfigError, Problem
from meshemu.lab import resolve_lab
from meshemu.lab.preflight import require_root
from meshemu.model.explain import explain_node
from meshemu.model.load import load_topology
from meshemu.model.plan import build_plan
from meshemu.report.explain_text import render_explanation
from meshemu.verify.explain import observed_explanation
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
