"""`netplane logs`, `exec`, `attach` and `port-forward`: a pod's output, a command in it, its
main process and its ports, through its node's agent (the node API, `orchestrator.node.server`),
as kubectl goes through the kubelet.

The pod is read from etcd; its `spec.nodeName` names the Node, whose InternalIP and
`status.daemonEndpoints.kubeletEndpoint.Port` say where that agent listens
(`orchestrator.node.apiclient`), over TLS pinned to the certificate the Node announces. The
agent wants a client certificate of the cluster's CA (`orchestrator.node.nodetls`): the one in
`--kubeconfig` (or `$KUBECONFIG`), one made for the session from the lab's CA when the current
context is a lab, else `~/.kube/config`'s. A lab's underlay exists only inside the lab's namespaces, so
when the node is a host of the current lab (the context file names the lab), the connection is
opened from inside that host's network namespace, on a thread of its own (setns(2) moves only
the calling thread); the socket stays there and is used from here. So both work from the root
shell.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from netplane.cli.resources import namespace_option, objects_of
from netplane.errors import LabError, NetplaneError, UserError

if TYPE_CHECKING:
    from netplane.cli.main import Settings
    from orchestrator.apiserver.certs import Pair
    from orchestrator.node.apiclient import Connect, NodeClient, Target


def _pod_name(text: str) -> str:
    kind, slash, name = text.partition("/")
    if not slash:
        return text
    if kind not in ("pod", "pods", "po") or not name:
        raise UserError(f"{text!r}: expected a pod (NAME or pod/NAME)")
    return name


def connect_in_netns(ns: str) -> Connect:
    """Opens connections from inside network namespace `ns` (a name under /run/netns or a path)."""

    def connect(addr: tuple[str, int], timeout: float) -> socket.socket:
        from netplane import netns

        got: list[socket.socket | BaseException] = []

        def run() -> None:  # this thread enters the namespace for good and then ends
            try:
                netns.enter(ns)
                got.append(socket.create_connection(addr, timeout=timeout))
            except (OSError, NetplaneError) as e:
                got.append(e)

        t = threading.Thread(target=run, name=f"connect-in-{ns}", daemon=True)
        t.start()
        t.join()
        if not got:
            raise OSError(f"connecting from network namespace {ns} failed")
        if isinstance(got[0], BaseException):
            raise got[0]
        return got[0]

    return connect


def lab_netns(settings: Settings, target: Target) -> str | None:
    """The network namespace of the current lab's host that is `target`'s node, if it is one
    (same host name and the Node's InternalIP is that host's underlay address)."""
    lab = settings.resolved().lab
    if lab is None:
        return None
    from netplane.lab.state import LabState

    try:
        topo = LabState.load(lab).topology
        host = topo.host(target.node)
    except (LabError, NetplaneError, KeyError):
        return None
    if str(host.underlay_ip) != target.address:
        return None
    return topo.netns(host.name)


def credentials(settings: Settings, kubeconfig: Path | None) -> Pair:
    """The client certificate to show node agents (see the module's note for the order)."""
    import os

    from orchestrator.apiserver import certs
    from orchestrator.apiserver.kubeconfig import ADMIN_GROUPS, ADMIN_USER, client_credentials

    if kubeconfig is None and os.environ.get("KUBECONFIG"):
        kubeconfig = Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
    if kubeconfig is not None:
        return client_credentials(kubeconfig)
    lab = settings.resolved().lab
    if lab is not None:
        from netplane.lab.state import pki_dir

        pki = pki_dir(lab)
        try:
            ca = certs.Pair((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes())
        except OSError:
            ca = None
        if ca is not None:
            return certs.client_cert(ca, ADMIN_USER, ADMIN_GROUPS, days=1)
    home = Path.home() / ".kube" / "config"
    if home.is_file():
        return client_credentials(home)
    raise UserError("node agents want a client certificate of the cluster's CA: give --kubeconfig FILE "
                    "(`netplane kubeconfig` writes one) or set KUBECONFIG")


def _client(settings: Settings, namespace: str, pod: str, kubeconfig: Path | None) -> tuple[Target, NodeClient]:
    from orchestrator.node.apiclient import NodeClient, default_connect, locate

    creds = credentials(settings, kubeconfig)
    target = locate(objects_of(settings), namespace, _pod_name(pod))
    ns = lab_netns(settings, target)
    return target, NodeClient(target, creds, connect=connect_in_netns(ns) if ns else default_connect)


kubeconfig_option = click.option(
    "--kubeconfig", type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Whose client certificate to show the node's agent [default: $KUBECONFIG; in a lab, one from the "
         "lab's CA; else ~/.kube/config].")


@click.command("logs")
@click.argument("pod")
@click.option("-c", "--container", metavar="NAME", help="The container (default: the pod's only one).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the container exits (or Ctrl-C).")
@click.option("--tail", type=int, default=-1, show_default=True, metavar="N",
              help="Only the last N lines (-1: all).")
@click.option("-p", "--previous", is_flag=True, help="The previous instance of the container (after a restart).")
@namespace_option
@kubeconfig_option
@click.pass_context
def logs(ctx: click.Context, pod: str, container: str | None, follow: bool, tail: int, previous: bool,
         namespace: str, kubeconfig: Path | None) -> None:
    """Print a container's output (stdout and stderr), like `kubectl logs POD [-c C] [-f]`."""
    from orchestrator.node.apiclient import container_of

    settings: Settings = ctx.obj
    if tail < -1:
        raise UserError(f"--tail {tail}: must be -1 (all) or a number of lines >= 0")
    target, client = _client(settings, namespace, pod, kubeconfig)
    name = (target.pod.get("metadata") or {}).get("name") or pod
    out = sys.stdout.buffer
    try:
        for chunk in client.logs(namespace, name, container_of(target.pod, container), follow=follow,
                                 tail=None if tail < 0 else tail, previous=previous):
            out.write(chunk)
            out.flush()
    except KeyboardInterrupt:
        ctx.exit(130)
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        _quiet_stdout()


@click.command("exec")
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, metavar="-- COMMAND [ARG...]")
@click.option("-c", "--container", metavar="NAME", help="The container (default: the pod's only one).")
@click.option("-i", "--stdin", "stdin", is_flag=True, help="Pass this terminal's stdin to the command.")
@click.option("-t", "--tty", "tty", is_flag=True, help="Give the command a TTY (with -i: an interactive shell).")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=3600), default=300.0, show_default=True, metavar="SECONDS",
              help="Seconds before the command is killed (without -i and -t).")
