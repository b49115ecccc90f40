"""Network policy in a Calico resource bundle: which documents are policies or namespaces, and
where they go in the native topology (pure).

Owns recognising a bundle's Kubernetes `NetworkPolicy` (networking.k8s.io/v1), Calico
`NetworkPolicy` and `GlobalNetworkPolicy` (projectcalico.org/v3) and v1 `Namespace` (for the
labels namespaceSelectors match), checking each where the bundle wrote it (`model.policy`), and
putting them into the topology's `policies:` and `namespaces:` with their origins, so that a
later problem names the bundle's document. The bundle reader (`model.calico_bundle`) calls it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from meshemu.errors import Problem
from meshemu.model.calico_inventory import Resources
from meshemu.model.policy import read_policy
from meshemu.model.policy_resources import CALICO_API, K8S_API, NamespaceResource
from meshemu.model.topology import problems_from_validation

_POLICY_KINDS = {
    ("NetworkPolicy", K8S_API),
    ("NetworkPolicy", CALICO_API),
    ("GlobalNetworkPolicy", CALICO_API),
}


def read_policy_resource(
    body: dict[str, Any], loc: str, found: Resources, problems: list[Problem]
) -> bool:
    """Take a policy or Namespace document; False for any other kind (not handled here)."""
    kind, api = body.get("kind"), body.get("apiVersion")
    if kind == "Namespace" and api == "v1":
        try:
            namespace = NamespaceResource.model_validate(
                {k: v for k, v in body.items() if k != "status"}
            )
        except ValidationError as err:
            problems.extend(problems_from_validation(err, loc))
            return True
        found.namespaces[namespace.metadata.name] = (loc, namespace.metadata.labels)
        return True
    if (kind, api) not in _POLICY_KINDS:
        return False
    given = {k: v for k, v in body.items() if k != "status"}
    obj, found_problems = read_policy(given, loc)
    problems.extend(found_problems)
    if obj is not None:
        found.policies.append((loc, given))
    return True


def add_policies(data: dict[str, Any], origins: dict[str, str], found: Resources) -> None:
    """The bundle's policies and namespaces into the topology's data, each with its origin."""
    if found.policies:
        data["policies"] = [body for _, body in found.policies]
        for index, (loc, _) in enumerate(found.policies):
            origins[f"policies[{index}]"] = loc
    if found.namespaces:
        data["namespaces"] = {
            name: {"labels": labels} for name, (_, labels) in found.namespaces.items()
        }
        for name, (loc, _) in found.namespaces.items():
            origins[f"namespaces.{name}"] = loc
