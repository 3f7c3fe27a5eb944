"""One validation layer: defaults, schema structure (kubernetes-validate), Kubernetes' paths
and wording, unknown-field warnings, real guestbook manifests."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import yaml

from netplane.errors import UserError
from orchestrator.validation import InvalidObject, admit, validate

GUESTBOOK = """
apiVersion: v1
kind: ReplicationController
metadata:
  name: redis-master
  labels: {app: redis, role: master, tier: backend}
spec:
  replicas: 1
  template:
    metadata:
      labels: {app: redis, role: master, tier: backend}
    spec:
      containers:
      - name: master
        image: redis
        resources:
          requests: {cpu: 100m, memory: 100Mi}
        ports:
        - containerPort: 6379
---
apiVersion: v1
kind: ReplicationController
metadata:
  name: frontend
  labels: {app: guestbook, tier: frontend}
spec:
  replicas: 3
  template:
    metadata:
      labels: {app: guestbook, tier: frontend}
    spec:
      containers:
      - name: php-redis
        image: gcr.io/google-samples/gb-frontend:v4
        resources:
          requests: {cpu: 100m, memory: 100Mi}
        env:
        - name: GET_HOSTS_FROM
          value: dns
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: frontend
  labels: {app: guestbook, tier: frontend}
spec:
  type: NodePort
  ports:
  - port: 80
  selector: {app: guestbook, tier: frontend}
---
apiVersion: v1
kind: Service
metadata:
  name: redis-master
  labels: {app: redis, role: master, tier: backend}
spec:
  ports:
  - port: 6379
    targetPort: 6379
  selector: {app: redis, role: master, tier: backend}
