"""`meshemu export clab` and `meshemu import clab`: containerlab topologies out and in.

Parsing, reading the input, writing the output and printing; the conversions are
`model.clab.export` and `model.clab.imports`. Nothing is ever half-written: the export is
written into a fresh folder beside its destination and renamed into place, the import into a
temporary file renamed over its destination; a destination that cannot be written is bad
input (exit 2), with what to do.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from meshemu.cli.common import say
from meshemu.errors import EXIT_OK, ConfigError, Problem, UsageError
from meshemu.lab import resolve_lab
from meshemu.model.clab.export import FABRICS, HOST_IMAGE, NODE_IMAGE, ROUTER_IMAGE, Images
from meshemu.model.clab.export import export_clab as convert_out
from meshemu.model.clab.imports import import_clab as convert_in
from meshemu.model.labplan import LabPlan
from meshemu.model.load import load_topology, load_topology_text, parse_yaml, read_input
from meshemu.model.names import lab_name_error
from meshemu.model.plan import build_plan
from meshemu.model.topology import Topology


def _lab_or_file(args: argparse.Namespace) -> tuple[LabPlan, Topology]:
    """A topology file's plan, or the plan of the running lab of that name."""
    path = Path(args.source)
    if os.path.lexists(path) or lab_name_error(args.source) is not None:
        topo = load_topology(path, name=args.name)  # ConfigError names a missing file
        return build_plan(topo), topo
    try:
        state = resolve_lab(args.source)
    except UsageError as err:
        raise UsageError(f"{args.source!r} is no file, and {err}") from None
    return state.plan(), state.topology()


def _router_configs(plan: LabPlan) -> dict[str, str]:
    """The text of each router's own BIRD configuration, copied into the export."""
    out = {}
    for router in plan.routers:
        path = router.bgp.config_file if router.bgp is not None else None
        if path is not None:
            out[router.name] = read_input(Path(path))
    return out


def _unwritable(where: str, path: Path, err: OSError) -> ConfigError:
    return ConfigError(
        [
            Problem(
                where,
                f"cannot write {path}: {err.strerror or err}",
                "choose a folder you can write (-o), or create its parent first",
            )
        ]
    )


@contextmanager
def _fresh_dir(destination: Path, force: bool) -> Iterator[Path]:
    """A temporary folder beside `destination` that becomes it when the block succeeds."""
    if destination.exists() and not destination.is_dir():
        raise ConfigError([Problem("-o", f"{destination} is not a folder", "give a folder")])
    if destination.is_dir() and any(destination.iterdir()) and not force:
        raise ConfigError(
            [Problem("-o", f"{destination} exists and is not empty", "add --force to replace it")]
        )
    parent = destination.parent
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=parent))
    except OSError as err:
        # Named as the user gave it: `cannot write /proc/x`, not the parent mkdtemp tried.
        raise _unwritable("-o", destination, err) from None
    old: Path | None = None
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp's 0700 would keep the lab's files from its user's tools
        if destination.is_dir() and any(destination.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old.", dir=parent))
            os.rename(destination, old / "previous")
        os.rename(tmp, destination)  # onto nothing, or an empty folder
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "previous").exists() and not destination.exists():
            os.rename(old / "previous", destination)  # put the previous export back
        raise _unwritable("-o", destination, err) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def cmd_export_clab(args: argparse.Namespace) -> int:
    plan, topo = _lab_or_file(args)
    images = Images(node=args.node_image, router=args.router_image, host=args.host_image)
    result = convert_out(
        plan, topo, fabric=args.fabric, images=images, router_configs=_router_configs(plan)
    )
    destination = Path(args.output if args.output else f"{plan.name}-clab")
    with _fresh_dir(destination, args.force) as tmp:
        try:
            for relative, text in result.files:
                path = tmp / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                if relative.endswith(".sh"):
                    path.chmod(0o755)
        except OSError as err:
            raise _unwritable("-o", tmp, err) from None
    say(
        f"wrote {destination}/{result.topology_file} and {len(result.files) - 1} files beside "
        f"it: lab {plan.name}, {len(plan.nodes)} nodes, {len(plan.routers)} routers, "
        f"{len(plan.subnets)} subnets"
    )
    if result.bridges:
        # A path, not `cd DIR && ...`: the deploy line below is relative to where the user is.
        say(f"  host bridges to create first: sudo {destination / 'bridges.sh'} up")
    say(f"  then: sudo containerlab deploy -t {destination}/{result.topology_file}")
    return EXIT_OK


