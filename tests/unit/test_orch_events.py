"""Events: Kubernetes' shape and naming, valid manifests, de-duplication by count."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator.objects import event
from orchestrator.validation import admit, validate

NOW = datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-x7k2p", "namespace": "prod", "uid": "u1",
                                                      "resourceVersion": "42"}}
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "h1", "uid": "n1"}}


def test_event_about_a_pod() -> None:
    ev = event.new_event(POD, reason=event.SCHEDULED, message="Successfully assigned prod/web-x7k2p to h1",
                         component="default-scheduler", now=NOW)
    # <name>.<unix nanoseconds in hex>: 1717243200 s + 123456000 ns
    assert ev["metadata"] == {"name": f"web-x7k2p.{1717243200 * 10**9 + 123456000:x}", "namespace": "prod"}
    assert ev["metadata"]["name"] == "web-x7k2p.17d4df9798504a00"
    assert ev["involvedObject"] == {"kind": "Pod", "name": "web-x7k2p", "apiVersion": "v1", "namespace": "prod",
                                    "uid": "u1", "resourceVersion": "42"}
    assert (ev["count"], ev["type"], ev["firstTimestamp"], ev["lastTimestamp"]) == (
        1, "Normal", "2024-06-01T12:00:00Z", "2024-06-01T12:00:00Z")
    assert ev["source"] == {"component": "default-scheduler"}
    a = admit(ev)
    assert a.warnings == [] and validate(ev) == []


def test_cluster_scoped_objects_get_events_in_default() -> None:
    ev = event.new_event(NODE, reason=event.NODE_NOT_READY, message="Node h1 status is now: NodeNotReady",
                         component="node-controller", type="Warning", now=NOW)
    assert ev["metadata"]["namespace"] == "default" and "namespace" not in ev["involvedObject"]
    assert validate(ev) == []


def test_event_validation() -> None:
    ev = event.new_event(POD, reason="X", message="m", component="c", now=NOW)
    bad = {**ev, "type": "Info", "count": -1, "metadata": {**ev["metadata"], "namespace": "default"}}
    assert [str(e) for e in validate(bad)] == [
        'involvedObject.namespace: Invalid value: "prod": does not match event.namespace',
        'type: Unsupported value: "Info": supported values: "Normal", "Warning"',
        "count: Invalid value: -1: must be greater than or equal to 0",
    ]
    assert "involvedObject.name: Required value" in [str(e) for e in validate({**ev, "involvedObject": {"kind": "Pod"}})]


def test_repeats_are_counted_not_recreated() -> None:
    first = event.new_event(POD, reason=event.FAILED_SCHEDULING, message="0/3 nodes are available: 3 Insufficient cpu.",
                            type="Warning", component="default-scheduler", now=NOW)
    later = NOW.replace(minute=5)
    again = event.new_event(POD, reason=event.FAILED_SCHEDULING, message="0/3 nodes are available: 3 Insufficient cpu.",
                            type="Warning", component="default-scheduler", now=later)
    assert event.dedup_key(first) == event.dedup_key(again)
    other = event.new_event(POD, reason=event.FAILED_SCHEDULING, message="0/4 nodes are available: 4 Insufficient cpu.",
                            type="Warning", component="default-scheduler", now=later)
    assert event.dedup_key(first) != event.dedup_key(other)
    bumped = event.repeated(first, now=later)
    assert (bumped["count"], bumped["firstTimestamp"], bumped["lastTimestamp"]) == (
        2, "2024-06-01T12:00:00Z", "2024-06-01T12:05:00Z")
    assert first["count"] == 1  # a copy
    assert event.repeated(bumped, now=later)["count"] == 3
