"""The operator's Installation pools as IPPools: the operator's naming and per-family defaults,
agreement with an IPPool the bundle also holds, and IPv6 pools that ask for IP-in-IP.

Follows tigera/operator `pkg/controller/ippool/defaults.go` (`fillDefaults`: a pool's name,
IPv4 IPIP and natOutgoing Enabled, IPv6 no encapsulation and natOutgoing Disabled, no IPIP
without the Calico CNI) and `api/v1/installation_types.go` (the encapsulation values), and
projectcalico/calico `libcalico-go/lib/clientv3/ippool.go` ("IPIP is not supported on an IPv6 IP
pool"). Reading the Installation document itself is `calico_bundle`'s job.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from meshemu.errors import Problem
from meshemu.model.calico_inventory import Resources
from meshemu.model.calico_resources import InstallationPool, InstallationSpec
from meshemu.model.topology import EncapMode

# What each encapsulation of the operator's Installation means as IPPool modes.
INSTALLATION_ENCAP: dict[str, tuple[EncapMode, EncapMode]] = {
    "IPIP": ("Always", "Never"),
    "IPIPCrossSubnet": ("CrossSubnet", "Never"),
    "VXLAN": ("Never", "Always"),
    "VXLANCrossSubnet": ("Never", "CrossSubnet"),
    "None": ("Never", "Never"),
}


def _pool_name(index: int, pool: InstallationPool, inst: InstallationSpec, found: Resources) -> str:
    """The name the operator gives a pool (tigera/operator pkg/controller/ippool/defaults.go,
    `fillDefaults`): its own; else that of an existing IPPool with the same CIDR (the operator
    adopts it); else default-ipv4/ipv6-ippool for a single pool or a dual-stack pair; else one
    made from the CIDR."""
    if pool.name:
        return pool.name
    for name, (_loc, data) in found.pools.items():
        if _same_cidr(str(data.get("cidr")), pool.cidr):
            return name
    pools = inst.calicoNetwork.ipPools or []
    families = {_family(p.cidr) for p in pools}
    family = _family(pool.cidr)
    if len(pools) == 1 or (len(pools) == 2 and families == {4, 6}):
        return f"default-ipv{family}-ippool"
    try:
        network = ipaddress.ip_network(pool.cidr, strict=False)
    except ValueError:
        return f"pool-{index}"
    if isinstance(network, ipaddress.IPv6Network):
        expanded = network.network_address.exploded.replace(":", ".")
    else:
        expanded = str(network.network_address)
    return f"{expanded}-{network.prefixlen}"


def _pool_data(pool: InstallationPool, inst: InstallationSpec) -> dict[str, Any]:
    """An Installation pool as IPPool fields, with the operator's per-family defaults
    (tigera/operator pkg/controller/ippool/defaults.go): IPv4 IPIP (None when the CNI plugin
    is not Calico) with natOutgoing Enabled; IPv6 encapsulation None with natOutgoing Disabled."""
    v6 = _family(pool.cidr) == 6
    nat = pool.natOutgoing or ("Disabled" if v6 else "Enabled")
    ipip, vxlan = INSTALLATION_ENCAP[installation_encapsulation(pool, inst)]
    return {
        "cidr": pool.cidr,
        "blockSize": pool.blockSize,
        "ipipMode": ipip,
        "vxlanMode": vxlan,
        "natOutgoing": nat == "Enabled",
        "nodeSelector": pool.nodeSelector or "all()",
        "disableBGPExport": bool(pool.disableBGPExport),
        "disabled": False,
    }


def installation_encapsulation(pool: InstallationPool, inst: InstallationSpec) -> str:
    """The pool's encapsulation after the operator's defaults: its own, else IPv4 IPIP (None
    when the CNI plugin is not Calico), IPv6 None."""
    cni = (inst.cni or {}).get("type", "Calico")
    default: str = "None" if _family(pool.cidr) == 6 or cni != "Calico" else "IPIP"
    return pool.encapsulation or default


def add_installation_pools(
    loc: str, inst: InstallationSpec, found: Resources, problems: list[Problem]
) -> None:
    """Add an Installation's pools; one the bundle also has as an IPPool must agree with it."""
    own: dict[str, str] = {}
    for index, pool in enumerate(inst.calicoNetwork.ipPools or []):
        ploc = f"{loc}.spec.calicoNetwork.ipPools[{index}]"
        if _family(pool.cidr) == 6 and (pool.encapsulation or "").startswith("IPIP"):
            continue  # explained by check_tutorial_pools
        name = _pool_name(index, pool, inst, found)
        data = _pool_data(pool, inst)
        for fname in ("allowedUses", "assignmentMode", "disableNewAllocations"):
            if getattr(pool, fname) is not None:
                found.unsupported.append(
                    (f"{ploc}.{fname}", "IPAM use restrictions are not emulated")
                )
        if name in own:
            problems.append(
                Problem(
                    ploc,
                    f"pool {name!r} is also {own[name]}: the later would replace the earlier",
                    "give each pool its own name",
                )
            )
            continue
        own[name] = ploc
        if name in found.pools:
            other_loc, other = found.pools[name]
            other_at = other_loc.removesuffix(".spec")
            differences = _pool_differences(data, other)
            if differences:
                problems.append(
                    Problem(
                        ploc,
                        f"pool {name!r} is also IPPool {name} at {other_at}, "
                        f"which differs in {', '.join(differences)}; one would silently "
                        "replace the other",
                        "the operator creates the IPPool from this pool: make the two agree, "
                        "or keep only one of them in the bundle",
                    )
                )
            continue  # the same pool, described twice alike: keep the IPPool
        found.pools[name] = (ploc, data)


