"""objects.tree.copy: a deep copy of JSON trees, as copy.deepcopy gives (and admission's copy, drop_nulls)."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.objects import tree
from orchestrator.validation import defaults

json_trees = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                          lambda inner: st.lists(inner) | st.lists(inner).map(tuple) | st.dictionaries(st.text(), inner),
                          max_leaves=30)


@given(json_trees)
def test_equals_deepcopy_and_shares_no_container(value: object) -> None:
    out = tree.copy(value)
    assert out == copy.deepcopy(value)
    assert type(out) is type(value)

    def containers(v: object) -> list[int]:
        if isinstance(v, dict):
            return [id(v), *[i for x in v.values() for i in containers(x)]]
        if isinstance(v, list):
            return [id(v), *[i for x in v for i in containers(x)]]
        if isinstance(v, tuple):  # shared when it holds only leaves (immutable), else rebuilt
            return [i for x in v for i in containers(x)]
        return []

    assert not set(containers(out)) & set(containers(value))


def test_a_pod_copy_is_independent() -> None:
    pod = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "ports": [(1, 2)]}]}}
    out = tree.copy(pod)
    out["spec"]["containers"][0]["name"] = "d"
    out["metadata"]["labels"]["app"] = "db"
    assert pod["spec"]["containers"][0]["name"] == "c" and pod["metadata"]["labels"] == {"app": "web"}
    assert out["spec"]["containers"][0]["ports"] == [(1, 2)]


def _drop_nulls_reference(v: object) -> object:
    if isinstance(v, dict):
        return {k: _drop_nulls_reference(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_nulls_reference(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


@given(json_trees)
def test_drop_nulls_is_a_copy_without_nulls(value: object) -> None:
    """defaults.drop_nulls, admission's first copy, takes the same shortcut over leaves."""
    out = defaults.drop_nulls(value)
    assert repr(out) == repr(_drop_nulls_reference(value))  # repr: 1 and 1.0, True and 1 differ
    if isinstance(value, dict | list):
        assert out is not value


decoded_trees = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=30)


def _containers(v: object) -> list[int]:
    if isinstance(v, dict):
        return [id(v), *(i for x in v.values() for i in _containers(x))]
    if isinstance(v, list):
        return [id(v), *(i for x in v for i in _containers(x))]
    return []


@given(decoded_trees)
def test_copy_decoded_is_a_deep_copy_of_a_decoded_tree(value: object) -> None:
    """tree.copy_decoded (a patch's target, through orjson) gives what copy gives for what JSON
    decodes to: the same leaves (1 and 1.0, True and 1 apart), no container shared; integers
    beyond 64 bits go the slow way."""
    out = tree.copy_decoded(value)
    assert repr(out) == repr(value)
    assert not set(_containers(out)) & set(_containers(value))


def test_copy_decoded_falls_back_where_orjson_cannot_encode() -> None:
    value = {"big": 2**70, "lone": "\ud800", "list": [{"a": 1}]}
    out = tree.copy_decoded(value)
    assert out == value and out["list"][0] is not value["list"][0]


@given(json_trees)
def test_drop_nulls_in_place_gives_what_drop_nulls_gives(value: object) -> None:
    """defaults.drop_nulls_in_place (a patch's admission, on the patch's own tree) leaves the
    tree as drop_nulls would have copied it, and is that very tree."""
    mine = copy.deepcopy(value)
    out = defaults.drop_nulls_in_place(mine)
    assert repr(out) == repr(defaults.drop_nulls(value))
    if isinstance(value, dict | list):
        assert out is mine
