"""What a Calico bundle holds once its documents are read: each resource by kind and name, with
the place in the bundle it came from.

`calico_bundle` fills a `Resources` from the documents (with `calico_secrets` and
`calico_installation` adding Secrets' keys and the Installation's pools); `calico_nodes`,
`calico_bgp` and `calico` read it to build the native topology. Only the records live here:
no parsing, no checks, no conversion. The kinds are those of Calico's v3 API
(projectcalico/calico `api/pkg/apis/projectcalico/v3/`), the operator's Installation
(tigera/operator `api/v1/installation_types.go`) and Kubernetes core/v1 Secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshemu.model.calico_resources import (
    BGPConfigurationSpec,
    BGPPeerSpec,
    FelixEmulatedFields,
    InstallationSpec,
    IPAMConfigurationSpec,
    Metadata,
    NodeResourceSpec,
)
from meshemu.model.service_resources import EndpointSliceResource, ServiceResource


@dataclass(frozen=True)
class Doc:
    """One resource of the bundle and where it is: `document 3` or `document 3.items[1]`."""

    where: str
    line: int | None
    body: dict[Any, Any]

    def at(self) -> str:
        """`document 3 (line 12)`: where a message that names two places says it is."""
        return f"{self.where} (line {self.line})" if self.line is not None else self.where

    def place(self) -> str:
        """`document 3, line 12`: the bundle position a location carries in parentheses."""
        return f"{self.where}, line {self.line}" if self.line is not None else self.where


@dataclass(frozen=True)
class SecretValue:
    """One decoded key of a Secret and where it is written: `key_at` the key
    (`Secret/bgp.data.peer`), `place` its document (`document 4, line 12`)."""

    value: str
    key_at: str
    place: str


@dataclass
class Resources:
    """What the documents hold, by kind, each with its location."""

    nodes: dict[str, tuple[str, Metadata, NodeResourceSpec]] = field(default_factory=dict)
    pools: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    peers: dict[str, tuple[str, BGPPeerSpec]] = field(default_factory=dict)
    bgp_default: tuple[str, BGPConfigurationSpec] | None = None
    per_node_bgp: dict[str, tuple[str, BGPConfigurationSpec]] = field(default_factory=dict)
    ipam_config: tuple[str, IPAMConfigurationSpec] | None = None
    # FelixConfiguration `default` and `node.<name>` (by the Kubernetes node name).
    felix_default: tuple[str, FelixEmulatedFields] | None = None
    per_node_felix: dict[str, tuple[str, FelixEmulatedFields]] = field(default_factory=dict)
    # (namespace, name, key) -> value
    secrets: dict[tuple[str, str, str], SecretValue] = field(default_factory=dict)
    installations: list[tuple[str, InstallationSpec]] = field(default_factory=list)
    unsupported: list[tuple[str, str]] = field(default_factory=list)
    # Network policies as written (`model.policy` reads them), and v1 Namespaces' labels.
    policies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    namespaces: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    # Kubernetes Services and EndpointSlices (`model.services_bundle` converts them).
    services: list[tuple[str, ServiceResource]] = field(default_factory=list)
    endpoint_slices: list[tuple[str, EndpointSliceResource]] = field(default_factory=list)
    # (kind, namespace, name) -> the document that defined it first
    seen: dict[tuple[str, str, str], Doc] = field(default_factory=dict)
