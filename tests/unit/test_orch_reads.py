"""The read check: what controllers read has the right types, quantities and times parse."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orchestrator.validation import admit
from orchestrator.validation.reads import read_check

POD = admit({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "web"}},
             "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "1"}},
                                      "ports": [{"containerPort": 80}]}]},
             "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
                                                            "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}).object


def broken(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(POD)
    node: Any = obj
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return obj


def test_valid_pod_passes() -> None:
    assert read_check(POD) is None


@pytest.mark.parametrize(
    ("path", "value", "msg"),
    [
        (("spec", "containers", 0, "resources", "requests", "cpu"), "abc", "spec.containers[0].resources.requests[cpu]: quantities must match"),
        (("spec", "containers"), "x", "spec.containers: expected a list of objects"),
        (("spec", "containers", 0, "ports", 0, "containerPort"), "80", "spec.containers[0].ports[0].containerPort: wrong type"),
        (("status", "conditions", 0, "lastTransitionTime"), "yesterday", "status.conditions[0].lastTransitionTime: not a time"),
        (("metadata", "labels"), {"app": 1}, "metadata.labels: expected strings"),
        (("metadata", "deletionTimestamp"), 5, "metadata.deletionTimestamp: not a time"),
        (("metadata",), "x", "metadata: expected an object"),
        (("spec", "nodeName"), True, "spec.nodeName: wrong type"),
    ],
)
def test_broken_fields_are_named(path: tuple[Any, ...], value: Any, msg: str) -> None:
    problem = read_check(broken(path, value))
    assert problem is not None and problem.startswith(msg), problem


def test_other_kinds() -> None:
    node = {"kind": "Node", "metadata": {"name": "h"}, "status": {"allocatable": {"cpu": "lots"}}}
    assert read_check(node) == "status.allocatable[cpu]: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    rc = {"kind": "ReplicationController", "metadata": {"name": "r"}, "spec": {"replicas": "3"}}
    assert read_check(rc) == "spec.replicas: wrong type"
    rc["spec"] = {"replicas": True}
    assert read_check(rc) == "spec.replicas: wrong type"  # a bool is not an int here
    svc = {"kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": 1.5}]}}
    assert read_check(svc) == "spec.ports[0].targetPort: wrong type"
    ep = {"kind": "Endpoints", "metadata": {"name": "s"}, "subsets": [{"addresses": [{"ip": 7}]}]}
    assert read_check(ep) == "subsets[0].addresses[0].ip: wrong type"
    assert read_check({"kind": "Namespace", "metadata": {"name": "n"}}) is None
