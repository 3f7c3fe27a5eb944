"""The `netplane` command: global options, subcommand groups, and error-to-exit-code mapping.

Commands only parse arguments and delegate. A user mistake (bad flag, bad value, unknown name)
prints one line on stderr and exits 2; a runtime failure prints one line with its cause and
exits 1. No traceback reaches the user unless `--log-level debug` asks for it.
"""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

from netplane import __version__, context
from netplane.errors import NetplaneError, StoreError, UserError

if TYPE_CHECKING:
    from netplane.store import EtcdConfig, EtcdStore, Keys

log = logging.getLogger("netplane")

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass
class Settings:
    """What every command may need: how to reach etcd and under which prefix."""

    etcd: str | None
    prefix: str | None
    ca_cert: str | None
    cert: str | None
    key: str | None
    timeout: float
    _store: EtcdStore | None = field(default=None, repr=False)

    def resolved(self) -> context.Context:
        return context.resolve(etcd=self.etcd, prefix=self.prefix)

    def etcd_config(self) -> EtcdConfig:
        from netplane.store import EtcdConfig

        return EtcdConfig.parse(
            self.resolved().etcd, ca_cert=self.ca_cert, cert=self.cert, key=self.key, timeout=self.timeout
        )

    def keys(self) -> Keys:
        from netplane.store import Keys

        return Keys(self.resolved().prefix)

    def store(self) -> EtcdStore:
        if self._store is None:
            from netplane.store import EtcdStore

            self._store = EtcdStore(self.etcd_config())
        return self._store


pass_settings = click.make_pass_decorator(Settings)


# Subcommands: name -> (module under netplane.cli, click object in it). Imported when used, so
# `netplane svc list` does not load the lab's netlink code, nor `lab` the stats reader.
_COMMANDS: dict[str, tuple[str, str]] = {
    "lab": ("lab", "lab"),
    "net": ("net", "net"),
    "agent": ("agent", "agent"),
    "svc": ("svc", "svc"),
    "proxy": ("proxy", "proxy"),
    "stats": ("stats", "stats"),
    "top": ("stats", "top"),
    "apply": ("objects", "apply_cmd"),
    "get": ("objects", "get"),
    "describe": ("objects", "describe_cmd"),
    "delete": ("objects", "delete"),
    "run": ("workloads", "run"),
    "scale": ("workloads", "scale"),
    "cordon": ("nodes", "cordon"),
    "uncordon": ("nodes", "uncordon"),
    "drain": ("nodes", "drain"),
    "logs": ("podio", "logs"),
    "exec": ("podio", "exec_cmd"),
    "attach": ("podio", "attach"),
    "port-forward": ("podio", "port_forward"),
    "master": ("master", "master"),
    "node": ("nodeinstall", "node"),
    "apiserver": ("apiserver", "apiserver"),
    "kubeconfig": ("apiserver", "kubeconfig"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _COMMANDS and cmd_name not in self.commands:
            modname, attr = _COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(f"netplane.cli.{modname}"), attr), cmd_name)
        return super().get_command(ctx, cmd_name)



@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="netplane")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default="warning",
    show_default=True,
    envvar="NETPLANE_LOG_LEVEL",
    help="Logging verbosity (debug also shows tracebacks).",
)
@click.option(
    "--etcd",
    envvar="NETPLANE_ETCD",
    metavar="URL[,URL...]",
    help="etcd endpoints. Default: the current lab's (context file), else http://127.0.0.1:2379.",
)
@click.option("--etcd-ca", envvar="NETPLANE_ETCD_CA", type=click.Path(dir_okay=False), help="CA bundle for https endpoints.")
@click.option("--etcd-cert", envvar="NETPLANE_ETCD_CERT", type=click.Path(dir_okay=False), help="Client certificate.")
@click.option("--etcd-key", envvar="NETPLANE_ETCD_KEY", type=click.Path(dir_okay=False), help="Client key.")
@click.option("--etcd-timeout", envvar="NETPLANE_ETCD_TIMEOUT", type=click.FloatRange(min=0.1), default=5.0, show_default=True, help="Seconds per etcd request.")
@click.option("--prefix", envvar="NETPLANE_PREFIX", metavar="PATH", help="etcd key prefix. Default: /netplane.")
@click.pass_context
def cli(
    ctx: click.Context,
    log_level: str,
    etcd: str | None,
    etcd_ca: str | None,
    etcd_cert: str | None,
    etcd_key: str | None,
    etcd_timeout: float,
    prefix: str | None,
) -> None:
    """netplane: a networking-first container cluster you can see into.

    VXLAN overlay with per-host subnet leases from etcd, service load balancing (iptables or
    eBPF), container stats, and a lab that emulates several hosts with network namespaces.
    """
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = Settings(etcd=etcd, prefix=prefix, ca_cert=etcd_ca, cert=etcd_cert, key=etcd_key, timeout=etcd_timeout)
    ctx.call_on_close(lambda: ctx.obj._store.close() if ctx.obj._store else None)




def _cause(e: NetplaneError) -> str:
    """A short ' (caused by ...)' from the chained library error: its first line only, and
    nothing when our message already says it (store errors summarise gRPC's multi-line text)."""
    c = e.__cause__
    if c is None or isinstance(e, StoreError):
        return ""
    lines = str(c).strip().splitlines()
    text = lines[0][:200] if lines else ""
    if not text or text in str(e):
        return ""
    return f" (caused by {type(c).__name__}: {text})"


def _debug() -> bool:
    return logging.getLogger().isEnabledFor(logging.DEBUG)


def main(argv: list[str] | None = None) -> None:
    try:
        rc = cli.main(args=argv, prog_name="netplane", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:  # pragma: no cover - click >= 8.2
        click.echo(e.ctx.get_help() if e.ctx else str(e))
        sys.exit(2)
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
        click.echo(f"netplane: error: {e.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"netplane: error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("netplane: aborted", err=True)
        sys.exit(130)
    except UserError as e:
        click.echo(f"netplane: error: {e}", err=True)
        sys.exit(2)
    except NetplaneError as e:
        if _debug():
            log.exception("failed")
        click.echo(f"netplane: {e}{_cause(e)}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as e:
        if _debug():
            log.exception("failed")
        click.echo(f"netplane: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), err=True)
        sys.exit(1)
    except Exception as e:
        if _debug():
            log.exception("internal error")
        click.echo(f"netplane: internal error: {type(e).__name__}: {e} (rerun with --log-level debug)", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
