"""Finding BIRD 2 and checking a configuration with it (`controlplane.bird_tools`).

The missing-binary cases use fake `bird` scripts on a private PATH; the configuration checks run
the real BIRD 2 (`bird -p`, which starts nothing) and skip only where it is not installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshemu.controlplane import bird_tools
from meshemu.controlplane.bird_tools import bird_binary, birdc_binary, check_config
from meshemu.errors import EnvironmentProblem

VALID = """router id 10.1.0.1;
protocol device {}
protocol bgp peer {
  local 10.1.0.1 as 65101;
  neighbor 10.1.0.11 as 64512;
  ipv4 { import all; export none; };
}
"""


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Each test finds the binaries anew, and leaves no fake one cached for later tests."""
    bird_binary.cache_clear()
    birdc_binary.cache_clear()
    yield
    bird_binary.cache_clear()
    birdc_binary.cache_clear()


@pytest.fixture
def real_bird() -> str:
    if not Path("/usr/sbin/bird").exists():
        pytest.skip("/usr/sbin/bird is absent: BIRD 2 not installed (./scripts/setup.sh)")
    return bird_binary()


def _fake(folder: Path, name: str, version_line: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    path.chmod(0o755)
    return path


def _only(monkeypatch: pytest.MonkeyPatch, path_dirs: list[Path], fallback: list[Path]) -> None:
    monkeypatch.setenv("PATH", os.pathsep.join(str(d) for d in path_dirs))
    monkeypatch.setattr(bird_tools, "FALLBACK_DIRS", tuple(str(d) for d in fallback))


def test_missing_bird_is_an_environment_problem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _only(monkeypatch, [tmp_path / "empty"], [tmp_path / "none"])
    with pytest.raises(EnvironmentProblem) as caught:
        bird_binary()
    assert caught.value.exit_code == 3
    assert "BIRD 2 is missing" in str(caught.value)
    assert "run ./scripts/setup.sh (it installs Debian's bird2)" in str(caught.value)
    with pytest.raises(EnvironmentProblem, match="BIRD 2 is missing"):
        birdc_binary()


def test_bird_1_is_not_enough(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    old = _fake(tmp_path / "bin", "bird", "BIRD version 1.6.8")
    _only(monkeypatch, [tmp_path / "bin"], [tmp_path / "none"])
    with pytest.raises(EnvironmentProblem, match=r"found only .*bird \(version 1\)"):
        bird_binary()
    assert old.exists()


def test_bird_2_found_on_path_or_in_the_fallback_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake(tmp_path / "old", "bird", "BIRD version 1.6.8")
    new = _fake(tmp_path / "sbin", "bird", "BIRD version 2.0.12")
    # PATH has only BIRD 1; the fallback folder (like /usr/sbin for a non-root PATH) has 2.
    _only(monkeypatch, [tmp_path / "old"], [tmp_path / "sbin"])
    assert bird_binary() == str(new)
    with pytest.raises(EnvironmentProblem, match="no `birdc`"):
        birdc_binary()
    birdc = _fake(tmp_path / "sbin", "birdc", "")
    birdc_binary.cache_clear()
    assert birdc_binary() == str(birdc)


def test_lookup_is_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    new = _fake(tmp_path / "bin", "bird", "BIRD version 2.0.12")
    _only(monkeypatch, [tmp_path / "bin"], [])
    assert bird_binary() == str(new)
    new.unlink()
    assert bird_binary() == str(new)  # not asked again


def test_real_bird_is_version_2(real_bird: str) -> None:
    assert Path(real_bird).name == "bird"
    assert Path(birdc_binary()) == Path(real_bird).with_name("birdc")


def test_valid_config_has_no_problem(real_bird: str, tmp_path: Path) -> None:
    path = tmp_path / "bird.conf"
    path.write_text(VALID)
    assert check_config(path, "routers.tor1.bgp.config") == []


def test_invalid_config_is_located(real_bird: str, tmp_path: Path) -> None:
    path = tmp_path / "bird.conf"
    path.write_text(VALID.replace("  ipv4 { import all; export none; };\n", "  bogus on;\n"))
    problems = check_config(path, "routers.tor1.bgp.config")
    assert len(problems) == 1
    problem = problems[0]
    assert problem.location == "routers.tor1.bgp.config"
    assert f"{path}:6:" in problem.message
    assert "syntax error" in problem.message
    assert problem.hint


def test_error_after_parse_names_the_protocol_end(real_bird: str, tmp_path: Path) -> None:
    """BIRD's post-parse checks (bgp_postconfig) report too, at the protocol's closing line."""
    path = tmp_path / "bird.conf"
    path.write_text(VALID.replace("export none; ", ""))
    [problem] = check_config(path, "where")
    assert f"{path}:7:1: EBGP requires explicit export policy" in problem.message


def test_error_in_an_included_file_names_that_file(real_bird: str, tmp_path: Path) -> None:
    (tmp_path / "inner.conf").write_text("router id 10.1.0.1;\nnonsense;\n")
    outer = tmp_path / "bird.conf"
    outer.write_text('include "inner.conf";\n')
    [problem] = check_config(outer, "where")
    assert f"{tmp_path / 'inner.conf'}:2:" in problem.message


def test_unreadable_config(real_bird: str, tmp_path: Path) -> None:
    [problem] = check_config(tmp_path / "absent.conf", "routers.r.bgp.config")
    assert problem.location == "routers.r.bgp.config"
    assert "Unable to open configuration file" in problem.message
    assert "absent.conf" in problem.message
