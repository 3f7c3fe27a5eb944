"""`netplane apiserver` (the Kubernetes API over etcd, on its own) and `netplane kubeconfig`.

The server's options are shared with `netplane master`, which takes them prefixed
(`--apiserver-listen`, `--apiserver-state-dir`, ...): `apiserver_options(prefix)` declares
them and `config_from(kwargs, prefix)` turns them into an `APIServerConfig`.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from netplane import signals

if TYPE_CHECKING:
    from netplane.cli.main import Settings
    from orchestrator.apiserver.server import APIServerConfig

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_STATE_DIR = "/var/lib/netplane/apiserver"
REGISTRATION_TTL = 15  # seconds a dead server stays in default/kubernetes' endpoints (a master's: its leader TTL)
_FILE = click.Path(dir_okay=False, path_type=Path)


def apiserver_options(prefix: str = "", *, listen_default: str | None = "127.0.0.1:6443") -> Callable[[F], F]:
    """The API server's options, named `--<prefix>listen`, `--<prefix>state-dir`, ..."""
    p = f"--{prefix}"
    dest = prefix.replace("-", "_")

    def deco(func: F) -> F:
        opts = [
            click.option(f"{p}listen", f"{dest}listen", metavar="ADDR:PORT", default=listen_default,
                         show_default=listen_default is not None,
                         help="Serve the Kubernetes API over HTTPS here (0.0.0.0: every address; "
                              "port 0: any free port)."),
            click.option(f"{p}state-dir", f"{dest}state_dir", type=click.Path(file_okay=False, path_type=Path),
                         default=DEFAULT_STATE_DIR, show_default=True,
                         help="Cluster CA, serving certificate, default token file, apiserver.json."),
            click.option(f"{p}tls-cert", f"{dest}tls_cert", type=_FILE,
                         help="Serving certificate (PEM) instead of one made by the state dir's CA."),
            click.option(f"{p}tls-key", f"{dest}tls_key", type=_FILE, help="Its private key."),
            click.option(f"{p}client-ca", f"{dest}client_ca", type=_FILE,
                         help="CA whose client certificates authenticate (default: the state dir's CA)."),
            click.option(f"{p}kubelet-client-certificate", f"{dest}kubelet_client_certificate", type=_FILE,
                         help="Client certificate for node agents' APIs (pods/log, pods/exec) "
                              "[default: one the state dir's CA issues, CN kube-apiserver-kubelet-client]."),
            click.option(f"{p}kubelet-client-key", f"{dest}kubelet_client_key", type=_FILE, help="Its private key."),
            click.option(f"{p}token-auth-file", f"{dest}token_auth_file", type=_FILE,
                         help='Bearer tokens, kube-apiserver\'s CSV: token,user,uid,"group1,group2" '
                              "(default: <state-dir>/tokens.csv; re-read when it changes)."),
            click.option(f"{p}read-only-group", f"{dest}read_only_group", default="readonly",
                         show_default=True, help="The group RBAC binds to view and netplane:cluster-reader "
                                                  "(read everything but Secrets)."),
            click.option(f"{p}advertise-address", f"{dest}advertise_address", metavar="HOST",
                         help="The host clients reach this server at (server URL and certificate)."),
            click.option(f"{p}tls-san", f"{dest}tls_san", multiple=True, metavar="NAME|IP",
                         help="Another name or address for the serving certificate (repeatable)."),
            click.option(f"{p}bookmark-interval", f"{dest}bookmark_interval", type=click.FloatRange(min=0.05),
                         default=60.0, show_default=True,
                         help="Seconds between BOOKMARK events of watches that allow them."),
        ]
        for o in reversed(opts):
            func = o(func)
        return func

    return deco


def config_from(kw: dict[str, Any], prefix: str = "") -> APIServerConfig | None:
    """The API server's config from the options (None when no listen address was given)."""
    from netplane.errors import ConfigError
    from orchestrator.apiserver.server import APIServerConfig, parse_listen

    d = prefix.replace("-", "_")
    listen = kw.pop(f"{d}listen")
    state_dir = kw.pop(f"{d}state_dir")
    rest = {k: kw.pop(f"{d}{k}") for k in ("tls_cert", "tls_key", "client_ca", "token_auth_file",
                                            "read_only_group", "advertise_address", "tls_san",
                                            "bookmark_interval", "kubelet_client_certificate",
                                            "kubelet_client_key")}
    if not listen:
        return None
    try:
        addr = parse_listen(listen)
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint=f"--{prefix}listen") from None
    if (rest["tls_cert"] is None) != (rest["tls_key"] is None):
        raise click.BadParameter("give --tls-cert and --tls-key together", param_hint=f"--{prefix}tls-cert")
    if (rest["kubelet_client_certificate"] is None) != (rest["kubelet_client_key"] is None):
        raise click.BadParameter("give --kubelet-client-certificate and --kubelet-client-key together",
                                 param_hint=f"--{prefix}kubelet-client-certificate")
    return APIServerConfig(listen=addr, state_dir=state_dir, tls_cert=rest["tls_cert"],
                           tls_key=rest["tls_key"], client_ca=rest["client_ca"],
                           token_auth_file=rest["token_auth_file"],
                           read_only_group=rest["read_only_group"], advertise=rest["advertise_address"],
                           tls_sans=tuple(rest["tls_san"]), bookmark_interval=rest["bookmark_interval"],
                           kubelet_client_cert=rest["kubelet_client_certificate"],
                           kubelet_client_key=rest["kubelet_client_key"])


