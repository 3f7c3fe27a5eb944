"""`netplane kubeconfig`: a kubeconfig for the API server, with a credential minted for a user.

The credential is a client certificate signed by the cluster CA (CN = user, O = groups) by
default, which needs nothing on the server; with `token=True` a new random token is appended
to the server's token file instead (the server re-reads it within a second). Either way the
kubeconfig embeds the CA (`certificate-authority-data`), so kubectl and the `kubernetes`
client verify the server. Everything comes from the server's state directory: `ca.crt` and
`ca.key`, and `apiserver.json` for the URL and token file of the running server.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from netplane.errors import ConfigError
from orchestrator.apiserver import auth, certs

CLUSTER = "netplane"
ADMIN_USER = "admin"
ADMIN_GROUPS = ("system:masters",)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def build(*, server: str, ca_pem: bytes, user: str, token: str | None = None,
          cert: certs.Pair | None = None, namespace: str | None = None) -> dict[str, Any]:
    creds: dict[str, Any] = {}
    if token is not None:
        creds["token"] = token
    if cert is not None:
        creds["client-certificate-data"] = _b64(cert.cert)
        creds["client-key-data"] = _b64(cert.key)
    context: dict[str, Any] = {"cluster": CLUSTER, "user": user}
    if namespace:
        context["namespace"] = namespace
    name = f"{user}@{CLUSTER}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER, "cluster": {"server": server,
                                                   "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
        "preferences": {},
    }


def make(state_dir: Path, *, user: str = ADMIN_USER, groups: Sequence[str] | None = None,
         server: str | None = None, token: bool = False, namespace: str | None = None,
         ca_file: Path | None = None, token_file: Path | None = None) -> dict[str, Any]:
    """The kubeconfig for `user` (default groups: system:masters for admin, none otherwise)."""
    from orchestrator.apiserver.server import read_state

    state = read_state(state_dir)
    url = server or state.get("server")
    if not url:
        raise ConfigError(f"no server URL: {state_dir} has no apiserver.json (start the API server "
                          "first) and --server was not given")
    ca_path = ca_file or Path(state.get("certificateAuthority") or state_dir / "ca.crt")
    try:
        ca_pem = ca_path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the cluster CA {ca_path}: {e.strerror}") from e
    grp = tuple(groups) if groups is not None else (ADMIN_GROUPS if user == ADMIN_USER else ())
    if token:
        path = token_file or Path(state.get("tokenAuthFile") or state_dir / "tokens.csv")
        secret = auth.add_token(path, user, grp)
        return build(server=url, ca_pem=ca_pem, user=user, token=secret, namespace=namespace)
    ca_key = state_dir / "ca.key"
    try:
        ca = certs.Pair(ca_pem, ca_key.read_bytes())
    except OSError as e:
        raise ConfigError(f"cannot read the cluster CA key {ca_key}: {e.strerror} (a client "
                          "certificate needs it; --token needs only the token file)") from e
    pair = certs.client_cert(ca, user, grp)
    return build(server=url, ca_pem=ca_pem, user=user, cert=pair, namespace=namespace)


def dump(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def write(path: Path, config: dict[str, Any]) -> None:
    """Write 0600 (it holds a credential), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(dump(config))
    tmp.replace(path)


def client_credentials(path: Path, *, context: str | None = None) -> certs.Pair:
    """The client certificate and key of a kubeconfig's user (its current context's, or
    `context`'s): `client-certificate(-data)` and `client-key(-data)`, file paths relative to the
    kubeconfig. A token-only user cannot authenticate to a node agent: `ConfigError` saying so."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"kubeconfig {path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"kubeconfig {path}: not YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path}: not a kubeconfig")
    name = context or doc.get("current-context")
    ctx = next((c.get("context") or {} for c in doc.get("contexts") or [] if isinstance(c, dict)
                and c.get("name") == name), None)
    if not name or ctx is None:
        raise ConfigError(f"kubeconfig {path}: no context {name!r}" if name else f"kubeconfig {path}: no current-context")
    user_name = ctx.get("user")
    user = next((u.get("user") or {} for u in doc.get("users") or [] if isinstance(u, dict)
                 and u.get("name") == user_name), None)
    if not isinstance(user, dict):
        raise ConfigError(f"kubeconfig {path}: context {name!r} names user {user_name!r}, which it does not have")

    def part(what: str) -> bytes | None:
        data = user.get(f"{what}-data")
        if data:
            try:
                return base64.b64decode(str(data), validate=True)
            except ValueError:
                raise ConfigError(f"kubeconfig {path}: user {user_name!r}: {what}-data is not base64") from None
        file = user.get(what)
        if file:
            p = Path(str(file))
            p = p if p.is_absolute() else path.parent / p
            try:
                return p.read_bytes()
            except OSError as e:
                raise ConfigError(f"kubeconfig {path}: user {user_name!r}: {what} {p}: {e.strerror}") from e
        return None

    cert, key = part("client-certificate"), part("client-key")
    if cert is None or key is None:
        raise ConfigError(f"kubeconfig {path}: user {user_name!r} has no client certificate and key, which node "
                          "agents need (a token works only with the API server): `netplane kubeconfig` "
                          "without --token writes one")
    return certs.Pair(cert, key)
