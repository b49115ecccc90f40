"""Can this machine run the lab? Root, the link kinds the plan needs, and which IP-in-IP.

Owns the checks `up` makes before it creates anything, each failure an `EnvironmentProblem`
(exit 3) saying what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from meshemu.dataplane.ipip_tun import kernel_has_ipip
from meshemu.dataplane.netlink import missing_link_kinds
from meshemu.errors import EnvironmentProblem
from meshemu.model.plan import LabPlan


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            f"meshemu {what} needs root (network namespaces, veths, routes): run it with sudo "
            "or as root"
        )


def preflight(plan: LabPlan) -> str:
    """Check this machine can run the lab; returns the IPIP implementation to use
    (`none`, `kernel`: the `ipip` module's tunl0, `userspace`: TUN and a raw socket)."""
    require_root("up")
    needs_ipip = any(p.ipip_mode != "Never" for p in plan.pools)
    needs_vxlan = any(p.vxlan_mode != "Never" for p in plan.pools)
    kinds = ["veth", "bridge"] + (["vxlan"] if needs_vxlan else [])
    missing = missing_link_kinds(kinds)
    if missing:
        raise EnvironmentProblem(
            f"this kernel cannot create {', '.join(missing)} interfaces, which the lab needs "
            "(load the module with modprobe, or use a kernel that has it)"
        )
    if not needs_ipip:
        return "none"
    if kernel_has_ipip():
        return "kernel"
    if Path("/dev/net/tun").exists():
        return "userspace"
    raise EnvironmentProblem(
        "this kernel has no ipip module and no /dev/net/tun: IP-in-IP pools cannot be "
        "emulated here (load the ipip or tun module, or use vxlanMode)"
    )