def _pool_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = []
    if not _same_cidr(str(a.get("cidr")), str(b.get("cidr"))):
        out.append("cidr")
    family = _family(str(a.get("cidr")))
    default_block = 122 if family == 6 else 26
    if (a.get("blockSize") or default_block) != (b.get("blockSize") or default_block):
        out.append("blockSize")
    for key in ("ipipMode", "vxlanMode", "natOutgoing", "disableBGPExport", "disabled"):
        if a.get(key) != b.get(key):
            out.append(key)
    if (a.get("nodeSelector") or "all()").strip() != (b.get("nodeSelector") or "all()").strip():
        out.append("nodeSelector")
    return out


def _same_cidr(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_network(a, strict=False) == ipaddress.ip_network(b, strict=False)
    except ValueError:
        return a == b


def _family(cidr: str) -> int:
    try:
        return ipaddress.ip_network(cidr, strict=False).version
    except ValueError:
        return 4


def check_tutorial_pools(container: Any, where: str, problems: list[Problem]) -> None:
    """Explain IPv6 pools asking for IP-in-IP in operator-style pool lists."""
    pools = container.get("ipPools") if isinstance(container, dict) else None
    if not isinstance(pools, list):
        return
    for index, pool in enumerate(pools):
        if not isinstance(pool, dict):
            continue
        ploc = f"{where}.ipPools[{index}]"
        mode = str(pool.get("ipipMode") or "")
        encap = str(pool.get("encapsulation") or "")
        if "ipipMode" in pool:
            problems.append(
                Problem(
                    f"{ploc}.ipipMode",
                    "ipipMode is an IPPool (projectcalico.org/v3) field, not an Installation pool "
                    "field",
                    "Installation pools say encapsulation: IPIP | IPIPCrossSubnet | VXLAN | "
                    "VXLANCrossSubnet | None",
                )
            )
        if _family(str(pool.get("cidr", ""))) == 6 and (
            mode in ("Always", "CrossSubnet") or encap.startswith("IPIP")
        ):
            across = "VXLANCrossSubnet" if "CrossSubnet" in (mode + encap) else "VXLAN"
            problems.append(
                Problem(
                    ploc,
                    f"IPv6 pool {pool.get('cidr')} asks for IP-in-IP, which is IPv4-only: "
                    "Calico rejects it",
                    f"for IPv6 write encapsulation: {across} (VXLAN across subnets) or "
                    "encapsulation: None (native routing)",
                )
            )
