"""The API server's pure pieces: field selectors, continue tokens, token files, client-cert
users, request paths, Status shapes and the certificates the CA issues."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from netplane.errors import ConfigError
from orchestrator.apiserver import auth, certs, fields, kubeconfig, status
from orchestrator.apiserver.handlers import parse_path
from orchestrator.apiserver.listing import decode_continue, encode_continue
from orchestrator.objects.meta import EVENT, NAMESPACE, POD
from orchestrator.validation.field import ROOT, invalid, required


def test_field_selector_terms_and_escapes() -> None:
    sel = fields.parse(POD, "spec.nodeName=n1,status.phase!=Running,metadata.name==a\\,b")
    pod = {"metadata": {"name": "a,b", "namespace": "default"}, "spec": {"nodeName": "n1"},
           "status": {"phase": "Pending"}}
    assert sel.matches(pod)
    assert not sel.matches({**pod, "status": {"phase": "Running"}})
    assert sel.exact("metadata.name") == "a,b"
    assert fields.parse(POD, "spec.nodeName=").matches({"metadata": {}, "spec": {}})
    ev = fields.parse(EVENT, "involvedObject.kind=Pod,involvedObject.name=web")
    assert ev.matches({"metadata": {}, "involvedObject": {"kind": "Pod", "name": "web"}})
    with pytest.raises(fields.FieldSelectorError, match="field label not supported: spec.image"):
        fields.parse(POD, "spec.image=x")
    with pytest.raises(fields.FieldSelectorError):
        fields.parse(POD, "justaword")
    assert fields.parse(NAMESPACE, "status.phase=Active").matches({"status": {"phase": "Active"}})


def test_continue_tokens_round_trip_and_refuse_garbage() -> None:
    tok = encode_continue(42, "default/web\x00")
    assert decode_continue(tok) == (42, "default/web\x00")
    for bad in ("!!!", encode_continue(0, "x"), encode_continue(5, "/etc/passwd"), encode_continue(5, "../x")):
        with pytest.raises(status.APIError) as e:
            decode_continue(bad)
        assert e.value.code == 400


def test_token_file_format() -> None:
    text = '# comment\nt1,alice,u1,"readonly,dev"\nt2,bob,u2\n\nt3,carol\n'
    users = auth.parse_tokens(text)
    assert users["t1"] == auth.User("alice", "u1", ("readonly", "dev"))
    assert users["t2"] == auth.User("bob", "u2", ())
    assert users["t3"].name == "carol"
    with pytest.raises(ConfigError):
        auth.parse_tokens("only-a-token\n")
    assert auth.parse_tokens(auth.token_line("x", "u", "1", ["a", "b"]))["x"].groups == ("a", "b")


def test_authorizer_read_only_group() -> None:
    a = auth.Authorizer("readonly")
    viewer = auth.User("v", groups=("readonly",))
    assert a.allowed(viewer, "list") and a.allowed(viewer, "watch") and not a.allowed(viewer, "create")
    assert a.allowed(auth.User("admin", groups=("system:masters",)), "delete")


def test_client_certificate_names_user_and_groups() -> None:
    ca = certs.new_ca()
    pair = certs.client_cert(ca, "alice", ["readonly", "dev"])
    cert = x509.load_pem_x509_certificate(pair.cert)
    peer = {"subject": tuple(((a.oid._name, a.value),) for a in cert.subject)}
    assert auth.user_from_peercert(peer) == auth.User("alice", "", ("readonly", "dev"))
    server = certs.server_cert(ca, ["localhost", "127.0.0.1"])
    assert certs.sans_of(server.cert) == {"localhost", "127.0.0.1"}


def test_kubelet_client_certificate_is_kept_until_its_ca_changes(tmp_path: Path) -> None:
    ca = certs.ensure_ca(tmp_path)
    a = certs.ensure_client_cert(tmp_path, ca, "kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"])
    assert certs.ensure_client_cert(tmp_path, ca, "kubelet-client", "x", []) == a, "kept while valid"
    other = certs.new_ca("other")
    b = certs.ensure_client_cert(tmp_path, other, "kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"])
    assert b != a and (tmp_path / "kubelet-client.crt").read_bytes() == b.cert
    assert (tmp_path / "kubelet-client.key").stat().st_mode & 0o777 == 0o600


def test_kubeconfig_client_credentials(tmp_path: Path) -> None:
    """What the CLI shows node agents: the current context's user's certificate, embedded or in
    files beside the kubeconfig; a token-only user or a broken file is a one-line ConfigError."""
    ca = certs.new_ca()
    pair = certs.client_cert(ca, "admin", ["system:masters"])
    doc = kubeconfig.build(server="https://127.0.0.1:6443", ca_pem=ca.cert, user="admin", cert=pair)
    path = tmp_path / "kc"
    kubeconfig.write(path, doc)
    assert kubeconfig.client_credentials(path) == pair
    (tmp_path / "u.crt").write_bytes(pair.cert)
    (tmp_path / "u.key").write_bytes(pair.key)
    doc["users"][0]["user"] = {"client-certificate": "u.crt", "client-key": str(tmp_path / "u.key")}
    kubeconfig.write(path, doc)
    assert kubeconfig.client_credentials(path) == pair
    doc["users"][0]["user"] = {"token": "abc"}
    kubeconfig.write(path, doc)
    with pytest.raises(ConfigError, match="has no client certificate and key, which node agents need"):
        kubeconfig.client_credentials(path)
    with pytest.raises(ConfigError, match="no context 'nope'"):
        kubeconfig.client_credentials(path, context="nope")
    path.write_text("{not yaml")
    with pytest.raises(ConfigError, match="not YAML"):
        kubeconfig.client_credentials(path)


def test_paths() -> None:
    t = parse_path("namespaces/default/pods/web/log")
    assert (t.kind, t.namespace, t.name, t.subresource) == (POD, "default", "web", "log")
    t = parse_path("namespaces/default")
    assert (t.kind, t.name) == (NAMESPACE, "default")
    t = parse_path("namespaces/team/status")
    assert (t.kind, t.name, t.subresource) == (NAMESPACE, "team", "status")
    assert parse_path("pods").namespace is None
    assert parse_path("watch/namespaces/default/pods").watch_path
    t = parse_path("namespaces/default/pods/web/exec")
    assert (t.kind, t.name, t.subresource) == (POD, "web", "exec")
    assert parse_path("namespaces/default/pods/web/portforward").subresource == "portforward"
    assert parse_path("namespaces/default/pods/web/attach").subresource == "attach"
    assert parse_path("namespaces/default/pods/web/eviction").subresource == "eviction"
    for bad in ("frobs", "pods/web", "namespaces/default/pods/web/proxy",
                "namespaces/a/pods/b/c/d"):
        with pytest.raises(status.APIError) as e:
            parse_path(bad)
        assert e.value.code == 404


def test_invalid_status_lists_causes() -> None:
    e = status.invalid("Pod", "web", [required(ROOT.child("spec").child("containers")),
                                      invalid(ROOT.child("spec").child("x"), 1, "bad")])
    body = e.status()
    assert body["code"] == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"},
        {"reason": "FieldValueInvalid", "message": "Invalid value: 1: bad", "field": "spec.x"}]
    assert body["message"].startswith('Pod "web" is invalid: [spec.containers: Required value')
