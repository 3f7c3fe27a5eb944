"""TLS and authentication for the node API (`orchestrator.node.server`), kubelet's way.

**The node's identity.** Each agent serves HTTPS with a self-signed certificate (its own CA,
path length 0; SANs: the node's address and name), kept in `<state dir>/node-api.crt|key` and
reused across restarts while it covers the address and has 30 days left, as kubelet makes one
when it is given none. The agent announces it in its Node, annotation
`netplane.io/node-api-certificate` (the DER, base64), where the API server and the CLI find it
beside the address and port; they trust exactly that certificate (pinning). The Node is the
record of where a node's agent is; it is now also the record of who it is, as flannel's
WireGuard backend publishes a node's public key in a Node annotation.

**Who may ask.** A client certificate signed by a client CA of the cluster: the subject's CN
is the user, each O a group (kube's convention, as the API server reads them). The CAs are
`--node-api-client-ca FILE` (kubelet's `--client-ca-file`), or else every CA the cluster's API
servers publish in etcd under `<prefix>/pki/client-ca/<sha256 of the DER>` (and the lab's), which
the agent follows; those keys outlive the API servers, so nodes go on trusting the cluster's
CA while every master is down. Malformed entries are logged and skipped. A connection without
a certificate gets 401 (and so does everything while the node knows no CA yet), one whose
certificate no CA signed fails its handshake. Authorization is the API server's rule
(`orchestrator.apiserver.auth.Authorizer`): the read-only group may read (`/pods`, logs), not
exec. `/healthz` answers anyone.

The API server's own client certificate (`--kubelet-client-certificate`, by default issued by its
CA: CN `kube-apiserver-kubelet-client`, O `system:masters`, as kubeadm names it) is what it
proxies `pods/log` and `pods/exec` with.

**TLS 1.2, not 1.3**, for two reasons. In TLS 1.3 the server checks the client's certificate
after the client has finished its handshake, so a refused certificate reaches the client as a
connection closed under its first request (an EOF), not as the "unknown ca" alert it gets in
1.2's handshake, where the error can say what happened. And in a streaming exec one thread
reads while another writes the same connection: OpenSSL allows that only while no handshake
messages come mid-stream, which TLS 1.2 without renegotiation (Python refuses it) guarantees
and TLS 1.3 (session tickets, key updates) does not. The server offers only ECDHE with AES-GCM
or ChaCha20-Poly1305 (forward secrecy, AEAD: TLS 1.3's properties).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from cryptography import x509

from netplane.errors import ConfigError, NetplaneError, StoreError
from netplane.store import EtcdStore, Keys
from orchestrator.apiserver import certs

log = logging.getLogger(__name__)

Obj = dict[str, Any]
CERT_ANNOTATION = "netplane.io/node-api-certificate"
STEM = "node-api"
APISERVER_CLIENT_USER = "kube-apiserver-kubelet-client"
APISERVER_CLIENT_GROUPS = ("system:masters",)
HANDSHAKE_TIMEOUT = 10.0


# --------------------------------------------------------------------------- certificates
def serving_pair(state_dir: Path, node: str, address: str) -> certs.Pair:
    """The agent's serving certificate and key (made or kept, `certs.ensure_self_signed`)."""
    try:
        return certs.ensure_self_signed(state_dir, STEM, f"{node}@netplane-node", [address, node])
    except OSError as e:
        raise ConfigError(f"node API certificate in {state_dir}: {e.strerror or e}") from e


def announced(pair: certs.Pair) -> str:
    """The annotation's value for `pair`'s certificate: its DER, base64."""
    return base64.b64encode(ssl.PEM_cert_to_DER_cert(pair.cert.decode())).decode()


def node_certificate(node: Obj) -> bytes | None:
    """The PEM certificate a Node announces for its node API, or None."""
    text = ((node.get("metadata") or {}).get("annotations") or {}).get(CERT_ANNOTATION)
    if not text:
        return None
    try:
        der = base64.b64decode(text, validate=True)
        x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    return ssl.DER_cert_to_PEM_cert(der).encode()


