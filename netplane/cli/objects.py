"""`netplane apply | get | describe | delete`: kubectl's object verbs over the object store.

Commands parse arguments and delegate: manifests to `orchestrator.manifests`, apply to
`orchestrator.applier`, tables and describe text to `orchestrator.printing` /
`orchestrator.describe`, deletion to `orchestrator.deletion`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self, cast

import click

from netplane import signals
from netplane.cli.resources import kind_of, namespace_options, objects_of, resource_args
from netplane.errors import NotFoundError, UserError
from orchestrator import printing
from orchestrator.objects import meta
from orchestrator.objects.meta import Kind
from orchestrator.objects.selector import Selector, SelectorError, parse

if TYPE_CHECKING:
    from netplane.cli.main import Settings
    from orchestrator.deletion import Cascade
    from orchestrator.storage import ObjectStore

Obj = dict[str, Any]
GET_FORMATS = ("wide", "json", "yaml", "name")


def _now() -> datetime:
    return datetime.now(UTC)


def _selector(text: str | None) -> Selector | None:
    if text is None:
        return None
    try:
        return parse(text)
    except SelectorError as e:
        raise UserError(f"unable to parse selector {text!r}: {e}") from None


def _warn(line: str) -> None:
    click.echo(f"Warning: {line}", err=True)


# --------------------------------------------------------------------------- apply
@click.command("apply")
@click.option("-f", "--filename", "files", multiple=True, required=True, metavar="FILE|DIR|-",
              help="Manifest file, directory of .yaml/.yml/.json files, or - for stdin (repeatable).")
@click.option("-R", "--recursive", is_flag=True, help="Also read the directories under DIR.")
@click.option("-n", "--namespace", metavar="NS", help="Namespace of objects that name none.")
@click.pass_obj
def apply_cmd(settings: Settings, files: tuple[str, ...], recursive: bool, namespace: str | None) -> None:
    """Create or update objects from manifests, like `kubectl apply -f`.

    YAML or JSON, several documents per file, `kind: List` too. Every document is validated
    (and merged with what is stored) before anything is written: a bad one is reported with
    its field path and nothing is written. The applied manifest is kept in the
    kubectl.kubernetes.io/last-applied-configuration annotation, so fields removed from the
    manifest are removed from the object on the next apply.
    """
    from orchestrator import manifests
    from orchestrator.applier import Applier

    docs = manifests.load(files, recursive=recursive)
    applier = Applier(objects_of(settings))
    plans = applier.plan(docs, namespace=namespace)
    for p in plans:
        for w in p.warnings:
            _warn(w)
    for p in plans:
        click.echo(f"{p.ref} {applier.write(p)}")


# --------------------------------------------------------------------------- get
def _matching(objs: Sequence[Obj], names: Sequence[str]) -> list[Obj]:
    return [o for o in objs if not names or meta.name(o) in names]


def _fetch(objects: ObjectStore, kind: Kind, names: Sequence[str], namespace: str | None,
           selector: Selector | None) -> tuple[list[Obj], list[str]]:
    """The objects asked for (sorted as kubectl lists them) and the names not found."""
    if names:
        found, missing = [], []
        for n in names:
            o = objects.get(kind, n, namespace)
            if o is None:
                missing.append(n)
            else:
                found.append(o)
        return found, missing
    items, _ = objects.list(kind, namespace, selector=selector)
    return sorted(items, key=lambda o: printing.sort_key(kind, o)), []


def _not_found(kind: Kind, missing: Sequence[str]) -> NotFoundError:
    return NotFoundError("; ".join(f'{kind.resource} "{n}" not found' for n in missing))


@click.command("get")
@click.argument("resource", metavar="TYPE[/NAME]")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("-o", "--output", type=click.Choice(GET_FORMATS), help="wide, json, yaml or name (default: a table).")
@click.option("-l", "--selector", metavar="SELECTOR", help="Label selector, e.g. app=web,tier!=db.")
@namespace_options
@click.option("-w", "--watch", is_flag=True, help="After listing, print objects as they change (Ctrl-C stops).")
@click.pass_obj
def get(settings: Settings, resource: str, names: tuple[str, ...], output: str | None,
        selector: str | None, namespace: str, all_namespaces: bool, watch: bool) -> None:
    """Show objects of one TYPE, like `kubectl get`.

    TYPE is one of: namespaces|ns, nodes|no, pods|po, replicationcontrollers|rc,
    services|svc, endpoints|ep, events|ev, configmaps|cm, secrets, serviceaccounts|sa, leases,
    poddisruptionbudgets|pdb, clusterroles, clusterrolebindings, roles, rolebindings (singular
    and plural forms work too).
    """
    if "," in resource and "/" not in resource:
        if names or watch:
            raise UserError("several types at once (TYPE,TYPE) take no names and no --watch")
        _get_several(settings, resource.split(","), output, selector, None if all_namespaces else namespace,
                     all_namespaces)
        return
    kind, names_list = resource_args((resource, *names))
    if names_list and selector is not None:
        raise UserError("name cannot be provided when a selector is specified")
    ns = None if all_namespaces else namespace
    sel = _selector(selector)
    objects = objects_of(settings)
    if watch:
        _watch(objects, kind, ns, sel, names_list, output, all_namespaces)
        return
    found, missing = _fetch(objects, kind, names_list, ns, sel)
    single = len(names_list) == 1
    if output in ("json", "yaml"):
        if found:
            click.echo(printing.dump(found[0] if single else printing.as_list(found), output))
    elif output == "name":
        for o in found:
            click.echo(printing.kind_slash_name(kind.kind, meta.name(o)))
    elif found:
        tbl = printing.table(kind, found, _now(), wide=output == "wide",
                             namespaced_column=all_namespaces)
        click.echo(tbl.render())
    elif not missing:
        click.echo(printing.no_resources(kind, ns), err=True)
    if missing:
        raise _not_found(kind, missing)


def _get_several(settings: Settings, types: Sequence[str], output: str | None, selector: str | None,
                 ns: str | None, all_namespaces: bool) -> None:
    """`get rc,svc,ep`: one table per type with kubectl's `type/name` names, or one List."""
    kinds = [resource_args((t,))[0] for t in types if t]
    objects = objects_of(settings)
    sel = _selector(selector)
    per_kind = [(k, _fetch(objects, k, [], ns, sel)[0]) for k in kinds]
    if output in ("json", "yaml"):
        click.echo(printing.dump(printing.as_list([o for _, objs in per_kind for o in objs]), output))
        return
    if output == "name":
        for k, objs in per_kind:
            for o in objs:
                click.echo(printing.kind_slash_name(k.kind, meta.name(o)))
        return
    blocks = []
    for k, objs in per_kind:
        if not objs:
            continue
        tbl = printing.table(k, objs, _now(), wide=output == "wide", namespaced_column=all_namespaces)
        at = tbl.columns.index("NAME")
        rows = tuple(r[:at] + (printing.kind_slash_name(k.kind, r[at]),) + r[at + 1:] for r in tbl.rows)
        blocks.append(printing.Table(tbl.columns, rows).render())
    if blocks:
        click.echo("\n\n".join(blocks))
    else:
        click.echo(printing.no_resources(kinds[0], ns), err=True)


