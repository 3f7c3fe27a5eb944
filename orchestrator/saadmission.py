"""kube-apiserver's ServiceAccount admission, for a pod being created: its account, and the
projected volume through which its containers reach the API (plugin/pkg/admission/serviceaccount).

* `spec.serviceAccountName` defaults to `default`;
* unless the pod's `automountServiceAccountToken`, else its account's, is false, the pod gets
  the volume `kube-api-access-<5 random>`: a projected `serviceAccountToken` (path `token`,
  3607 s, as kube asks), `kube-root-ca.crt`'s `ca.crt` and the pod's namespace, mode 0644,
  mounted read-only at /var/run/secrets/kubernetes.io/serviceaccount in every container and
  init container that has no mount there already (kube's rule: an existing one wins);
* a pod that already has a `kube-api-access-*` volume keeps it, and its mounts name it.

**Departure:** the `kube-root-ca.crt` source is `optional` (kube's is not): a cluster whose
masters serve no API has no serving CA to publish, and its pods must still start; where there
is one, `ca.crt` appears in the running pod's volume within a second of the ConfigMap.

**Departure:** kube refuses a pod whose account does not exist (403, "error looking up service
account"). Here the pod is admitted and its token volume waits (the kubelet reports
FailedMount until the account exists): the replication manager and the `netplane` CLI write
pods into namespaces whose `default` account the leader makes a moment later, and a pod
refused there would be retried anyway.

The pod is not changed in place: the result shares every part it does not change.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

Obj = dict[str, Any]
AccountLookup = Callable[[str, str], Mapping[str, Any] | None]  # (namespace, name) -> ServiceAccount

DEFAULT_ACCOUNT = "default"
VOLUME_PREFIX = "kube-api-access-"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_SECONDS = 3607  # kube's WarnOnlyBoundTokenExpirationSeconds
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # utilrand.String's: no vowels, no look-alikes


def token_volume(name: str) -> Obj:
    return {"name": name, "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_SECONDS, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}],
                       "optional": True}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}


def should_automount(pod_spec: Mapping[str, Any], account: Mapping[str, Any] | None) -> bool:
    """The pod's choice, else its account's, else yes (kube's shouldAutomount)."""
    if isinstance(pod_spec.get("automountServiceAccountToken"), bool):
        return bool(pod_spec["automountServiceAccountToken"])
    if account is not None and isinstance(account.get("automountServiceAccountToken"), bool):
        return bool(account["automountServiceAccountToken"])
    return True


def admit_pod(pod: Mapping[str, Any], account: AccountLookup, *,
              rand: Callable[[int], str] | None = None) -> Obj:
    """`pod` as admission stores it (see the module doc); `account` finds its ServiceAccount."""
    spec = pod.get("spec")
    md = pod.get("metadata") or {}
    if not isinstance(spec, Mapping) or MIRROR_ANNOTATION in (md.get("annotations") or {}):
        return dict(pod)
    out = dict(pod)
    spec = out["spec"] = dict(spec)
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = DEFAULT_ACCOUNT
    ns = str(md.get("namespace") or "default")
    if not should_automount(spec, account(ns, str(spec["serviceAccountName"]))):
        return out
    volumes = [v for v in spec.get("volumes") or [] if isinstance(v, Mapping)]
    taken = {str(v.get("name") or "") for v in volumes}
    existing = next((n for n in sorted(taken) if n.startswith(VOLUME_PREFIX)), None)
    name = existing or _fresh_name(taken, rand or _random)
    mount = {"name": name, "readOnly": True, "mountPath": MOUNT_PATH}
    needed = False
    for field in ("initContainers", "containers"):
        containers = spec.get(field)
        if not isinstance(containers, list):
            continue
        changed = []
        for c in containers:
            if isinstance(c, Mapping) and not any(isinstance(m, Mapping) and m.get("mountPath") == MOUNT_PATH
                                                  for m in c.get("volumeMounts") or []):
                c = {**c, "volumeMounts": [*(c.get("volumeMounts") or []), dict(mount)]}
                needed = True
            changed.append(c)
        spec[field] = changed
    if needed and existing is None:
        spec["volumes"] = [*(spec.get("volumes") or []), token_volume(name)]
    return out


def _random(n: int) -> str:
    return "".join(random.choice(_ALPHABET) for _ in range(n))


def _fresh_name(taken: set[str], rand: Callable[[int], str]) -> str:
    while True:
        name = VOLUME_PREFIX + rand(5)
        if name not in taken:
            return name
