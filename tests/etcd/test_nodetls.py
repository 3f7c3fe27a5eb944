"""The client CAs node agents accept, as published in and followed from a real etcd
(`orchestrator.node.nodetls`): publishing is idempotent, a new CA reaches a following node
without a restart, malformed entries are skipped, and the server's context follows the set."""

from __future__ import annotations

import threading

from netplane.store import EtcdStore, Keys
from orchestrator.apiserver import certs
from orchestrator.node import nodetls
from tests.waiting import wait_for


def test_published_cas_are_followed_and_bad_ones_skipped(store: EtcdStore, keys: Keys) -> None:
    a, b = certs.new_ca("a"), certs.new_ca("b")
    wrote = nodetls.publish_client_cas(store, keys, a.cert)
    assert wrote == [keys.client_ca(nodetls.fingerprint(a.cert))]
    assert nodetls.publish_client_cas(store, keys, a.cert) == [], "publishing again changes nothing"
    store.put(keys.client_cas + "junk", b"not a certificate")
    leaf = certs.client_cert(a, "someone")
    store.put(keys.client_cas + "leaf", leaf.cert)  # a certificate, but no CA

    cas = nodetls.ClientCAs(store, keys)
    stop = threading.Event()
    t = threading.Thread(target=cas.run, args=(stop,), daemon=True)
    t.start()
    try:
        wait_for(lambda: cas.current()[1] == [a.cert], 10, "the published CA, without the bad entries")
        version = cas.current()[0]
        nodetls.publish_client_cas(store, keys, b.cert)  # e.g. a second API server's
        wait_for(lambda: sorted(cas.current()[1]) == sorted([a.cert, b.cert]), 10, "the new CA, followed")
        assert cas.current()[0] > version
        store.delete(keys.client_ca(nodetls.fingerprint(a.cert)))
        wait_for(lambda: cas.current()[1] == [b.cert], 10, "a removed CA no longer trusted")

        # the server context follows too: rebuilt only when the set changed
        tls = nodetls.ServerTLS(certs.self_signed_server("n1", ["127.0.0.1"]), cas)
        ctx = tls.context()
        assert tls.context() is ctx
        nodetls.publish_client_cas(store, keys, a.cert)
        wait_for(lambda: tls.context() is not ctx, 10, "a new context for the new set")
    finally:
        stop.set()
        t.join(5)
    assert not t.is_alive()


def test_a_bundle_is_split_into_its_cas(store: EtcdStore, keys: Keys) -> None:
    a, b = certs.new_ca("a"), certs.new_ca("b")
    wrote = nodetls.publish_client_cas(store, keys, a.cert + b.cert)
    assert sorted(wrote) == sorted(keys.client_ca(nodetls.fingerprint(p)) for p in (a.cert, b.cert))
    cas = nodetls.ClientCAs(store, keys)
    cas.refresh()
    assert sorted(cas.current()[1]) == sorted([a.cert, b.cert])
