"""Network policy as the user writes it: the input boundary of policy (pydantic v2, unknown
fields rejected).

Owns the shape of the three policy kinds a topology's `policies:` list and a bundle accept,
with the checks pydantic can make alone (types, ranges, name syntax):
- Kubernetes `NetworkPolicy` (networking.k8s.io/v1: podSelector, policyTypes, ingress `from`
  / egress `to` peers with podSelector, namespaceSelector or ipBlock, ports with protocol,
  number or name, endPort), validated as the API server does (k8s.io/kubernetes
  pkg/apis/networking/validation: one of ipBlock or selectors, endPort only with a numeric
  port and not below it, ports 1-65535, port names IANA service names);
- Calico `NetworkPolicy` and `GlobalNetworkPolicy` (projectcalico.org/v3, api/pkg/apis/
  projectcalico/v3/policy_common.go, networkpolicy.go, globalnetworkpolicy.go): order,
  selector, types, rules with action, ipVersion, protocol, icmp, source/destination with nets,
  notNets, selector, notSelector, namespaceSelector, ports, notPorts.
Selectors are only text here; `model.policy` parses them, checks what needs more than one
field, and turns the three kinds into one form (Calico's, as kube-controllers converts).
The topology keeps each item as the mapping it was written (`Topology.policies`), so that a
scenario can add and remove them whole; `model.policy` validates each with `policy_model`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    Strict,
    field_validator,
    model_validator,
)

from meshemu.model.calico_resources import Metadata as ResourceMetadata
from meshemu.model.rules import LABEL_KEY, LABEL_VALUE
from meshemu.model.topology import (
    DNS_SUBDOMAIN,
    Bool,
    InputModel,
    Int,
    Text,
    check_dns_label,
    check_port_name,
    labels_as_text,
)

K8S_API = "networking.k8s.io/v1"
CALICO_API = "projectcalico.org/v3"

# Kubernetes port names (IANA_SVC_NAME, RFC 6335), as the API server checks a NetworkPolicy's.


def _port_name(value: str) -> str:
    """A named port: Kubernetes' IANA_SVC_NAME, as pods' ports are checked."""
    return check_port_name(value)


def check_label_key(key: str) -> str:
    if not LABEL_KEY.fullmatch(key):
        raise ValueError(
            f"{key!r} is not a label key: an optional DNS prefix and '/', then at most 63 "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return key


def _labels(value: dict[str, str]) -> dict[str, str]:
    for key, text in value.items():
        check_label_key(key)
        if not LABEL_VALUE.fullmatch(text):
            raise ValueError(
                f"label value {text!r} (of {key}) is not a label value: at most 63 letters, "
                "digits, '-', '_' or '.', starting and ending with a letter or digit"
            )
    return value


Labels = Annotated[dict[Text, Text], AfterValidator(_labels)]


def _k8s_port(value: object) -> object:
    """A NetworkPolicyPort's port: 1-65535 or a port name (one message, not one per branch)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"write a port number or a port name, not {value!r}")
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise ValueError(f"port {value} is out of range (1-65535)")
        return value
    return _port_name(value)


def _calico_port(value: object) -> object:
    """A Calico port: 0-65535, "low:high", or a name; ranges are checked by `model.policy`."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"write a port, a range like 80:90 or a port name, not {value!r}")
    if isinstance(value, int) and not 0 <= value <= 65535:
        raise ValueError(f"port {value} is out of range (0-65535)")
    if isinstance(value, str) and ":" not in value and not value.isdigit():
        return _port_name(value)
    return value


K8sPortNumber = Annotated[int, Strict(), Field(ge=1, le=65535)]


class Metadata(ResourceMetadata):
    """A policy's metadata as `kubectl get -o yaml` writes it (the same fields as every
    resource's); the name is an object name, the namespace `default` unless given."""

    name: Annotated[Text, AfterValidator(lambda v: _object_name(v))]
    namespace: Annotated[Text, AfterValidator(lambda v: check_dns_label(v, "namespace"))] = (
        "default"
    )


def _object_name(value: str) -> str:
    if not DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes object name: lower-case letters, digits, '-' and "
            "'.', starting and ending with a letter or digit, at most 253 characters"
        )
    return value


