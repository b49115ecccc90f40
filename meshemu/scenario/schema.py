"""What a scenario file may say: the scenario, its steps and their expectations (pydantic,
unknown fields rejected, every model frozen).

Owns the format only: each step is exactly one action or one `expect`, each expectation names
exactly one kind, names are one printable line, and the number of steps is bounded. Whether a
step can hold in the lab it runs on is `scenario.checks`; reading a file is `scenario.reading`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from meshemu.model.policy import policy_key
from meshemu.model.topology import FilterSpec, NodeSpec, PeerSpec, PoolSpec, Text

MAX_STEPS = 200  # each step that changes the topology plans the whole lab again

Family = Literal["ipv4", "ipv6"]
Path_ = Literal["local", "direct", "ipip", "vxlan", "router"]


def _one_printable_line(value: str) -> str:
    if not value.isprintable():
        raise ValueError("write one line of printable text (no control characters)")
    return value


# A scenario's and a step's name go into reports (terminal, JUnit XML): one short printable
# line, so that no name can inject escape sequences or break the XML.
Label = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_one_printable_line)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class NodeRef(_Strict):
    node: str


class AddNode(NodeSpec):
    name: str


class AddPool(PoolSpec):
    name: str


class AddPeer(PeerSpec):
    name: str


class PodsChange(_Strict):
    node: str
    count: int = Field(default=1, ge=1, le=50)


class SetPods(_Strict):
    """A node's pods replaced whole: a count, or a list of pods as `nodes.<n>.pods` takes
    (checked with the changed topology); pods of the same name keep their address."""

    node: str
    pods: int | list[dict[str, Any]]


class SetPool(_Strict):
    pool: str
    ipip_mode: Literal["Always", "CrossSubnet", "Never"] | None = Field(None, alias="ipipMode")
    vxlan_mode: Literal["Always", "CrossSubnet", "Never"] | None = Field(None, alias="vxlanMode")


class PoolRef(_Strict):
    pool: str


class PeerRef(_Strict):
    peer: str


class RouterRef(_Strict):
    router: str


class SetPeer(PeerSpec):
    """The BGPPeer `peer` with the fields given changed (the rest as it is); a field given as
    null goes back to its default (`password: null`: no password)."""

    peer: str

    def changed(self) -> set[str]:
        """The names (Python names) of the BGPPeer fields this step changes."""
        return self.model_fields_set - {"peer"}

    @model_validator(mode="after")
    def _changes_something(self) -> SetPeer:
        if not self.changed():
            raise ValueError(
                "name the BGPPeer's fields to change, like {peer: rack1-tor, password: s3cret}"
            )
        return self


class SetFilter(FilterSpec):
    """A BGPFilter created or replaced as a whole (`kubectl apply`): its name and rules. The
    BGPPeers that name it in `filters` apply it (`set-peer` attaches it)."""

    name: str


class SetRouter(_Strict):
    """A BGP router's settings changed live: `nodePassword` (null: each node session's own)."""

    router: str
    node_password: Text | None = Field(None, alias="nodePassword")

    @model_validator(mode="after")
    def _changes_something(self) -> SetRouter:
        if "node_password" not in self.model_fields_set:
            raise ValueError("give nodePassword (null for no password of the router's own)")
        return self


class ApplyPolicy(_Strict):
    """A Kubernetes NetworkPolicy or Calico (Global)NetworkPolicy, applied as `kubectl apply`
    does: it replaces the policy of the same kind, namespace and name, or is added. Its
    fields are checked with the changed topology (`model.policy`)."""

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: dict[str, Any]
    spec: dict[str, Any]

    def key(self) -> tuple[str, str, str | None, str]:
        return policy_key(self.model_dump(by_alias=True))


class RemovePolicy(_Strict):
    """The policy to delete, by kind, namespace and name."""

    name: str
    namespace: str = "default"
    kind: Literal["NetworkPolicy", "GlobalNetworkPolicy"] = "NetworkPolicy"
    api_version: Literal["networking.k8s.io/v1", "projectcalico.org/v3"] = Field(
        "networking.k8s.io/v1", alias="apiVersion"
    )

    def key(self) -> tuple[str, str, str | None, str]:
        return policy_key(
            {
                "apiVersion": self.api_version,
                "kind": self.kind,
                "metadata": {"name": self.name, "namespace": self.namespace},
            }
        )


class SnapshotFile(_Strict):
    file: str


class UpAction(_Strict):
    pods: int | None = Field(None, ge=0, le=250)


class RouteExpect(_Strict):
    node: str
    prefix: str | None = None
    to: str | None = None  # a node: its block(s) of `family`
    family: Family = "ipv4"
    present: bool = True
    # an address, a node name (its address of the family) or a router name (its address of the
    # family on the node's subnet)
    via: str | None = None
    dev: str | None = None
    # Who must have written it (the kernel protocol tells): felix, bgp (BIRD or the agent) or
    # local; None: whichever route the kernel uses.
    source: Literal["felix", "bgp", "local"] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> RouteExpect:
        if (self.prefix is None) == (self.to is None):
            raise ValueError("give exactly one of prefix or to (a node whose blocks to look for)")
        return self


class SessionExpect(_Strict):
    node: str
    peer: str  # a node name, a BGP router's name or a peer address
    family: Family = "ipv4"
    state: Literal["established", "down"] = "established"


class ReachExpect(_Strict):
    from_: str = Field(alias="from")  # node/pod
    to: str  # node/pod
    family: Family = "ipv4"
    reachable: bool = True
    path: Path_ | None = None


class MatrixExpect(_Strict):
    paths: bool = True  # also require the planned path of every cell, as seen on the wire


class ConvergedExpect(_Strict):
    pass


class Expectation(_Strict):
    converged: ConvergedExpect | None = None
    route: RouteExpect | None = None
    session: SessionExpect | None = None
    reachable: ReachExpect | None = None
    matrix: MatrixExpect | None = None
    snapshot: SnapshotFile | None = None
    timeout: float = Field(default=30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _exactly_one(self) -> Expectation:
        given = [k for k in EXPECT_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"an expectation names exactly one of {', '.join(EXPECT_KINDS)} (got "
                f"{', '.join(given) or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in EXPECT_KINDS if getattr(self, k) is not None)


EXPECT_KINDS = ("converged", "route", "session", "reachable", "matrix", "snapshot")


class Step(_Strict):
    name: Label | None = None
    up: UpAction | None = None
    link_down: NodeRef | None = Field(None, alias="link-down")
    link_up: NodeRef | None = Field(None, alias="link-up")
    stop_speaker: NodeRef | None = Field(None, alias="stop-speaker")
    start_speaker: NodeRef | None = Field(None, alias="start-speaker")
    restart_speaker: NodeRef | None = Field(None, alias="restart-speaker")
    kill_agent: NodeRef | None = Field(None, alias="kill-agent")
    stop_reflector: NodeRef | None = Field(None, alias="stop-reflector")
    stop_router: RouterRef | None = Field(None, alias="stop-router")
    start_router: RouterRef | None = Field(None, alias="start-router")
    add_node: AddNode | None = Field(None, alias="add-node")
    remove_node: NodeRef | None = Field(None, alias="remove-node")
    add_pods: PodsChange | None = Field(None, alias="add-pods")
    remove_pods: PodsChange | None = Field(None, alias="remove-pods")
    set_pods: SetPods | None = Field(None, alias="set-pods")
    set_pool: SetPool | None = Field(None, alias="set-pool")
    add_pool: AddPool | None = Field(None, alias="add-pool")
    remove_pool: PoolRef | None = Field(None, alias="remove-pool")
    add_peer: AddPeer | None = Field(None, alias="add-peer")
    remove_peer: PeerRef | None = Field(None, alias="remove-peer")
    set_peer: SetPeer | None = Field(None, alias="set-peer")
    set_filter: SetFilter | None = Field(None, alias="set-filter")
    set_router: SetRouter | None = Field(None, alias="set-router")
    apply_policy: ApplyPolicy | None = Field(None, alias="apply-policy")
    remove_policy: RemovePolicy | None = Field(None, alias="remove-policy")
    wait: float | None = Field(None, gt=0, le=600)
    write_snapshot: SnapshotFile | None = Field(None, alias="write-snapshot")
    expect: Expectation | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        given = self.kinds()
        if len(given) != 1:
            raise ValueError(
                "a step is exactly one action or one `expect` (got "
                f"{', '.join(given) or 'none'}); actions: {', '.join(ACTION_KINDS)}"
            )
        return self

    def kinds(self) -> list[str]:
        return [
            k for k in (*ACTION_KINDS, "expect") if getattr(self, k.replace("-", "_")) is not None
        ]

    @property
    def kind(self) -> str:
        return self.kinds()[0]

    def argument(self) -> Any:
        return getattr(self, self.kind.replace("-", "_"))


# The actions, in the order `Step` declares them (each field but `name` and `expect`, by the
# name a scenario file spells it): one list, so that a new action is listed where it is made.
ACTION_KINDS = tuple(
    field.alias or name
    for name, field in Step.model_fields.items()
    if name not in ("name", "expect")
)


class Scenario(_Strict):
    name: Label
    description: str = ""
    topology: str
    lab: str | None = None
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
