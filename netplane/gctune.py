"""Garbage collection for netplane's long-running servers (master, API server).

They hold every pod, node and service of the cluster in informer and watch caches: hundreds of
thousands of live objects. CPython's default thresholds (700, 10, 10) then run a full collection
every few hundred thousand allocations, each walking the whole heap: 300–700 ms pauses measured
in the API server at 10,000 pods (bench/results/api.md), the scheduler's worst stream latencies
too. A larger first threshold makes young collections rarer and full ones much rarer; cycles are
still collected.
"""

from __future__ import annotations

import gc

SERVER_THRESHOLDS = (50_000, 20, 100)


def for_servers() -> None:
    gc.set_threshold(*SERVER_THRESHOLDS)
