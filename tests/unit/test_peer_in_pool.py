"""A BGPPeer whose peerIP lies inside an IP pool is bad input: pods own those addresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshemu.cli import main

TOPOLOGY = """\
name: peerpool
subnets:
  lan: {ipv4: 10.20.0.0/24, ipv6: "fd00:20::/64"}
nodes:
  node1: {subnet: lan}
  node2: {subnet: lan}
pools:
  v4: {cidr: 10.244.0.0/16}
  v6: {cidr: "fd00:244::/64", vxlanMode: Always}
bgp:
  peers:
    tor: {peerIP: "PEER", asNumber: 65001}
"""


@pytest.mark.parametrize("peer", ["10.244.3.7", "fd00:244::9", "10.244.0.1:1790"])
def test_a_peer_inside_a_pool_is_exit_2(
    peer: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(TOPOLOGY.replace("PEER", peer))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bgp.peers.tor.peerIP" in err and "inside IP pool" in err


def test_a_peer_outside_the_pools_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(TOPOLOGY.replace("PEER", "10.20.0.250"))
    assert main(["validate", str(path)]) == 0