# --------------------------------------------------------------------------------------------
# Kubernetes NetworkPolicy (k8s.io/api/networking/v1/types.go).


class Requirement(InputModel):
    key: Annotated[Text, AfterValidator(check_label_key)]
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[Text] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values(self) -> Requirement:
        # apimachinery ValidateLabelSelectorRequirement.
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        for value in self.values:
            if not LABEL_VALUE.fullmatch(value):
                raise ValueError(f"{value!r} is not a label value")
        return self


class LabelSelector(InputModel):
    """A Kubernetes label selector: every matchLabels pair and every expression must hold;
    empty selects everything."""

    match_labels: Labels = Field(default_factory=dict, alias="matchLabels")
    match_expressions: list[Requirement] = Field(default_factory=list, alias="matchExpressions")

    @field_validator("match_labels", mode="before")
    @classmethod
    def _as_text(cls, value: object) -> object:
        return labels_as_text(value)


class IPBlock(InputModel):
    cidr: Text
    except_: list[Text] = Field(default_factory=list, alias="except")


class K8sPeer(InputModel):
    pod_selector: LabelSelector | None = Field(default=None, alias="podSelector")
    namespace_selector: LabelSelector | None = Field(default=None, alias="namespaceSelector")
    ip_block: IPBlock | None = Field(default=None, alias="ipBlock")

    @model_validator(mode="after")
    def _one_kind(self) -> K8sPeer:
        # networking validation ValidateNetworkPolicyPeer: exactly one of ipBlock or selectors.
        selectors = self.pod_selector is not None or self.namespace_selector is not None
        if self.ip_block is not None and selectors:
            raise ValueError(
                "a peer is either an ipBlock or pod/namespace selectors, not both (write two peers)"
            )
        if self.ip_block is None and not selectors:
            raise ValueError("a peer needs podSelector, namespaceSelector or ipBlock")
        return self


class K8sPort(InputModel):
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: Annotated[int | str, BeforeValidator(_k8s_port)] | None = None
    end_port: K8sPortNumber | None = Field(default=None, alias="endPort")

    @model_validator(mode="after")
    def _end(self) -> K8sPort:
        if self.end_port is not None:
            if not isinstance(self.port, int):
                raise ValueError("endPort needs a numeric port (not a name, not absent)")
            if self.end_port < self.port:
                raise ValueError(f"endPort {self.end_port} is below port {self.port}")
        return self


class K8sIngressRule(InputModel):
    from_: list[K8sPeer] = Field(default_factory=list, alias="from")
    ports: list[K8sPort] = Field(default_factory=list)


class K8sEgressRule(InputModel):
    to: list[K8sPeer] = Field(default_factory=list)
    ports: list[K8sPort] = Field(default_factory=list)


class K8sPolicySpec(InputModel):
    pod_selector: LabelSelector = Field(alias="podSelector")
    policy_types: list[Literal["Ingress", "Egress"]] | None = Field(
        default=None, alias="policyTypes"
    )
    ingress: list[K8sIngressRule] = Field(default_factory=list)
    egress: list[K8sEgressRule] = Field(default_factory=list)


class K8sNetworkPolicy(InputModel):
    api_version: Literal["networking.k8s.io/v1"] = Field(alias="apiVersion")
    kind: Literal["NetworkPolicy"]
    metadata: Metadata
    spec: K8sPolicySpec


# --------------------------------------------------------------------------------------------
# Calico NetworkPolicy / GlobalNetworkPolicy (api/pkg/apis/projectcalico/v3/policy_common.go).

# A Calico port: a number, "low:high", or a named port (numorstring.Port); 0-65535.
CalicoPort = Annotated[int | str, BeforeValidator(_calico_port)]
# A protocol: a name (numorstring.Protocol, any case as Calico's validator folds it) or 1-255.
CalicoProtocol = Annotated[int, Strict(), Field(ge=1, le=255)] | Text


class IcmpSpec(InputModel):
    type: Int | None = Field(default=None, ge=0, le=254)
    code: Int | None = Field(default=None, ge=0, le=255)

    @model_validator(mode="after")
    def _code_needs_type(self) -> IcmpSpec:
        if self.code is not None and self.type is None:
            raise ValueError("an ICMP code needs a type")
        return self


