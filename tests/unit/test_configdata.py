"""ConfigMaps and Secrets through the one validation layer: kube's config keys, base64 data,
the 1 MiB limit, Secret types and stringData, immutability; their kubectl columns."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator import printing
from orchestrator.applier import update_errors
from orchestrator.objects.meta import CONFIG_MAP, SECRET
from orchestrator.validation import admit, validate


def cm(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"}, **fields}


def secret(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, **fields}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def messages(obj: dict[str, Any]) -> list[str]:
    return [str(e) for e in validate(obj)]


def test_a_config_map_is_stored_as_given() -> None:
    got = admit(cm(data={"app.conf": "x=1\n", "LEVEL": "debug"}, binaryData={"blob": b64("\x00\x01")})).object
    assert got["data"] == {"app.conf": "x=1\n", "LEVEL": "debug"} and got["metadata"]["namespace"] == "default"


@pytest.mark.parametrize(("key", "says"), [
    ("bad key", "a valid config key must consist of alphanumeric characters"),
    ("..", "must not be '..'"),
    ("..hidden", "must not start with '..'"),
    ("k" * 254, "must be no more than 253 characters"),
])
def test_config_keys(key: str, says: str) -> None:
    for obj in (cm(data={key: "v"}), secret(data={key: b64("v")}), secret(stringData={key: "v"})):
        got = messages(obj)
        assert len(got) == 1 and got[0].startswith(f'data: Invalid value: "{key}": ') and says in got[0], got


def test_config_map_data_rules() -> None:
    assert messages(cm(data={"a": "1"}, binaryData={"a": b64("1")})) == \
        ['binaryData: Invalid value: "a": duplicate of key present in data']
    assert messages(cm(binaryData={"b": "not base64!"})) == ['binaryData[b]: Invalid value: "<binary>": must be base64-encoded']
    big = "x" * (1024 * 1024)
    assert [e.split(":")[1].strip() for e in messages(cm(data={"big": big}))] == ["Too long"]
    assert messages(cm(data={"big": big[:-10]})) == []


def test_secret_string_data_type_and_base64() -> None:
    got = admit(secret(data={"user": b64("old"), "keep": b64("k")}, stringData={"user": "admin"})).object
    assert got["type"] == "Opaque" and "stringData" not in got
    assert got["data"] == {"user": b64("admin"), "keep": b64("k")}  # stringData wins
    assert messages(secret(data={"pw": "%%%"})) == [
        'data[pw]: Invalid value: "<secret contents redacted>": must be base64-encoded']
    assert messages(secret(type="kubernetes.io/tls", data={"tls.crt": b64("c")})) == ["data[tls.key]: Required value"]
    assert messages(secret(type="kubernetes.io/tls", stringData={"tls.crt": "c", "tls.key": "k"})) == []
    assert messages(secret(type="kubernetes.io/service-account-token")) == [
        "metadata.annotations[kubernetes.io/service-account.name]: Required value"]
    named = secret(type="kubernetes.io/service-account-token")
    named["metadata"]["annotations"] = {"kubernetes.io/service-account.name": "bot"}
    assert messages(named) == []


def test_updates_of_immutable_data_and_secret_types() -> None:
    cur = admit(cm(data={"a": "1"}, immutable=True)).object
    changed = {**cur, "data": {"a": "2"}}
    assert [str(e) for e in update_errors(CONFIG_MAP, cur, changed)] == \
        ["data: Forbidden: field is immutable when `immutable` is set"]
    assert [str(e) for e in update_errors(CONFIG_MAP, cur, {**cur, "immutable": False})] == \
        ["immutable: Forbidden: field is immutable when `immutable` is set"]
    assert update_errors(CONFIG_MAP, cur, {**cur, "metadata": {**cur["metadata"], "labels": {"x": "y"}}}) == []
    s = admit(secret(stringData={"a": "1"})).object
    assert [str(e) for e in update_errors(SECRET, s, {**s, "type": "kubernetes.io/basic-auth"})] == \
        ['type: Invalid value: "kubernetes.io/basic-auth": field is immutable']
    assert update_errors(SECRET, s, {**s, "data": {"a": b64("2")}}) == []  # mutable by default


def test_kubectl_columns() -> None:
    now = datetime.now(UTC)
    c = admit(cm(data={"a": "1", "b": "2"}, binaryData={"c": b64("3")})).object
    s = admit(secret(type="kubernetes.io/tls", stringData={"tls.crt": "c", "tls.key": "k"})).object
    assert [col.name for col in printing.column_defs(CONFIG_MAP)] == ["Name", "Data", "Age"]
    assert printing.cells(CONFIG_MAP, c, now)[:2] == ("conf", 3)
    assert [col.name for col in printing.column_defs(SECRET)] == ["Name", "Type", "Data", "Age"]
    assert printing.cells(SECRET, s, now)[:3] == ("creds", "kubernetes.io/tls", 2)


def pod_with(**container: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox", **container}]}}


def test_pod_env_references_are_validated() -> None:
    ok = pod_with(env=[{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "a"}}},
                       {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}],
                  envFrom=[{"secretRef": {"name": "creds"}, "prefix": "DB_"}])
    assert messages(ok) == []
    prefix = "spec.containers[0]."
    assert messages(pod_with(env=[{"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])) \
        == [f'{prefix}env[0].valueFrom: Invalid value: "": may not be specified when `value` is not empty']
    assert messages(pod_with(env=[{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c"}}}])) == \
        [f"{prefix}env[0].valueFrom.configMapKeyRef.key: Required value"]
    bad_field = messages(pod_with(env=[{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}]))
    assert len(bad_field) == 1 and bad_field[0].startswith(
        f'{prefix}env[0].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.nope"'), bad_field
    two = messages(pod_with(envFrom=[{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]))
    assert two == [f'{prefix}envFrom[0]: Invalid value: "": may not have more than one field specified at a time']


def test_a_pods_config_references() -> None:
    from orchestrator.objects.pod import config_refs

    p = pod_with(envFrom=[{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "b"}}],
                 env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "c", "key": "k"}}},
                      {"name": "Y", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "Z", "value": "1"}])
    p["spec"]["volumes"] = [{"name": "v", "configMap": {"name": "d"}}, {"name": "w", "secret": {"secretName": "e"}},
                            {"name": "x", "emptyDir": {}}]
    p["spec"]["initContainers"] = [{"name": "i", "image": "busybox",
                                    "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "f", "key": "k"}}}]}]
    assert config_refs(p) == {("ConfigMap", "a"), ("Secret", "b"), ("Secret", "c"), ("ConfigMap", "d"),
                              ("Secret", "e"), ("ConfigMap", "f")}


def test_describe_shows_config_values_and_only_secret_sizes() -> None:
    from orchestrator import describe

    now = datetime.now(UTC)
    c = describe.describe(CONFIG_MAP, admit(cm(data={"LEVEL": "debug"}, binaryData={"b": b64("xy")})).object,
                          events=[], now=now)
    assert "Data\n====\nLEVEL:\n----\ndebug\n" in c and "BinaryData\n====\nb: 2 bytes" in c, c
    s = describe.describe(SECRET, admit(secret(stringData={"password": "s3cr3t"})).object, events=[], now=now)
    assert "Type:         Opaque" in s and "password:  6 bytes" in s and "s3cr3t" not in s, s


def test_downward_api_references_are_validated() -> None:
    prefix = "spec.containers[0]."
    assert messages(pod_with(env=[{"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}]))[0] \
        .startswith(f'{prefix}env[0].valueFrom.resourceFieldRef.resource: Unsupported value: "limits.gpu"')
    assert messages(pod_with(env=[{"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu",
                                                                                   "divisor": "1Mi"}}}])) == [
        (f'{prefix}env[0].valueFrom.resourceFieldRef.divisor: Invalid value: "1Mi": only divisor\'s values 1m, 1 '
        "are supported with the cpu resource")]
    ok = pod_with()
    ok["spec"]["volumes"] = [{"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}]}}]
    assert messages(ok) == []
    bad = pod_with()
    bad["spec"]["volumes"] = [{"name": "info", "downwardAPI": {"items": [
        {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}},
        {"path": "mem", "resourceFieldRef": {"resource": "limits.memory"}},
        {"path": "../x", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "none"}]}}]
    got = messages(bad)
    assert got[0].startswith('spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath: Unsupported value: '
                             '"status.podIP"'), got
    assert got[1:] == ["spec.volumes[0].downwardAPI.items[1].resourceFieldRef.containerName: Required value",
                       "spec.volumes[0].downwardAPI.items[2].path: Invalid value: \"../x\": must not contain '..'",
                       "spec.volumes[0].downwardAPI.items[3]: Required value: one of fieldRef and resourceFieldRef"]


def test_projected_volumes_are_validated() -> None:
    p = pod_with()
    p["spec"]["volumes"] = [{"name": "all", "projected": {"sources": [
        {"configMap": {"name": "conf", "items": [{"key": "a", "path": "x"}]}},
        {"secret": {"items": [{"key": "b", "path": "x"}]}},
        {"serviceAccountToken": {"path": "token"}},
        {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
        {"clusterTrustBundle": {"path": "bundle"}}]}}]
    got = messages(p)
    assert got[:2] == ["spec.volumes[0].projected.sources[1].secret.name: Required value",
                       ('spec.volumes[0].projected.sources[1].secret.items[0].path: Invalid value: "x": '
                       "conflicting duplicate paths")], got
    assert got[2].startswith('spec.volumes[0].projected.sources[4]: Unsupported value: "clusterTrustBundle"'), got
    assert len(got) == 3, got


def test_projected_service_account_tokens_are_validated_and_defaulted() -> None:
    from orchestrator.validation import admit

    p = pod_with()
    p["spec"]["volumes"] = [{"name": "api", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"serviceAccountToken": {"path": "vault", "audience": "vault", "expirationSeconds": 7200}}]}}]
    sources = admit(p).object["spec"]["volumes"][0]["projected"]["sources"]
    assert sources[0]["serviceAccountToken"] == {"path": "token", "expirationSeconds": 3600}  # kube's default
    assert sources[2]["serviceAccountToken"]["expirationSeconds"] == 7200
    p["spec"]["volumes"] = [{"name": "bad", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 599}},
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 2**32 + 1}},
        {"serviceAccountToken": {"path": "/abs"}},
        {"serviceAccountToken": {}}]}}]
    assert messages(p) == [
        ("spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 599: "
         "may not specify a duration less than 10 minutes"),
        ("spec.volumes[0].projected.sources[1].serviceAccountToken.expirationSeconds: Invalid value: 4294967297: "
         "may not specify a duration larger than 2^32 seconds"),
        'spec.volumes[0].projected.sources[1].serviceAccountToken.path: Invalid value: "token": conflicting duplicate paths',
        'spec.volumes[0].projected.sources[2].serviceAccountToken.path: Invalid value: "/abs": must be a relative path',
        "spec.volumes[0].projected.path: Required value",  # kube names the volume's path here
    ]
