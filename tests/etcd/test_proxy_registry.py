"""The proxy reads the registry's v1 Services and Endpoints (one source of truth with `apply` and
the endpoints controller), over a real etcd; a cluster's flat pre-orchestrator services are
migrated into it without loss."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from ipaddress import IPv4Address
from pathlib import Path

from netplane.proxy import model
from netplane.proxy.api import ServiceAPI, clusterip_key, nodeport_key
from netplane.proxy.desired import LbKey, ProxyState
from netplane.proxy.registry import migrate_legacy
from netplane.proxy.runner import ProxyComponent
from netplane.store import EtcdStore, Keys
from orchestrator.objects.meta import ENDPOINTS, SERVICE
from orchestrator.storage import ObjectStore
from tests.waiting import wait_for

NETPLANE = str(Path(sys.executable).parent / "netplane")


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.state = ProxyState({})
        self.lock = threading.Lock()

    def sync(self, state: ProxyState, *, full: bool, changed: set[LbKey] | None = None) -> None:
        with self.lock:
            self.state = state

    def backends(self, key: LbKey) -> list[tuple[str, int]] | None:
        with self.lock:
            e = self.state.entries.get(key)
        return None if e is None else [(str(b.ip), b.port) for b in e.backends]

    def close(self) -> None: ...

    def cleanup(self) -> None: ...

    def dump(self, service: str | None = None) -> str:
        return ""


def legacy(store: EtcdStore, keys: Keys, name: str, ip: str, *, node_port: int | None = None,
           endpoints: tuple[str, ...] = ()) -> model.Service:
    """What the pre-orchestrator code stored for a service: flat JSON and claims owned by `name`."""
    svc = model.Service(name=name, cluster_ip=IPv4Address(ip),
                        ports=(model.ServicePort("default", "TCP", 80, 8080, node_port),),
                        type="NodePort" if node_port else "ClusterIP")
    store.put(keys.service(name), model.encode_service(svc))
    store.put(keys.endpoints_of(name), model.encode_endpoints(
        model.Endpoints(name, tuple(model.EndpointAddress(IPv4Address(a)) for a in endpoints))))
    store.put(clusterip_key(keys, svc.cluster_ip), name)
    if node_port:
        store.put(nodeport_key(keys, node_port), name)
    return svc


def test_legacy_services_move_into_the_registry_with_their_endpoints_and_claims(store: EtcdStore, keys: Keys) -> None:
    legacy(store, keys, "web", "10.96.0.20", node_port=30080, endpoints=("10.244.1.2", "10.244.2.2"))
    legacy(store, keys, "db", "10.96.0.21")
    store.put(keys.service("broken"), "{not json")
    assert migrate_legacy(store, keys) == 2
    objects = ObjectStore(store, keys)
    web = objects.get(SERVICE, "web")
    assert web is not None and web["spec"]["clusterIP"] == "10.96.0.20"
    assert web["spec"]["ports"][0] == {"name": "default", "protocol": "TCP", "port": 80, "targetPort": 8080,
                                       "nodePort": 30080}
    assert web["metadata"]["uid"] and web["metadata"]["creationTimestamp"]
    ep = objects.get(ENDPOINTS, "web")
    assert ep is not None
    assert ep["subsets"] == [{"addresses": [{"ip": "10.244.1.2"}, {"ip": "10.244.2.2"}],
                              "ports": [{"name": "default", "port": 8080, "protocol": "TCP"}]}]
    # the flat keys are gone, the malformed one is left where it was; claims have the new owner
    assert store.get(keys.service("web")) is None and store.get(keys.endpoints_of("web")) is None
    assert store.get(keys.service("broken")) is not None
    assert store.get(clusterip_key(keys, IPv4Address("10.96.0.20"))).value == b"default/web"  # type: ignore[union-attr]
    assert store.get(nodeport_key(keys, 30080)).value == b"default/web"  # type: ignore[union-attr]
    # idempotent
    assert migrate_legacy(store, keys) == 0
    # and the migrated service is an ordinary one: the svc API deletes it and frees its IP
    api = ServiceAPI(store, keys)
    assert [s.name for s, _ in api.list()] == ["db", "web"]
    api.delete("web")
    assert store.get(clusterip_key(keys, IPv4Address("10.96.0.20"))) is None
    assert store.get(nodeport_key(keys, 30080)) is None


def test_a_registry_service_of_the_same_name_wins_and_the_flat_one_is_left(store: EtcdStore, keys: Keys) -> None:
    api = ServiceAPI(store, keys)
    made = api.create(model.Service("web", IPv4Address(0), (model.ServicePort("default", "TCP", 80, 80),)),
                      cluster_ip=None)
    legacy(store, keys, "web", "10.96.0.99")
    assert migrate_legacy(store, keys) == 0
    assert api.get("web")[0].cluster_ip == made.cluster_ip
    assert store.get(keys.service("web")) is not None  # not lost: left for an operator to look at


def test_two_migrations_racing_move_each_service_once(store: EtcdStore, keys: Keys) -> None:
    for i in range(20):
        legacy(store, keys, f"s{i}", f"10.96.1.{i + 2}", endpoints=(f"10.244.1.{i + 2}",))
    counts: list[int] = []
    ts = [threading.Thread(target=lambda: counts.append(migrate_legacy(store, keys))) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sum(counts) == 20
    assert len(ObjectStore(store, keys).list(SERVICE)[0]) == 20
    assert store.list(keys.services)[0] == []


def test_the_proxy_programs_legacy_services_after_upgrade(store: EtcdStore, keys: Keys) -> None:
    legacy(store, keys, "web", "10.96.0.20", endpoints=("10.244.1.2",))
    rec = Recorder()
    comp = ProxyComponent(store, keys, backend=rec)
    comp.start()
    try:
        assert comp.synced.wait(10)
        wait_for(lambda: rec.backends(LbKey("default/web", "default")) == [("10.244.1.2", 8080)],
                 what="the migrated service programmed")
    finally:
        comp.stop()


def test_the_proxy_programs_applied_services_with_ready_addresses_only_per_namespace(store: EtcdStore, keys: Keys) -> None:
    """What `netplane apply` and the endpoints controller write is what the data plane gets:
    ready addresses only, a named targetPort resolved per subset, namespaces kept apart."""
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}]
    docs += [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
              "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "web"}]}}
             for ns in ("default", "shop")]
    p = subprocess.run([NETPLANE, "--etcd", store.config.endpoints[0], "--prefix", keys.prefix, "apply", "-f", "-"],
                       input="\n---\n".join(json.dumps(d) for d in docs), capture_output=True, text=True,
                       timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    objects = ObjectStore(store, keys)
    rec = Recorder()
    comp = ProxyComponent(store, keys, backend=rec)
    comp.start()
    try:
        assert comp.synced.wait(10)
        wait_for(lambda: rec.backends(LbKey("default/web", "http")) == [] and
                 rec.backends(LbKey("shop/web", "http")) == [], what="both services, no endpoints yet")
        objects.create({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
                        "subsets": [
                            {"addresses": [{"ip": "10.244.1.2"}], "notReadyAddresses": [{"ip": "10.244.1.3"}],
                             "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
                            {"addresses": [{"ip": "10.244.2.2"}],
                             "ports": [{"name": "http", "port": 9090, "protocol": "TCP"}]}]})
        wait_for(lambda: rec.backends(LbKey("default/web", "http")) == [("10.244.1.2", 8080), ("10.244.2.2", 9090)],
                 what="ready addresses on their own ports")
        assert rec.backends(LbKey("shop/web", "http")) == []
        # the pod turns ready: the controller moves it to addresses
        ep = objects.get(ENDPOINTS, "web")
        assert ep is not None
        ep["subsets"][0]["addresses"].append(ep["subsets"][0].pop("notReadyAddresses")[0])
        objects.update(ep)
        wait_for(lambda: ("10.244.1.3", 8080) in (rec.backends(LbKey("default/web", "http")) or []),
                 what="the newly ready address programmed")
        # a Service the proxy cannot express is skipped, never fatal
        store.put(f"{keys.prefix}/registry/services/default/odd", json.dumps({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "odd", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.org"}}))
        objects.delete(SERVICE, "web", "shop")
        wait_for(lambda: rec.backends(LbKey("shop/web", "http")) is None, what="shop/web removed")
        assert not any(k.service == "default/odd" for k in rec.state.entries)
    finally:
        comp.stop()
