"""Where the proxy's Services and Endpoints live: the v1 objects in the registry.

One source of truth: `<prefix>/registry/services/<ns>/<name>` and
`<prefix>/registry/endpoints/<ns>/<name>`, the objects `netplane apply`, the endpoints
controller and `netplane svc` all write. The proxy names a service `<ns>/<name>` (as
kube-proxy's `ns/name:port`), so two namespaces may hold services of one name.

Clusters made before the orchestrator kept flat JSON under `services/specs/<name>` and
`services/endpoints/<name>`. `migrate_legacy` moves each into the registry (namespace
"default") in one transaction per service: the v1 Service and Endpoints are created only if
absent, the flat keys deleted only if unchanged since read, and the cluster IP and node port
claims handed to the new owner `default/<name>`. Every proxy and master runs it at start, so an
upgraded cluster loses no Service; it is idempotent and safe to race (a lost race re-reads).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from netplane.errors import ConfigError, DecodeError
from netplane.proxy import model
from netplane.store import EtcdStore, Keys, codec
from netplane.store.txn import Absent, Delete, Guard, ModRevisionIs, Op, Put, ValueIs

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "default"
MIGRATE_TRIES = 5


def services_prefix(keys: Keys) -> str:
    return f"{keys.prefix}/registry/services/"


def endpoints_prefix(keys: Keys) -> str:
    return f"{keys.prefix}/registry/endpoints/"


def proxy_name(namespace: str, name: str) -> str:
    """The proxy's name of a service: `ns/name`."""
    return f"{namespace}/{name}"


def _object(key: str, raw: bytes | str, kind: str) -> dict[str, Any]:
    value = codec.loads(raw)
    if not isinstance(value, dict) or value.get("kind") != kind:
        raise DecodeError(f"{key}: not a {kind}")
    return value


def decode_service(key: str, raw: bytes | str) -> model.Service:
    """A stored v1 Service as the proxy's model (named `ns/name`); DecodeError when the proxy
    cannot use it (it is then logged and skipped, never fatal)."""
    from orchestrator.objects.service import to_proxy_service

    obj = _object(key, raw, "Service")
    try:
        svc = to_proxy_service(obj)
    except (ConfigError, AttributeError, TypeError, ValueError) as e:
        raise DecodeError(f"{key}: {e}") from None
    if not svc.ports:
        raise DecodeError(f"{key}: no ports")
    if (obj.get("spec") or {}).get("clusterIP") in (None, "", "None"):
        raise DecodeError(f"{key}: no cluster IP")
    md = obj.get("metadata") or {}
    return _renamed(svc, proxy_name(str(md.get("namespace") or DEFAULT_NAMESPACE), str(md.get("name"))))


def decode_endpoints(key: str, raw: bytes | str) -> model.Endpoints:
    from orchestrator.objects.service import to_proxy_endpoints

    obj = _object(key, raw, "Endpoints")
    try:
        ep = to_proxy_endpoints(obj)
    except (ConfigError, AttributeError, TypeError, ValueError) as e:
        raise DecodeError(f"{key}: {e}") from None
    md = obj.get("metadata") or {}
    return model.Endpoints(proxy_name(str(md.get("namespace") or DEFAULT_NAMESPACE), str(md.get("name"))),
                           ep.addresses, ep.ports)


def _renamed(svc: model.Service, name: str) -> model.Service:
    from dataclasses import replace

    return replace(svc, name=name)


# --------------------------------------------------------------------------- migration
def _legacy_prefixes(keys: Keys) -> tuple[str, str]:
    return keys.services, keys.endpoints


def _v1_metadata(name: str, clock: float) -> dict[str, Any]:
    from orchestrator.objects import meta

    return {"name": name, "namespace": DEFAULT_NAMESPACE, "uid": meta.new_uid(),
            "creationTimestamp": meta.from_epoch(clock), "generation": 1}


