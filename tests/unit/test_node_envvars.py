"""Service discovery for containers: Kubernetes 1.0's service variables, the pod's own env and
$(VAR) expansion, envFrom and valueFrom (ConfigMaps, Secrets, the pod's fields), resolv.conf."""

from __future__ import annotations

import re
from typing import Any

import pytest

from orchestrator.node.envvars import (
    EnvError,
    container_env,
    expand,
    expand_command,
    mapping_for,
    resolv_conf,
    service_env,
)


def svc(name: str, ip: str, ports: list[dict[str, Any]], ns: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports, "selector": {"app": name}}}


REDIS = svc("redis-master", "10.0.0.11", [
    {"port": 6379, "targetPort": 6379},
    {"name": "metrics-udp", "port": 9121, "protocol": "UDP"},
])


def test_service_variables_exactly_as_kubelet() -> None:
    assert service_env([REDIS], "default") == {
        "REDIS_MASTER_SERVICE_HOST": "10.0.0.11",
        "REDIS_MASTER_SERVICE_PORT": "6379",
        "REDIS_MASTER_SERVICE_PORT_METRICS_UDP": "9121",
        "REDIS_MASTER_PORT": "tcp://10.0.0.11:6379",
        "REDIS_MASTER_PORT_6379_TCP": "tcp://10.0.0.11:6379",
        "REDIS_MASTER_PORT_6379_TCP_PROTO": "tcp",
        "REDIS_MASTER_PORT_6379_TCP_PORT": "6379",
        "REDIS_MASTER_PORT_6379_TCP_ADDR": "10.0.0.11",
        "REDIS_MASTER_PORT_9121_UDP": "udp://10.0.0.11:9121",
        "REDIS_MASTER_PORT_9121_UDP_PROTO": "udp",
        "REDIS_MASTER_PORT_9121_UDP_PORT": "9121",
        "REDIS_MASTER_PORT_9121_UDP_ADDR": "10.0.0.11",
    }


def test_first_port_named_gets_both_names_and_links_point_at_the_first() -> None:
    web = svc("web", "10.96.0.20", [{"name": "http", "port": 80}, {"name": "https", "port": 443}])
    env = service_env([web], "default")
    assert env["WEB_SERVICE_PORT"] == "80"
    assert env["WEB_SERVICE_PORT_HTTP"] == "80"
    assert env["WEB_SERVICE_PORT_HTTPS"] == "443"
    assert env["WEB_PORT"] == "tcp://10.96.0.20:80"
    assert env["WEB_PORT_443_TCP"] == "tcp://10.96.0.20:443"


def test_only_services_of_the_namespace_with_a_cluster_ip() -> None:
    services = [
        REDIS,
        svc("other", "10.0.0.12", [{"port": 1}], ns="team-b"),
        svc("headless", "None", [{"port": 2}]),
        svc("pending", "", [{"port": 3}]),
    ]
    names = {k.split("_SERVICE_HOST")[0] for k in service_env(services, "default")
             if k.endswith("_SERVICE_HOST")}
    assert names == {"REDIS_MASTER"}
    assert service_env(services, "team-b") == {
        "OTHER_SERVICE_HOST": "10.0.0.12", "OTHER_SERVICE_PORT": "1",
        "OTHER_PORT": "tcp://10.0.0.12:1", "OTHER_PORT_1_TCP": "tcp://10.0.0.12:1",
        "OTHER_PORT_1_TCP_PROTO": "tcp", "OTHER_PORT_1_TCP_PORT": "1",
        "OTHER_PORT_1_TCP_ADDR": "10.0.0.12"}


