"""`netplane logs` and `netplane exec` from the root shell, on a 1-host lab with a master and a
node runtime (Docker and plain namespaces): the CLI reads the pod's node from etcd and talks to
that host's agent (the node API on the underlay, reached from inside the host's namespace).

Covered: logs of a named container, `--tail 1`, `-f` that ends when the container exits,
`exec` printing the command's output and exiting with its code (also `-i`, `-t` and `-it` from a
terminal: stdin, a TTY and its size streamed), the Node's announced port,
and one-line errors (exit 2) for an unknown pod, an unknown container and a missing `-c`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netplane.lab import Lab
from netplane.lab.builder import LAB_PREFIX
from tests.ptyrun import interact
from tests.waiting import wait_for

NETPLANE = str(Path(sys.executable).parent / "netplane")


def np_argv(lab: Lab, *args: str) -> list[str]:
    return [NETPLANE, "--etcd", lab.etcd_endpoint, "--prefix", LAB_PREFIX, *args]


def np(lab: Lab, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(np_argv(lab, *args), input=input, capture_output=True, text=True, timeout=60, check=False)


def ok(lab: Lab, *args: str) -> str:
    p = np(lab, *args)
    assert p.returncode == 0, f"netplane {' '.join(args)} exited {p.returncode}: {p.stderr}"
    return p.stdout


def one_line_error(p: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert len(p.stderr.strip().splitlines()) == 1 and text in p.stderr, p.stderr


@pytest.mark.parametrize("runtime", ["namespaces", "docker"])
def test_logs_and_exec_through_the_node_agent(lab_factory: Callable[..., Lab], runtime: str, tmp_path: Path) -> None:
    lab = lab_factory(1, agents=True, runtime=runtime, masters=1)
    # the namespace runtime runs host programs (image is only recorded) and sees the host's
    # files; a Docker container has its own root, without /tmp
    image, go = ("busybox", str(tmp_path / "go")) if runtime == "namespaces" else ("netplane/busybox:latest", "/go")
    pod: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "io"},
        "spec": {"restartPolicy": "OnFailure", "terminationGracePeriodSeconds": 1, "containers": [
            {"name": "main", "image": image, "command": ["sh", "-c", "echo one; echo two; echo three; exec sleep 100000"]},
            {"name": "short", "image": image,
             "command": ["sh", "-c", f"echo start; while [ ! -e {go} ]; do sleep 1; done; echo end"]},
        ]}}
    p = np(lab, "apply", "-f", "-", input=json.dumps(pod))
    assert p.returncode == 0, p.stderr

    def running() -> bool:
        got = np(lab, "get", "pod", "io", "-o", "json")
        return got.returncode == 0 and (json.loads(got.stdout).get("status") or {}).get("phase") == "Running"

    wait_for(running, 90, "pod io Running")
    node = json.loads(ok(lab, "get", "node", "h1", "-o", "json"))
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250

    wait_for(lambda: ok(lab, "logs", "io", "-c", "main") == "one\ntwo\nthree\n", 20, "main's three lines")
    assert ok(lab, "logs", "pod/io", "-c", "main", "--tail", "1") == "three\n"

    # -f: prints as it comes, and ends by itself when the container exits
    follow = subprocess.Popen(np_argv(lab, "logs", "io", "-c", "short", "-f"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(follow.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_for(lambda: lines == ["start\n"], 20, "logs -f printing the first line")
        time.sleep(1)
        assert follow.poll() is None, "logs -f ended while the container still ran"
        assert ok(lab, "exec", "io", "-c", "short", "--", "touch", go) == ""
        assert follow.wait(timeout=30) == 0, follow.stderr.read()  # type: ignore[union-attr]
        reader.join(5)
        assert lines == ["start\n", "end\n"]
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()

    # exec: the command's output, and its exit code as ours
    p = np(lab, "exec", "io", "-c", "main", "--", "sh", "-c", "echo hi; echo err >&2; exit 3")
    # stdout and stderr are two streams (Docker multiplexes them): their order is not kept
    assert (p.returncode, sorted(p.stdout.splitlines())) == (3, ["err", "hi"]), p.stderr
    assert ok(lab, "exec", "io", "-c", "main", "--", "echo", "ok") == "ok\n"
    # exec -i streams: stdin through, stdout and stderr apart, the exit code
    p = np(lab, "exec", "-i", "io", "-c", "main", "--", "sh", "-c", "read x; echo got $x; echo e >&2; exit 4",
           input="abc\n")
    assert (p.returncode, p.stdout, p.stderr) == (4, "got abc\n", "e\n"), p
    # -t: the command has a TTY
    p = np(lab, "exec", "-t", "io", "-c", "main", "--", "sh", "-c", "tty")
    assert p.returncode == 0 and p.stdout.startswith("/dev/pts/"), p
    # -it from a terminal: an interactive shell of this terminal's size (typed at its prompt)
    code, out = interact(np_argv(lab, "exec", "-it", "io", "-c", "main", "--", "sh"),
                         [("# ", "stty size; echo $((6*7)); exit 5\r")], cols=91, rows=17)
    assert code == 5 and "17 91" in out and "42" in out, out

    one_line_error(np(lab, "logs", "nope"), 2, 'pods "nope" not found')
    one_line_error(np(lab, "exec", "nope", "--", "true"), 2, 'pods "nope" not found')
    one_line_error(np(lab, "logs", "io"), 2, "a container name must be specified for pod io, choose one of: [main short]")
    one_line_error(np(lab, "exec", "io", "-c", "zzz", "--", "true"), 2, "container zzz is not valid for pod io")