@namespace_option
@kubeconfig_option
@click.pass_context
def exec_cmd(ctx: click.Context, pod: str, command: tuple[str, ...], container: str | None, stdin: bool, tty: bool,
             timeout: float, namespace: str, kubeconfig: Path | None) -> None:
    """Run COMMAND in a container of POD and exit with its exit code, like `kubectl exec POD
    [-c C] [-i] [-t] -- COMMAND`.

    Without -i and -t the command runs to its end (or --timeout) and its stdout and stderr are
    printed together afterwards. With -i (stdin passed on) or -t (a TTY; this terminal goes raw
    while it runs, and its size follows) it streams both ways while it runs, stdout and stderr
    apart, with no time limit: `netplane exec -it POD -- sh` is a shell in the pod.
    """
    from orchestrator.node.apiclient import container_of

    settings: Settings = ctx.obj
    target, client = _client(settings, namespace, pod, kubeconfig)
    name = (target.pod.get("metadata") or {}).get("name") or pod
    if stdin or tty:
        sock, reader = client.exec_stream(namespace, name, container_of(target.pod, container), command,
                                          stdin=stdin, tty=tty)
        ctx.exit(_interactive(sock, reader, stdin=stdin, tty=tty))
    result = client.exec(namespace, name, container_of(target.pod, container), command, timeout=timeout)
    try:
        sys.stdout.write(result.output)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
    if result.timed_out:
        raise NetplaneError(f"command timed out after {timeout:g} s and was killed")
    if result.exit_code < 0:
        raise NetplaneError(f"command ended without an exit code ({result.exit_code})")
    ctx.exit(result.exit_code)


@click.command("attach")
@click.argument("pod")
@click.option("-c", "--container", metavar="NAME", help="The container (default: the pod's only one).")
@click.option("-i", "--stdin", "stdin", is_flag=True,
              help="Pass this terminal's stdin to the container's process (the container must have stdin: true).")
@click.option("-t", "--tty", "tty", is_flag=True,
              help="This terminal goes raw while attached and its size follows (the container must have tty: true).")