def migrate_legacy(store: EtcdStore, keys: Keys, *, clock: float | None = None) -> int:
    """Move flat `services/specs` + `services/endpoints` into the registry; the number moved.
    Malformed flat values are logged and left where they are."""
    from netplane.proxy.api import clusterip_key, nodeport_key
    from orchestrator.objects.service import from_legacy_endpoints, from_legacy_service

    svc_prefix, ep_prefix = _legacy_prefixes(keys)
    moved = 0
    for _ in range(MIGRATE_TRIES):
        specs, _rev = store.list(svc_prefix)
        if not specs:
            return moved
        eps = {kv.key: kv for kv in store.list(ep_prefix)[0]}
        retry = False
        for kv in specs:
            name = Keys.name_of(kv.key, svc_prefix)
            try:
                legacy = model.decode_service(kv.key, kv.value)
            except DecodeError as e:
                log.warning("not migrating malformed legacy service at %s: %s", kv.key, e)
                continue
            if not _valid_name(name):
                log.warning("not migrating legacy service at %s: %r is not a valid name", kv.key, name)
                continue
            reg_svc = f"{services_prefix(keys)}{DEFAULT_NAMESPACE}/{name}"
            reg_ep = f"{endpoints_prefix(keys)}{DEFAULT_NAMESPACE}/{name}"
            if store.get(reg_svc) is not None:
                log.warning("legacy service %s is shadowed by the registry's default/%s: left at %s", name, name, kv.key)
                continue
            ekv = eps.get(keys.endpoints_of(name))
            legacy_ep = None
            if ekv is not None:
                try:
                    legacy_ep = model.decode_endpoints(ekv.key, ekv.value)
                except DecodeError as e:
                    log.warning("legacy endpoints at %s are malformed (%s): migrating the service without them", ekv.key, e)
            now = time.time() if clock is None else clock
            svc_obj: dict[str, Any] = dict(from_legacy_service(legacy))
            svc_obj["metadata"] = _v1_metadata(name, now)
            guards: list[Guard] = [ModRevisionIs(kv.key, kv.mod_revision), Absent(reg_svc)]
            ops: list[Op] = [Put(reg_svc, codec.dumps(svc_obj)), Delete(kv.key)]
            if ekv is not None:
                guards.append(ModRevisionIs(ekv.key, ekv.mod_revision))
                ops.append(Delete(ekv.key))
            if store.get(reg_ep) is None:
                ep_obj: dict[str, Any] = dict(from_legacy_endpoints(legacy_ep or model.Endpoints(name)))
                ep_obj["metadata"] = _v1_metadata(name, now)
                _fill_ports(ep_obj, legacy)
                guards.append(Absent(reg_ep))
                ops.append(Put(reg_ep, codec.dumps(ep_obj)))
            owner = proxy_name(DEFAULT_NAMESPACE, name)
            claims = [clusterip_key(keys, legacy.cluster_ip)]
            claims += [nodeport_key(keys, p.node_port) for p in legacy.ports if p.node_port]
            for ck in claims:
                held = store.get(ck)
                if held is not None and held.value == name.encode():
                    guards.append(ValueIs(ck, held.value))
                    ops.append(Put(ck, owner))
            if store.txn(guards, ops).succeeded:
                moved += 1
                log.info("migrated legacy service %s to the registry as default/%s", name, name)
            else:
                retry = True
        if not retry:
            return moved
    log.warning("legacy service migration did not settle after %d tries; the next start tries again", MIGRATE_TRIES)
    return moved


def _valid_name(name: str) -> bool:
    from netplane.store.keys import check_name

    try:
        check_name("service", name)
        return True
    except ConfigError:
        return False


def _fill_ports(ep_obj: dict[str, Any], svc: model.Service) -> None:
    """v1 Endpoints carry their ports; flat ones usually had none (the targetPort applied)."""
    for s in ep_obj.get("subsets") or []:
        if not s.get("ports"):
            s["ports"] = [{"name": p.name, "port": p.target_port, "protocol": p.protocol} for p in svc.ports]


def service_endpoints_object(svc: model.Service, namespace: str, addresses: Mapping[str, bool],
                             clock: float | None = None) -> dict[str, Any]:
    """Hand-set v1 Endpoints for a selector-less service: `addresses` = ip -> ready."""
    subset: dict[str, Any] = {}
    ready = [{"ip": ip} for ip, ok in addresses.items() if ok]
    not_ready = [{"ip": ip} for ip, ok in addresses.items() if not ok]
    if ready:
        subset["addresses"] = ready
    if not_ready:
        subset["notReadyAddresses"] = not_ready
    if subset:
        subset["ports"] = [{"name": p.name, "port": p.target_port, "protocol": p.protocol} for p in svc.ports]
    md = _v1_metadata(svc.name, time.time() if clock is None else clock)
    md["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": md, "subsets": [subset] if subset else []}


def load(store: EtcdStore, keys: Keys) -> tuple[dict[str, model.Service], dict[str, model.Endpoints]]:
    """Every Service and Endpoints the proxy would program, by `ns/name` (one read of each)."""
    out: list[dict[str, Any]] = []
    for prefix, decode in ((services_prefix(keys), decode_service), (endpoints_prefix(keys), decode_endpoints)):
        found: dict[str, Any] = {}
        for kv in store.list(prefix)[0]:
            try:
                v = decode(kv.key, kv.value)
            except DecodeError as e:
                log.warning("skipping %s: %s", kv.key, e)
                continue
            found[v.name] = v
        out.append(found)
    return out[0], out[1]


def qualified(name: str) -> str:
    """A service named on the command line: `ns/name`, or `name` in the default namespace."""
    return name if "/" in name else proxy_name(DEFAULT_NAMESPACE, name)