def cmd_import_clab(args: argparse.Namespace) -> int:
    source = Path(args.file)
    text = read_input(source)
    documents = parse_yaml(text, str(source))
    if len(documents) != 1:
        raise ConfigError(
            [Problem(str(source), "is not one YAML document", "a containerlab file is one")]
        )
    output = Path(args.output) if args.output else None
    data = convert_in(
        documents[0],
        str(source),
        name=args.name,
        base_dir=str(source.parent),
        out_dir=str((output or Path(".")).parent),
    )
    rendered = f"# Imported by `meshemu import clab` from {source.name}\n" + yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    # The imported topology is checked as `validate` would check it, before it is written.
    where = str(output) if output else "the imported topology"
    topo = load_topology_text(rendered, where, str(data.get("name")))
    if output is None:
        sys.stdout.write(rendered)
        return EXIT_OK
    _write_file(output, rendered)
    say(
        f"wrote {output}: lab {topo.name}, {len(topo.nodes)} nodes, {len(topo.routers)} routers, "
        f"{len(topo.subnets)} subnets"
    )
    return EXIT_OK


def _write_file(path: Path, text: str) -> None:
    """`text` into `path` whole or not at all."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as err:
        raise _unwritable("-o", path, err) from None
    try:
        with os.fdopen(fd, "w") as stream:
            stream.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _unwritable("-o", path, err) from None


def add_commands(sub: Any) -> None:
    p = sub.add_parser("export", help="write a lab in another tool's format")
    formats = p.add_subparsers(dest="format", required=True)
    p = formats.add_parser(
        "clab",
        help="a containerlab topology of the lab (Docker; Kubernetes through clabernetes)",
        description="Write DIR/<lab>.clab.yml and the BIRD configurations it mounts.",
    )
    p.add_argument("source", metavar="LAB|FILE", help="a running lab, or a topology or bundle")
    p.add_argument("-o", "--output", metavar="DIR", help="folder to create (default: <lab>-clab)")
    p.add_argument("--force", action="store_true", help="replace DIR if it is not empty")
    p.add_argument("--name", help="lab name, for a FILE (default: from the file)")
    p.add_argument(
        "--fabric",
        choices=FABRICS,
        default="bridge",
        help="subnets of three or more members as host bridges (containerlab) or as switch "
        "containers (clabernetes, which takes point-to-point links only)",
    )
    p.add_argument("--node-image", default=NODE_IMAGE, help="image with Calico's BIRD 1.x")
    p.add_argument("--router-image", default=ROUTER_IMAGE, help="image with BIRD 2")
    p.add_argument("--host-image", default=HOST_IMAGE, help="image for switches and outside")
    p.set_defaults(func=cmd_export_clab)

    p = sub.add_parser("import", help="read a lab from another tool's format")
    formats = p.add_subparsers(dest="format", required=True)
    p = formats.add_parser(
        "clab",
        help="a containerlab topology as a native topology",
        description="Read a containerlab topology (nodes labelled with meshemu.role) and write "
        "the native topology (to stdout without -o).",
    )
    p.add_argument("file", help="the containerlab topology (*.clab.yml)")
    p.add_argument("-o", "--output", metavar="FILE", help="topology file to write")
    p.add_argument("--name", help="lab name (default: the containerlab topology's name)")
    p.set_defaults(func=cmd_import_clab)
