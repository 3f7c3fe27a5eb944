"""netplane's view of etcd: client factory, typed keys, JSON codec, list+watch, embedded etcd.

Only `netplane.store.etcd` imports the etcd library; everything else uses `EtcdStore`.
"""

from netplane.store.etcd import Compacted, EtcdConfig, EtcdStore, KeyValue, WatchEvent
from netplane.store.keys import Keys

__all__ = ["Compacted", "EtcdConfig", "EtcdStore", "KeyValue", "Keys", "WatchEvent", "connect"]


def connect(config: EtcdConfig) -> EtcdStore:
    """Open a connection (lazy: the first call reports an unreachable etcd as StoreError)."""
    return EtcdStore(config)
