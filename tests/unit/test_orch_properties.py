"""Property tests: the selector's string form round-trips, and validation answers (errors,
never an exception) whatever JSON sits at whatever field of a manifest."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from netplane.errors import ConfigError
from orchestrator.endpoints import desired as endpoints_desired
from orchestrator.node_lifecycle import assess
from orchestrator.objects import service
from orchestrator.objects.quantity import QuantityError, parse_quantity
from orchestrator.objects.selector import Requirement, Selector, parse, requirement
from orchestrator.replication import claim, deletion_order, plan, pod_from_template
from orchestrator.replication import status as replication_status
from orchestrator.scheduling import PodInfo, schedule, snapshot
from orchestrator.validation import InvalidObject, admit, defaults, schema, validate
from orchestrator.validation.reads import read_check

NOW = datetime(2024, 6, 1, tzinfo=UTC)

_name = st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,8}[a-z0-9])?", fullmatch=True)
_key = st.one_of(_name, st.builds(lambda p, n: f"{p}.io/{n}", st.from_regex(r"[a-z]{1,6}", fullmatch=True), _name))
_value = st.one_of(st.just(""), _name)


@st.composite
def requirements(draw: st.DrawFn) -> Requirement:
    key = draw(_key)
    op = draw(st.sampled_from(["=", "!=", "in", "notin", "exists", "!", "gt", "lt"]))
    if op in ("in", "notin"):
        vals = draw(st.lists(_name, min_size=1, max_size=3))
    elif op in ("=", "!="):
        vals = [draw(_value)]
    elif op in ("gt", "lt"):
        vals = [str(draw(st.integers(-99, 99)))]
    else:
        vals = []
    return requirement(key, op, vals)  # type: ignore[arg-type]


@settings(deadline=None)
@given(st.lists(requirements(), max_size=5))
def test_selector_string_round_trips(reqs: list[Requirement]) -> None:
    sel = Selector(tuple(sorted(reqs, key=lambda r: r.key)))
    assert parse(str(sel)) == sel


@given(st.dictionaries(_key, _value, max_size=4), st.lists(requirements(), max_size=4))
def test_parsed_selector_matches_like_its_requirements(labels: dict[str, str], reqs: list[Requirement]) -> None:
    sel = parse(",".join(str(r) for r in reqs))
    assert sel.matches(labels) == all(r.matches(labels) for r in reqs)


@given(st.text(max_size=20))
def test_selector_parse_never_crashes(text: str) -> None:
    try:
        parse(text)
    except ValueError:
        pass


_quantity_text = st.from_regex(r"[+-]?([0-9]{1,6}(\.[0-9]{0,4})?|\.[0-9]{1,4})(Ki|Mi|Gi|Ti|n|u|m|k|M|G|T|[eE][+-]?[0-9])?",
                               fullmatch=True)


@given(st.one_of(_quantity_text, st.text(max_size=12), st.integers(-(10**12), 10**12),
                 st.floats(allow_nan=True, allow_infinity=True)))
def test_quantity_parse_and_format(raw: Any) -> None:
    """Every input is a Quantity or a QuantityError; a parsed quantity's short text parses
    back to the same millis and value (it may only round up, below a nano)."""
    try:
        q = parse_quantity(raw)
    except QuantityError:
        return
    q2 = parse_quantity(str(q))
    assert q.amount <= q2.amount < q.amount + Fraction(1, 10**9)
    assert (q2.milli, q2.value) == (q.milli, q.value)


BASE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web", "labels": {"a": "b"}},
    "spec": {"replicas": 2, "selector": {"app": "web"}, "template": {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "i",
                                 "ports": [{"containerPort": 80, "hostPort": 8080, "name": "http"}],
                                 "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "2"}},
                                 "readinessProbe": {"httpGet": {"port": "http"}},
                                 "env": [{"name": "A", "value": "b"}]}],
                 "nodeSelector": {"disk": "ssd"}}}},
}

SERVICE: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"type": "NodePort", "selector": {"app": "web"}, "sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}]}}
ENDPOINTS: dict[str, Any] = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
             "subsets": [{"addresses": [{"ip": "10.244.1.2", "nodeName": "h1"}],
                          "notReadyAddresses": [{"ip": "10.244.1.3"}], "ports": [{"name": "http", "port": 8080}]}]}
NODE: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "h1"}, "spec": {"unschedulable": True},
        "status": {"capacity": {"cpu": "2", "memory": "1Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}}
POD: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "ownerReferences": [
           {"apiVersion": "v1", "kind": "ReplicationController", "name": "web", "uid": "u", "controller": True}]},
       "spec": {"nodeName": "h1", "restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
                "tolerations": [{"operator": "Exists"}],
                "containers": [{"name": "c", "image": "i", "command": ["sh"], "args": ["-c", "true"],
                                "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 3},
                                "readinessProbe": {"tcpSocket": {"port": 80}}}]},
       "status": {"phase": "Running", "podIP": "10.244.1.2"}}
BASES: list[dict[str, Any]] = [BASE, SERVICE, ENDPOINTS, NODE, POD]

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)


def _paths(v: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(v, dict):
        for k, x in v.items():
            out.extend(_paths(x, (*prefix, k)))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out.extend(_paths(x, (*prefix, i)))
    return out


PATHS = [(i, p) for i, b in enumerate(BASES) for p in _paths(b)]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(PATHS), json_values)
def test_validation_answers_whatever_sits_at_any_field(where: tuple[int, tuple[Any, ...]], value: Any) -> None:
    base, path = where
    obj = copy.deepcopy(BASES[base])
    node: Any = obj
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    errors = validate(obj)
    assert all(str(e) for e in errors)
    try:
        admit(obj)
    except InvalidObject as e:
        assert e.errors


def test_base_manifests_are_valid() -> None:
    for b in BASES:
        assert validate(b) == [], b["kind"]


def _exercise_readers(obj: dict[str, Any]) -> None:
    """Every accessor a controller runs on a stored object of this kind."""
    kind = obj["kind"]
    if kind == "Pod":
        info = PodInfo.of(obj)
        state = snapshot([NODE], [])
        state.upsert_pod(info)
        schedule(info, state, rng=random.Random(0))
        deletion_order([obj, copy.deepcopy(BASES[4])])
        replication_status(BASE, [obj], now=NOW)
        endpoints_desired(SERVICE, [obj])
        assess([NODE], [obj], now=NOW)
        claim(BASE, [obj])
    elif kind == "Node":
        state = snapshot([obj], [])
        schedule(PodInfo.of(POD), state, rng=random.Random(0))
        assess([obj], [POD], now=NOW)
    elif kind == "ReplicationController":
        plan(obj, [POD])
        pod_from_template(obj)
        replication_status(obj, [POD], now=NOW)
    elif kind == "Service":
        endpoints_desired(obj, [POD])
    elif kind == "Endpoints":
        to_proxy_endpoints_safe(obj)


def to_proxy_endpoints_safe(obj: dict[str, Any]) -> None:
    try:
        service.to_proxy_endpoints(obj)
    except ConfigError:  # the proxy refusing what it cannot express is an answer
        pass


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(PATHS), json_values)
def test_what_passes_the_read_check_never_crashes_a_controller(where: tuple[int, tuple[Any, ...]], value: Any) -> None:
    base, path = where
    obj = copy.deepcopy(BASES[base])
    node: Any = obj
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    if read_check(obj) is None:
        _exercise_readers(obj)


def test_every_valid_object_passes_the_read_check() -> None:
    for b in BASES:
        assert read_check(admit(b).object) is None
        _exercise_readers(admit(b).object)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(PATHS), json_values, st.booleans())
def test_fast_schema_walk_answers_like_jsonschema(where: tuple[int, tuple[Any, ...]], value: Any,
                                                  defaulted: bool) -> None:
    base, path = where
    assume(path != ("kind",))  # the kind picks the schema; it is checked before
    obj = copy.deepcopy(BASES[base])
    node: Any = obj
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    if defaulted:
        obj = defaults.apply(obj)
    fast, ref = schema.check(obj), schema.check_with_jsonschema(obj)
    assert [str(e) for e in fast.errors] == [str(e) for e in ref.errors]
    assert fast.unknown == ref.unknown and fast.warnings == ref.warnings


def test_fast_schema_walk_on_every_base_and_an_unknown_field() -> None:
    for b in BASES:
        obj = {**copy.deepcopy(b), "bogus": 1}
        fast, ref = schema.check(obj), schema.check_with_jsonschema(obj)
        assert fast.warnings == ref.warnings == ['unknown field "bogus"']
        assert fast.errors == ref.errors == []