class _Interrupted:
    """SIGINT/SIGTERM set `stop` instead of raising in the middle of a gRPC read."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Self:
        handler = signals.set_later(self.stop)  # not stop.set() in the handler: netplane.signals
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)


def _watch_lines(kind: Kind, objs: Mapping[str, Obj], prev: Mapping[str, Obj],
                 changed: Sequence[str] | None) -> Iterator[Obj]:
    """The objects to print after one watch batch: changed ones (deleted ones in their last
    state), or after a re-list, every one that differs from what was printed."""
    if changed is None:
        keys = sorted(set(objs) | set(prev))
        for k in keys:
            new = objs.get(k)
            if new is None or prev.get(k) != new:
                yield new if new is not None else prev[k]
        return
    for k in sorted(changed):
        o = objs.get(k, prev.get(k))
        if o is not None:
            yield o


def _watch(objects: ObjectStore, kind: Kind, namespace: str | None, sel: Selector | None,
           names: Sequence[str], output: str | None, all_namespaces: bool) -> None:
    stop = threading.Event()
    widths: list[int] | None = None
    prev: dict[str, Obj] = {}
    first = True

    def wanted(o: Obj) -> bool:
        return (not names or meta.name(o) in names) and (sel is None or sel.matches(meta.labels(o)))

    def show(objs: list[Obj]) -> None:
        nonlocal widths
        if not objs:
            return
        if output in ("json", "yaml"):
            for o in objs:
                click.echo(printing.dump(o, output) + ("\n---" if output == "yaml" else ""))
            return
        if output == "name":
            for o in objs:
                click.echo(printing.kind_slash_name(kind.kind, meta.name(o)))
            return
        tbl = printing.table(kind, objs, _now(), wide=output == "wide",
                             namespaced_column=all_namespaces)
        if widths is None:
            widths = tbl.widths()
            click.echo(tbl.render(widths=widths))
        else:
            click.echo(tbl.render(header=False, widths=widths))

    with _Interrupted(stop):
        for view in objects.watch(kind, namespace, stop=stop):
            objs = {k: o for k, o in view.objects.items() if wanted(o)}
            if first:
                initial = sorted(objs.values(), key=lambda o: printing.sort_key(kind, o))
                if not initial and not names:
                    click.echo(printing.no_resources(kind, namespace), err=True)
                show(initial)
                first = False
            else:
                changed = None if view.changed is None else [k for k in view.changed
                                                             if k in objs or k in prev]
                show(list(_watch_lines(kind, objs, prev, changed)))
            prev = objs
            if stop.is_set():
                break


# --------------------------------------------------------------------------- describe
@click.command("describe")
@click.argument("resource", metavar="TYPE[/NAME]")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("-l", "--selector", metavar="SELECTOR", help="Label selector.")
@namespace_options
@click.pass_obj
def describe_cmd(settings: Settings, resource: str, names: tuple[str, ...], selector: str | None,
                 namespace: str, all_namespaces: bool) -> None:
    """Show objects in detail with their recent events, like `kubectl describe`."""
    from orchestrator import describe
    from orchestrator.objects.meta import (
        ENDPOINTS,
        EVENT,
        NODE,
        POD,
        REPLICATION_CONTROLLER,
        SERVICE,
    )
    from orchestrator.objects.replicationcontroller import selector as rc_selector

    kind, names_list = resource_args((resource, *names))
    ns = None if all_namespaces else namespace
    objects = objects_of(settings)
    found, missing = _fetch(objects, kind, names_list, ns, _selector(selector))
    if not found and not missing:
        click.echo(printing.no_resources(kind, ns), err=True)
    now = _now()
    texts = []
    for obj in found:
        ev_ns = meta.namespace(obj) if kind.namespaced else meta.DEFAULT_NAMESPACE
        events = [e for e in objects.list(EVENT, ev_ns)[0] if describe.involves(e, kind, obj)]
        related: list[Obj] = []
        endpoints = None
        if kind == REPLICATION_CONTROLLER:
            sel = rc_selector(obj)
            related = [p for p in objects.list(POD, meta.namespace(obj))[0]
                       if sel.matches(meta.labels(p))]
        elif kind == NODE:
            related = [p for p in objects.list(POD)[0]
                       if (p.get("spec") or {}).get("nodeName") == meta.name(obj)]
        elif kind == SERVICE:
            endpoints = objects.get(ENDPOINTS, meta.name(obj), meta.namespace(obj))
        texts.append(describe.describe(kind, obj, events=events, now=now, related=related,
                                       endpoints=endpoints))
    if texts:
        click.echo("\n\n\n".join(texts))
    if missing:
        raise _not_found(kind, missing)


# --------------------------------------------------------------------------- delete
@click.command("delete")
@click.argument("args", nargs=-1, metavar="[TYPE[/NAME] [NAME]...]")
@click.option("-f", "--filename", "files", multiple=True, metavar="FILE|DIR|-",
              help="Delete the objects these manifests name (repeatable).")
@click.option("-R", "--recursive", is_flag=True, help="With -f DIR: its subdirectories too.")
@click.option("-l", "--selector", metavar="SELECTOR", help="Delete the objects of TYPE matching it.")
@click.option("--all", "all_", is_flag=True, help="Delete every object of TYPE in the namespace.")
@namespace_options
@click.option("--cascade", type=click.Choice(("background", "orphan")), default="background",
              show_default=True,
              help="background: an RC's pods are deleted too; orphan: they are kept, without owner.")
@click.option("--grace-period", type=int, default=-1, show_default=True,
              help="Seconds a pod gets to stop (-1: its terminationGracePeriodSeconds).")
@click.option("--now", "now_", is_flag=True, help="Pods stop at once (grace period 1).")
@click.option("--force", is_flag=True, help="With --grace-period=0: remove pods without waiting for the node.")
@click.option("--ignore-not-found", is_flag=True, help="A missing object is not an error.")
@click.pass_obj
def delete(settings: Settings, args: tuple[str, ...], files: tuple[str, ...], recursive: bool,
           selector: str | None, all_: bool, namespace: str, all_namespaces: bool, cascade: str,
           grace_period: int, now_: bool, force: bool, ignore_not_found: bool) -> None:
    """Delete objects by TYPE and NAME, by label, or as named in manifests (`-f`)."""
    from orchestrator import manifests
    from orchestrator.deletion import Deleter

    grace: int | None = None if grace_period < 0 else grace_period
    if now_:
        grace = 1
    if grace == 0 and not force:
        grace = 1  # kubectl: immediate deletion needs --force
    if force and grace is None:
        grace = 0
    if grace == 0:
        _warn("Immediate deletion does not wait for confirmation that the running resource has "
              "been terminated. The resource may continue to run on the cluster indefinitely.")
    ns = None if all_namespaces else namespace
    objects = objects_of(settings)
    targets: list[tuple[Kind, str, str | None]] = []
    if files:
        if args:
            raise UserError("there is no need to specify a resource type as a separate argument "
                            "when passing arguments in resource/name form (-f)")
        for m in manifests.load(files, recursive=recursive):
            k = kind_of(str(m.object.get("kind") or ""))
            md = m.object.get("metadata") or {}
            if not isinstance(md, dict) or not md.get("name"):
                raise UserError(f"{m.where}: metadata.name: Required value")
            targets.append((k, str(md["name"]), md.get("namespace") or namespace))
    else:
        kind, names = resource_args(args)
        if names and (selector is not None or all_):
            raise UserError("name cannot be provided when a selector or --all is specified")
        if not names:
            if selector is None and not all_:
                raise UserError(f"resource(s) were provided, but no name was specified "
                                f"(delete {kind.resource} NAME, -l SELECTOR or --all)")
            items, _ = objects.list(kind, ns, selector=_selector(selector) if selector else None)
            targets = [(kind, meta.name(o), meta.namespace(o) if kind.namespaced else None)
                       for o in sorted(items, key=lambda o: printing.sort_key(kind, o))]
            if not targets:
                click.echo(printing.no_resources(kind, ns), err=True)
        else:
            targets = [(kind, n, ns or namespace) for n in names]
    deleter = Deleter(objects)
    missing = []
    for k, name, tns in targets:
        if deleter.delete(k, name, tns, cascade=cast("Cascade", cascade), grace=grace):
            click.echo(f'{k.kind.lower()} "{name}" deleted')
        elif not ignore_not_found:
            missing.append(f'{k.resource} "{name}" not found')
    if missing:
        raise NotFoundError("; ".join(missing))


