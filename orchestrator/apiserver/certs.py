"""The cluster CA and the certificates it signs (the `cryptography` package).

At first start the API server makes, in its state directory:

    ca.crt, ca.key            the cluster CA (ECDSA P-256, 10 years): signs the server's and
                              the clients' certificates, and is what kubeconfigs trust
    server.crt, server.key    the serving certificate, SANs: localhost, 127.0.0.1, the host
                              name, the in-cluster names (kubernetes, kubernetes.default,
                              kubernetes.default.svc[.cluster.local], 10.96.0.1), the
                              listen/advertise addresses and --tls-san names

A later start reuses them; a serving certificate whose SANs miss an address now needed is
re-issued covering both the old and the new ones (masters sharing a directory converge on one
certificate). Client certificates follow kube's convention: CN = user name, O = groups.
Keys are written 0600 and every file atomically (write, fsync, rename), under a lock file, so
two masters starting at once do not make two CAs.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from netplane.errors import ConfigError
from netplane.proxy.model import DEFAULT_SERVICE_RANGE

CA_DAYS = 3650
CERT_DAYS = 365
CA_NAME = "netplane-ca"


@dataclass(frozen=True)
class Pair:
    cert: bytes  # PEM
    key: bytes  # PEM (PKCS#8)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def new_ca(common_name: str = CA_NAME) -> Pair:
    return _self_signed(common_name, days=CA_DAYS)


def self_signed_server(common_name: str, sans: Iterable[str], *, days: int = CERT_DAYS) -> Pair:
    """A serving certificate that is its own CA (path length 0), as kubelet makes when it is
    given none: a client trusts exactly this certificate (it is pinned, not looked up)."""
    return _self_signed(common_name, days=days, sans=sans, path_length=0)


def _self_signed(common_name: str, *, days: int, sans: Iterable[str] | None = None,
                 path_length: int | None = None) -> Pair:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    b = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if sans is not None:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        names = _general_names(sans)
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = b.sign(key, hashes.SHA256())
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _issue(ca: Pair, subject: x509.Name, *, server: bool, sans: Iterable[str] = (),
           days: int = CERT_DAYS) -> Pair:
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError("the cluster CA key is not an ECDSA key")
    key = _new_key()
    now = _now()
    b = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                       critical=False)
    )
    names = _general_names(sans)
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _general_names(sans: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for s in dict.fromkeys(sans):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(s)))
        except ValueError:
            out.append(x509.DNSName(s))
    return out


def server_cert(ca: Pair, sans: Iterable[str]) -> Pair:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netplane-apiserver")])
    return _issue(ca, subject, server=True, sans=sans)


def client_cert(ca: Pair, user: str, groups: Iterable[str] = (), *, days: int = CERT_DAYS) -> Pair:
    """A client certificate for `user` in `groups` (CN and O, as kube-apiserver reads them)."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
    return _issue(ca, x509.Name(attrs), server=False, days=days)


def sans_of(cert_pem: bytes) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.IPAddress)} | set(ext.get_values_for_type(x509.DNSName))


# how pods reach the API in-cluster: the Service default/kubernetes, by its cluster IP (first
# of the service range, `masterservice.kubernetes_service_ip`) and its DNS names, as
# kube-apiserver's own certificate names them
IN_CLUSTER_SANS = ("kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
                   str(DEFAULT_SERVICE_RANGE.network_address + 1))


def default_sans(extra: Iterable[str] = ()) -> list[str]:
    return ["localhost", "127.0.0.1", socket.gethostname(), *IN_CLUSTER_SANS, *extra]


# --------------------------------------------------------------------------- state directory
def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(state_dir / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_pair(cert: Path, key: Path) -> Pair | None:
    if not cert.exists() and not key.exists():
        return None
    try:
        return Pair(cert.read_bytes(), key.read_bytes())
    except OSError as e:
        raise ConfigError(f"cannot read {e.filename}: {e.strerror}") from e


def ensure_ca(state_dir: Path) -> Pair:
    """The cluster CA in `state_dir`, made on first use."""
    with locked(state_dir):
        ca = _read_pair(state_dir / "ca.crt", state_dir / "ca.key")
        if ca is None:
            ca = new_ca()
            _write(state_dir / "ca.key", ca.key, 0o600)
            _write(state_dir / "ca.crt", ca.cert, 0o644)
        return ca


def ensure_server_cert(state_dir: Path, ca: Pair, sans: Iterable[str]) -> Pair:
    """The serving certificate in `state_dir`, (re)issued when it does not cover `sans` or was
    not signed by `ca`."""
    want = set(sans)
    with locked(state_dir):
        cur = _read_pair(state_dir / "server.crt", state_dir / "server.key")
        if cur is not None and want <= sans_of(cur.cert) and _signed_by(cur.cert, ca.cert) \
                and _valid_for(cur.cert, dt.timedelta(days=30)):
            return cur
        have = sans_of(cur.cert) if cur is not None else set()
        pair = server_cert(ca, sorted(want | have))
        _write(state_dir / "server.key", pair.key, 0o600)
        _write(state_dir / "server.crt", pair.cert, 0o644)
        return pair


def ensure_self_signed(directory: Path, stem: str, common_name: str, sans: Iterable[str]) -> Pair:
    """`<stem>.crt`/`<stem>.key` in `directory`: a self-signed serving certificate, kept while it
    covers `sans` and has 30 days left (so what clients pinned stays valid across restarts),
    else made anew."""
    want = set(sans)
    with locked(directory):
        cur = _read_pair(directory / f"{stem}.crt", directory / f"{stem}.key")
        if cur is not None:
            try:
                if want <= sans_of(cur.cert) and _valid_for(cur.cert, dt.timedelta(days=30)):
                    return cur
            except ValueError:  # not a certificate: make a new one
                pass
        pair = self_signed_server(common_name, sorted(want))
        _write(directory / f"{stem}.key", pair.key, 0o600)
        _write(directory / f"{stem}.crt", pair.cert, 0o644)
        return pair


def ensure_client_cert(state_dir: Path, ca: Pair, stem: str, user: str, groups: Iterable[str]) -> Pair:
    """`<stem>.crt`/`<stem>.key` in `state_dir`: a client certificate for `user` in `groups`
    signed by `ca`, (re)issued when missing, signed by another CA or within 30 days of expiry."""
    with locked(state_dir):
        cur = _read_pair(state_dir / f"{stem}.crt", state_dir / f"{stem}.key")
        if cur is not None and _signed_by(cur.cert, ca.cert) and _valid_for(cur.cert, dt.timedelta(days=30)):
            return cur
        pair = client_cert(ca, user, groups)
        _write(state_dir / f"{stem}.key", pair.key, 0o600)
        _write(state_dir / f"{stem}.crt", pair.cert, 0o644)
        return pair


def _signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = x509.load_pem_x509_certificate(ca_pem)
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _valid_for(cert_pem: bytes, margin: dt.timedelta) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.not_valid_after_utc - margin > _now()
