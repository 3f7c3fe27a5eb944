"""The contract between the proxy loop and a data plane (iptables, eBPF).

The loop computes a `ProxyState` once per change and calls `sync`; `full=True` after a resync
(start, restart, etcd reconnect) means "make the kernel equal to this, removing anything of ours
that is not in it"; otherwise the backend may apply only the difference from its last sync (`changed`, when given,
names the entries that differ, so the backend need not compare 10,000 entries).
`close` stops using the kernel objects but leaves them in place (a restarting agent must not
interrupt traffic); `cleanup` removes everything the backend owns.
"""

from __future__ import annotations

from typing import Protocol

from netplane.proxy.desired import LbKey, ProxyState


class ProxyBackend(Protocol):
    name: str

    def sync(self, state: ProxyState, *, full: bool, changed: set[LbKey] | None = None) -> None: ...

    def dump(self, service: str | None = None) -> str: ...

    def close(self) -> None: ...

    def cleanup(self) -> None: ...
