"""Kubernetes protobuf request bodies (orchestrator.apiserver.protobuf): Go's JSON semantics for
zero values and pointers, inline fields, maps, the special types, and one-line errors for bodies
it cannot read. What real kubectl sends (create namespace/service, debug node/, drain
--disable-eviction) is decoded in tests/lab/test_kubectl_lab.py; here the bytes are written
with the protobuf wire rules and the field numbers of k8s.io/api's generated.proto."""

from __future__ import annotations

import pytest

from orchestrator.apiserver.protobuf import ProtobufError, decode


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + field(1, field(1, api_version) + field(2, kind)) + field(2, raw)


def meta(name: str, **extra: bytes) -> bytes:
    # ObjectMeta: name 1, generateName 2, namespace 3, generation 7, creationTimestamp 8, labels 11
    return field(1, name) + field(2, "") + field(3, "") + field(7, 0) + field(8, b"") + b"".join(extra.values())


def test_go_zero_values_are_unset_and_pointers_keep_theirs() -> None:
    # ReplicationControllerSpec: replicas 1 (*int32), selector 2 (map), minReadySeconds 4 (int32)
    spec = field(1, 0) + field(2, field(1, "app") + field(2, "web")) + field(4, 0)
    rc = decode(envelope("v1", "ReplicationController", field(1, meta("web")) + field(2, spec)))
    assert rc == {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
                  "spec": {"replicas": 0, "selector": {"app": "web"}}}


def test_a_pod_inline_fields_specials_and_negative_numbers() -> None:
    # Probe: handler 1 (inline ProbeHandler: exec 1 {command 1}), periodSeconds 4
    probe = field(1, field(1, field(1, "true"))) + field(4, 3)
    # ContainerPort: name 1, hostPort 2, containerPort 3, protocol 4
    port = field(1, "http") + field(2, 0) + field(3, 8080) + field(4, "TCP")
    # ResourceRequirements: limits 1 (map name -> Quantity {string 1})
    resources = field(1, field(1, "memory") + field(2, field(1, "64Mi")))
    # Container: name 1, image 2, command 3, ports 6, resources 8, livenessProbe 10
    container = field(1, "c") + field(2, "busybox") + field(3, "sleep") + field(3, "60") + field(6, port) + \
        field(8, resources) + field(10, probe)
    # Volume: name 1, volumeSource 2 (inline: emptyDir 2, an empty message is still set)
    volume = field(1, "cache") + field(2, field(2, b""))
    # PodSpec: volumes 1, containers 2, restartPolicy 3, terminationGracePeriodSeconds 4 (*int64),
    # activeDeadlineSeconds 5 (*int64), hostNetwork 11 (bool)
    spec = field(1, volume) + field(2, container) + field(3, "") + field(4, 0) + field(5, -1) + field(11, 0)
    # Time: seconds 1, nanos 2; ObjectMeta.deletionTimestamp is 9
    md = meta("p", labels=field(11, field(1, "app") + field(2, "x")),
              deleted=field(9, field(1, 1_764_739_778)))
    pod = decode(envelope("v1", "Pod", field(1, md) + field(2, spec) + field(3, b"")))
    assert pod["metadata"] == {"name": "p", "labels": {"app": "x"}, "deletionTimestamp": "2025-12-03T05:29:38Z"}
    assert pod["spec"] == {
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "60"],
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "resources": {"limits": {"memory": "64Mi"}},
                        "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 3}}],
        "terminationGracePeriodSeconds": 0, "activeDeadlineSeconds": -1}
    assert pod["status"] == {}


def test_int_or_string_delete_options_and_unknown_fields() -> None:
    # ServicePort: name 1, port 3, targetPort 4 (IntOrString: type 1, intVal 2, strVal 3)
    named = field(1, "web") + field(3, 80) + field(4, field(1, 1) + field(3, "http"))
    numbered = field(1, "alt") + field(3, 81) + field(4, field(1, 0) + field(2, 8081))
    spec = field(1, named) + field(1, numbered) + field(999, "from a newer client")
    svc = decode(envelope("v1", "Service", field(1, meta("s")) + field(2, spec)))
    assert svc["spec"]["ports"] == [{"name": "web", "port": 80, "targetPort": "http"},
                                    {"name": "alt", "port": 81, "targetPort": 8081}]
    # DeleteOptions: gracePeriodSeconds 1 (*int64), preconditions 2 {uid 1}, propagationPolicy 4, dryRun 5
    opts = decode(envelope("v1", "DeleteOptions", field(1, 0) + field(2, field(1, "u-1")) +
                           field(4, "Foreground") + field(5, "All")))
    assert opts == {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                    "preconditions": {"uid": "u-1"}, "propagationPolicy": "Foreground", "dryRun": ["All"]}
    ev = decode(envelope("policy/v1", "Eviction", field(1, meta("p")) + field(2, field(1, 5))))
    assert ev == {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"},
                  "deleteOptions": {"gracePeriodSeconds": 5}}


