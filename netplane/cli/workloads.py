"""`netplane run` and `netplane scale`: make a ReplicationController like old `kubectl run`,
change its replicas like `kubectl scale`. Parse, then delegate to `orchestrator.workloads`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from netplane.cli.resources import namespace_option, objects_of, resource_args
from netplane.errors import UserError
from orchestrator.objects.meta import REPLICATION_CONTROLLER

if TYPE_CHECKING:
    from netplane.cli.main import Settings


def _pairs(items: tuple[str, ...], what: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise UserError(f"invalid {what} {item!r}: expected KEY=VALUE")
        out.append((k, v))
    return out


@click.command("run", context_settings={"ignore_unknown_options": False})
@click.argument("name")
@click.argument("argv", nargs=-1, metavar="[-- ARG...]")
@click.option("--image", required=True, help="The container image.")
@click.option("--replicas", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), help="The container port to expose.")
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE", help="Environment variable (repeatable).")
@click.option("-l", "--labels", metavar="K=V[,K=V]", help="Labels instead of run=NAME.")
@click.option("--command", is_flag=True, help="The arguments after -- are the command, not its args.")
@namespace_option
@click.pass_obj
def run(settings: Settings, name: str, argv: tuple[str, ...], image: str, replicas: int,
        port: int | None, env: tuple[str, ...], labels: str | None, command: bool, namespace: str) -> None:
    """Create a ReplicationController NAME running IMAGE (labels run=NAME), like kubectl
    run before 1.18: `netplane run web --image nginx --replicas 2 --port 80 -- -g 'daemon off;'`."""
    from orchestrator.validation import InvalidObject, admit
    from orchestrator.workloads import run_rc

    lab = dict(_pairs(tuple(labels.split(",")), "label")) if labels else None
    rc = run_rc(name, image=image, namespace=namespace, replicas=replicas, port=port, argv=argv,
                command=command, env=_pairs(env, "--env"), labels=lab)
    try:
        admitted = admit(rc)
    except InvalidObject as e:
        raise UserError(str(e)) from None
    from orchestrator.applier import Applier

    Applier(objects_of(settings)).create(admitted.object)  # the one write path: namespace checks included
    click.echo(f"replicationcontroller/{name} created")


@click.command("scale")
@click.argument("args", nargs=-1, required=True, metavar="rc NAME | rc/NAME")
@click.option("--replicas", type=int, required=True, help="The new number of replicas (>= 0).")
@click.option("--current-replicas", type=int, help="Only if it has this many now.")
@namespace_option
@click.pass_obj
def scale(settings: Settings, args: tuple[str, ...], replicas: int, current_replicas: int | None,
          namespace: str) -> None:
    """Set a ReplicationController's replicas, like `kubectl scale rc NAME --replicas N`."""
    from orchestrator.workloads import scale as do_scale

    kind, names = resource_args(args)
    if kind != REPLICATION_CONTROLLER:
        raise UserError(f"cannot scale {kind.resource}: only replicationcontrollers (rc) scale")
    if not names:
        raise UserError("resource(s) were provided, but no name was specified")
    objects = objects_of(settings)
    for n in names:
        do_scale(objects, n, namespace, replicas, current_replicas=current_replicas)
        click.echo(f"replicationcontroller/{n} scaled")