@click.command("apiserver")
@apiserver_options()
@click.pass_obj
def apiserver(settings: Settings, **kw: Any) -> None:
    """Serve the Kubernetes API (core/v1: pods, replicationcontrollers, services, endpoints,
    nodes, namespaces, events, configmaps, secrets, serviceaccounts (and their tokens);
    coordination.k8s.io/v1: leases; rbac.authorization.k8s.io/v1: roles and their bindings)
    over this cluster's etcd, for kubectl and client libraries.

    HTTPS with the cluster CA from --state-dir (made at first start); bearer tokens from the
    token file and client certificates signed by that CA authenticate. `netplane kubeconfig`
    writes a kubeconfig for it. It registers its address (--advertise-address, else a specific
    IPv4 listen address) for the Service default/kubernetes, which the leading `netplane
    master` keeps. Runs until SIGTERM/SIGINT.
    """
    from netplane import gctune

    gctune.for_servers()  # big watch caches: fewer, rarer collections (netplane.gctune)
    from orchestrator import masterservice
    from orchestrator.apiserver.server import APIServer

    cfg = config_from(kw)
    assert cfg is not None
    server = APIServer(settings.store(), settings.keys(), cfg)
    stop = threading.Event()
    signals.stop_on(stop)  # not lambda: stop.set() (netplane.signals: it can deadlock)
    try:
        server.start()
    except OSError as e:
        raise click.ClickException(f"cannot serve the API on {kw.get('listen') or cfg.listen}: "
                                   f"{e.strerror or e}") from None
    click.echo(f"netplane apiserver: serving on {server.url} (state {cfg.state_dir})", err=True)
    # listed in default/kubernetes' endpoints, as a master's API server is (by the leading master)
    reg: threading.Thread | None = None
    api = masterservice.api_address(cfg.advertise, server.address) if server.address else None
    if api:
        registration = masterservice.Registration(settings.store(), settings.keys(),
                                                  f"apiserver-{socket.gethostname()}-{os.getpid()}", {"api": api},
                                                  ttl=REGISTRATION_TTL)
        reg = threading.Thread(target=registration.run, args=(stop,), name="registration", daemon=True)
        reg.start()
    try:
        stop.wait()
    finally:
        if reg is not None:
            reg.join(timeout=10)  # revokes the registration: the leader drops the endpoint
        server.stop()


@click.command("kubeconfig")
@click.option("--user", default="admin", show_default=True, help="The user the credential names.")
@click.option("--group", "groups", multiple=True, metavar="GROUP",
              help="A group of the user (repeatable; default: system:masters for admin, none else). "
                   "`--group readonly` makes a read-only user.")
@click.option("--server", metavar="URL", help="The API server's URL (default: the one the server "
                                              "recorded in the state dir).")
@click.option("--token", "use_token", is_flag=True,
              help="A bearer token added to the server's token file instead of a client certificate.")
@click.option("--namespace", "namespace", metavar="NS", help="The context's default namespace.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_STATE_DIR,
              show_default=True, help="The API server's state directory (CA, apiserver.json).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here (0600) instead of stdout.")
def kubeconfig(user: str, groups: tuple[str, ...], server: str | None, use_token: bool,
               namespace: str | None, state_dir: Path, output: Path | None) -> None:
    """Write a kubeconfig for the API server, with a credential minted for USER.

    The credential is a client certificate signed by the cluster CA (CN=user, O=groups), or
    with --token a random token appended to the server's token file. kubectl and the
    `kubernetes` Python client accept the result as it is; a certificate one also lets
    `netplane logs/exec --kubeconfig` past node agents (they accept the CA the server publishes).
    What the user may do is RBAC's: system:masters everything, `--group readonly` read (kube's
    view and netplane:cluster-reader), a user with no binding nothing but discovery:

        netplane kubeconfig -o ~/.kube/config && kubectl get pods
    """
    from orchestrator.apiserver import kubeconfig as kc

    cfg = kc.make(state_dir, user=user, groups=groups or None, server=server, token=use_token,
                  namespace=namespace)
    if output is None:
        sys.stdout.write(kc.dump(cfg))
        return
    kc.write(output, cfg)
    click.echo(f"wrote {output} (user {user}, server {cfg['clusters'][0]['cluster']['server']})", err=True)