class EntityRule(InputModel):
    nets: list[Text] = Field(default_factory=list)
    not_nets: list[Text] = Field(default_factory=list, alias="notNets")
    selector: Text | None = None
    not_selector: Text | None = Field(default=None, alias="notSelector")
    namespace_selector: Text | None = Field(default=None, alias="namespaceSelector")
    ports: list[CalicoPort] = Field(default_factory=list)
    not_ports: list[CalicoPort] = Field(default_factory=list, alias="notPorts")
    # Read, not emulated (model.policy lists them): matching by service account or Service.
    service_accounts: dict[Text, Any] | None = Field(default=None, alias="serviceAccounts")
    services: dict[Text, Any] | None = None


class CalicoRule(InputModel):
    action: Literal["Allow", "Deny", "Log", "Pass"]
    ip_version: Literal[4, 6] | None = Field(default=None, alias="ipVersion")
    protocol: CalicoProtocol | None = None
    not_protocol: CalicoProtocol | None = Field(default=None, alias="notProtocol")
    icmp: IcmpSpec | None = None
    not_icmp: IcmpSpec | None = Field(default=None, alias="notICMP")
    source: EntityRule = Field(default_factory=EntityRule)
    destination: EntityRule = Field(default_factory=EntityRule)
    http: dict[Text, Any] | None = None
    metadata: dict[Text, Any] | None = None


class CalicoPolicySpec(InputModel):
    """The fields of NetworkPolicySpec and GlobalNetworkPolicySpec; `namespaceSelector` and the
    host-endpoint flags are GlobalNetworkPolicy's only (`model.policy` checks that)."""

    order: Annotated[float, Strict()] | Annotated[int, Strict()] | None = None
    tier: Text = "default"
    selector: Text = ""
    types: list[Literal["Ingress", "Egress"]] | None = None
    ingress: list[CalicoRule] = Field(default_factory=list)
    egress: list[CalicoRule] = Field(default_factory=list)
    namespace_selector: Text | None = Field(default=None, alias="namespaceSelector")
    service_account_selector: Text | None = Field(default=None, alias="serviceAccountSelector")
    do_not_track: Bool = Field(default=False, alias="doNotTrack")
    pre_dnat: Bool = Field(default=False, alias="preDNAT")
    apply_on_forward: Bool = Field(default=False, alias="applyOnForward")
    performance_hints: list[Text] = Field(default_factory=list, alias="performanceHints")


class CalicoNetworkPolicy(InputModel):
    api_version: Literal["projectcalico.org/v3"] = Field(alias="apiVersion")
    kind: Literal["NetworkPolicy"]
    metadata: Metadata
    spec: CalicoPolicySpec


class GlobalNetworkPolicy(InputModel):
    api_version: Literal["projectcalico.org/v3"] = Field(alias="apiVersion")
    kind: Literal["GlobalNetworkPolicy"]
    metadata: Metadata
    spec: CalicoPolicySpec


PolicyObject = K8sNetworkPolicy | CalicoNetworkPolicy | GlobalNetworkPolicy


def policy_model(value: object) -> type[PolicyObject]:
    """Which kind a `policies:` item is, by apiVersion and kind: Kubernetes' when neither says
    otherwise, so that its errors name the fields to add."""
    api = value.get("apiVersion") if isinstance(value, dict) else None
    kind = value.get("kind") if isinstance(value, dict) else None
    if kind == "GlobalNetworkPolicy":
        return GlobalNetworkPolicy
    if api == CALICO_API:
        return CalicoNetworkPolicy
    return K8sNetworkPolicy


class NamespaceMetadata(ResourceMetadata):
    name: Annotated[Text, AfterValidator(lambda v: check_dns_label(v, "namespace"))]
    labels: Labels = Field(default_factory=dict)


class NamespaceResource(InputModel):
    """A v1 Namespace in a bundle: its labels are what namespaceSelectors match."""

    api_version: Literal["v1"] = Field(alias="apiVersion")
    kind: Literal["Namespace"]
    metadata: NamespaceMetadata
    spec: dict[Text, Any] = Field(default_factory=dict)
