"""`netplane master --apiserver-listen` and `netplane kubeconfig` as processes, as the lab and
the benchmarks run them: the master serves the API, the kubeconfig the command writes works
with the official client, and what is created through the API is acted on by the master's
controllers (an RC gets its pods), seen through a watch with a label selector.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from netplane.store import Keys
from netplane.store.embedded import EmbeddedEtcd
from tests.conftest import free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def master(etcd_server: EmbeddedEtcd, keys: Keys, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    state = tmp_path / "api"
    log = (tmp_path / "master.log").open("w")
    p = subprocess.Popen([sys.executable, "-m", "netplane.cli.main", "--log-level", "info",
                          "--etcd", etcd_server.endpoint, "--prefix", keys.prefix, "master", "--id", "m1",
                          "--leader-ttl", "3", "--apiserver-listen", f"127.0.0.1:{port}",
                          "--apiserver-state-dir", str(state)],
                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (state / "apiserver.json").exists() or p.poll() is not None, 30, "the API server")
        assert p.poll() is None, (tmp_path / "master.log").read_text()
        yield f"https://127.0.0.1:{port}", state
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            assert p.wait(20) == 0, (tmp_path / "master.log").read_text()
        finally:
            if p.poll() is None:
                p.kill()
            log.close()


def admin_client(state: Path, tmp_path: Path) -> client.ApiClient:
    """The official client with the admin kubeconfig `netplane kubeconfig` writes."""
    kc = tmp_path / "kubeconfig"
    r = subprocess.run([sys.executable, "-m", "netplane.cli.main", "kubeconfig", "--state-dir", str(state),
                        "-o", str(kc)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return config.new_client_from_config(config_file=str(kc))


def test_master_serves_the_api_and_acts_on_it(master: tuple[str, Path], tmp_path: Path) -> None:
    url, state = master
    api = admin_client(state, tmp_path)
    v1 = client.CoreV1Api(api)
    assert api.configuration.host == url
    rv = v1.list_namespaced_pod("default").metadata.resource_version
    v1.create_namespaced_replication_controller("default", {
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"app": "web"},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    added: set[str] = set()
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_pod, "default", label_selector="app=web", resource_version=rv,
                       timeout_seconds=30):
        if ev["type"] == "ADDED":
            added.add(ev["object"].metadata.name)
            assert ev["object"].metadata.owner_references[0].name == "web"
        if len(added) == 2:
            w.stop()
    assert len(added) == 2
    # a token credential works too (the server re-reads its token file)
    r = subprocess.run([sys.executable, "-m", "netplane.cli.main", "kubeconfig", "--state-dir", str(state),
                        "--user", "viewer", "--group", "readonly", "--token"],
                       check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (tmp_path / "viewer").write_text(r.stdout)
    ro = client.CoreV1Api(config.new_client_from_config(config_file=str(tmp_path / "viewer")))

    def listed() -> set[str] | None:
        try:
            return {p.metadata.name for p in ro.list_namespaced_pod("default").items}
        except ApiException as e:  # 401 until the server has re-read its token file (<= 1 s)
            assert e.status == 401
            return None

    assert wait_for(listed, 5, "the viewer's token works") == added
    api.close()


def test_the_master_keeps_default_kubernetes_on_its_api_server(master: tuple[str, Path], tmp_path: Path) -> None:
    """The in-cluster way to the API: Service default/kubernetes on the range's first address,
    its Endpoints the registered API server, a serving certificate that names both."""
    url, state = master
    port = int(url.rsplit(":", 1)[1])
    api = admin_client(state, tmp_path)
    v1 = client.CoreV1Api(api)

    def endpoints() -> list[tuple[str, str, int]]:
        try:
            ep = v1.read_namespaced_endpoints("kubernetes", "default")
        except ApiException as e:
            assert e.status == 404
            return []
        return [(a.ip, p.name, p.port) for s in ep.subsets or [] for a in s.addresses or [] for p in s.ports]

    assert wait_for(endpoints, 20, "default/kubernetes' endpoints") == [("127.0.0.1", "https", port)]
    svc = v1.read_namespaced_service("kubernetes", "default")
    assert svc.spec.cluster_ip == "10.96.0.1" and not svc.spec.selector
    assert [(p.name, p.port, p.protocol, p.target_port) for p in svc.spec.ports] == [("https", 443, "TCP", "https")]
    assert svc.metadata.labels == {"component": "apiserver", "provider": "kubernetes"}
    # what an in-cluster client checks the server's certificate against
    ctx = ssl.create_default_context(cafile=str(state / "ca.crt"))
    for name in ("kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "10.96.0.1"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s, \
                ctx.wrap_socket(s, server_hostname=name) as tls:
            assert tls.version()
    # the address is the kubernetes Service's alone
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_service("default", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mine"},
                                                 "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 80}]}})
    assert e.value.status == 422 and "10.96.0.1" in e.value.body, e.value.body
    # deleted, it is made again on the same address
    uid = svc.metadata.uid
    v1.delete_namespaced_service("kubernetes", "default")
    again = wait_for(lambda: next((s for s in v1.list_namespaced_service("default").items
                                   if s.metadata.name == "kubernetes" and s.metadata.uid != uid), None),
                     20, "default/kubernetes made again")
    assert again.spec.cluster_ip == "10.96.0.1"
    api.close()


def test_a_standalone_apiserver_registers_for_default_kubernetes(etcd_server: EmbeddedEtcd, keys: Keys,
                                                                 tmp_path: Path) -> None:
    from netplane.store import EtcdConfig, EtcdStore
    from orchestrator import masterservice

    port = free_port()
    with (tmp_path / "apiserver.log").open("w") as log:
        p = subprocess.Popen([sys.executable, "-m", "netplane.cli.main", "--etcd", etcd_server.endpoint,
                              "--prefix", keys.prefix, "apiserver", "--listen", f"0.0.0.0:{port}",
                              "--advertise-address", "127.0.0.1", "--state-dir", str(tmp_path / "api")],
                             cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
    store = EtcdStore(EtcdConfig(endpoints=(etcd_server.endpoint,)))
    try:
        def mine() -> list[tuple[str, tuple[str, int] | None]]:
            assert p.poll() is None, (tmp_path / "apiserver.log").read_text()  # died: say why
            kvs, _ = store.list(masterservice.masters_prefix(keys))
            return [(kv.key.rsplit("/", 1)[1], masterservice.registered(kv.value, "api")) for kv in kvs]

        (ident, addr), = wait_for(mine, 30, "the API server's registration")
        assert ident.startswith("apiserver-") and addr == ("127.0.0.1", port)
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0, (tmp_path / "apiserver.log").read_text()
        kvs, _ = store.list(masterservice.masters_prefix(keys))
        assert kvs == []  # revoked at stop, not left to expire
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        store.close()


def test_service_account_tokens(master: tuple[str, Path], tmp_path: Path) -> None:
    """`default` in every namespace; a TokenRequest's token authenticates as the account (read
    only), until the account goes; a forged one does not."""
    url, state = master
    api = admin_client(state, tmp_path)
    v1 = client.CoreV1Api(api)
    wait_for(lambda: any(s.metadata.name == "default" for s in v1.list_namespaced_service_account("default").items),
             20, "the default service account")
    v1.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    wait_for(lambda: [s.metadata.name for s in v1.list_namespaced_service_account("team").items] == ["default"],
             20, "team's default service account")
    v1.create_namespaced_service_account("default", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                      "metadata": {"name": "bot"}})
    req = v1.create_namespaced_service_account_token("bot", "default", client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=1200)))
    token = req.status.token
    assert req.spec.expiration_seconds == 1200 and req.status.expiration_timestamp is not None

    def as_token(tok: str) -> client.ApiClient:
        cfg = client.Configuration()
        cfg.host, cfg.ssl_ca_cert = url, str(state / "ca.crt")
        cfg.api_key = {"authorization": "Bearer " + tok}
        return client.ApiClient(cfg)

    bot = as_token(token)
    who = client.AuthenticationV1Api(bot).create_self_subject_review({"apiVersion": "authentication.k8s.io/v1",
                                                                      "kind": "SelfSubjectReview"})
    assert who.status.user_info.username == "system:serviceaccount:default:bot"
    assert {"system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"} <= \
        set(who.status.user_info.groups)
    # RBAC gives a service account nothing until a binding names it (kube's default)
    with pytest.raises(ApiException) as e:
        client.CoreV1Api(bot).list_namespaced_pod("default")
    assert e.value.status == 403 and \
        'User "system:serviceaccount:default:bot" cannot list' in json.loads(e.value.body)["message"]
    client.RbacAuthorizationV1Api(v1.api_client).create_namespaced_role_binding("default", {
        "metadata": {"name": "bot-view"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "bot"}]})  # kubectl create rolebinding --serviceaccount
    def reads() -> bool:
        try:
            return client.CoreV1Api(bot).list_namespaced_pod("default").items == []
        except ApiException as e:
            assert e.status == 403, e.body
            return False

    wait_for(reads, 10, "the binding in force: now it may read")
    for forbidden in (lambda: client.CoreV1Api(bot).create_namespaced_config_map(  # but not write
                          "default", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
                      lambda: client.CoreV1Api(bot).list_namespaced_secret("default")):
        with pytest.raises(ApiException) as e:
            forbidden()
        assert e.value.status == 403, e.value.body
    # too short a lifetime is refused as kube refuses it
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_service_account_token("bot", "default", client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=60)))
    assert e.value.status == 422 and "less than 10 minutes" in e.value.body, e.value.body
    # a forged signature, and the token of an account since deleted: Unauthorized
    def refused(c: client.ApiClient) -> bool:
        try:
            client.CoreV1Api(c).list_namespaced_pod("default")
            return False
        except ApiException as e:
            assert e.status == 401, e.body
            return True

    head, payload, sig = token.split(".")
    forged = as_token(f"{head}.{payload}.{sig[::-1]}")
    assert refused(forged)
    v1.delete_namespaced_service_account("bot", "default")
    wait_for(lambda: refused(bot), 5, "the deleted account's token refused")
    for c in (bot, forged, api):
        c.close()


def test_every_namespace_gets_the_api_servers_ca(master: tuple[str, Path], tmp_path: Path) -> None:
    """kube-root-ca.crt: the CA the API server's certificate chains to, in every namespace,
    kept as it should be."""
    url, state = master
    api = admin_client(state, tmp_path)
    v1 = client.CoreV1Api(api)
    ca = (state / "ca.crt").read_text().strip() + "\n"

    def published(ns: str) -> str | None:
        try:
            return (v1.read_namespaced_config_map("kube-root-ca.crt", ns).data or {}).get("ca.crt")
        except ApiException as e:
            assert e.status == 404
            return None

    assert wait_for(lambda: published("default"), 20, "kube-root-ca.crt in default") == ca
    # what an in-cluster client does with it: verify the server
    ctx = ssl.create_default_context(cadata=ca)
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as s, \
            ctx.wrap_socket(s, server_hostname="kubernetes.default.svc"):
        pass
    v1.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    assert wait_for(lambda: published("other"), 20, "kube-root-ca.crt in a new namespace") == ca
    v1.patch_namespaced_config_map("kube-root-ca.crt", "other", {"data": {"ca.crt": "not a CA"}})
    wait_for(lambda: published("other") == ca, 20, "kube-root-ca.crt reset")
    v1.delete_namespaced_config_map("kube-root-ca.crt", "other")
    wait_for(lambda: published("other") == ca, 20, "kube-root-ca.crt made again")
    assert len(json.loads((state / "apiserver.json").read_text())["publishedServingCAs"]) == 1
    api.close()


def test_a_token_is_good_at_every_api_server_and_a_nodes_only_for_its_pods(
        master: tuple[str, Path], etcd_server: EmbeddedEtcd, keys: Keys, tmp_path: Path) -> None:
    """Each API server signs with its own key and publishes it: a token one issued is accepted
    by another. A node agent's key (published with its node's name) signs tokens the API
    servers accept only while bound to a live pod on that node."""
    from netplane.store import EtcdConfig, EtcdStore
    from orchestrator.node import podtokens
    from orchestrator.objects.meta import NODE, POD, SERVICE_ACCOUNT
    from orchestrator.storage import ObjectStore

    url, state = master
    admin = admin_client(state, tmp_path)
    v1 = client.CoreV1Api(admin)
    port = free_port()
    with (tmp_path / "second.log").open("w") as log:
        p = subprocess.Popen([sys.executable, "-m", "netplane.cli.main", "--etcd", etcd_server.endpoint,
                              "--prefix", keys.prefix, "apiserver", "--listen", f"127.0.0.1:{port}",
                              "--state-dir", str(tmp_path / "second")],
                             cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
    store = EtcdStore(EtcdConfig(endpoints=(etcd_server.endpoint,)))
    clients: list[client.ApiClient] = [admin]

    def who(server: str, ca: Path, token: str) -> str | int:
        cfg = client.Configuration()
        cfg.host, cfg.ssl_ca_cert = server, str(ca)
        cfg.api_key = {"authorization": "Bearer " + token}
        c = client.ApiClient(cfg)
        clients.append(c)
        try:
            review = client.AuthenticationV1Api(c).create_self_subject_review(
                {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        except ApiException as e:
            return e.status
        return str(review.status.user_info.username)

    def issued_at(c: client.ApiClient) -> str:
        req = client.CoreV1Api(c).create_namespaced_service_account_token(
            "bot", "default", client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])))
        return str(req.status.token)

    try:
        second, second_ca = f"https://127.0.0.1:{port}", tmp_path / "second" / "ca.crt"
        wait_for(lambda: (tmp_path / "second" / "apiserver.json").exists() or p.poll() is not None, 30,
                 "the second API server")
        assert p.poll() is None, (tmp_path / "second.log").read_text()
        published = store.list(keys.sa_keys)[0]
        assert len(published) == 2 and all(b'"node"' not in kv.value for kv in published), published
        v1.create_namespaced_service_account("default", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                          "metadata": {"name": "bot"}})
        me = "system:serviceaccount:default:bot"
        first_token = issued_at(admin)
        assert who(second, second_ca, first_token) == me  # issued by the master's server, checked by another
        kc = tmp_path / "second-kubeconfig"
        subprocess.run([sys.executable, "-m", "netplane.cli.main", "kubeconfig", "--state-dir",
                        str(tmp_path / "second"), "-o", str(kc)], check=True, cwd=ROOT, timeout=60)
        second_admin = config.new_client_from_config(config_file=str(kc))
        clients.append(second_admin)
        assert who(url, state / "ca.crt", issued_at(second_admin)) == me  # and the other way round

        # a node's token: its key published with its name, bound to its pod
        objects = ObjectStore(store, keys)
        for node in ("n1", "n2"):
            v1.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
        for name, node in (("mine", "n1"), ("theirs", "n2")):
            v1.create_namespaced_pod("default", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"nodeName": node, "serviceAccountName": "bot",
                         "containers": [{"name": "c", "image": "busybox"}]}})
        signer = podtokens.node_signer(tmp_path / "n1", store, keys, "n1")
        record = store.get(keys.sa_key(signer.kid))
        assert record is not None and json.loads(record.value)["node"] == "n1"
        tokens = podtokens.PodTokens(signer, "n1", account=lambda ns, n: objects.get(SERVICE_ACCOUNT, n, ns),
                                     node_object=lambda: objects.get(NODE, "n1"))
        pod = objects.get(POD, "mine", "default")
        assert pod is not None
        token = tokens.token(pod, {"expirationSeconds": 3600}).decode()
        assert who(url, state / "ca.crt", token) == me and who(second, second_ca, token) == me
        other = objects.get(POD, "theirs", "default")
        assert other is not None
        assert who(url, state / "ca.crt", tokens.token(other, {"expirationSeconds": 3600}).decode()) == 401
        v1.delete_namespaced_pod("mine", "default", grace_period_seconds=0)
        wait_for(lambda: who(url, state / "ca.crt", token) == 401, 10, "the deleted pod's token refused")
        # a key record that is not one (bad data in etcd) is skipped: its tokens refused, nothing breaks
        store.put(keys.sa_key("A" * 43), b"{not json")
        assert who(url, state / "ca.crt", first_token) == me
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            assert p.wait(20) == 0, (tmp_path / "second.log").read_text()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            for c in clients:
                c.close()
            store.close()


def test_pods_get_their_service_account_token_volume(master: tuple[str, Path], tmp_path: Path) -> None:
    """ServiceAccount admission on every way a pod is made: through the API (dry run too) and
    by the master's replication manager; an account that opts out is respected."""
    _, state = master
    api = admin_client(state, tmp_path)
    v1 = client.CoreV1Api(api)
    mount_path = "/var/run/secrets/kubernetes.io/serviceaccount"

    def token_volume(p: client.V1Pod) -> str | None:
        names = [v.name for v in p.spec.volumes or [] if v.name.startswith("kube-api-access-")]
        mounts = [m.name for c in p.spec.containers for m in c.volume_mounts or [] if m.mount_path == mount_path]
        assert len(names) <= 1 and mounts in ([], names * len(p.spec.containers)), (names, mounts)
        if names:
            sources = next(v for v in p.spec.volumes if v.name == names[0]).projected.sources
            assert sources[0].service_account_token.path == "token"
            assert sources[1].config_map.name == "kube-root-ca.crt"
            assert sources[2].downward_api.items[0].field_ref.field_path == "metadata.namespace"
        return names[0] if names else None

    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
            "spec": {"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}]}}
    dry = v1.create_namespaced_pod("default", body, dry_run="All")
    assert token_volume(dry) is not None and dry.spec.service_account_name == "default"
    made = v1.create_namespaced_pod("default", body)
    assert token_volume(made) is not None and made.spec.service_account_name == "default"
    v1.create_namespaced_service_account("default", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                      "metadata": {"name": "quiet"},
                                                      "automountServiceAccountToken": False})
    quiet = v1.create_namespaced_pod("default", {**body, "metadata": {"name": "quiet"},
                                                 "spec": {**body["spec"], "serviceAccountName": "quiet"}})
    assert token_volume(quiet) is None
    client.CoreV1Api(api).create_namespaced_replication_controller("default", {
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"},
        "spec": {"replicas": 1, "selector": {"app": "rc"}, "template": {
            "metadata": {"labels": {"app": "rc"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    (rc_pod,) = wait_for(lambda: v1.list_namespaced_pod("default", label_selector="app=rc").items, 20,
                         "the RC's pod")
    assert token_volume(rc_pod) is not None and rc_pod.spec.service_account_name == "default"
    api.close()