@namespace_option
@kubeconfig_option
@click.pass_context
def attach(ctx: click.Context, pod: str, container: str | None, stdin: bool, tty: bool, namespace: str,
           kubeconfig: Path | None) -> None:
    """Attach to the main process of a running container, like `kubectl attach POD [-c C] [-i]
    [-t]`: its output from now on (stdout and stderr apart, one stream with a TTY) and, with
    -i, this terminal's input. Exits with the container's exit code when it ends. Leaving
    (Ctrl-C without -t, or the end of piped stdin) detaches: the container runs on, except that
    a container with stdinOnce has its stdin closed then.
    """
    from orchestrator.node.apiclient import container_of

    settings: Settings = ctx.obj
    target, client = _client(settings, namespace, pod, kubeconfig)
    name = (target.pod.get("metadata") or {}).get("name") or pod
    phase = (target.pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):  # kubectl's words
        raise UserError(f"cannot attach a container in a completed pod; current phase is {phase}")
    cname = container_of(target.pod, container)
    spec: dict[str, Any] = next(
        (c for c in (target.pod.get("spec") or {}).get("containers") or [] if c.get("name") == cname), {})
    if tty and not spec.get("tty"):
        click.echo(f"Unable to use a TTY - container {cname} did not allocate one", err=True)
        tty = False
    if stdin and not spec.get("stdin"):
        click.echo(f"Unable to use stdin - container {cname} does not have stdin: true", err=True)
        stdin = False
    sock, reader = client.attach_stream(namespace, name, cname, stdin=stdin)
    try:
        ctx.exit(_interactive(sock, reader, stdin=stdin, tty=tty, what="attach"))
    except KeyboardInterrupt:
        ctx.exit(130)


def _interactive(sock: Any, reader: Any, *, stdin: bool, tty: bool, what: str = "exec") -> int:
    """Relay this process's stdin and terminal size to an upgraded exec (or attach) and its
    output here; the command's (the container's) exit code."""
    import json
    import os
    import signal

    from orchestrator.node import execstream

    send_lock = threading.Lock()

    def send(channel: int, data: bytes = b"") -> None:
        with send_lock:
            sock.sendall(execstream.frame(channel, data))

    raw_tty = tty and stdin and os.isatty(0)
    saved = None
    if raw_tty:
        import termios
        import tty as ttymod

        saved = termios.tcgetattr(0)
        if what == "attach":  # the process printed its prompt before we came (kubectl's words)
            click.echo("If you don't see a command prompt, try pressing enter.", err=True)
        ttymod.setraw(0, termios.TCSANOW)  # not TCSAFLUSH: what was typed ahead is kept

        def resize(*_: object) -> None:
            size = os.get_terminal_size(0)
            try:
                send(execstream.RESIZE, json.dumps({"Width": size.columns, "Height": size.lines}).encode())
            except OSError:
                pass

        resize()
        signal.signal(signal.SIGWINCH, resize)

    def pump_stdin() -> None:
        try:
            while data := os.read(0, 4096):
                send(execstream.STDIN, data)
            send(execstream.CLOSE)
        except OSError:
            pass

    if stdin:
        threading.Thread(target=pump_stdin, name="exec-stdin", daemon=True).start()
    else:
        send(execstream.CLOSE)
    code = None
    try:
        while (got := execstream.read_frame(reader)) is not None:
            channel, data = got
            if channel in (execstream.STDOUT, execstream.STDERR):
                out = sys.stdout if channel == execstream.STDOUT else sys.stderr
                out.buffer.write(data)
                out.flush()
            elif channel == execstream.STATUS:
                end = json.loads(data)
                if "exitCode" not in end and what == "attach":
                    click.echo("\r\ndetached: the container runs on" if raw_tty else "detached: the container runs on",
                               err=True)
                    code = 0
                else:
                    code = int(end.get("exitCode", -1))
                break
    except BrokenPipeError:
        _quiet_stdout()
    except (OSError, ValueError) as e:
        raise NetplaneError(f"{what}: the node's stream broke off: {e}") from e
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        sock.close()
    if code is None:
        raise NetplaneError(f"{what}: the node's stream ended without the exit code")
    return code


def parse_ports(specs: tuple[str, ...]) -> list[tuple[int, int]]:
    """kubectl's port specs: `R` (local R), `L:R`, `:R` (any free local port)."""
    out = []
    for spec in specs:
        local, sep, remote = spec.rpartition(":")
        if not sep:
            local = remote
        try:
            lp, rp = int(local or 0), int(remote)
        except ValueError:
            raise UserError(f"{spec!r}: expected [LOCAL:]REMOTE port numbers") from None
        if not 0 <= lp < 65536 or not 0 < rp < 65536:
            raise UserError(f"{spec!r}: ports go from 1 to 65535 (LOCAL 0: any free one)")
        out.append((lp, rp))
    return out


