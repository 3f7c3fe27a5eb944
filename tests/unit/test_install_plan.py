"""scripts/install.sh's choices per system, from its plan mode (NETPLANE_INSTALL_PLAN=1: prints
what it would need and exits before touching anything), with stand-in /etc/os-release files.

Only the CI workflow's Ubuntu runner really installs the Ubuntu names; this checks that the
script picks them (and keeps Debian 12's list) without an Ubuntu machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install.sh"
DEBIAN_12 = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'
UBUNTU_2404 = 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\n'


def plan(tmp_path: Path, os_release: str, *, docker: bool = True, client_only: bool = False,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "os-release"
    f.write_text(os_release)
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for tool in ("dirname", "uname", "id", "cat"):  # what the plan needs; docker only if asked
        src = shutil.which(tool)
        assert src, tool
        (bindir / tool).unlink(missing_ok=True)
        (bindir / tool).symlink_to(src)
    for exe in ("docker", "dockerd"):
        (bindir / exe).unlink(missing_ok=True)
    for exe in (("docker", "dockerd") if docker else ("docker",) if client_only else ()):
        (bindir / exe).write_text("#!/bin/sh\nexit 0\n")
        (bindir / exe).chmod(0o755)
    base = {"PATH": str(bindir), "NETPLANE_INSTALL_PLAN": "1", "NETPLANE_OS_RELEASE": str(f)}
    return subprocess.run([shutil.which("bash") or "/bin/bash", str(SCRIPT)], env={**base, **(env or {})},
                          capture_output=True, text=True, check=False, timeout=30)


def needs(p: subprocess.CompletedProcess[str]) -> list[str]:
    assert p.returncode == 0, p.stderr
    return [line.split(" ", 1)[1] for line in p.stdout.splitlines() if line.startswith("need ")]


def test_debian_12_keeps_its_package_names(tmp_path: Path) -> None:
    got = needs(plan(tmp_path, DEBIAN_12))
    assert {"etcd-server", "etcd-client", "bpftool", "linux-headers-amd64", "python3-bpfcc",
            "python3-nftables", "busybox-static"} <= set(got)
    assert "docker.io" not in got  # a docker is there
    assert not [n for n in got if "linux-tools" in n or "|" in n]


def test_ubuntu_2404_names_bpftool_and_headers_of_the_running_kernel(tmp_path: Path) -> None:
    krel = os.uname().release
    got = needs(plan(tmp_path, UBUNTU_2404))
    assert {"etcd-server", "etcd-client", "linux-tools-common", f"linux-tools-{krel}|bpftool",
            f"linux-headers-{krel}|linux-headers-generic", "python3-bpfcc"} <= set(got)
    assert "bpftool" not in got and "linux-headers-amd64" not in got


def test_docker_io_only_without_a_docker(tmp_path: Path) -> None:
    assert "docker.io" in needs(plan(tmp_path, UBUNTU_2404, docker=False))
    assert "docker.io" in needs(plan(tmp_path, DEBIAN_12, docker=False))


def test_a_docker_client_alone_still_needs_the_daemon(tmp_path: Path) -> None:
    # a machine with only a static docker client in /usr/local/bin (no dockerd) gets docker.io
    assert "docker.io" in needs(plan(tmp_path, DEBIAN_12, docker=False, client_only=True))


@pytest.mark.parametrize(("env", "may"), [
    ({}, "0"),
    ({"CI": "true"}, "0"),  # this project's own CI runs on its development machine: CI=true alone
    ({"GITHUB_ACTIONS": "true"}, "0"),
    ({"CI": "true", "GITHUB_ACTIONS": "true"}, "1"),
    ({"NETPLANE_DOCKERD_CONFIGURE": "1"}, "1"),
])
def test_dockerd_is_reconfigured_only_on_github_runners_or_when_asked(tmp_path: Path, env: dict[str, str],
                                                                      may: str) -> None:
    p = plan(tmp_path, UBUNTU_2404, env=env)
    assert f"configure-dockerd {may}" in p.stdout.splitlines(), p.stdout


def test_other_systems_are_refused_by_name(tmp_path: Path) -> None:
    p = plan(tmp_path, 'ID=fedora\nVERSION_ID="41"\n')
    assert p.returncode == 1 and "unsupported system fedora 41" in p.stderr