def split_pem(data: bytes) -> list[bytes]:
    """The certificates of a PEM bundle, each as PEM; `ConfigError` if there are none."""
    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise ConfigError(f"not a PEM certificate bundle: {e}") from None
    from cryptography.hazmat.primitives import serialization

    return [c.public_bytes(serialization.Encoding.PEM) for c in found]


def fingerprint(pem: bytes) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode())).hexdigest()


@contextlib.contextmanager
def _pair_files(pair: certs.Pair) -> Iterator[tuple[str, str]]:
    """`pair` as two files in a private directory that is removed again (ssl reads only files)."""
    d = tempfile.mkdtemp(prefix="netplane-tls-")
    try:
        cert, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
        for path, data in ((cert, pair.cert), (key, pair.key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        yield cert, key
    finally:
        shutil.rmtree(d, ignore_errors=True)


def load_pair(ctx: ssl.SSLContext, pair: certs.Pair) -> None:
    with _pair_files(pair) as (cert, key):
        try:
            ctx.load_cert_chain(cert, key)
        except ssl.SSLError as e:
            raise ConfigError(f"a certificate and key that do not load: {e.reason or e}") from None


# --------------------------------------------------------------------------- contexts
def server_context(pair: certs.Pair, client_cas: Iterable[bytes]) -> ssl.SSLContext:
    """The node API's context: `pair` served; client certificates asked for and verified against
    `client_cas` (none: not asked for, so every request is anonymous)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # see the module's note
    ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    load_pair(ctx, pair)
    cas = b"".join(client_cas)
    if cas:
        ctx.load_verify_locations(cadata=cas.decode())
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_context(node_cert: bytes, credentials: certs.Pair | None) -> ssl.SSLContext:
    """A client's context for one node: trusts exactly the certificate the Node announces
    (`node_certificate`), presents `credentials`. No host name check: the pin is the identity."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=node_cert.decode())
    if credentials is not None:
        load_pair(ctx, credentials)
    return ctx


def pinned(node: Obj, node_name: str) -> bytes:
    """`node_certificate`, or a one-line error saying why there is none."""
    pem = node_certificate(node)
    if pem is None:
        raise NetplaneError(f"node {node_name} announces no node API certificate (annotation {CERT_ANNOTATION}): "
                            "its agent is older than the node API's TLS, or its Node was edited")
    return pem


def handshake_error(node: str, e: ssl.SSLError | ssl.CertificateError) -> str:
    """What a failed handshake with node `node`'s agent means, in one line."""
    reason = getattr(e, "reason", None) or str(e)
    if "CERTIFICATE_VERIFY_FAILED" in str(e) or isinstance(e, ssl.SSLCertVerificationError):
        return (f"node {node}'s agent presented a certificate other than the one its Node announces "
                f"({getattr(e, 'verify_message', '') or reason})")
    if any(w in str(e) for w in ("UNKNOWN_CA", "CERTIFICATE_UNKNOWN", "BAD_CERTIFICATE", "CERTIFICATE_REQUIRED")):
        return (f"node {node}'s agent refused our client certificate: it is not signed by a client CA the node "
                "trusts")
    return f"TLS with node {node}'s agent failed: {reason}"


# --------------------------------------------------------------------------- publishing CAs
def publish_client_cas(store: EtcdStore, keys: Keys, bundle: bytes, *,
                       key_of: Callable[[str], str] | None = None) -> list[str]:
    """Put each CA of `bundle` under `<prefix>/pki/client-ca/<sha256>` (or `key_of(sha256)`:
    `Keys.serving_ca` for the serving CAs) unless it is there (so a restart changes nothing
    nodes follow); the keys written."""
    wrote = []
    for pem in split_pem(bundle):
        key = (key_of or keys.client_ca)(fingerprint(pem))
        cur = store.get(key)
        if cur is None or cur.value != pem:
            store.put(key, pem)
            wrote.append(key)
    return wrote


def withdraw_client_cas(store: EtcdStore, keys: Keys, fingerprints: Iterable[str], *,
                        key_of: Callable[[str], str] | None = None) -> list[str]:
    """Delete the published CAs of these sha256 fingerprints; the keys that were there."""
    return [key for key in ((key_of or keys.client_ca)(f) for f in fingerprints) if store.delete(key)]


def _valid_ca(key: str, value: bytes) -> bytes | None:
    try:
        cert = x509.load_pem_x509_certificate(value)
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, x509.ExtensionNotFound) as e:
        log.warning("node API: skipping %s: not a PEM CA certificate (%s)", key, e)
        return None
    if not bc.ca:
        log.warning("node API: skipping %s: not a CA certificate", key)
        return None
    return value


class ClientCAs:
    """The CAs whose client certificates the node API accepts: a file's, or those published in
    etcd (followed by `run`: listed, then watched; re-listed after errors). `version` grows at
    every change, so the server rebuilds its context only then."""

    def __init__(self, store: EtcdStore | None, keys: Keys | None, file: Path | None = None) -> None:
        self.store, self.keys, self.file = store, keys, file
        self._lock = threading.Lock()
        self._cas: dict[str, bytes] = {}
        self.version = 0
        if file is not None:
            try:
                data = file.read_bytes()
            except OSError as e:
                raise ConfigError(f"--node-api-client-ca {file}: {e.strerror or e}") from e
            try:
                self._set({fingerprint(p): p for p in split_pem(data)})
            except ConfigError as e:
                raise ConfigError(f"--node-api-client-ca {file}: {e}") from None

    def current(self) -> tuple[int, list[bytes]]:
        with self._lock:
            return self.version, list(self._cas.values())

    def _set(self, cas: dict[str, bytes]) -> None:
        with self._lock:
            if cas != self._cas:
                self._cas = cas
                self.version += 1
                log.info("node API: trusting %d client CA(s)", len(cas))

    def refresh(self) -> int:
        """List the published CAs now; the revision read at."""
        assert self.store is not None and self.keys is not None
        kvs, rev = self.store.list(self.keys.client_cas)
        found = {}
        for kv in kvs:
            pem = _valid_ca(kv.key, kv.value)
            if pem is not None:
                found[kv.key] = pem
        self._set(found)
        return rev

    def run(self, stop: threading.Event) -> None:
        if self.file is not None or self.store is None:
            return
        while not stop.is_set():
            try:
                rev = self.refresh()
                for _batch in self.store.watch(self.keys.client_cas, start_revision=rev + 1, stop=stop):  # type: ignore[union-attr]
                    rev = self.refresh()  # few and small: re-read them all
            except StoreError as e:
                if not stop.is_set():
                    log.info("node API: following the client CAs: %s (again in 2 s)", e)
            stop.wait(2.0)


class ServerTLS:
    """The node API's current server context: `pair`, and the `ClientCAs` as they are now."""

    def __init__(self, pair: certs.Pair, cas: ClientCAs) -> None:
        self.pair, self.cas = pair, cas
        self._lock = threading.Lock()
        self._ctx: tuple[int, ssl.SSLContext] | None = None

    def context(self) -> ssl.SSLContext:
        version, pems = self.cas.current()
        with self._lock:
            if self._ctx is None or self._ctx[0] != version:
                self._ctx = (version, server_context(self.pair, pems))
            return self._ctx[1]

    def wrap(self, sock: Any) -> ssl.SSLSocket:
        """`sock` after the server's handshake (at most `HANDSHAKE_TIMEOUT`), on the caller's thread."""
        sock.settimeout(HANDSHAKE_TIMEOUT)
        t0 = time.monotonic()
        tls = self.context().wrap_socket(sock, server_side=True)
        log.debug("node API: TLS handshake in %.1f ms", (time.monotonic() - t0) * 1000)
        tls.settimeout(None)
        return tls

    def trusts_anyone(self) -> bool:
        return bool(self.cas.current()[1])