def service_target(settings: Settings, namespace: str, name: str,
                   pairs: list[tuple[int, int]]) -> tuple[str, list[tuple[int, int]]]:
    """What kubectl does for `port-forward svc/NAME`: a running pod the Service selects (ready
    ones first, then the oldest), and each service port turned into that pod's target port (a
    named targetPort read from the pod's container ports)."""
    from orchestrator import endpoints
    from orchestrator.objects import meta
    from orchestrator.objects import pod as pods
    from orchestrator.objects.meta import POD, SERVICE
    from orchestrator.objects.selector import from_set

    objects = objects_of(settings)
    svc = objects.get(SERVICE, name, namespace)
    if svc is None:
        raise UserError(f'services "{name}" not found')
    selector = (svc.get("spec") or {}).get("selector")
    if not selector:
        raise UserError(f"service {name} has no selector: there is no pod to forward to")
    items, _ = objects.list(POD, namespace, selector=from_set(selector))
    live = [p for p in items if pods.phase(p) == "Running" and not (p.get("metadata") or {}).get("deletionTimestamp")]
    if not live:
        raise UserError(f"no running pod for service {name} (selector {from_set(selector)})")
    pod = min(live, key=lambda p: (not pods.is_ready(p), str((p.get("metadata") or {}).get("creationTimestamp")),
                                   meta.name(p)))
    out = []
    for local, port in pairs:
        sp = next((p for p in (svc.get("spec") or {}).get("ports") or [] if p.get("port") == port), None)
        if sp is None:
            raise UserError(f"Service {name} does not have a service port {port}")
        target = endpoints.resolve_port(pod, sp.get("targetPort") or port, str(sp.get("protocol") or "TCP"))
        if target is None:
            raise UserError(f"pod {meta.name(pod)} has no container port named {sp.get('targetPort')!r} "
                            f"(service {name}'s port {port})")
        out.append((local, target))
    return meta.name(pod), out


@click.command("port-forward")
@click.argument("pod")
@click.argument("ports", nargs=-1, required=True, metavar="[LOCAL:]REMOTE...")
@click.option("--address", default="127.0.0.1", show_default=True, metavar="ADDR",
              help="The local address to listen on.")
@namespace_option
@kubeconfig_option
@click.pass_context
def port_forward(ctx: click.Context, pod: str, ports: tuple[str, ...], address: str, namespace: str,
                 kubeconfig: Path | None) -> None:
    """Forward local ports to POD's ports, like `kubectl port-forward POD [LOCAL:]REMOTE...`.

    Every connection to LOCAL becomes one to localhost:REMOTE inside the pod's network namespace,
    made by the agent of the pod's node (so ports the pod binds to 127.0.0.1 work too), with
    half-closes passed on. `8080` forwards local 8080 to the pod's 8080, `:8080` a free local
    port. POD may be `svc/NAME`: then, as kubectl does, one running pod of the Service (ready
    first) and REMOTE a service port, turned into its target port. Runs until Ctrl-C.
    """
    settings: Settings = ctx.obj
    pairs = parse_ports(ports)
    kind, slash, svc = pod.partition("/")
    if slash and kind in ("svc", "service", "services"):
        pod, pairs = service_target(settings, namespace, svc, pairs)
    target, client = _client(settings, namespace, pod, kubeconfig)
    name = (target.pod.get("metadata") or {}).get("name") or pod
    listeners = []
    for local, remote in pairs:
        ls = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            ls.bind((address, local))
        except OSError as e:
            raise UserError(f"cannot listen on {address}:{local}: {e.strerror}") from None
        ls.listen(64)
        listeners.append(ls)
        click.echo(f"Forwarding from {address}:{ls.getsockname()[1]} -> {remote}")
        threading.Thread(target=_accept, args=(ls, client, namespace, name, remote), daemon=True).start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        ctx.exit(0)
    finally:
        for ls in listeners:
            ls.close()


def _accept(ls: socket.socket, client: NodeClient, namespace: str, pod: str, remote: int) -> None:
    while True:
        try:
            conn, _ = ls.accept()
        except OSError:
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        click.echo(f"Handling connection for {ls.getsockname()[1]}")
        threading.Thread(target=_forward_one, args=(conn, client, namespace, pod, remote), daemon=True).start()


def _forward_one(conn: socket.socket, client: NodeClient, namespace: str, pod: str, remote: int) -> None:
    """One local connection through the node's port-forward, half-closes both ways."""
    from orchestrator.node import execstream

    try:
        sock, reader = client.port_forward(namespace, pod, remote)
    except NetplaneError as e:
        click.echo(f"error forwarding port {remote} to pod {pod}: {e}", err=True)
        conn.close()
        return

    def up() -> None:
        try:
            execstream.socket_to_frames(conn, sock.sendall, execstream.STDIN)
        except OSError:
            pass

    sender = threading.Thread(target=up, name="forward-up", daemon=True)
    sender.start()
    try:  # until the node closes, once both sides have closed theirs
        execstream.frames_to_socket(reader, conn, execstream.STDOUT)
    except (OSError, execstream.FrameError):
        pass
    finally:
        conn.close()
        sock.close()


def _quiet_stdout() -> None:
    """After EPIPE on stdout: point it at /dev/null so the interpreter's final flush is quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except OSError:
        pass
