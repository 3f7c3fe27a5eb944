"""`netplane cordon | uncordon | drain NODE`: take a node out of scheduling and empty it, like
kubectl. Parse, then delegate to `orchestrator.nodeops`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from netplane.cli.resources import objects_of

if TYPE_CHECKING:
    from netplane.cli.main import Settings


def _node(name: str) -> str:
    return name.split("/", 1)[1] if name.startswith(("node/", "nodes/", "no/")) else name


@click.command("cordon")
@click.argument("node")
@click.pass_obj
def cordon(settings: Settings, node: str) -> None:
    """Mark NODE unschedulable: the scheduler places no new pods on it."""
    from orchestrator.nodeops import set_unschedulable

    n = _node(node)
    changed = set_unschedulable(objects_of(settings), n, True)
    click.echo(f"node/{n} cordoned" if changed else f"node/{n} already cordoned")


@click.command("uncordon")
@click.argument("node")
@click.pass_obj
def uncordon(settings: Settings, node: str) -> None:
    """Mark NODE schedulable again."""
    from orchestrator.nodeops import set_unschedulable

    n = _node(node)
    changed = set_unschedulable(objects_of(settings), n, False)
    click.echo(f"node/{n} uncordoned" if changed else f"node/{n} already uncordoned")


@click.command("drain")
@click.argument("node")
@click.option("--force", is_flag=True, help="Also delete pods that no controller would recreate.")
@click.option("--delete-emptydir-data", is_flag=True, help="Also delete pods with emptyDir volumes.")
@click.option("--ignore-daemonsets", is_flag=True, hidden=True, help="Accepted for kubectl's sake (there are none).")
@click.option("--grace-period", type=int, default=-1, show_default=True,
              help="Seconds each pod gets to stop (-1: its own terminationGracePeriodSeconds).")
@click.pass_obj
def drain(settings: Settings, node: str, force: bool, delete_emptydir_data: bool,
          ignore_daemonsets: bool, grace_period: int) -> None:
    """Cordon NODE, then delete its pods so their RCs recreate them elsewhere.

    Pods no controller manages are refused unless --force (they would be gone for good), and
    a refusal changes nothing, not even the cordon.
    """
    from orchestrator.nodeops import evict, plan_drain, set_unschedulable

    n = _node(node)
    objects = objects_of(settings)
    plan = plan_drain(objects, n, force=force, delete_local_data=delete_emptydir_data)
    changed = set_unschedulable(objects, n, True)
    click.echo(f"node/{n} cordoned" if changed else f"node/{n} already cordoned")
    if plan.forced:
        click.echo(f"Warning: deleting Pods that declare no controller: {', '.join(plan.forced)}", err=True)
    grace = None if grace_period < 0 else grace_period
    for p in plan.delete:
        name = (p.get("metadata") or {}).get("name")
        click.echo(f"evicting pod {(p.get('metadata') or {}).get('namespace')}/{name}")
        evict(objects, p, grace=grace)
        click.echo(f"pod/{name} evicted")
    click.echo(f"node/{n} drained")
