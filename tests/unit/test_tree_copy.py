"""objects.tree.copy: a deep copy of JSON trees, as copy.deepcopy gives."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.objects import tree

json_trees = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                          lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=30)


@given(json_trees)
def test_equals_deepcopy_and_shares_no_container(value: object) -> None:
    out = tree.copy(value)
    assert out == copy.deepcopy(value)

    def containers(v: object) -> list[int]:
        if isinstance(v, dict):
            return [id(v), *[i for x in v.values() for i in containers(x)]]
        if isinstance(v, list):
            return [id(v), *[i for x in v for i in containers(x)]]
        return []

    assert not set(containers(out)) & set(containers(value))


def test_a_pod_copy_is_independent() -> None:
    pod = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "ports": [(1, 2)]}]}}
    out = tree.copy(pod)
    out["spec"]["containers"][0]["name"] = "d"
    out["metadata"]["labels"]["app"] = "db"
    assert pod["spec"]["containers"][0]["name"] == "c" and pod["metadata"]["labels"] == {"app": "web"}
    assert out["spec"]["containers"][0]["ports"] == [(1, 2)]