@pytest.mark.parametrize(("body", "message"), [
    (b'{"kind": "Pod"}', "does not start with the Kubernetes protobuf prefix"),
    (envelope("apps/v1", "Deployment", b""), "a apps/v1, Kind=Deployment is not read here"),
    (envelope("v1", "Pod", field(1, b"\x0a\x05ab")), "truncated field"),
    (envelope("v1", "Pod", field(1, field(1, b"\xff\xfe"))), "a string is not UTF-8"),
    (envelope("v1", "Pod", field(1, field(1, 7))), "a string field is not length-delimited"),
    (b"k8s\x00" + field(1, field(1, "v1") + field(2, "Pod")) + field(3, "gzip"), "content encoding 'gzip'"),
    (envelope("v1", "Pod", b"\x0b"), "wire type 3 is not used"),
])
def test_bodies_it_cannot_read_are_one_line_errors(body: bytes, message: str) -> None:
    with pytest.raises(ProtobufError, match=message) as e:
        decode(body)
    assert "\n" not in str(e.value)


def test_a_lease_as_client_go_leader_election_sends_it() -> None:
    # LeaseSpec: holderIdentity 1, leaseDurationSeconds 2, acquireTime 3 and renewTime 4 (MicroTime:
    # seconds 1, nanos 2), leaseTransitions 5: every field a pointer, so a 0 is kept
    renew = field(1, 1_796_630_400) + field(2, 123_456_789)
    spec = field(1, "candidate-a") + field(2, 15) + field(3, field(1, 1_796_630_390)) + field(4, renew) + field(5, 0)
    lease = decode(envelope("coordination.k8s.io/v1", "Lease", field(1, meta("lock")) + field(2, spec)))
    assert lease == {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "lock"},
                     "spec": {"holderIdentity": "candidate-a", "leaseDurationSeconds": 15,
                              "acquireTime": "2026-12-07T07:59:50.000000Z",
                              "renewTime": "2026-12-07T08:00:00.123456Z", "leaseTransitions": 0}}


def test_rbac_objects_as_kubectl_create_sends_them() -> None:
    """`kubectl create rolebinding|clusterrole` send protobuf: RoleRef {1 apiGroup, 2 kind, 3 name},
    Subject {1 kind, 2 apiGroup, 3 name, 4 namespace}, PolicyRule {1 verbs, 2 apiGroups, 3 resources,
    4 resourceNames, 5 nonResourceURLs}; a ClusterRole's aggregationRule (3) is a pointer."""
    ref = field(1, "rbac.authorization.k8s.io") + field(2, "ClusterRole") + field(3, "view")
    sa = field(1, "ServiceAccount") + field(2, "") + field(3, "reader") + field(4, "default")
    binding = decode(envelope("rbac.authorization.k8s.io/v1", "RoleBinding",
                              field(1, meta("reader-view")) + field(2, sa) + field(3, ref)))
    assert binding == {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                       "metadata": {"name": "reader-view"},
                       "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}],
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}}
    rule = field(1, "get") + field(1, "list") + field(2, "") + field(3, "pods") + field(4, "web")
    selector = field(1, field(1, "team") + field(2, "true"))  # matchLabels: a map entry {1 key, 2 value}
    role = decode(envelope("rbac.authorization.k8s.io/v1", "ClusterRole",
                           field(1, meta("r")) + field(2, rule) + field(3, field(1, selector))))
    assert role["rules"] == [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["web"]}]
    assert role["aggregationRule"] == {"clusterRoleSelectors": [{"matchLabels": {"team": "true"}}]}
