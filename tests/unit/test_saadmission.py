"""ServiceAccount admission of a created pod (`orchestrator.saadmission`): kube's account
default and its kube-api-access volume, mounted where no container mounts already."""

from __future__ import annotations

import copy
from typing import Any

from orchestrator import saadmission
from orchestrator.validation import admit

MOUNT = {"name": "kube-api-access-bbbbb", "readOnly": True,
         "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}


def pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def fixed(n: int) -> str:
    return "b" * n


def no_accounts(ns: str, name: str) -> None:
    return None


def test_a_pod_gets_the_default_account_and_kubes_token_volume() -> None:
    given = pod(initContainers=[{"name": "init", "image": "busybox"}])
    before = copy.deepcopy(given)
    out = saadmission.admit_pod(given, no_accounts, rand=fixed)
    assert given == before  # not changed in place
    spec = out["spec"]
    assert spec["serviceAccountName"] == "default"
    assert spec["volumes"] == [{"name": "kube-api-access-bbbbb", "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}],
                       "optional": True}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}]
    assert spec["containers"][0]["volumeMounts"] == [MOUNT] == spec["initContainers"][0]["volumeMounts"]
    assert admit(out).object["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["path"] == "token"


def test_the_pods_choice_then_the_accounts_decides_and_existing_mounts_win() -> None:
    asked: list[tuple[str, str]] = []

    def accounts(ns: str, name: str) -> dict[str, Any]:
        asked.append((ns, name))
        return {"metadata": {"name": name}, "automountServiceAccountToken": name != "quiet"}

    out = saadmission.admit_pod(pod(serviceAccountName="quiet"), accounts, rand=fixed)
    assert asked == [("ns", "quiet")] and "volumes" not in out["spec"]
    assert "volumeMounts" not in out["spec"]["containers"][0]
    out = saadmission.admit_pod(pod(serviceAccountName="quiet", automountServiceAccountToken=True), accounts, rand=fixed)
    assert out["spec"]["containers"][0]["volumeMounts"] == [MOUNT]
    out = saadmission.admit_pod(pod(automountServiceAccountToken=False), accounts, rand=fixed)
    assert "volumes" not in out["spec"] and out["spec"]["serviceAccountName"] == "default"
    # a container that mounts its own volume at the path keeps it; the others get the token
    own = {"name": "mine", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    out = saadmission.admit_pod(pod(containers=[{"name": "a", "image": "x", "volumeMounts": [own]},
                                                {"name": "b", "image": "x"}],
                                    volumes=[{"name": "mine", "emptyDir": {}}]), accounts, rand=fixed)
    assert out["spec"]["containers"][0]["volumeMounts"] == [own]
    assert out["spec"]["containers"][1]["volumeMounts"] == [MOUNT]
    assert [v["name"] for v in out["spec"]["volumes"]] == ["mine", "kube-api-access-bbbbb"]
    # none needs it: no volume; a name already taken is not reused; one already there is kept
    out = saadmission.admit_pod(pod(containers=[{"name": "a", "image": "x", "volumeMounts": [own]}],
                                    volumes=[{"name": "mine", "emptyDir": {}}]), accounts, rand=fixed)
    assert [v["name"] for v in out["spec"]["volumes"]] == ["mine"]
    names = iter(["bbbbb", "ccccc"])
    out = saadmission.admit_pod(pod(volumes=[{"name": "kube-api-access-bbbbb-x", "emptyDir": {}},
                                             {"name": "x-kube-api-access-bbbbb", "emptyDir": {}}]),
                                accounts, rand=lambda n: next(names))
    assert out["spec"]["containers"][0]["volumeMounts"][0]["name"] == "kube-api-access-bbbbb-x"  # kube's prefix rule
    out = saadmission.admit_pod(pod(volumes=[{"name": "other", "emptyDir": {}}]), accounts,
                                rand=lambda n: "ccccc")
    assert out["spec"]["volumes"][-1]["name"] == "kube-api-access-ccccc"


def test_a_mirror_pod_is_left_alone() -> None:
    p = pod()
    p["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "x"}
    assert saadmission.admit_pod(p, no_accounts) == p
