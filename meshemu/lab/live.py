"""Live changes to a running lab: faults (links, speakers, agents) and topology changes.

Owns acting on a lab that is up, for scenarios and for people at the prompt: taking a node's
link down and up, stopping, starting and restarting a node's speaker, killing an agent, and
applying a changed topology (nodes, pods, pools, BGP peers added, removed or changed) by
re-planning with the running lab's allocations kept and changing only what differs, and taking
a router's links down and up (a router that fails). It acts on the `LabPlan` and `LabState` it
is given. Every namespace and process it creates is recorded in the state folder first, like
`up` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_network

from meshemu import process
from meshemu.controlplane import agent_control
from meshemu.dataplane import build, nat, policy, services
from meshemu.dataplane.netlink import in_netns, netns_exists, pids_in_netns, remove_netns
from meshemu.errors import ConfigError, LabError, Problem
from meshemu.lab import responders, routers, supervise
from meshemu.lab.lifecycle import record_netns
from meshemu.lab.running import node_of
from meshemu.model.changes import IPIP_ADDED, address_collisions, uses_ipip
from meshemu.model.nat import OUTSIDE_FIXED, has_nat
from meshemu.model.plan import LabPlan, NodePlan, PodPlan, build_plan
from meshemu.model.topology import Topology
from meshemu.state import LabState


def stop_speaker(state: LabState, node: str, graceful: bool = True) -> bool:
    return supervise.stop_speaker(state, node, graceful)


def start_speaker(state: LabState, plan: LabPlan, node: str) -> None:
    target = node_of(plan, node)
    if target.speaker == "none":
        raise LabError(f"{node} runs no BGP speaker: the lab's BGP is off (bgp.enabled: false)")
    if supervise.speaker_running(state, node):
        raise LabError(f"the speaker of {node} is already running")
    supervise.start_speakers(plan, state, [target])


def kill_agent(state: LabState, node: str) -> None:
    """End a node's agent as a crash ends it (it writes nothing more); a new one takes over
    from the state file (`controlplane.agent.serve`)."""
    if not agent_control.tell(state.dir, node, agent_control.CRASH):
        raise LabError(f"{node} has no running agent")


def set_link(plan: LabPlan, node: str, up: bool) -> None:
    target = node_of(plan, node)
    with in_netns(target.netns) as ns:
        if not up:
            ns.down(target.uplink)
            return
        ns.up(target.uplink)
        # Bringing the link up again does not restore the routes the kernel removed with it.
        if target.gateway4:
            ns.route("add", "0.0.0.0/0", via=target.gateway4, dev=target.uplink)
        if target.gateway6:
            ns.route("add", "::/0", via=target.gateway6, dev=target.uplink)
    # Felix's routes over the uplink went with it; Felix writes them again on the interface
    # change (its route table resyncs when an interface comes up).
    state = LabState(plan.name)
    supervise.wake_felix(state)
    # So did the BGP routes through it. When the link comes back before the peers' hold
    # timers expire, no session flaps and nothing is announced again: BIRD's kernel protocol
    # puts the missing routes back at its next scan (`scan time 2` in confd's bird.cfg); the
    # agent does the same on SIGHUP (program the whole FIB again, as `repair` asks it).
    agent_control.tell(state.dir, target.name, agent_control.REPROGRAM)


def set_router_links(plan: LabPlan, router: str, up: bool) -> None:
    """Every interface of `router` down inside its namespace (it neither routes nor forwards:
    a failed top-of-rack router), or up again with what the kernel dropped with them.

    Taking a link down keeps its IPv4 addresses but flushes its IPv6 ones (the default
    `net.ipv6.conf.*.keep_addr_on_down` = 0), the routes through it and its neighbour entries,
    permanent ones included; bringing them up restores the router's addresses, its static
    routes and the neighbours `build.seed_neighbors` wrote at `up` (its BGP routes are its
    BIRD's to install again)."""
    target = next((r for r in plan.routers if r.name == router), None)
    if target is None:
        raise LabError(f"the lab has no router {router}")
    prefixes = {s.name: (s.ipv4, s.ipv6) for s in plan.subnets}
    with in_netns(target.netns) as ns:
        for iface in target.interfaces:
            if not up:
                ns.down(iface.ifname)
                continue
            ns.up(iface.ifname)
            for address, prefix in zip(
                (iface.ipv4, iface.ipv6), prefixes[iface.subnet], strict=True
            ):
                if address and prefix:
                    ns.add_address(iface.ifname, address, ip_network(prefix).prefixlen)
        if not up:
            return
        for route in target.routes:
            ns.route("add", route.prefix, via=route.via)
        for iface in target.interfaces:
            for address, mac in _stations(plan, iface.subnet, besides=target.name):
                ns.add_neighbor(iface.ifname, address, mac)


def _stations(plan: LabPlan, subnet: str, besides: str) -> list[tuple[str, str]]:
    """(address, MAC) of every node and router on `subnet` but router `besides`."""
    found: list[tuple[str | None, str]] = []
    for node in plan.nodes:
        if node.subnet == subnet:
            found += [(node.ipv4, node.uplink_mac), (node.ipv6, node.uplink_mac)]
    for other in plan.routers:
        iface = other.interface_on(subnet)
        if other.name != besides and iface is not None:
            found += [(iface.ipv4, iface.mac), (iface.ipv6, iface.mac)]
    return [(address, mac) for address, mac in found if address]


@dataclass
class ChangeSummary:
    added_nodes: list[str] = field(default_factory=list)
    removed_nodes: list[str] = field(default_factory=list)
    restarted_speakers: list[str] = field(default_factory=list)
    restarted_agents: list[str] = field(default_factory=list)
    reconfigured_routers: list[str] = field(default_factory=list)
    pods_added: int = 0
    pods_removed: int = 0
    policy_nodes: int = 0  # nodes whose network policy tables were loaded again

    def text(self) -> str:
        parts = []
        for label, items in (
            ("nodes added", self.added_nodes),
            ("nodes removed", self.removed_nodes),
            ("speakers restarted", self.restarted_speakers),
            ("agents restarted", self.restarted_agents),
            ("routers reconfigured", self.reconfigured_routers),
        ):
            if items:
                parts.append(f"{label}: {', '.join(items)}")
        if self.pods_added or self.pods_removed:
            parts.append(f"pods +{self.pods_added} -{self.pods_removed}")
        if self.policy_nodes:
            parts.append(f"network policy loaded on {self.policy_nodes} nodes")
        return "; ".join(parts) or "nothing to change"


def _remove_node(state: LabState, node: NodePlan) -> None:
    supervise.stop_speaker(state, node.name)
    for netns in [p.netns for p in node.pods] + [node.netns]:
        process.stop(set(pids_in_netns(netns)), grace=0)
        remove_netns(netns)


def apply_topology(state: LabState, old: LabPlan, topo: Topology) -> tuple[LabPlan, ChangeSummary]:
    """Change the running lab from plan `old` to `topo`; returns the new plan and what changed."""
    if topo.name != state.name:
        topo = topo.model_copy(update={"name": state.name})
    new = build_plan(topo, previous=old)
    _refuse_impossible(old, new, state.summary().ipip)
    if old.outside != new.outside:  # (its namespace and link were built at `up`)
        raise ConfigError([Problem("outside", *OUTSIDE_FIXED)])
    ipip = state.summary().ipip
    summary = ChangeSummary()
    old_nodes = {n.name: n for n in old.nodes}
    new_nodes = {n.name: n for n in new.nodes}
    for name in sorted(set(old_nodes) - set(new_nodes)):
        _remove_node(state, old_nodes[name])
        summary.removed_nodes.append(name)
    state.write_plan(new)
    state.write_topology(topo, new)
    added = [n for n in new.nodes if n.name not in old_nodes]
    _build_added(state, new, added, ipip, summary)
    for node in new.nodes:
        if node.name in old_nodes:
            _sync_pods(state, old_nodes[node.name], node, summary)
        with in_netns(node.netns) as ns:
            build.build_vxlan(new, node, ns)
            build.install_peer_routes(node, ns)
    if ipip == "userspace" and added:
        supervise.start_tunnels(state, [n for n in added if n.ipv4])
    responders.sync_responder(state, new)  # pods added, removed, ports changed
    supervise.wake_felix(state)  # Felix follows the datastore: new blocks, nodes, pools
    restart = _reconfigure(state, new, [n for n in new.nodes if n.name in old_nodes], summary)
    # The stopped speakers start again first: a router that fails to reload must not leave
    # the nodes of this change without their speakers.
    if restart or added:
        supervise.start_speakers(new, state, restart + added)
    summary.reconfigured_routers = routers.reconfigure(state, new)
    # natOutgoing as Felix refreshes it when pools change: each node's rules replaced whole;
    # `force` clears them when the last natOutgoing pool is gone. Labs that never NAT: nothing.
    if has_nat(old.pools) or has_nat(new.pools):
        nat.apply_nat(new, force=True)
    # Network policy as Felix follows the datastore: each node's tables replaced whole (pods
    # and policies may both have changed); `force` clears them after the last policy is gone.
    if old.policy is not None or new.policy is not None:
        summary.policy_nodes = policy.apply_policy(new, force=True)
    # kube-proxy follows Services and endpoints: each node's tables replaced whole.
    if old.services is not None or new.services is not None:
        services.apply_services(new, force=True)
    return new, summary


def _refuse_impossible(old: LabPlan, new: LabPlan, ipip: str) -> None:
    """A change the running lab cannot take is refused before anything changes."""
    problems = [
        Problem(
            f"nodes.{hit.node}.ipv{hit.family}",
            f"would get {hit.address}, the address of {hit.holder}",
            "give it a free address, or remove that node first",
        )
        for hit in address_collisions(old, new)
    ]
    if ipip == "none" and uses_ipip(new):
        problems.append(Problem("pools", *IPIP_ADDED))
    if _router_layout(old) != _router_layout(new):
        problems.append(
            Problem(
                "routers",
                "the routers, their subnets and addresses, which of them speak BGP, or a "
                "router's own BIRD configuration file changed: a running lab "
                "keeps its fabric",
                "change the routers' BGP settings live; for other router changes bring the lab "
                "down and up again",
            )
        )
    if problems:
        raise ConfigError(problems)


def _router_layout(plan: LabPlan) -> list[tuple[object, ...]]:
    """What of the routers a running lab cannot change: who they are, where, with which
    addresses, which of them runs BIRD and from which configuration file (their namespaces
    and links were built, and BIRD started with its file, at `up`)."""
    return [
        (
            r.name,
            tuple((i.subnet, i.ipv4, i.ipv6) for i in r.interfaces),
            r.bgp is not None,
            r.bgp.config_file if r.bgp is not None else None,
        )
        for r in plan.routers
    ]


def _build_added(
    state: LabState, plan: LabPlan, added: list[NodePlan], ipip: str, summary: ChangeSummary
) -> None:
    record = record_netns(state)
    for node in added:
        build.build_node(plan, node, record, ipip_kernel=ipip == "kernel")
        for pod in node.pods:
            build.build_pod(node, pod, record)
            summary.pods_added += 1
        summary.added_nodes.append(node.name)
    build.seed_neighbors(plan)


def _reconfigure(
    state: LabState, plan: LabPlan, nodes: list[NodePlan], summary: ChangeSummary
) -> list[NodePlan]:
    """New configurations for running nodes; returns the nodes whose speaker must restart."""
    restart = []
    for node in nodes:
        _config, speaker_changed, agent_changed = supervise.write_node_configs(plan, state, node)
        if speaker_changed:
            # A changed neighbour list: restart the speaker, as Calico reloads BIRD.
            restart.append(node)
            summary.restarted_speakers.append(node.name)
        elif agent_changed and agent_control.tell(state.dir, node.name, agent_control.RESTART):
            # Pools, blocks or VTEPs changed: a new agent takes over with the new rules.
            summary.restarted_agents.append(node.name)
    # Not a graceful restart: BIRD ends the sessions it reconfigures with a Cease, so the peers
    # forget the node's routes at once rather than keep them for the restart time. The agents
    # withdraw them (all at once) before their speakers close the sessions.
    supervise.withdraw_first(state, [n.name for n in restart])
    for node in restart:
        supervise.stop_speaker(state, node.name)
    return restart


def remove_pod(node: NodePlan, pod: PodPlan) -> None:
    # Delete the host side first: the kernel tears a namespace's interfaces down lazily, and
    # a pod created again at once needs its `cali` name free.
    if netns_exists(node.netns):
        with in_netns(node.netns) as ns:
            if ns.has_link(pod.host_ifname):
                ns.delete_link(pod.host_ifname)
    remove_netns(pod.netns)


def _sync_pods(state: LabState, old: NodePlan, new: NodePlan, summary: ChangeSummary) -> None:
    record = record_netns(state)
    old_pods = {p.name: p for p in old.pods}
    new_pods = {p.name: p for p in new.pods}
    for name in sorted(set(old_pods) - set(new_pods)):
        remove_pod(old, old_pods[name])  # its veth and host routes go with it
        summary.pods_removed += 1
    for name in sorted(new_pods):
        pod = new_pods[name]
        previous = old_pods.get(name)
        if previous is not None and (previous.ipv4, previous.ipv6) == (pod.ipv4, pod.ipv6):
            continue
        if previous is not None:
            remove_pod(old, previous)
            summary.pods_removed += 1
        if not netns_exists(pod.netns):
            build.build_pod(new, pod, record)
            summary.pods_added += 1
