"""PodDisruptionBudgets without a cluster: the disruption controller's arithmetic (kube's
getExpectedPodCount and countHealthyPods), the budget's validation, and its table row."""

from __future__ import annotations

from typing import Any

from orchestrator.apiserver.tables import table
from orchestrator.controllers.disruption import DELETION_TIMEOUT, budget_status
from orchestrator.objects.meta import from_epoch
from orchestrator.validation import validate

NOW = 1_700_000_000.0
Obj = dict[str, Any]


def pod(name: str, *, ready: bool = True, rc: str | None = "web", deleting: bool = False) -> Obj:
    md: Obj = {"name": name, "namespace": "default", "labels": {"app": "web"}}
    if rc is not None:
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "ReplicationController", "name": rc,
                                  "uid": f"uid-{rc}", "controller": True}]
    if deleting:
        md["deletionTimestamp"] = from_epoch(NOW)
    return {"metadata": md, "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pdb(**spec: Any) -> Obj:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": "default", "generation": 3},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}


def replicas(n: int) -> Any:
    return lambda p: n


def test_an_integer_min_available_counts_the_pods() -> None:
    pods = [pod("a"), pod("b"), pod("c", ready=False), pod("d", deleting=True)]
    st = budget_status(pdb(minAvailable=1), pods, replicas(10), NOW)
    assert (st["expectedPods"], st["desiredHealthy"], st["currentHealthy"], st["disruptionsAllowed"]) == (4, 1, 2, 1)
    assert st["observedGeneration"] == 3 and st["conditions"][0]["reason"] == "SufficientPods"


def test_percentages_and_max_unavailable_count_the_controllers_replicas() -> None:
    pods = [pod("a"), pod("b"), pod("c")]  # one RC asking for 4: one pod still missing
    st = budget_status(pdb(minAvailable="50%"), pods, replicas(4), NOW)
    assert (st["expectedPods"], st["desiredHealthy"], st["disruptionsAllowed"]) == (4, 2, 1)
    st = budget_status(pdb(maxUnavailable="30%"), pods, replicas(4), NOW)  # 30 % of 4 rounded up: 2
    assert (st["desiredHealthy"], st["disruptionsAllowed"]) == (2, 1)
    st = budget_status(pdb(maxUnavailable=0), pods, replicas(4), NOW)
    assert (st["desiredHealthy"], st["disruptionsAllowed"], st["conditions"][0]["status"]) == (4, 0, "False")
    lone = budget_status(pdb(maxUnavailable=1), [pod("x", rc=None)], replicas(4), NOW)
    assert lone["expectedPods"] == 1  # no controller: itself


def test_a_pod_an_eviction_took_is_not_healthy_for_two_minutes() -> None:
    recent, old = from_epoch(NOW - 10), from_epoch(NOW - DELETION_TIMEOUT - 1)
    budget = pdb(minAvailable=1)
    budget["status"] = {"disruptedPods": {"a": recent, "b": old, "gone": recent}}
    st = budget_status(budget, [pod("a"), pod("b")], replicas(2), NOW)
    assert st["currentHealthy"] == 1 and st["disruptedPods"] == {"a": recent}
    no_selector = pdb(minAvailable=1)
    del no_selector["spec"]["selector"]
    assert budget_status(no_selector, [pod("a")], replicas(1), NOW)["expectedPods"] == 0  # policy/v1: none


def test_validation_in_kubes_words() -> None:
    def errors(**spec: Any) -> list[str]:
        return [str(e) for e in validate(pdb(**spec))]

    assert errors(minAvailable=2) == []
    assert errors(minAvailable="120%") == ['spec.minAvailable: Invalid value: "120%": must not be greater than 100%']
    assert errors(maxUnavailable=-1) == ["spec.maxUnavailable: Invalid value: -1: must be greater than or equal to 0"]
    assert errors(minAvailable=1, maxUnavailable=1)[0].startswith("spec: Invalid value: ")
    assert errors(minAvailable=1, maxUnavailable=1)[0].endswith("minAvailable and maxUnavailable cannot be both set")
    assert errors(minAvailable=1, unhealthyPodEvictionPolicy="Never") == [
        ('spec.unhealthyPodEvictionPolicy: Unsupported value: "Never": supported values: "AlwaysAllow", '
        '"IfHealthyBudget"')]


def test_the_table_row() -> None:
    budget = pdb(minAvailable="50%")
    budget["metadata"]["creationTimestamp"] = from_epoch(NOW - 120)
    budget["status"] = {"disruptionsAllowed": 1}
    t = table("PodDisruptionBudget", [budget], now=NOW)
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Min Available", "Max Unavailable",
                                                           "Allowed Disruptions", "Age"]
    assert t["rows"][0]["cells"] == ["web", "50%", "N/A", 1, "2m"]
