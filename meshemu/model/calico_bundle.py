"""A Calico bundle's YAML documents read into `Resources`: each document's envelope checked,
`...List` and `List` documents flattened, each resource validated against its model and filed
by kind and name, and every problem located (`document 3.kind`, `BGPPeer/p.spec.peerIP`).

Nothing is silently lost: a resource defined twice, a document of the wrong shape, a kind or
apiVersion meshemu does not read, a BGPConfiguration or FelixConfiguration named neither
`default` nor `node.<name>`, are each a located problem. Kinds and their group versions follow
projectcalico/calico `api/pkg/apis/projectcalico/v3/` (`register.go`, one file a kind) and
`libcalico-go/lib/apis/internalapi/node.go` (Node); the operator's Installation is
tigera/operator `api/v1/installation_types.go`. A name is unique per kind (a Secret's per
namespace), as in the datastore. Secrets' keys are decoded by `calico_secrets`, Installation
pools added by `calico_installation`, the models are `calico_resources`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from meshemu.errors import Problem
from meshemu.model.calico_installation import add_installation_pools, check_tutorial_pools
from meshemu.model.calico_inventory import Doc, Resources
from meshemu.model.calico_resources import (
    CALICO_API,
    OPERATOR_API,
    SPEC_MODELS,
    BGPConfigurationSpec,
    BGPPeerSpec,
    FelixConfigurationSpec,
    FelixEmulatedFields,
    InstallationSpec,
    IPAMConfigurationSpec,
    IPPoolResourceSpec,
    Metadata,
    NodeResourceSpec,
    SecretResource,
)
from meshemu.model.calico_secrets import store_secret
from meshemu.model.policy_bundle import read_policy_resource
from meshemu.model.services_bundle import read_service_resource
from meshemu.model.topology import loc_part, problems_from_validation

_KNOWN_KINDS = ", ".join([*SPEC_MODELS, "Installation (operator.tigera.io/v1)", "Secret (v1)"])


def read_bundle(
    documents: list[Any], lines: list[int] | None, problems: list[Problem]
) -> Resources:
    """Every resource the documents hold, with the Installations' pools among the IPPools.

    `lines`: the line each document starts on, for messages that name a place in the bundle
    (a resource defined twice, a Secret's key).
    """
    found = Resources()
    for doc in _expand_lists(documents, problems, lines):
        _read_resource(doc, found, problems)
    # After every document: an Installation pool takes the name of an IPPool with its CIDR.
    for loc, inst in found.installations:
        add_installation_pools(loc, inst, found, problems)
    return found


def looks_like_bundle(documents: list[Any]) -> bool:
    """Calico resources, not a native topology: some document says its kind or apiVersion."""
    return any(
        isinstance(doc, dict) and ("apiVersion" in doc or "kind" in doc) for doc in documents
    )


def _type_name(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _expand_lists(
    documents: list[Any], problems: list[Problem], lines: list[int] | None
) -> list[Doc]:
    """Flatten `...List` and `List` documents; each resource keeps its location."""
    out: list[Doc] = []
    for index, doc in enumerate(documents, start=1):
        where = f"document {index}"
        line = lines[index - 1] if lines is not None and index - 1 < len(lines) else None
        if doc is None:
            continue
        if not isinstance(doc, dict):
            problems.append(
                Problem(
                    where,
                    f"is {_type_name(doc)}, not a mapping",
                    "each YAML document is one resource (apiVersion, kind, metadata, spec)",
                )
            )
            continue
        kind = doc.get("kind")
        if not (isinstance(kind, str) and kind.endswith("List")):
            out.append(Doc(where, line, doc))
            continue
        items = doc.get("items")
        if items is None:
            items = []
        if not isinstance(items, list):
            problems.append(
                Problem(
                    f"{where}.items",
                    f"is {_type_name(items)}, not a list",
                    f"a {kind} holds its resources as a list under items",
                )
            )
            continue
        for item_index, item in enumerate(items):
            item_where = f"{where}.items[{item_index}]"
            if not isinstance(item, dict):
                problems.append(Problem(item_where, f"is {_type_name(item)}, not a mapping", ""))
                continue
            inherited = {"apiVersion": doc.get("apiVersion")}
            if kind != "List":
                inherited["kind"] = kind[:-4]
            out.append(Doc(item_where, line, {**inherited, **item}))
    return out


def _resource_loc(doc: Doc, kind: str) -> str:
    meta = doc.body.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if isinstance(name, str) and name and loc_part(name) == name:
        return f"{kind}/{name}"
    return f"{doc.where} ({kind})"


def _shape_problems(doc: Doc, kind: object, api: object) -> list[Problem]:
    """The envelope every resource shares: text kind and apiVersion, mapping metadata/spec."""
    problems = []
    if kind is None:
        problems.append(
            Problem(
                f"{doc.where}.kind",
                "is missing",
                f"say what the resource is: {_KNOWN_KINDS}",
            )
        )
    elif not isinstance(kind, str):
        problems.append(
            Problem(
                f"{doc.where}.kind", f"is {_type_name(kind)}, not text", f"one of {_KNOWN_KINDS}"
            )
        )
    if api is not None and not isinstance(api, str):
        problems.append(
            Problem(
                f"{doc.where}.apiVersion",
                f"is {_type_name(api)}, not text",
                f"write {CALICO_API}",
            )
        )
    for key in ("metadata", "spec"):
        value = doc.body.get(key)
        if value is not None and not isinstance(value, dict):
            problems.append(
                Problem(
                    f"{doc.where}.{key}",
                    f"is {_type_name(value)}, not a mapping",
                    "write key: value lines under it",
                )
            )
    return problems


def _remember(
    doc: Doc, kind: str, meta: Metadata, found: Resources, problems: list[Problem]
) -> bool:
    """Record a resource by kind and name; a second one of the same name is a problem."""
    namespace = (meta.namespace or "") if kind == "Secret" else ""
    key = (kind, namespace, meta.name)
    first = found.seen.get(key)
    if first is None:
        found.seen[key] = doc
        return True
    problems.append(
        Problem(
            _resource_loc(doc, kind),
            f"{kind} {meta.name!r} is defined twice: at {first.at()} and at {doc.at()}; "
            "the later would silently replace the earlier",
            "keep one of them, or give the other its own name",
        )
    )
    return False


def _read_resource(doc: Doc, found: Resources, problems: list[Problem]) -> None:
    kind = doc.body.get("kind")
    api = doc.body.get("apiVersion")
    shape = _shape_problems(doc, kind, api)
    if shape:
        problems += shape
        return
    assert isinstance(kind, str)
    if kind == "CalicoNetwork":
        problems.append(
            Problem(
                f"{doc.where} (kind CalicoNetwork)",
                "CalicoNetwork is not a resource kind: calicoNetwork is a field of the "
                "operator's Installation",
                "write `apiVersion: operator.tigera.io/v1`, `kind: Installation`, and put "
                "the pools under spec.calicoNetwork.ipPools (each with cidr, blockSize and "
                "encapsulation: IPIP | IPIPCrossSubnet | VXLAN | VXLANCrossSubnet | None), "
                "or give projectcalico.org/v3 IPPool resources",
            )
        )
        check_tutorial_pools(doc.body, doc.where, problems)
        return
    if kind == "Secret" and api == "v1":
        _read_secret(doc, found, problems)
        return
    if kind == "Installation":
        _read_installation(doc, api, found, problems)
        return
    if read_policy_resource(doc.body, _resource_loc(doc, kind), found, problems):
        return
    if read_service_resource(doc.body, _resource_loc(doc, kind), found, problems):
        return
    if kind not in SPEC_MODELS:
        problems.append(
            Problem(
                f"{doc.where}.kind",
                f"unsupported kind {kind!r} (apiVersion {api!r})",
                "a bundle holds projectcalico.org/v3 Node, IPPool, BGPConfiguration, "
                "BGPPeer, BGPFilter, IPAMConfiguration, FelixConfiguration, an operator "
                "Installation, v1 Secrets for BGP passwords, or Kubernetes Services (v1) and "
                "EndpointSlices (discovery.k8s.io/v1)",
            )
        )
        return
    if api != CALICO_API:
        problems.append(
            Problem(f"{doc.where}.apiVersion", f"{api!r} for {kind}", f"use {CALICO_API}")
        )
        return
    _read_calico_resource(doc, kind, found, problems)


def _read_calico_resource(doc: Doc, kind: str, found: Resources, problems: list[Problem]) -> None:
    loc = _resource_loc(doc, kind)
    for key in sorted(
        set(doc.body) - {"apiVersion", "kind", "metadata", "spec", "status"}, key=str
    ):
        problems.append(Problem(f"{loc}.{loc_part(key)}", "unknown field", "remove it"))
    try:
        meta = Metadata.model_validate(doc.body.get("metadata") or {})
    except ValidationError as err:
        problems += problems_from_validation(err, f"{doc.where}.metadata")
        return
    try:
        spec = SPEC_MODELS[kind].model_validate(doc.body.get("spec") or {})
    except ValidationError as err:
        problems += problems_from_validation(err, f"{loc}.spec")
        return
    if not _remember(doc, kind, meta, found, problems):
        return
    if isinstance(spec, NodeResourceSpec):
        found.nodes[meta.name] = (loc, meta, spec)
    elif isinstance(spec, IPPoolResourceSpec):
        found.pools[meta.name] = (
            loc + ".spec",
            spec.model_dump(exclude={"allowedUses", "assignmentMode", "disableNewAllocations"}),
        )
        for fname in ("allowedUses", "assignmentMode", "disableNewAllocations"):
            if getattr(spec, fname) is not None:
                found.unsupported.append(
                    (f"{loc}.spec.{fname}", "IPAM use restrictions are not emulated")
                )
    elif isinstance(spec, BGPPeerSpec):
        found.peers[meta.name] = (loc + ".spec", spec)
    elif isinstance(spec, (BGPConfigurationSpec, FelixConfigurationSpec)):
        _read_config(loc, kind, meta.name, spec, found, problems)
    elif isinstance(spec, IPAMConfigurationSpec):
        _read_ipam_config(loc, meta.name, spec, found, problems)


def _read_config(
    loc: str,
    kind: str,
    name: str,
    spec: BGPConfigurationSpec | FelixEmulatedFields,
    found: Resources,
    problems: list[Problem],
) -> None:
    """A BGPConfiguration or FelixConfiguration: the cluster's `default` or a node's own
    `node.<name>` (libcalico-go/lib/backend/syncersv1/updateprocessors/configurationprocessor.go:
    98); any other name is configuration nothing reads."""
    if name == "default":
        if isinstance(spec, BGPConfigurationSpec):
            found.bgp_default = (loc + ".spec", spec)
        else:
            found.felix_default = (loc + ".spec", spec)
    elif name.startswith("node.") and len(name) > 5:
        if isinstance(spec, BGPConfigurationSpec):
            found.per_node_bgp[name[5:]] = (loc + ".spec", spec)
        else:
            found.per_node_felix[name[5:]] = (loc + ".spec", spec)
    else:
        problems.append(
            Problem(
                f"{loc}.metadata.name",
                f"{kind} {name!r} is neither 'default' nor 'node.<node>'",
                "name it default (the whole cluster) or node.<node name> (one node)",
            )
        )


def _read_ipam_config(
    loc: str, name: str, spec: IPAMConfigurationSpec, found: Resources, problems: list[Problem]
) -> None:
    """Calico accepts only the one named `default` (libcalico-go/lib/clientv3/ipamconfig.go:
    29, 47-52); strictAffinity and maxBlocksPerHost are emulated, the rest listed."""
    if name != "default":
        problems.append(
            Problem(
                f"{loc}.metadata.name",
                'Cannot create an IPAMConfiguration resource with a name other than "default"',
                "name it default",
            )
        )
        return
    found.ipam_config = (loc + ".spec", spec)
    not_emulated = {
        "autoAllocateBlocks": spec.autoAllocateBlocks is False,
        "ipCooldownSeconds": bool(spec.ipCooldownSeconds),
        "kubeVirtVMAddressPersistence": spec.kubeVirtVMAddressPersistence is not None,
    }
    for fname, present in not_emulated.items():
        if present:
            found.unsupported.append(
                (f"{loc}.spec.{fname}", "read, not emulated: meshemu's IPAM ignores it")
            )


def _read_secret(doc: Doc, found: Resources, problems: list[Problem]) -> None:
    loc = _resource_loc(doc, "Secret")
    body = {k: v for k, v in doc.body.items() if k != "status"}
    try:
        secret = SecretResource.model_validate(body)
    except ValidationError as err:
        problems += problems_from_validation(err, loc)
        return
    if not _remember(doc, "Secret", secret.metadata, found, problems):
        return
    store_secret(doc, loc, secret, found, problems)


def _read_installation(doc: Doc, api: object, found: Resources, problems: list[Problem]) -> None:
    loc = _resource_loc(doc, "Installation")
    if api != OPERATOR_API:
        problems.append(
            Problem(f"{doc.where}.apiVersion", f"{api!r} for Installation", f"use {OPERATOR_API}")
        )
        return
    try:
        meta = Metadata.model_validate(doc.body.get("metadata") or {})
    except ValidationError as err:
        problems += problems_from_validation(err, f"{doc.where}.metadata")
        return
    if not _remember(doc, "Installation", meta, found, problems):
        return
    raw_spec = doc.body.get("spec") or {}
    network = raw_spec.get("calicoNetwork") if isinstance(raw_spec, dict) else None
    # IPv6 pools asking for IP-in-IP get the Installation-worded explanation here
    # (encapsulation, not ipipMode), and are not converted so the rules do not repeat it.
    check_tutorial_pools(network, f"{loc}.spec.calicoNetwork", problems)
    try:
        inst = InstallationSpec.model_validate(raw_spec)
    except ValidationError as err:
        problems += problems_from_validation(err, f"{loc}.spec")
        return
    found.installations.append((loc, inst))
