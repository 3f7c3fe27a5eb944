"""etcd transactions as plain data: guards (conditions on keys) and operations.

One transaction applies all its operations or none, and only if every guard holds at that
moment. The orchestrator builds on this: optimistic updates (the object's mod revision is
still the one read), several bindings in one commit, and writes fenced by the leader's lease
(the leader key is still held on our lease, so a deposed leader cannot write).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Absent:
    """The key does not exist."""

    key: str


@dataclass(frozen=True)
class ModRevisionIs:
    """The key exists and was last written at `revision`."""

    key: str
    revision: int


@dataclass(frozen=True)
class LeaseIs:
    """The key exists and is attached to etcd lease `lease` (an expired lease removed it)."""

    key: str
    lease: int


@dataclass(frozen=True)
class ValueIs:
    key: str
    value: bytes


Guard = Absent | ModRevisionIs | LeaseIs | ValueIs


@dataclass(frozen=True)
class Put:
    """Write `value` at `key` on `lease` (0: none), or, with `keep_lease`, on whatever lease
    the key has now (etcd's `ignore_lease`; the key must exist, so pair it with a guard that
    says it does)."""

    key: str
    value: bytes | str
    lease: int = 0
    keep_lease: bool = False


@dataclass(frozen=True)
class Delete:
    key: str


Op = Put | Delete


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int  # the store revision after the commit (or at which the guards failed)
