"""Node heartbeats through an etcd lease (the node side writes, the node lifecycle controller
reads) — Kubernetes' node Lease objects, in their simplest etcd form.

    <prefix>/nodes/<node>   {"renewTime": "2024-05-01T10:00:00.123456Z",
                             "leaseDurationSeconds": 40, "since": "2024-05-01T09:00:00.000001Z"}
                            on the node's etcd lease

The node agent grants a lease of the grace period, puts its key on it and renews both every
few seconds (`renew`); `since` is when that etcd lease was granted, `leaseDurationSeconds` its
TTL (values without them, from older agents, are read too). The controller follows the prefix
and remembers the latest renewTime per node, also after the key went with an expired lease:
an absent key is not a heartbeat. The API server shows each key as the node's
coordination.k8s.io Lease in kube-node-lease (`orchestrator.apiserver.leases`). Times carry
microseconds, so short test timings are exact.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from netplane.store import EtcdStore, Keys
from orchestrator.objects.meta import format_micro_time

log = logging.getLogger(__name__)


def encode(now: datetime, *, duration: int | None = None, since: datetime | None = None) -> str:
    v: dict[str, object] = {"renewTime": format_micro_time(now)}
    if duration is not None:
        v["leaseDurationSeconds"] = duration
    if since is not None:
        v["since"] = format_micro_time(since)
    return json.dumps(v)


@dataclass(frozen=True)
class Beat:
    renew_time: datetime
    duration: int | None = None  # the etcd lease's TTL, seconds
    since: datetime | None = None  # when the node's etcd lease was granted


def _time(v: object) -> datetime:
    t = datetime.fromisoformat(str(v))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def read(raw: bytes) -> Beat | None:
    """The whole heartbeat, or None (logged) for a malformed value."""
    try:
        v = json.loads(raw)
        duration = v.get("leaseDurationSeconds")
        if duration is not None and (not isinstance(duration, int) or isinstance(duration, bool)):
            raise TypeError(f"leaseDurationSeconds {duration!r} is not an integer")
        return Beat(_time(v["renewTime"]), duration, _time(v["since"]) if v.get("since") is not None else None)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        log.warning("skipping malformed node heartbeat %r: %s", raw[:80], e)
        return None


def decode(raw: bytes) -> datetime | None:
    """The renew time, or None (logged) for a malformed value."""
    beat = read(raw)
    return beat.renew_time if beat is not None else None


def renew(store: EtcdStore, keys: Keys, node: str, *, lease: int, now: datetime,
          duration: int | None = None, since: datetime | None = None) -> None:
    """One heartbeat of `node` (put on its etcd lease, which the caller keeps alive)."""
    store.put(keys.node(node), encode(now, duration=duration, since=since), lease=lease)
