"""A TCP relay from the root namespace's loopback into the lab's switch namespace.

The lab's etcd lives inside the lab (on the underlay, where every host reaches it). So that the
user's shell can run `netplane` against the lab without giving the root namespace an address
on the underlay, this relay listens on 127.0.0.1:<port> in the root namespace, then moves itself
into the switch namespace and connects each accepted client to etcd there. Sockets keep the
namespace they were created in, so one process spans both.

Run as: python -m netplane.lab.relay --listen 127.0.0.1:PORT --netns NS --target IP:PORT
"""

from __future__ import annotations

import argparse
import selectors
import socket
import sys
import threading

from netplane import netns, signals


def _pipe(a: socket.socket, b: socket.socket) -> None:
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    try:
        while True:
            for key, _ in sel.select():
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                dst: socket.socket = key.data
                data = src.recv(65536)
                if not data:
                    return
                dst.sendall(data)
    except OSError:
        return
    finally:
        sel.close()
        a.close()
        b.close()


def serve(listener: socket.socket, target: tuple[str, int], stop: threading.Event) -> None:
    listener.settimeout(0.5)
    while not stop.is_set():
        try:
            client, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        client.settimeout(None)
        try:
            upstream = socket.create_connection(target, timeout=3)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="netplane-lab-relay")
    p.add_argument("--listen", required=True)
    p.add_argument("--netns", required=True)
    p.add_argument("--target", required=True)
    a = p.parse_args(argv)
    lhost, lport = a.listen.rsplit(":", 1)
    thost, tport = a.target.rsplit(":", 1)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((lhost, int(lport)))
    listener.listen(128)
    netns.enter(a.netns)  # from here on, new sockets are made inside the lab
    stop = threading.Event()
    signals.stop_on(stop)
    serve(listener, (thost, int(tport)), stop)
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