def test_the_master_service_reaches_every_namespace_unless_shadowed() -> None:
    master = svc("kubernetes", "10.96.0.1", [{"name": "https", "port": 443}])
    assert service_env([master], "team-b")["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    own = svc("kubernetes", "10.96.7.7", [{"port": 8443}], ns="team-b")
    env = service_env([master, own], "team-b")
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.7.7"
    assert env["KUBERNETES_SERVICE_PORT"] == "8443"
    assert "KUBERNETES_SERVICE_PORT_HTTPS" not in env
    # any other service of `default` stays in `default`
    assert service_env([svc("db", "10.96.0.5", [{"port": 5432}])], "team-b") == {}


@pytest.mark.parametrize(("text", "want"), [
    ("$(A)", "a"),
    ("x$(A)y$(B)z", "xaybz"),
    ("$(MISSING)", "$(MISSING)"),
    ("$$(A)", "$(A)"),
    ("$$", "$"),
    ("$A", "$A"),
    ("cost: 5$", "cost: 5$"),
    ("$(A", "$(A"),
    ("$()", "$()"),
    ("$(A)$(A)", "aa"),
])
def test_expansion_follows_kubelets_rules(text: str, want: str) -> None:
    assert expand(text, mapping_for({"A": "a"}, {"B": "b"})) == want


def test_own_env_wins_expands_and_comes_first() -> None:
    services = service_env([REDIS], "default")
    c = {"name": "app", "env": [
        {"name": "REDIS_MASTER_SERVICE_PORT", "value": "7000"},
        {"name": "URL", "value": "redis://$(REDIS_MASTER_SERVICE_HOST):$(REDIS_MASTER_SERVICE_PORT)"},
        {"name": "LATER", "value": "$(DEFINED_AFTER)"},
        {"name": "DEFINED_AFTER", "value": "x"},
        {"name": "EMPTY"},
        {"name": "LITERAL", "value": "$$(URL)"},
    ]}
    env = container_env(c, services)
    assert env["REDIS_MASTER_SERVICE_PORT"] == "7000"
    assert env["URL"] == "redis://10.0.0.11:7000"
    assert env["LATER"] == "$(DEFINED_AFTER)"  # only earlier variables resolve
    assert env["EMPTY"] == ""
    assert env["LITERAL"] == "$(URL)"
    keys = list(env)
    assert keys[:6] == ["REDIS_MASTER_SERVICE_PORT", "URL", "LATER", "DEFINED_AFTER", "EMPTY",
                        "LITERAL"]
    assert set(keys[6:]) == set(services) - {"REDIS_MASTER_SERVICE_PORT"}


def test_a_variable_may_wrap_the_service_value_it_replaces() -> None:
    c = {"env": [{"name": "REDIS_MASTER_SERVICE_HOST", "value": "[$(REDIS_MASTER_SERVICE_HOST)]"},
                 {"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}
    env = container_env(c, service_env([REDIS], "default"))
    assert env["REDIS_MASTER_SERVICE_HOST"] == "[10.0.0.11]"
    assert env["A"] == "2" and list(env).index("A") == 1


def test_command_and_args_expand_against_the_final_env() -> None:
    c = {"command": ["/bin/sh", "-c", "echo $(GREETING) $(REDIS_MASTER_PORT)"],
         "args": ["$(NOPE)", "$$(GREETING)"],
         "env": [{"name": "GREETING", "value": "hi"}]}
    env = container_env(c, service_env([REDIS], "default"))
    cmd, args = expand_command(c, env)
    assert cmd == ["/bin/sh", "-c", "echo hi tcp://10.0.0.11:6379"]
    assert args == ["$(NOPE)", "$(GREETING)"]


def test_resolv_conf() -> None:
    assert resolv_conf("team-b") == (
        "nameserver 10.96.0.10\n"
        "search team-b.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5\n")
    assert resolv_conf("default", nameserver="10.100.0.10", domain="lab.local") == (
        "nameserver 10.100.0.10\nsearch default.svc.lab.local svc.lab.local lab.local\n"
        "options ndots:5\n")


# --------------------------------------------------------------------------- ConfigMaps, Secrets, fieldRef
CONFIG = {"kind": "ConfigMap", "metadata": {"name": "conf", "namespace": "team"},
          "data": {"LEVEL": "debug", "app.conf": "x=1", "1BAD": "skipped"}, "binaryData": {"BIN": "AAE="}}
CREDS = {"kind": "Secret", "metadata": {"name": "creds", "namespace": "team"}, "type": "Opaque",
         "data": {"USER": "YWRtaW4=", "PASSWORD": "czNjcjN0"}}
POD = {"metadata": {"name": "web-1", "namespace": "team", "uid": "u-1", "labels": {"app": "web"},
                    "annotations": {"team.io/owner": "ops"}},
       "spec": {"nodeName": "h1", "serviceAccountName": "default"},
       "status": {"podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}], "hostIP": "10.99.0.11"}}


def lookup(kind: str, name: str) -> dict[str, Any] | None:
    return {("ConfigMap", "conf"): CONFIG, ("Secret", "creds"): CREDS}.get((kind, name))


def test_env_from_config_maps_and_secrets_with_prefixes() -> None:
    c = {"envFrom": [{"configMapRef": {"name": "conf"}}, {"secretRef": {"name": "creds"}, "prefix": "DB_"},
                     {"configMapRef": {"name": "absent", "optional": True}}],
         "env": [{"name": "LEVEL", "value": "info"}, {"name": "URL", "value": "$(DB_USER)@db"}]}
    env = container_env(c, {}, lookup=lookup, pod=POD)
    # binaryData and keys that are no variable names are left out (kubelet skips them)
    assert env == {"LEVEL": "info", "app.conf": "x=1", "DB_PASSWORD": "s3cr3t", "DB_USER": "admin", "URL": "admin@db"}


def test_value_from_keys_and_fields() -> None:
    c = {"env": [
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "LEVEL"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}}},
        {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope", "optional": True}}},
        {"name": "ALSO_GONE", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": True}}},
        {"name": "NOT_EXPANDED", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "app.conf"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "OWNER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['team.io/owner']"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
    ]}
    env = container_env(c, {}, lookup=lookup, pod=POD)
    assert env == {"LEVEL": "debug", "PW": "s3cr3t", "NOT_EXPANDED": "x=1", "POD": "web-1", "NS": "team",
                   "APP": "web", "OWNER": "ops", "IP": "10.244.1.5", "NODE": "h1", "HOST": "10.99.0.11"}


def test_resource_field_refs_round_up_in_their_divisor() -> None:
    def res(resource: str, divisor: str | None = None, container: str | None = None) -> dict[str, Any]:
        ref: dict[str, Any] = {"resource": resource, **({"divisor": divisor} if divisor else {}),
                               **({"containerName": container} if container else {})}
        return {"resourceFieldRef": ref}

    c = {"name": "app", "resources": {"limits": {"cpu": "1500m", "memory": "128Mi"}, "requests": {"cpu": "250m"}},
         "env": [{"name": "CPU_LIMIT", "valueFrom": res("limits.cpu")},  # 1.5 cores -> 2 (rounded up)
                 {"name": "CPU_LIMIT_M", "valueFrom": res("limits.cpu", "1m")},
                 {"name": "CPU_REQ_M", "valueFrom": res("requests.cpu", "1m")},
                 {"name": "MEM_MI", "valueFrom": res("limits.memory", "1Mi")},
                 {"name": "MEM_REQ", "valueFrom": res("requests.memory")},  # unset: the limit
                 {"name": "SIDE_MEM", "valueFrom": res("limits.memory", "1Mi", "side")},  # unset: the node's
                 {"name": "STORAGE", "valueFrom": res("requests.ephemeral-storage")}]}
    pod = {**POD, "spec": {**POD["spec"], "containers": [c, {"name": "side"}]}}
    env = container_env(c, {}, pod=pod, allocatable={"cpu": "4", "memory": "2Gi"})
    assert env == {"CPU_LIMIT": "2", "CPU_LIMIT_M": "1500", "CPU_REQ_M": "250", "MEM_MI": "128",
                   "MEM_REQ": str(128 << 20), "SIDE_MEM": "2048", "STORAGE": "0"}


@pytest.mark.parametrize(("var", "says"), [
    ({"configMapKeyRef": {"name": "absent", "key": "k"}}, 'configmap "absent" not found'),
    ({"secretKeyRef": {"name": "absent", "key": "k"}}, 'secret "absent" not found'),
    ({"configMapKeyRef": {"name": "conf", "key": "BIN"}}, "couldn't find key BIN in ConfigMap team/conf"),
    ({"secretKeyRef": {"name": "creds", "key": "k"}}, "couldn't find key k in Secret team/creds"),
])
def test_a_missing_source_or_key_is_a_config_error(var: dict[str, Any], says: str) -> None:
    with pytest.raises(EnvError, match=re.escape(says)):
        container_env({"env": [{"name": "X", "valueFrom": var}]}, {}, lookup=lookup, pod=POD)
    with pytest.raises(EnvError, match='configmap "absent" not found'):
        container_env({"envFrom": [{"configMapRef": {"name": "absent"}}]}, {}, lookup=lookup, pod=POD)
