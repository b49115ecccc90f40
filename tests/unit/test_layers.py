"""The package's layers point one way: no import cycle between modules or between meshemu's
packages, and the pure layers (model, report, verify's checks and observation types) import
without pyroute2, scapy or ExaBGP."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "meshemu"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != name:
                found.add(target)
    return found


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def _graph() -> dict[str, set[str]]:
    known = _modules()
    # A package's __init__ re-exports its modules: it is the package's face, not a layer.
    return {
        name: _imports(name, path, known)
        for name, path in known.items()
        if path.name != "__init__.py"
    }


def test_no_import_cycle_between_modules() -> None:
    assert _cycle(_graph()) is None


def test_no_import_cycle_between_packages() -> None:
    def top(name: str) -> str:
        return ".".join(name.split(".")[:2])

    edges: dict[str, set[str]] = {}
    for name, targets in _graph().items():
        edges.setdefault(top(name), set()).update(top(t) for t in targets if top(t) != top(name))
    assert _cycle(edges) is None


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


PURE = [
    name
    for name in _modules()
    if name.startswith(("meshemu.model", "meshemu.report"))
    or name
    in (
        "meshemu.errors",
        "meshemu.verify.checks",
        "meshemu.verify.observation",
        "meshemu.verify.fib",
        "meshemu.verify.results",
        "meshemu.verify.routes",
        "meshemu.verify.snapshot",
    )
]


@pytest.mark.parametrize("module", sorted(PURE))
def test_pure_layers_import_without_kernel_or_speaker_libraries(module: str) -> None:
    code = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        "print(','.join(x for x in ('pyroute2', 'scapy', 'exabgp') if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("module", ["meshemu.controlplane.agent", "meshemu.controlplane.launcher"])
def test_per_node_processes_stay_small(module: str) -> None:
    """Every node runs an agent (and the launcher forks every speaker): neither may load the
    input models, netlink or graph libraries, which would cost megabytes per node."""
    heavy = ("pydantic", "yaml", "networkx", "pyroute2", "scapy")
    code = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        f"print(','.join(x for x in {heavy!r} if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
