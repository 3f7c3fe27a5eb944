"""The etcd client over TLS with client certificates, against a real etcd serving https.

Certificates are made by openssl for this test only: a CA, a server cert for 127.0.0.1, a
client cert signed by the CA, and a client cert from an unrelated CA that must be refused.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from netplane.errors import ConfigError, StoreError
from netplane.store import EtcdConfig, EtcdStore
from netplane.store.embedded import EmbeddedEtcd, EtcdSpec


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ossl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(d: Path, name: str) -> None:
    _ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
          "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=d)


def _leaf(d: Path, name: str, ca: str, *, server: bool) -> None:
    ext = d / f"{name}.ext"
    ext.write_text(("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n") if server
                   else "extendedKeyUsage=clientAuth\n")
    _ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
          "-out", f"{name}.csr", cwd=d)
    _ossl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
          "-days", "2", "-extfile", ext.name, "-out", f"{name}.crt", cwd=d)


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("tls")
    _ca(d, "ca")
    _ca(d, "otherca")
    _leaf(d, "server", "ca", server=True)
    _leaf(d, "client", "ca", server=False)
    _leaf(d, "stranger", "otherca", server=False)
    endpoint = f"https://127.0.0.1:{free_port()}"
    e = EmbeddedEtcd(EtcdSpec(
        name="tls" + uuid.uuid4().hex[:6], data_dir=d / "data", client_urls=(endpoint,),
        peer_url=f"http://127.0.0.1:{free_port()}", log_path=d / "etcd.log",
        cert_file=d / "server.crt", key_file=d / "server.key", client_ca=d / "ca.crt"))
    good = EtcdConfig.parse(endpoint, ca_cert=str(d / "ca.crt"), cert=str(d / "client.crt"), key=str(d / "client.key"), timeout=2.0)
    e.start(client=good)
    yield e, d, endpoint
    e.stop()


def test_tls_with_client_cert_works(tls_etcd) -> None:  # type: ignore[no-untyped-def]
    _, d, endpoint = tls_etcd
    cfg = EtcdConfig.parse(endpoint, ca_cert=str(d / "ca.crt"), cert=str(d / "client.crt"), key=str(d / "client.key"))
    assert cfg.secure
    with EtcdStore(cfg) as s:
        s.put("/tls/k", "v")
        assert s.get("/tls/k").value == b"v"  # type: ignore[union-attr]


def _cfg(endpoint: str, d: Path, *, ca: str, client: str | None) -> EtcdConfig:
    return EtcdConfig.parse(endpoint, ca_cert=str(d / f"{ca}.crt"), cert=str(d / f"{client}.crt") if client else None,
                            key=str(d / f"{client}.key") if client else None, timeout=2.0)


def _server_is_up(endpoint: str, d: Path) -> None:
    """A correctly configured client gets an answer from the same endpoint, so a failure next to
    it is the TLS check and not an etcd that is down."""
    with EtcdStore(_cfg(endpoint, d, ca="ca", client="client")) as s:
        s.get("/tls/k")


REJECTED = "TLS rejected by etcd: no client certificate, or one etcd's CA did not sign"
UNTRUSTED = "TLS handshake failed: etcd's certificate did not verify against --etcd-ca"


@pytest.mark.parametrize("client", [None, "stranger"], ids=["no-client-cert", "foreign-client-cert"])
def test_tls_refuses_missing_or_foreign_client_cert(tls_etcd, client: str | None) -> None:  # type: ignore[no-untyped-def]
    _, d, endpoint = tls_etcd
    _server_is_up(endpoint, d)
    with EtcdStore(_cfg(endpoint, d, ca="ca", client=client)) as s, pytest.raises(StoreError) as exc:
        s.get("/tls/k")
    assert str(exc.value) == f"cannot reach etcd ({REJECTED} (--etcd-cert/--etcd-key)) during get /tls/k (etcd {endpoint})"
    _server_is_up(endpoint, d)


def test_tls_server_not_trusted_without_its_ca(tls_etcd) -> None:  # type: ignore[no-untyped-def]
    _, d, endpoint = tls_etcd
    _server_is_up(endpoint, d)
    with EtcdStore(_cfg(endpoint, d, ca="otherca", client="client")) as s, pytest.raises(StoreError) as exc:
        s.get("/tls/k")
    assert str(exc.value) == f"cannot reach etcd ({UNTRUSTED}) during get /tls/k (etcd {endpoint})"


def test_tls_errors_are_not_what_a_down_etcd_says(tls_etcd) -> None:  # type: ignore[no-untyped-def]
    """The control for the two tests above: the same client against a port nothing listens on."""
    _, d, _ = tls_etcd
    down = f"https://127.0.0.1:{free_port()}"
    with EtcdStore(_cfg(down, d, ca="ca", client="client")) as s, pytest.raises(StoreError) as exc:
        s.get("/tls/k")
    assert str(exc.value) == f"cannot reach etcd (connection refused) during get /tls/k (etcd {down})"


def test_unreadable_tls_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TLS file"):
        EtcdStore(EtcdConfig.parse("https://127.0.0.1:2379", ca_cert=str(tmp_path / "missing.crt")))


def test_cli_over_tls(tls_etcd) -> None:  # type: ignore[no-untyped-def]
    import sys

    _, d, endpoint = tls_etcd
    r = subprocess.run([sys.executable, "-m", "netplane", "--etcd", endpoint, "--etcd-ca", str(d / "ca.crt"),
                        "--etcd-cert", str(d / "client.crt"), "--etcd-key", str(d / "client.key"),
                        "--prefix", "/tlscli", "svc", "list", "-o", "json"], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    bad = subprocess.run([sys.executable, "-m", "netplane", "--etcd", endpoint, "--etcd-ca", str(d / "ca.crt"),
                          "--etcd-cert", str(d / "stranger.crt"), "--etcd-key", str(d / "stranger.key"), "--etcd-timeout", "2",
                          "--prefix", "/tlscli", "svc", "list"], capture_output=True, text=True, timeout=60, check=False)
    assert (bad.returncode, bad.stdout) == (1, "")
    # exactly one line: gRPC's own log lines about the TLS alert are silenced by the CLI
    assert bad.stderr.splitlines() == [
        (f"netplane: cannot reach etcd ({REJECTED} (--etcd-cert/--etcd-key)) during list /tlscli/services/specs/"
        f" (etcd {endpoint})")], bad.stderr
