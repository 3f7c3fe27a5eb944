"""The CLI's error contract: one line on stderr, exit 2 for user mistakes, 1 for runtime
failures, never a traceback. (Runs the real CLI as a subprocess; the runtime failure is a real
refused connection to a loopback port nothing listens on.)"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netplane", *args], capture_output=True, text=True, timeout=60, check=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "args",
    [
        ["nosuch"],
        ["--log-level", "loud", "lab", "list"],
        ["--etcd", "ftp://x", "net", "subnets"],
        ["--prefix", "no-slash", "net", "subnets"],
        ["lab", "up", "--hosts", "0"],
        ["svc", "create", "Web", "--port", "80"],
        ["svc", "create", "web", "--port", "80/sctp"],
        ["net", "config", "set", "--network", "10.0.0.0/33"],
        ["port-forward", "web", "80:http"],
        ["agent", "--node", "n1", "--runtime", "namespaces", "--node-api-client-ca", __file__],  # not PEM
        ["logs", "web", "--kubeconfig", __file__],  # not a kubeconfig
    ],
)
def test_user_mistakes_exit_2_with_one_line(args: list[str]) -> None:
    r = _run(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("netplane: error:"), r.stderr
    assert "Traceback" not in r.stderr


def test_unreachable_etcd_exits_1_with_one_line_naming_it() -> None:
    port = _closed_port()
    r = _run("--etcd", f"http://127.0.0.1:{port}", "--etcd-timeout", "1", "net", "subnets")
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert f"127.0.0.1:{port}" in r.stderr and "cannot reach etcd" in r.stderr
    assert "Traceback" not in r.stderr


def test_version_and_help() -> None:
    r = _run("--version")
    assert r.returncode == 0 and r.stdout.startswith("netplane, version ")
    for group in ["lab", "net", "svc", "proxy", "stats", "agent"]:
        h = _run(group, "--help")
        assert h.returncode == 0 and "Usage: netplane " + group in h.stdout, (group, h.stderr)


def test_get_help_and_a_missing_type_name_every_kind() -> None:
    """The kinds `get` takes, as `--help` and the missing-TYPE error list them, are every kind
    stored here (the list had fallen behind the kinds once)."""
    from orchestrator.objects.meta import KINDS

    h = _run("get", "--help")
    text = " ".join(h.stdout.split())
    missing = _run("delete")
    for k in KINDS:
        assert "|".join((k.resource, *k.short_names)) in text, (k.resource, text)
        assert "|".join((k.resource, *k.short_names)) in missing.stderr, (k.resource, missing.stderr)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
