"""What the kubectl-style verbs share: resource arguments (`pods`, `po`, `rc/web`), the
`-n/--namespace` and `-A/--all-namespaces` options, and the object store of a command."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from netplane.errors import UserError
from orchestrator.objects import meta
from orchestrator.objects.meta import Kind

if TYPE_CHECKING:
    from netplane.cli.main import Settings
    from orchestrator.storage import ObjectStore

F = TypeVar("F", bound=Callable[..., Any])
# "pods|po, replicationcontrollers|rc, ..., leases": every kind stored here, as `get --help` lists them
TYPES_HELP = ", ".join("|".join((k.resource, *k.short_names)) for k in meta.KINDS)


def objects_of(settings: Settings) -> ObjectStore:
    from orchestrator.storage import ObjectStore

    return ObjectStore(settings.store(), settings.keys())


def kind_of(resource: str) -> Kind:
    k = meta.kind_for_alias(resource)
    if k is None:
        raise UserError(f'the server doesn\'t have a resource type "{resource}"')
    return k


def resource_args(args: Sequence[str]) -> tuple[Kind, list[str]]:
    """`TYPE [NAME...]` or `TYPE/NAME [TYPE/NAME...]` (one type) as kubectl takes them."""
    if not args:
        raise UserError("You must specify the type of resource (" + TYPES_HELP + ")")
    if "/" in args[0]:
        kinds, names = set(), []
        for a in args:
            t, slash, n = a.partition("/")
            if not slash or not n:
                raise UserError(f"there is no need to specify a resource type as a separate argument "
                                f"when passing arguments in resource/name form: {a!r}")
            kinds.add(kind_of(t))
            names.append(n)
        if len(kinds) > 1:
            raise UserError("resources of several types at once are not supported")
        return kinds.pop(), names
    return kind_of(args[0]), list(args[1:])


def namespace_options(func: F) -> F:
    func = click.option("-A", "--all-namespaces", "all_namespaces", is_flag=True,
                        help="Across all namespaces.")(func)
    return click.option("-n", "--namespace", "namespace", metavar="NS",
                        default=meta.DEFAULT_NAMESPACE, show_default=True,
                        help="The namespace of namespaced objects.")(func)


def namespace_option(func: F) -> F:
    return click.option("-n", "--namespace", "namespace", metavar="NS",
                        default=meta.DEFAULT_NAMESPACE, show_default=True,
                        help="The namespace of namespaced objects.")(func)