"""


def guestbook() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(GUESTBOOK) if d]


def rc(**container: Any) -> dict[str, Any]:
    c = {"name": "web", "image": "busybox", **container}
    return {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "web"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [c]}}},
    }


def pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def errors(obj: dict[str, Any]) -> list[str]:
    return [str(e) for e in validate(obj)]


def test_guestbook_manifests_are_valid_without_warnings() -> None:
    for doc in guestbook():
        a = admit(doc)
        assert a.warnings == [], doc["metadata"]["name"]


def test_rc_defaults() -> None:
    obj = admit(guestbook()[0]).object
    spec = obj["spec"]
    assert obj["metadata"]["namespace"] == "default"
    assert spec["selector"] == {"app": "redis", "role": "master", "tier": "backend"}
    ps = spec["template"]["spec"]
    assert ps["restartPolicy"] == "Always" and ps["terminationGracePeriodSeconds"] == 30
    c = ps["containers"][0]
    assert c["ports"][0]["protocol"] == "TCP"
    assert c["imagePullPolicy"] == "Always"  # no tag means :latest
    m = copy.deepcopy(guestbook()[0])
    del m["spec"]["replicas"]
    del m["metadata"]["labels"]
    out = admit(m).object
    assert out["spec"]["replicas"] == 1
    assert out["metadata"]["labels"] == {"app": "redis", "role": "master", "tier": "backend"}
    assert admit(guestbook()[1]).object["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_admit_does_not_modify_its_input() -> None:
    doc = guestbook()[0]
    before = copy.deepcopy(doc)
    admit(doc)
    assert doc == before


def test_probe_defaults_and_zero_means_default() -> None:
    probe = {"httpGet": {"port": 80}, "periodSeconds": 0}
    out = admit(pod(containers=[{"name": "c", "image": "i", "readinessProbe": probe,
                                 "livenessProbe": {"tcpSocket": {"port": "http"}, "failureThreshold": 5}}])).object
    c = out["spec"]["containers"][0]
    assert c["readinessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                                   "initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1,
                                   "successThreshold": 1, "failureThreshold": 3}
    assert c["livenessProbe"]["failureThreshold"] == 5


def test_service_defaults() -> None:
    out = admit({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                 "spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 53, "protocol": "UDP"}]}}).object
    assert out["spec"]["type"] == "ClusterIP"
    assert out["spec"]["ports"] == [{"port": 53, "protocol": "UDP", "targetPort": 53}]
    assert out["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


def test_requests_default_to_limits() -> None:
    out = admit(pod(containers=[{"name": "c", "image": "i", "resources": {
        "limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "200m"}}}])).object
    assert out["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "200m", "memory": "1Gi"}


def test_node_allocatable_defaults_to_capacity() -> None:
    out = admit({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "h1"},
                 "status": {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"}}}).object
    assert out["status"]["allocatable"] == {"cpu": "2", "memory": "4Gi", "pods": "110"}
    assert "namespace" not in out["metadata"]


@pytest.mark.parametrize(
    ("obj", "want"),
    [
        (rc(ports=[{"containerPort": 70000}]),
         "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"),
        (rc(ports=[{"containerPort": 80, "protocol": "SCTPX"}]),
         'spec.template.spec.containers[0].ports[0].protocol: Unsupported value: "SCTPX": supported values: "TCP", "UDP"'),
        (rc(ports=[{"containerPort": 80, "name": "Http"}]),
         'spec.template.spec.containers[0].ports[0].name: Invalid value: "Http": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)'),
        (rc(image=""), "spec.template.spec.containers[0].image: Required value"),
        (rc(resources={"requests": {"cpu": "abc"}}),
         "spec.template.spec.containers[0].resources.requests[cpu]: Invalid value: \"abc\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
        (rc(resources={"requests": {"cpu": "-1"}}),
         'spec.template.spec.containers[0].resources.requests[cpu]: Invalid value: "-1": must be greater than or equal to 0'),
        (rc(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
         'spec.template.spec.containers[0].resources.requests[cpu]: Invalid value: "2": must be less than or equal to cpu limit of 1'),
        (rc(resources={"requests": {"nvidia.com/gpu": "1"}}),
         'spec.template.spec.containers[0].resources.requests[nvidia.com/gpu]: Unsupported value: "nvidia.com/gpu": supported values: "cpu", "ephemeral-storage", "memory"'),
        (rc(readinessProbe={"periodSeconds": 3}),
         "spec.template.spec.containers[0].readinessProbe: Required value: must specify a handler type"),
        (rc(readinessProbe={"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}),
         "spec.template.spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type"),
        (rc(livenessProbe={"exec": {"command": ["true"]}, "successThreshold": 2}),
         "spec.template.spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"),
        (rc(livenessProbe={"httpGet": {"port": 0}}),
         "spec.template.spec.containers[0].livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive"),
        (rc(readinessProbe={"exec": {"command": ["true"]}, "initialDelaySeconds": -1}),
         "spec.template.spec.containers[0].readinessProbe.initialDelaySeconds: Invalid value: -1: must be greater than or equal to 0"),
        (rc(env=[{"name": "1BAD", "value": "x"}]),
         "spec.template.spec.containers[0].env[0].name: Invalid value: \"1BAD\": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"),
        (rc(name="Web"),
         "spec.template.spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
        (pod(restartPolicy="Sometimes"),
         'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure"'),
        (pod(terminationGracePeriodSeconds=-5),
         "spec.terminationGracePeriodSeconds: Invalid value: -5: must be greater than or equal to 0"),
        (pod(containers=[]), "spec.containers: Required value"),
        (pod(shareProcessNamespace=True, hostPID=True),
         "spec.securityContext.shareProcessNamespace: Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled"),
        (pod(nodeSelector={"disk": "s s d"}),
         "spec.nodeSelector[disk]: Invalid value: \"s s d\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"),
    ],
)
def test_errors_name_the_field_like_kubernetes(obj: dict[str, Any], want: str) -> None:
    assert errors(obj) == [want]


def test_rc_rules() -> None:
    r = rc()
    r["spec"]["replicas"] = -1
    assert errors(r) == ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
    r = rc()
    r["spec"]["selector"] = {"app": "other"}
    assert errors(r) == ['spec.template.metadata.labels: Invalid value: {"app":"web"}: `selector` does not match template `labels`']
    r = rc()
    r["spec"]["template"]["metadata"] = {}
    assert errors(r) == ["spec.selector: Required value"]
    r = rc()
    del r["spec"]["template"]
    assert errors(r) == ["spec.selector: Required value", "spec.template: Required value"]
    r = rc()
    r["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert errors(r) == ['spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always"']


def test_duplicates_within_a_pod() -> None:
    p = pod(containers=[
        {"name": "a", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080, "name": "web"}]},
        {"name": "a", "image": "i", "ports": [{"containerPort": 81, "hostPort": 8080, "name": "web"}]},
    ])
    assert errors(p) == [
        'spec.containers[1].name: Duplicate value: "a"',
        'spec.containers[1].ports[0].name: Duplicate value: "web"',
        'spec.containers[1].ports[0].hostPort: Duplicate value: "8080/TCP"',
    ]


def test_metadata_rules() -> None:
    p = pod()
    p["metadata"] = {"name": "Bad_Name", "labels": {"a/b/c": "x"}}
    errs = errors(p)
    assert errs[0].startswith('metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain')
    assert errs[1].startswith('metadata.labels: Invalid value: "a/b/c": a qualified name must consist')
    p["metadata"] = {}
    assert errors(p) == ["metadata.name: Required value: name or generateName is required"]
    p["metadata"] = {"generateName": "web-"}
    assert errors(p) == []
    p["metadata"] = {"name": "p", "namespace": "Not_OK"}
    assert errors(p)[0].startswith('metadata.namespace: Invalid value: "Not_OK": a lowercase RFC 1123 label')
    n = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "h1", "namespace": "x"}}
    assert errors(n) == ["metadata.namespace: Forbidden: not allowed on this type"]
    p = pod()
    p["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ReplicationController", "name": "a", "uid": "1", "controller": True},
        {"apiVersion": "v1", "kind": "ReplicationController", "name": "b", "uid": "2", "controller": True},
        {"apiVersion": "v1", "kind": "X", "name": "c"},
    ]
    errs = errors(p)
    assert errs[0] == "metadata.ownerReferences[2].uid: Required value"
    assert 'Only one reference can have Controller set to true. Found "true" in references for ReplicationController/a and ReplicationController/b' in errs[1]


def test_service_rules() -> None:
    def svc(**spec: Any) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": spec}

    assert errors(svc()) == ["spec.ports: Required value"]
    assert errors(svc(ports=[{"port": 80}, {"port": 81}])) == ["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"]
    assert errors(svc(ports=[{"port": 80, "targetPort": "http-web"}])) == []
    # a Service port's name is a DNS-1123 label (`kubectl create service --tcp=81:8080` names it
    # "81-8080"); the IANA rule (a letter, 15 characters) is for containers' ports
    assert errors(svc(ports=[{"name": "81-8080", "port": 81}, {"name": "a-long-name-over-15", "port": 82}])) == []
    # single-stack IPv4: the families kube-apiserver gives every Service, and what it refuses here
    out = admit(svc(ports=[{"port": 80}], clusterIPs=["10.96.0.9"])).object["spec"]
    assert (out["clusterIP"], out["ipFamilies"], out["ipFamilyPolicy"], out["internalTrafficPolicy"]) == \
        ("10.96.0.9", ["IPv4"], "SingleStack", "Cluster")
    assert errors(svc(ports=[{"port": 80}], clusterIP="10.96.0.9", clusterIPs=["10.96.0.8"], ipFamilies=["IPv6"],
                      ipFamilyPolicy="RequireDualStack", internalTrafficPolicy="Local")) == [
        'spec.clusterIPs[0]: Invalid value: "10.96.0.8": must match `clusterIP` value',
        'spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster',
        'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services',
        'spec.internalTrafficPolicy: Unsupported value: "Local": supported values: "Cluster"']
    assert errors(svc(ports=[{"name": "Web", "port": 80}]))[0].startswith(
        'spec.ports[0].name: Invalid value: "Web": a lowercase RFC 1123 label must consist of')
    assert errors(svc(ports=[{"port": 80, "targetPort": 0}])) == ["spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive"]
    assert errors(svc(ports=[{"port": 80, "nodePort": 30080}])) == ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    assert errors(svc(type="LoadBalancer", ports=[{"port": 80}])) == ['spec.type: Unsupported value: "LoadBalancer": supported values: "ClusterIP", "NodePort"']
    assert errors(svc(clusterIP="10.0.0.300", ports=[{"port": 80}])) == ['spec.clusterIP: Invalid value: "10.0.0.300": must be a valid IPv4 address']
    assert errors(svc(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}])) == ['spec.ports[1]: Duplicate value: {"port":80,"protocol":"TCP"}']
    assert errors(svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}}, ports=[{"port": 1}])) == [
        "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"]


def test_endpoints_rules() -> None:
    ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "s"}, "subsets": [
        {"addresses": [{"ip": "10.244.0.5"}, {"ip": "nope"}], "notReadyAddresses": [{"ip": "10.244.1.5"}],
         "ports": [{"port": 8080}]}]}
    assert errors(ep) == ['subsets[0].addresses[1].ip: Invalid value: "nope": must be a valid IPv4 address']


def test_schema_type_errors_and_nothing_more() -> None:
    r = rc(ports=[{"containerPort": "eighty"}])
    r["spec"]["replicas"] = "three"
    assert errors(r) == [
        'spec.replicas: Invalid value: "three": must be of type integer',
        'spec.template.spec.containers[0].ports[0].containerPort: Invalid value: "eighty": must be of type integer',
    ]
    r = rc(resources={"requests": {"cpu": True}})
    assert errors(r) == ["spec.template.spec.containers[0].resources.requests[cpu]: Invalid value: true: must be of type string or number"]


def test_integer_ranges_and_times_like_kubernetes_decoder() -> None:
    r = rc()
    r["spec"]["replicas"] = 2**31
    assert errors(r) == ["spec.replicas: Invalid value: 2147483648: must fit in a 32-bit integer"]
    p = pod(activeDeadlineSeconds=2**63)
    assert errors(p) == ["spec.activeDeadlineSeconds: Invalid value: 9223372036854775808: must fit in a 64-bit integer"]
    p = pod()
    p["status"] = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "yesterday"}]}
    assert errors(p) == [('status.conditions[0].lastTransitionTime: Invalid value: "yesterday": '
                         "must be an RFC 3339 time (e.g. 2006-01-02T15:04:05Z)")]
    p["status"]["conditions"][0]["lastTransitionTime"] = "2024-01-01T00:00:00.5+02:00"
    assert errors(p) == []


def test_schema_paths_print_map_entries_in_brackets() -> None:
    p = pod(nodeSelector={"disk": 5})
    p["metadata"]["labels"] = {"app": ["x"]}
    assert errors(p) == ['metadata.labels[app]: Invalid value: ["x"]: must be of type string',
                         "spec.nodeSelector[disk]: Invalid value: 5: must be of type string"]


def test_unknown_fields_are_warnings_and_pruned() -> None:
    r = rc(ports=[{"containerPort": 80, "bogus": 1}], imagePolicy="x")
    r["spec"]["replicaz"] = 2
    r["extra"] = {"a": 1}
    a = admit(r)
    assert a.warnings == [
        'unknown field "extra"',
        'unknown field "spec.replicaz"',
        'unknown field "spec.template.spec.containers[0].imagePolicy"',
        'unknown field "spec.template.spec.containers[0].ports[0].bogus"',
    ]
    assert "extra" not in a.object and "replicaz" not in a.object["spec"]
    c = a.object["spec"]["template"]["spec"]["containers"][0]
    assert "imagePolicy" not in c and c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_fields_we_do_not_model_are_kept() -> None:
    p = pod(containers=[{"name": "c", "image": "i", "volumeMounts": [{"name": "v", "mountPath": "/d"}]}],
            volumes=[{"name": "v", "emptyDir": {}}], tolerations=[{"key": "k", "operator": "Exists"}])
    a = admit(p)
    assert a.warnings == []
    assert a.object["spec"]["volumes"] == [{"name": "v", "emptyDir": {}}]
    assert a.object["spec"]["containers"][0]["volumeMounts"] == [{"name": "v", "mountPath": "/d"}]


def test_nulls_are_absent() -> None:
    r = rc(ports=None)
    r["spec"]["replicas"] = None
    a = admit(r)
    assert a.object["spec"]["replicas"] == 1 and "ports" not in a.object["spec"]["template"]["spec"]["containers"][0]


def test_kind_and_api_version() -> None:
    assert errors({"kind": "Pod"}) == ["apiVersion: Required value"]
    assert errors({"apiVersion": "apps/v1", "kind": "Pod"}) == ['apiVersion: Unsupported value: "apps/v1": supported values: "v1"']
    assert errors({"apiVersion": "apps/v1", "kind": "Deployment"})[0].startswith('kind: Unsupported value: "Deployment": supported values: "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Endpoints", "Event", "Lease"')


def test_invalid_object_message_and_class() -> None:
    with pytest.raises(InvalidObject) as ei:
        admit(rc(ports=[{"containerPort": 0}], image=""))
    e = ei.value
    assert isinstance(e, UserError) and len(e.errors) == 2
    assert str(e) == ('ReplicationController "web" is invalid: [spec.template.spec.containers[0].image: Required value, '
                      "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive]")
    with pytest.raises(InvalidObject, match='^Pod "p" is invalid: spec.containers: Required value$'):
        admit(pod(containers=[]))


def test_fast_enough_for_an_api_server() -> None:
    docs = guestbook()
    admit(docs[0])  # schema load, once
    t = time.perf_counter()
    for _ in range(50):
        for d in docs:
            admit(d)
    per = (time.perf_counter() - t) / 200
    assert per < 0.005, f"{per * 1000:.2f} ms per manifest"


def test_host_network_ports_are_the_nodes_and_pods_get_a_security_context() -> None:
    hn = pod(hostNetwork=True)
    hn["spec"]["containers"][0]["ports"] = [{"containerPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]
    out = admit(hn).object
    assert [p["hostPort"] for p in out["spec"]["containers"][0]["ports"]] == [8080, 53]  # SetDefaults_Pod
    assert out["spec"]["securityContext"] == {}
    hp = pod(volumes=[{"name": "h", "hostPath": {"path": "/var/log"}}, {"name": "d", "hostPath": {"path": "/d", "type": "Directory"}}])
    assert [v["hostPath"] for v in admit(hp).object["spec"]["volumes"]] == [  # SetDefaults_HostPathVolumeSource
        {"path": "/var/log", "type": ""}, {"path": "/d", "type": "Directory"}]
    hn["spec"]["containers"][0]["ports"] = [{"containerPort": 8080, "hostPort": 9090}]
    assert errors(hn) == [("spec.containers[0].ports[0].hostPort: Invalid value: 9090: must match `containerPort` "
                           "when `hostNetwork` is true")]
    plain = pod()
    plain["spec"]["containers"][0]["ports"] = [{"containerPort": 8080}]
    assert "hostPort" not in admit(plain).object["spec"]["containers"][0]["ports"][0]


def test_ephemeral_containers_are_checked_as_debugging_containers() -> None:
    p = pod(ephemeralContainers=[{"name": "c", "image": "busybox"},
                                 {"name": "d", "image": "", "readinessProbe": {"exec": {"command": ["true"]}}},
                                 {"name": "e", "image": "busybox", "targetContainerName": "zz"}])
    assert errors(p) == ['spec.ephemeralContainers[0].name: Duplicate value: "c"',
                         "spec.ephemeralContainers[1].image: Required value",
                         "spec.ephemeralContainers[1].readinessProbe: Forbidden: cannot be set for an Ephemeral Container",
                         'spec.ephemeralContainers[2].targetContainerName: Not found: "zz"']


def _mounts(*mounts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "c", "image": "busybox", "volumeMounts": list(mounts)}]


def test_volumes_and_mounts_that_the_kubelet_runs_are_admitted_and_kept() -> None:
    vols = [{"name": "cache", "emptyDir": {}}, {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}}]
    mounts = [{"name": "cache", "mountPath": "/cache"}, {"name": "shm", "mountPath": "/dev/shm"},
              {"name": "host", "mountPath": "/host/log", "readOnly": True, "subPath": "apt"}]
    a = admit(pod(volumes=vols, containers=_mounts(*mounts)))
    assert a.warnings == []
    assert a.object["spec"]["volumes"] == vols
    assert a.object["spec"]["containers"][0]["volumeMounts"] == mounts


def test_volume_errors_have_kubernetes_paths_and_wording() -> None:
    vols = [{"name": "a", "emptyDir": {"medium": "HugePages", "sizeLimit": "0"}},
            {"name": "a", "hostPath": {"path": "/x/../etc", "type": "Dir"}},
            {"name": "pvc", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "none"},
            {"name": "two", "emptyDir": {}, "hostPath": {"path": "/tmp"}},
            {"name": "rel", "hostPath": {"path": "tmp"}}]
    mounts = [{"name": "missing", "mountPath": "/m"}, {"name": "a", "mountPath": "/m", "subPath": "/abs"},
              {"name": "a", "mountPath": "rel", "subPath": "x/../../y", "mountPropagation": "Bidirectional"},
              {"name": "a", "mountPath": "/e", "subPathExpr": "$(POD)", "recursiveReadOnly": "Enabled"}]
    assert errors(pod(volumes=vols, containers=_mounts(*mounts))) == [
        'spec.volumes[0].emptyDir.medium: Unsupported value: "HugePages": supported values: "", "Memory"',
        'spec.volumes[0].emptyDir.sizeLimit: Invalid value: "0": must be greater than zero',
        'spec.volumes[1].name: Duplicate value: "a"',
        "spec.volumes[1].hostPath.path: Invalid value: \"/x/../etc\": must not contain '..'",
        ('spec.volumes[1].hostPath.type: Unsupported value: "Dir": supported values: "", "BlockDevice", '
        '"CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"'),
        ('spec.volumes[2]: Unsupported value: "persistentVolumeClaim": supported values: "configMap", '
         '"downwardAPI", "emptyDir", "hostPath", "projected", "secret"'),
        "spec.volumes[3]: Required value: must specify a volume type",
        "spec.volumes[4].hostPath: Forbidden: may not specify more than 1 volume type",
        'spec.volumes[5].hostPath.path: Invalid value: "tmp": must be an absolute path',
        'spec.containers[0].volumeMounts[0].name: Not found: "missing"',
        'spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/m": must be unique',
        'spec.containers[0].volumeMounts[1].subPath: Invalid value: "/abs": must be a relative path',
        'spec.containers[0].volumeMounts[2].mountPath: Invalid value: "rel": must be an absolute path',
        "spec.containers[0].volumeMounts[2].subPath: Invalid value: \"x/../../y\": must not contain '..'",
        ('spec.containers[0].volumeMounts[2].mountPropagation: Unsupported value: "Bidirectional": '
        'supported values: "None"'),
        ("spec.containers[0].volumeMounts[3].subPathExpr: Forbidden: is not supported by netplane's kubelet "
        "(subPath is)"),
        ('spec.containers[0].volumeMounts[3].recursiveReadOnly: Unsupported value: "Enabled": '
        'supported values: "Disabled"'),
    ]


def test_config_map_and_secret_volumes() -> None:
    vols = [{"name": "cm", "configMap": {"defaultMode": 0o1000, "items": [
                {"key": "k", "path": "../x"}, {"key": "", "path": "/abs", "mode": -1}, {"key": "j", "path": "..y"}]}},
            {"name": "s", "secret": {"secretName": "creds", "items": [{"key": "a", "path": "p"}, {"key": "b", "path": "p"}]}},
            {"name": "ok", "configMap": {"name": "conf", "optional": True, "defaultMode": 0o400}}]
    assert errors(pod(volumes=vols)) == [
        "spec.volumes[0].configMap.name: Required value",
        ("spec.volumes[0].configMap.defaultMode: Invalid value: 512: must be a number between 0 and 0777 (octal), "
        "both inclusive"),
        "spec.volumes[0].configMap.items[0].path: Invalid value: \"../x\": must not contain '..'",
        "spec.volumes[0].configMap.items[1].key: Required value",
        'spec.volumes[0].configMap.items[1].path: Invalid value: "/abs": must be a relative path',
        ("spec.volumes[0].configMap.items[1].mode: Invalid value: -1: must be a number between 0 and 0777 (octal), "
        "both inclusive"),
        "spec.volumes[0].configMap.items[2].path: Invalid value: \"..y\": must not start with '..'",
        'spec.volumes[1].secret.items[1].path: Duplicate value: "p"',
    ]


def test_ephemeral_containers_mount_the_pods_volumes_only() -> None:
    p = pod(volumes=[{"name": "v", "emptyDir": {}}],
            ephemeralContainers=[{"name": "d", "image": "busybox", "volumeMounts": [{"name": "v", "mountPath": "/v"},
                                                                                     {"name": "w", "mountPath": "/w"}]}])
    assert errors(p) == ['spec.ephemeralContainers[0].volumeMounts[1].name: Not found: "w"']


def lease(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "lock"}, "spec": spec}


def test_a_lease_is_stored_as_kube_apiserver_stores_it() -> None:
    """MicroTimes in their wire form (UTC, six digits, whatever the client sent); the
    CoordinatedLeaderElection fields dropped, as its gate is off in Kubernetes 1.33."""
    got = admit(lease(holderIdentity="a", leaseDurationSeconds=15, acquireTime="2026-12-07T09:00:00+01:00",
                      renewTime="2026-12-07T08:00:01.5Z", leaseTransitions=0, strategy="OldestEmulationVersion",
                      preferredHolder="b"))
    assert got.warnings == []
    assert got.object == {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                          "metadata": {"name": "lock", "namespace": "default"},
                          "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15,
                                   "acquireTime": "2026-12-07T08:00:00.000000Z",
                                   "renewTime": "2026-12-07T08:00:01.500000Z", "leaseTransitions": 0}}
    assert admit(lease()).object["spec"] == {}


@pytest.mark.parametrize("obj, want", [
    (lease(leaseDurationSeconds=0), ('Lease.coordination.k8s.io "lock" is invalid: spec.leaseDurationSeconds: '
                                     "Invalid value: 0: must be greater than 0")),
    (lease(leaseTransitions=-1), "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0"),
    (lease(renewTime="yesterday"), "spec.renewTime: Invalid value: "),
    (lease(leaseDurationSeconds="15"), "spec.leaseDurationSeconds: Invalid value: "),
    ({**lease(), "metadata": {"name": "Lock"}}, "metadata.name: Invalid value: \"Lock\": a lowercase RFC 1123 subdomain"),
    ({**lease(), "apiVersion": "v1"}, 'apiVersion: Unsupported value: "v1": supported values: "coordination.k8s.io/v1"'),
])
def test_lease_errors_name_the_field(obj: dict[str, Any], want: str) -> None:
    with pytest.raises(InvalidObject) as e:
        admit(obj)
    assert want in str(e.value)


# ------------------------------------------------------------------ ratcheting (admit with prior)
def _stored(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` as a writer of the store would have admitted it."""
    return admit(obj).object


