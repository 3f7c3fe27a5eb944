"""Service discovery for containers: Kubernetes 1.0's service variables, the pod's own env and
$(VAR) expansion, resolv.conf."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.node.envvars import (
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
