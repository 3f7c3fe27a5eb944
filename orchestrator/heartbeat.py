"""Node heartbeats through an etcd lease (the node side writes, the node lifecycle controller
reads) — Kubernetes' node Lease objects, in their simplest etcd form.

    <prefix>/nodes/<node>   {"renewTime": "2024-05-01T10:00:00.123456Z"}   on the node's lease

The node agent (the runtime issue) grants a lease of the grace period, puts its key on it and
renews both every few seconds (`renew`). The controller follows the prefix and remembers the
latest renewTime per node, also after the key went with an expired lease: an absent key is
not a heartbeat. Times carry microseconds, so short test timings are exact.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from netplane.store import EtcdStore, Keys

log = logging.getLogger(__name__)


def encode(now: datetime) -> str:
    return json.dumps({"renewTime": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")})


def decode(raw: bytes) -> datetime | None:
    """The renew time, or None (logged) for a malformed value."""
    try:
        v = json.loads(raw)
        t = datetime.fromisoformat(str(v["renewTime"]))
    except (ValueError, KeyError, TypeError) as e:
        log.warning("skipping malformed node heartbeat %r: %s", raw[:80], e)
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def renew(store: EtcdStore, keys: Keys, node: str, *, lease: int, now: datetime) -> None:
    """One heartbeat of `node` (put on its etcd lease, which the caller keeps alive)."""
    store.put(keys.node(node), encode(now), lease=lease)