def test_an_update_that_leaves_the_spec_unchanged_admits_what_a_full_check_admits() -> None:
    prior = _stored(pod(restartPolicy="Never", volumes=[{"name": "v", "emptyDir": {}}]))
    prior["status"] = {"phase": "Running", "podIP": "10.1.0.5"}
    new = copy.deepcopy(prior)
    new["metadata"]["labels"] = {"patched": "1"}
    assert admit(new, prior=prior) == admit(new)


def test_an_unchanged_stored_spec_is_not_checked_again_a_changed_one_is() -> None:
    # a stored pod that today's rules refuse (another tool wrote it, or older rules admitted it)
    prior = _stored(pod())
    prior["spec"]["restartPolicy"] = "Sometimes"
    prior["spec"]["containers"][0]["ports"] = [{"containerPort": "eighty", "protocol": "TCP"}]
    labelled = copy.deepcopy(prior)
    labelled["metadata"]["labels"] = {"app": "web"}
    with pytest.raises(InvalidObject):
        admit(labelled)
    assert admit(labelled, prior=prior).object["spec"] == prior["spec"]  # ratcheted: kept as it is
    # what an update does change is checked (with the rest of the spec)
    changed = copy.deepcopy(labelled)
    changed["spec"]["activeDeadlineSeconds"] = 30
    with pytest.raises(InvalidObject, match="containerPort"):
        admit(changed, prior=prior)
    # the metadata is always checked
    bad_label = copy.deepcopy(prior)
    bad_label["metadata"]["labels"] = {"-bad-": "x"}
    with pytest.raises(InvalidObject, match="metadata.labels"):
        admit(bad_label, prior=prior)


