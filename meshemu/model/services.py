"""Pods as workloads (namespace, labels, named ports) and Kubernetes Services over them.

Owns the checks Kubernetes makes on the pods a topology lists (names unique in their
namespace, label syntax, container ports). Pure: no kernel, no processes.
"""

from __future__ import annotations

from meshemu.errors import Problem
from meshemu.model.rules import _check_labels
from meshemu.model.topology import DNS_LABEL, PodSpec, Topology, loc_part


def check_pods(topo: Topology) -> list[Problem]:
    """What Kubernetes would refuse in the pods of a topology's `pods:` lists."""
    problems: list[Problem] = []
    seen: dict[tuple[str, str], str] = {}  # (namespace, name) -> where
    for node_name, node in topo.nodes.items():
        if isinstance(node.pods, int):
            continue
        on_node: set[str] = set()
        for index, spec in enumerate(node.pods):
            where = f"nodes.{loc_part(node_name)}.pods[{index}]"
            problems += _check_pod(spec, where)
            for name in spec.names():
                if not DNS_LABEL.fullmatch(name):
                    problems.append(
                        Problem(
                            f"{where}.replicas",
                            f"pod name {name!r} (name and replica number) is longer than 63 "
                            "characters",
                            "use a shorter name",
                        )
                    )
                    break
                key = (spec.namespace, name)
                if name in on_node or key in seen:
                    problems.append(
                        Problem(
                            f"{where}.name",
                            f"pod {spec.namespace}/{name} is also "
                            f"{seen.get(key, f'nodes.{loc_part(node_name)}')}",
                            "a pod's name is unique in its namespace, and on its node (it names "
                            "the pod's network namespace)",
                        )
                    )
                    break
                on_node.add(name)
                seen[key] = where
    return problems


def _check_pod(spec: PodSpec, where: str) -> list[Problem]:
    problems = _check_labels(spec.labels, f"{where}.labels")
    names: set[str] = set()
    ports: set[tuple[int, str]] = set()
    for index, port in enumerate(spec.ports):
        at = f"{where}.ports[{index}]"
        if port.name is not None:
            if port.name in names:
                problems.append(Problem(f"{at}.name", f"port name {port.name!r} is used twice", ""))
            names.add(port.name)
        if (port.port, port.protocol) in ports:
            problems.append(
                Problem(
                    f"{at}.port",
                    f"{port.port}/{port.protocol} is listed twice",
                    "list each port and protocol once",
                )
            )
        ports.add((port.port, port.protocol))
    return problems
