"""An etcd the lab starts inside a namespace is found healthy there from the test process,
also while a grpc.aio stream is open in it (an API server's watch caches): from then on gRPC
connects a new blocking channel from its own threads, in the root namespace, so a probe made
of a channel created inside the namespace reached the root's 127.0.0.1 and timed out. The
probe's socket is now opened by the calling thread inside the namespace."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from pyetcd import etcdrpc

from netplane.errors import StoreError
from netplane.store.embedded import EmbeddedEtcd, EtcdSpec, free_loopback_port


@pytest.fixture
def aio_watch(etcd_server: EmbeddedEtcd) -> Iterator[None]:
    """A grpc.aio watch stream on the session etcd, open on a loop thread for the test."""
    loop = asyncio.new_event_loop()
    watching, done = threading.Event(), asyncio.Event()

    async def watch() -> None:
        async with grpc.aio.insecure_channel(etcd_server.endpoint.split("//", 1)[1]) as ch:
            call = etcdrpc.WatchStub(ch).Watch()
            await call.write(etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(key=b"/aio-probe")))
            await call.read()  # created
            watching.set()
            await done.wait()
            call.cancel()

    t = threading.Thread(target=loop.run_until_complete, args=(watch(),), daemon=True)
    t.start()
    assert watching.wait(10), "the aio watch did not start"
    yield
    loop.call_soon_threadsafe(done.set)
    t.join(10)
    loop.close()


def test_etcd_in_a_namespace_is_probed_there(make_netns: Callable[[str], str], tmp_path: Path,
                                             aio_watch: None) -> None:
    ns = make_netns("etcd")
    e = EmbeddedEtcd(EtcdSpec(
        name="inns", data_dir=tmp_path / "data", log_path=tmp_path / "etcd.log", netns=ns,
        client_urls=(f"http://127.0.0.1:{free_loopback_port()}",),  # the namespace's loopback
        peer_url=f"http://127.0.0.1:{free_loopback_port()}",
    ))
    e.spawn()
    try:
        e.wait_healthy(15)
        e.stop()  # gone, with no process of its own to watch: the probe alone decides
        with pytest.raises(StoreError, match="not healthy after 1s"):
            e.wait_healthy(1)
    finally:
        e.stop()