@pytest.mark.parametrize("was, now", [(1, True), (30, 30.0)])
def test_unchanged_means_the_same_bytes_not_python_equality(was: Any, now: Any) -> None:
    prior = _stored(pod(terminationGracePeriodSeconds=was))
    new = copy.deepcopy(prior)
    new["spec"]["terminationGracePeriodSeconds"] = now
    assert new["spec"] == prior["spec"]  # == cannot tell them apart
    if now is True:  # a boolean where an integer belongs: refused as on any write
        with pytest.raises(InvalidObject, match="terminationGracePeriodSeconds"):
            admit(new, prior=prior)
    else:  # checked, and admitted as a full check admits it
        assert admit(new, prior=prior) == admit(new)


def test_an_unchanged_status_is_not_checked_again_unknown_fields_in_a_changed_one_are() -> None:
    prior = _stored(pod())
    prior["status"] = {"phase": "Running", "hostIP": 7}  # a wrong type, stored by someone else
    new = copy.deepcopy(prior)
    new["metadata"]["labels"] = {"a": "b"}
    assert admit(new, prior=prior).object["status"] == prior["status"]
    with pytest.raises(InvalidObject, match="status.hostIP"):
        admit(new)
    new["status"] = {"phase": "Running", "bogus": 1}
    got = admit(new, prior=prior)
    assert got.warnings == ['unknown field "status.bogus"'] and "bogus" not in got.object["status"]


