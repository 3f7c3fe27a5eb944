"""`netplane logs` and `netplane exec` from the root shell, on a 1-host lab with a master and a
node runtime (Docker and plain namespaces): the CLI reads the pod's node from etcd and talks to
that host's agent (the node API on the underlay, reached from inside the host's namespace).

Covered: logs of a named container, `--tail 1`, `-f` that ends when the container exits,
`exec` printing the command's output and exiting with its code (also `-i`, `-t` and `-it` from a
terminal: stdin, a TTY and its size streamed), the Node's announced port and certificate,
and one-line errors (exit 2) for an unknown pod, an unknown container and a missing `-c`.

`netplane attach`: -it to a shell on the container's TTY, -i into a stdinOnce container.

`netplane port-forward` to busybox httpd on the pod's 127.0.0.1: a 2 MB file through it, with
several connections.

Who may ask (`orchestrator.node.nodetls`): the CLI shows a certificate of the lab's CA (made at
`lab up`, published for the agents); a read-only user's kubeconfig reads logs but is refused
exec; a certificate of another CA is refused; and a pod that calls its node's agent without a
certificate gets 401, so it cannot reach into other pods.
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
from tests.forwarding import forwarding
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

    who_may_ask(lab, node, runtime, tmp_path)
    port_forward(lab)
    attach(lab, image)

    one_line_error(np(lab, "logs", "nope"), 2, 'pods "nope" not found')
    one_line_error(np(lab, "exec", "nope", "--", "true"), 2, 'pods "nope" not found')
    one_line_error(np(lab, "logs", "io"), 2, "a container name must be specified for pod io, choose one of: [main short]")
    one_line_error(np(lab, "exec", "io", "-c", "zzz", "--", "true"), 2, "container zzz is not valid for pod io")


def attach(lab: Lab, image: str) -> None:
    """`netplane attach`: -it to a shell on the container's own TTY (it exits with the shell's
    code), and -i piping into a stdinOnce container, whose stdin closes at the pipe's end."""
    containers = [{"name": "shell", "image": image, "command": ["sh"], "stdin": True, "tty": True},
                  {"name": "cat", "image": image, "command": ["sh", "-c", "cat; echo done"], "stdin": True,
                   "stdinOnce": True}]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "att"},
           "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": containers}}
    p = np(lab, "apply", "-f", "-", input=json.dumps(pod))
    assert p.returncode == 0, p.stderr
    wait_for(lambda: json.loads(ok(lab, "get", "pod", "att", "-o", "json")).get("status", {}).get("phase") == "Running",
             60, "pod att Running")
    # the shell printed its prompt before we came: Enter asks for a new one
    code, out = interact(np_argv(lab, "attach", "-it", "att", "-c", "shell"),
                         [("try pressing enter", "\r"), ("# ", "stty size; exit 6\r")], cols=83, rows=21)
    assert code == 6 and "21 83" in out, out
    p = np(lab, "attach", "-i", "att", "-c", "cat", input="to the main process\n")
    assert (p.returncode, p.stdout) == (0, "to the main process\ndone\n"), p
    wait_for(lambda: json.loads(ok(lab, "get", "pod", "att", "-o", "json"))["status"].get("phase") == "Failed", 30,
             "pod att Failed (the shell exited 6)")
    one_line_error(np(lab, "attach", "att", "-c", "cat"), 2,
                   "cannot attach a container in a completed pod; current phase is Failed")
    p = np(lab, "delete", "pod", "att")
    assert p.returncode == 0, p.stderr


def who_may_ask(lab: Lab, node: dict[str, Any], runtime: str, tmp_path: Path) -> None:
    from netplane.lab.state import pki_dir
    from orchestrator.apiserver import certs
    from orchestrator.node.nodetls import CERT_ANNOTATION

    assert node["metadata"]["annotations"][CERT_ANNOTATION], "the Node announces its agent's certificate"
    viewer = tmp_path / "viewer.kubeconfig"
    p = subprocess.run([NETPLANE, "kubeconfig", "--state-dir", str(pki_dir(lab.name)), "--server", "https://unused:6443",
                        "--user", "viewer", "--group", "readonly", "-o", str(viewer)], capture_output=True, text=True,
                       check=False)
    assert p.returncode == 0, p.stderr
    assert ok(lab, "logs", "io", "-c", "main", "--tail", "1", "--kubeconfig", str(viewer)) == "three\n"
    one_line_error(np(lab, "exec", "io", "-c", "main", "--kubeconfig", str(viewer), "--", "true"), 1,
                   'Forbidden: user "viewer" may not exec on node h1')
    stranger_ca = tmp_path / "stranger"
    certs.ensure_ca(stranger_ca)
    stranger = tmp_path / "stranger.kubeconfig"
    p = subprocess.run([NETPLANE, "kubeconfig", "--state-dir", str(stranger_ca), "--server", "https://unused:6443",
                        "-o", str(stranger)], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    one_line_error(np(lab, "logs", "io", "-c", "main", "--kubeconfig", str(stranger)), 1,
                   "node h1's agent refused our client certificate")
    if runtime == "namespaces":  # the pod runs host programs: this Python, from inside the pod
        address = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        probe = ("import http.client, ssl; c = http.client.HTTPSConnection("
                 f"'{address}', 10250, context=ssl._create_unverified_context(), timeout=5); "
                 "c.request('POST', '/exec/default/io/main?command=true'); r = c.getresponse(); "
                 "print(r.status, r.read().decode().strip())")
        out = ok(lab, "exec", "io", "-c", "main", "--", sys.executable, "-c", probe)
        assert out.startswith("401 Unauthorized: a client certificate"), out


def port_forward(lab: Lab) -> None:
    """busybox httpd on the pod's localhost serves its own binary (/bin/busybox on the host and
    in the image alike): the CLI's port-forward carries it whole, to the pod and through a
    Service (a named targetPort); a port the Service does not have is a one-line error."""
    import signal
    import socket

    web = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
               "name": "httpd", "image": "netplane/busybox:latest",
               "command": ["busybox", "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/bin"],
               "ports": [{"name": "http", "containerPort": 8080}]}]}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}
    for obj in (web, svc):
        p = np(lab, "apply", "-f", "-", input=json.dumps(obj))
        assert p.returncode == 0, p.stderr
    wait_for(lambda: (json.loads(ok(lab, "get", "pod", "web", "-o", "json")).get("status") or {}).get("phase")
             == "Running", 90, "pod web Running")
    want = Path("/bin/busybox").read_bytes()

    def get(local: int) -> bytes:
        with socket.create_connection(("127.0.0.1", local), timeout=30) as s:
            s.sendall(b"GET /busybox HTTP/1.0\r\n\r\n")
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], head
        return body

    def served(local: int) -> bool:
        try:
            return get(local) == want
        except (OSError, AssertionError):
            return False

    for target, port in (("web", ":8080"), ("svc/web", ":80")):
        with forwarding(np_argv(lab, "port-forward", target, port), 8080) as (local, pf):
            wait_for(lambda lp=local: served(lp), 30, f"httpd answering through {target}")  # httpd may still be starting
            assert get(local) == want and get(local) == want
            pf.send_signal(signal.SIGINT)
            assert pf.wait(10) == 0, pf.stderr.read()
    one_line_error(np(lab, "port-forward", "svc/web", "81"), 2, "Service web does not have a service port 81")
    one_line_error(np(lab, "port-forward", "svc/nope", "80"), 2, 'services "nope" not found')
