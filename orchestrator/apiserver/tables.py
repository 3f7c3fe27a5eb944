"""`kubectl get`'s tables, pure: the meta.k8s.io/v1 `Table` the API server answers with
when asked `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.

kubectl prints what the server sends: column definitions (name, type, format, description,
priority) and one row of cells per object. kube-apiserver always generates every column,
wide ones included, and kubectl hides those with priority > 0 unless `-o wide`; we do the
same, with the columns and cells of `orchestrator.printing`, which `netplane get` prints
too, so both show the same thing (pods NAME READY STATUS RESTARTS AGE + IP NODE NOMINATED
NODE READINESS GATES, rc NAME DESIRED CURRENT READY AGE + CONTAINERS IMAGES SELECTOR, ...).
Cells are strings (AGE as kubectl's durations, RESTARTS as `3 (5m ago)`) except counts,
which kube-apiserver sends as integers (an RC's DESIRED/CURRENT/READY, an event's COUNT).

Each row carries its object as `includeObject` asks: `Metadata` (the default) a
PartialObjectMetadata, which is what kubectl reads for `-A`'s NAMESPACE column and `--show-
labels`; `Object` the whole object; `None` nothing. Finished pods' rows carry kube's
`Completed` row condition.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from netplane.errors import NetplaneError
from orchestrator import printing
from orchestrator.objects import meta
from orchestrator.objects import pod as pods
from orchestrator.objects.meta import Kind

TABLE_API_VERSION = "meta.k8s.io/v1"
INCLUDE_OBJECT = ("None", "Metadata", "Object")
Obj = dict[str, Any]


class TableError(NetplaneError):
    """A Table that cannot be made: an unknown kind or includeObject (400 BadRequest)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.reason = "BadRequest"
        self.message = message
        self.code = 400


def table_kind(kind: str | Kind) -> Kind:
    """The Kind for "Pod", "pods", "po" or `meta.POD`."""
    if isinstance(kind, Kind):
        return kind
    k = meta.kind_named(kind) or meta.kind_for_alias(kind)
    if k is None:
        raise TableError(f"no table columns for {kind!r}")
    return k


def column_definitions(kind: str | Kind) -> list[Obj]:
    return [{"name": c.name, "type": c.type, "format": c.format, "description": c.description,
             "priority": c.priority} for c in printing.column_defs(table_kind(kind))]


def table(kind: str | Kind, objects: Iterable[Mapping[str, Any]], *, wide: bool = False,
          now: float | None = None, include_object: str = "Metadata", resource_version: str = "",
          continue_token: str = "", no_headers: bool = False) -> Obj:
    """The Table of `objects` of `kind`, at `now` (epoch seconds; the clock when None).

    `wide` is accepted for the CLI's symmetry and changes nothing: like kube-apiserver, the
    Table has every column and kubectl chooses. `no_headers` (TableOptions' noHeaders, which
    kubectl sets on the rows of a watch after the first) leaves the column definitions out.
    """
    del wide
    k = table_kind(kind)
    if include_object not in INCLUDE_OBJECT:
        raise TableError(f'unrecognized includeObject value: "{include_object}"')
    at = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    md: Obj = {"resourceVersion": resource_version}
    if continue_token:
        md["continue"] = continue_token
    out: Obj = {"kind": "Table", "apiVersion": TABLE_API_VERSION, "metadata": md,
                "columnDefinitions": [] if no_headers else column_definitions(k),
                "rows": [row(k, o, at, include_object=include_object) for o in objects]}
    return out


def row(kind: Kind, obj: Mapping[str, Any], now: datetime, *, include_object: str = "Metadata") -> Obj:
    """One TableRow: cells for every column, the row's conditions, the object asked for."""
    r: Obj = {"cells": list(printing.cells(kind, obj, now))}
    if kind.kind == "Pod" and pods.is_terminal(obj):
        phase = pods.phase(obj)
        r["conditions"] = [{"type": "Completed", "status": "True", "reason": phase,
                            "message": "The pod has completed successfully." if phase == "Succeeded"
                            else "The pod failed."}]
    if include_object == "Metadata":
        r["object"] = {"kind": "PartialObjectMetadata", "apiVersion": TABLE_API_VERSION,
                       "metadata": copy.deepcopy(dict(meta.meta(obj)))}
    elif include_object == "Object":
        r["object"] = {"kind": kind.kind, "apiVersion": kind.api_version, **copy.deepcopy(dict(obj))}
    return r