def test_a_stored_status_with_nulls_is_unchanged_by_an_update_that_drops_them() -> None:
    """kube stores `lastProbeTime: null`; admission drops nulls, so the patched copy lacks
    them: the same status, not checked again (its wrong type, someone else's, survives)."""
    prior = _stored(pod())
    prior["status"] = {"phase": "Running", "hostIP": 7, "conditions": [
        {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": "2026-12-07T00:00:00Z"}]}
    new = copy.deepcopy(prior)
    new["metadata"]["labels"] = {"a": "b"}
    got = admit(new, prior=prior).object["status"]
    assert got == {"phase": "Running", "hostIP": 7, "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-07T00:00:00Z"}]}
    with pytest.raises(InvalidObject, match="status.hostIP"):
        admit(new)
    new["status"]["phase"] = "Failed"  # changed: checked
    with pytest.raises(InvalidObject, match="status.hostIP"):
        admit(new, prior=prior)


def test_ratcheting_is_for_pods_of_the_same_kind_only() -> None:
    r = rc()
    prior = _stored(r)
    prior["spec"]["replicas"] = -1
    new = copy.deepcopy(prior)
    new["metadata"]["labels"] = {"a": "b"}
    with pytest.raises(InvalidObject, match="spec.replicas"):
        admit(new, prior=prior)
    other = _stored(pod())
    other["kind"] = "Node"
    new_pod = _stored(pod())
    new_pod["spec"]["restartPolicy"] = "Sometimes"
    other["spec"] = copy.deepcopy(new_pod["spec"])
    with pytest.raises(InvalidObject, match="restartPolicy"):
        admit(new_pod, prior=other)
