"""The API server: HTTPS, authentication, discovery, and the `/api/v1` handlers, on aiohttp.

    server = APIServer(store, keys, APIServerConfig(listen=("127.0.0.1", 6443), state_dir=...))
    host, port = server.start()      # binds (OSError if taken), serves on a thread of its own
    ...
    server.stop()

`netplane apiserver` runs one on its own; `netplane master --apiserver-listen` runs one in
every master, leader or not (it only needs etcd: any master can serve, as kube-apiservers
do). TLS material comes from `--tls-cert/--tls-key/--client-ca` or, by default, from the
state directory, where the cluster CA and a serving certificate are made at first start
(`certs`). The state directory also gets `apiserver.json` (the server URL, the CA clients
should trust, the token file), which `netplane kubeconfig` reads, and `tokens.csv`, the
default token file.

The event loop parses, streams and encodes, and awaits a single GET's etcd read
(`AsyncReader`, a grpc.aio channel of its own); every other store call runs in a thread pool.
A handler error that is not one of ours is logged once with its traceback and answered with
a 500 InternalError Status; the server never sends a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from aiohttp import web

from netplane.errors import ConfigError, NetplaneError, StoreError
from netplane.store import EtcdStore, Keys
from netplane.store.etcd import AsyncReader, LoopBridgedStore
from orchestrator.apiserver import (
    auth,
    certs,
    discovery,
    leases,
    metrics,
    policy,
    rbac,
    requestmetrics,
    reviews,
    satokens,
)
from orchestrator.apiserver.handlers import (
    CONTEXT,
    CURRENT_USER,
    Context,
    api_v1,
    json_response,
    status_response,
)
from orchestrator.apiserver.rbacpolicy import Attributes
from orchestrator.apiserver.registry import Registry
from orchestrator.apiserver.scale import Scales
from orchestrator.apiserver.status import APIError, from_exception
from orchestrator.apiserver.stream import NodeDialer
from orchestrator.apiserver.watchcache import WINDOW, WatchCaches
from orchestrator.objects.meta import KINDS, NAMESPACE, POD, RBAC_KINDS, SECRET, SERVICE_ACCOUNT
from orchestrator.storage import AlreadyExists, ObjectStore
from orchestrator.validation import schema

log = logging.getLogger(__name__)

DEFAULT_PORT = 6443
DEFAULT_STATE_DIR = Path("/var/lib/netplane/apiserver")
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})


def resource_path(path: str) -> bool:
    """A request for a resource (`/api/v1/pods...`, `/apis/<group>/<version>/...`), which its
    handler authorizes; anything else is a non-resource URL (kube's RequestInfo)."""
    parts = path.strip("/").split("/")
    return (parts[0] == "api" and len(parts) >= 3) or (parts[0] == "apis" and len(parts) >= 4)
MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's request body limit
STATE_FILE = "apiserver.json"


@dataclass(frozen=True)
class APIServerConfig:
    listen: tuple[str, int] = ("127.0.0.1", DEFAULT_PORT)
    state_dir: Path = DEFAULT_STATE_DIR
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    # what pods/log and pods/exec authenticate to node agents with (kube's --kubelet-client-*);
    # default: a certificate the state dir's CA issues (nodetls.APISERVER_CLIENT_USER)
    kubelet_client_cert: Path | None = None
    kubelet_client_key: Path | None = None
    token_auth_file: Path | None = None
    read_only_group: str = auth.DEFAULT_READ_ONLY_GROUP
    advertise: str | None = None  # the host clients use (server URL, serving certificate)
    tls_sans: tuple[str, ...] = field(default_factory=tuple)
    event_ttl: int = 3600
    bookmark_interval: float = 60.0
    workers: int = 16
    watch_window: int = WINDOW

    def url_host(self, port: int | None = None) -> str:
        host = self.advertise or self.listen[0]
        if not host or ip_address_or_none(host) is not None and ip_address(host).is_unspecified:
            host = "127.0.0.1"
        return f"[{host}]" if ":" in host else host


def ip_address_or_none(text: str) -> Any:
    try:
        return ip_address(text)
    except ValueError:
        return None


def parse_listen(text: str) -> tuple[str, int]:
    """`ADDR:PORT`, `:PORT` (all addresses) or `PORT`."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{text!r}: expected ADDR:PORT")
    if host and ip_address_or_none(host) is None:
        raise ConfigError(f"{text!r}: {host!r} is not an IP address")
    return host or "0.0.0.0", int(port)


@dataclass(frozen=True)
class TLS:
    context: ssl.SSLContext
    ca_file: Path | None  # what clients should trust (None: the caller knows)
    client_ca: bytes = b""  # the CAs client certificates are verified against (published for nodes)
    kubelet_client: certs.Pair | None = None  # our credential towards node agents


def tls_setup(cfg: APIServerConfig) -> TLS:
    """The server's TLS context: given files, or the state directory's CA and certificate."""
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key must be given together")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ca_file: Path | None
    try:
        if cfg.tls_cert is not None and cfg.tls_key is not None:
            ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
            ca_file = cfg.client_ca
        else:
            ca = certs.ensure_ca(cfg.state_dir)
            sans = certs.default_sans([cfg.listen[0], *( [cfg.advertise] if cfg.advertise else []), *cfg.tls_sans])
            sans = [s for s in sans if s and not (ip_address_or_none(s) and ip_address(s).is_unspecified)]
            certs.ensure_server_cert(cfg.state_dir, ca, sans)
            ctx.load_cert_chain(str(cfg.state_dir / "server.crt"), str(cfg.state_dir / "server.key"))
            ca_file = cfg.state_dir / "ca.crt"
        client_ca = cfg.client_ca or (cfg.state_dir / "ca.crt" if cfg.tls_cert is None else None)
        client_ca_pem = b""
        if client_ca is not None:
            ctx.load_verify_locations(cafile=str(client_ca))
            ctx.verify_mode = ssl.CERT_OPTIONAL
            client_ca_pem = client_ca.read_bytes()
        kubelet_client = _kubelet_client(cfg)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"TLS setup failed: {e}") from e
    return TLS(ctx, ca_file, client_ca_pem, kubelet_client)


def _kubelet_client(cfg: APIServerConfig) -> certs.Pair | None:
    """The given --kubelet-client-certificate/-key, or one the state dir's CA issues (when the
    server has that CA: it made its own serving certificate); None when neither."""
    from orchestrator.node import nodetls

    if (cfg.kubelet_client_cert is None) != (cfg.kubelet_client_key is None):
        raise ConfigError("--kubelet-client-certificate and --kubelet-client-key must be given together")
    if cfg.kubelet_client_cert is not None and cfg.kubelet_client_key is not None:
        return certs.Pair(cfg.kubelet_client_cert.read_bytes(), cfg.kubelet_client_key.read_bytes())
    if cfg.tls_cert is not None:
        return None
    ca = certs.ensure_ca(cfg.state_dir)
    return certs.ensure_client_cert(cfg.state_dir, ca, "kubelet-client", nodetls.APISERVER_CLIENT_USER,
                                    nodetls.APISERVER_CLIENT_GROUPS)


def token_file_of(cfg: APIServerConfig) -> Path:
    if cfg.token_auth_file is not None:
        return cfg.token_auth_file
    path = cfg.state_dir / "tokens.csv"
    if not path.exists():
        cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    return path


def write_state(cfg: APIServerConfig, *, url: str, ca_file: Path | None, token_file: Path,
                published: list[str] | None = None, published_serving: list[str] | None = None,
                published_sa_keys: list[str] | None = None) -> None:
    """apiserver.json: what `netplane kubeconfig` reads, and the client CAs and serving CAs
    (sha256 fingerprints) and service account keys (kids) this server published, so that it can
    withdraw them."""
    cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = {"server": url, "certificateAuthority": str(ca_file) if ca_file else None,
            "tokenAuthFile": str(token_file), "publishedClientCAs": published or [],
            "publishedServingCAs": published_serving or [], "publishedSAKeys": published_sa_keys or []}
    tmp = cfg.state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    tmp.replace(cfg.state_dir / STATE_FILE)


def read_state(state_dir: Path) -> dict[str, Any]:
    try:
        v = json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {state_dir / STATE_FILE}: {e}") from e
    return v if isinstance(v, dict) else {}


# --------------------------------------------------------------------------- the app
def _unauthorized() -> web.Response:
    return status_response(APIError(401, "Unauthorized"))


async def service_account(ctx: Context, sa_tokens: satokens.Tokens, token: str) -> auth.User | None:
    """The user of a service account token, its account (and bound object) read from the
    watch caches (waited for while they list, at server start)."""
    caches = ctx.caches
    if caches is None:
        return None
    kid = satokens.token_kid(token)
    key = None  # None: our own key (a token with no kid was issued before kids, by us or nobody)
    if kid is not None and ctx.sa_keys is not None:
        key = await ctx.sa_keys.get(kid)  # ours, another server's or a node's, published in etcd
        if key is None:
            return None
    claims = sa_tokens.claims(token, key)
    if claims is None:
        return None
    for kind in (SERVICE_ACCOUNT, POD, SECRET):
        if not await caches.get(kind).wait_ready(10.0):
            raise APIError(503, "the server is starting: its caches are not listed yet",
                           reason="ServiceUnavailable")
    # the watch caches, and etcd for what they do not have (yet: an account made a moment ago
    # through another API server), as kube's token getter falls back to a live read
    found: dict[tuple[str, str, str], dict[str, Any] | None] = {}
    for kind, ns, name in satokens.needed(claims):
        obj = caches.cached(kind, ns, name)
        if obj is None and ctx.reader is not None:
            obj = await ctx.objects.get_async(ctx.reader, kind, name, ns)
        found[(kind.kind, ns, name)] = obj
    return sa_tokens.user(claims, lambda kind, ns, name: found.get((kind.kind, ns, name)),
                          node=key.node if key is not None else "")


def build_app(ctx: Context, tokens: auth.TokenFile,
              request_metrics: requestmetrics.RequestMetrics | None = None) -> web.Application:
    measured = request_metrics or requestmetrics.RequestMetrics()

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            resp: web.StreamResponse = await handler(request)
            return resp
        except APIError as e:
            return status_response(e)
        except web.HTTPException as e:
            if e.status == 404:
                return status_response(APIError(404, "the server could not find the requested resource"))
            if e.status == 405:
                return status_response(APIError(405, "the server does not allow this method on the "
                                                     "requested resource"))
            if e.status == 413:
                return status_response(APIError(413, "the request entity is too large", reason="RequestEntityTooLarge"))
            raise
        except asyncio.CancelledError:
            raise
        except Exception as e:
            mapped = from_exception(e)
            if mapped is not None:
                if isinstance(e, StoreError):
                    log.warning("%s %s: %s", request.method, request.path, e)
                return status_response(mapped)
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            return status_response(APIError(500, f"Internal error occurred: {type(e).__name__}: {e}"))

    @web.middleware
    async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            resp: web.StreamResponse = await handler(request)
            return resp
        header = request.headers.get("Authorization", "")
        user = None
        if header[:7].lower() == "bearer ":
            token = header[7:].strip()
            user = tokens.user(token)
            if user is None and ctx.sa_tokens is not None and ctx.sa_tokens.looks_like_one(token):
                user = await service_account(ctx, ctx.sa_tokens, token)
        elif not header:
            transport = request.transport
            peer = transport.get_extra_info("peercert") if transport is not None else None
            user = auth.user_from_peercert(peer)
        if user is None:
            return _unauthorized()
        if "Impersonate-User" in request.headers or "Impersonate-Group" in request.headers \
                or "Impersonate-Uid" in request.headers:
            user = rbac.impersonated(ctx.authorizer, user, request.headers)
        CURRENT_USER.set(user)
        if not resource_path(request.path):  # discovery, /openapi, /metrics...: RBAC's nonResourceURLs
            verb = request.method.lower()
            if not ctx.authorizer.allows(Attributes(user, verb, resource_request=False, path=request.path)):
                return status_response(APIError(403, f'forbidden: User "{user.name}" cannot {verb} path '
                                                     f'"{request.path}"'))
        resp = await handler(request)
        return resp

    app = web.Application(middlewares=[measured.middleware(), errors, authenticate], client_max_size=MAX_BODY)
    app[CONTEXT] = ctx

    async def version(request: web.Request) -> web.Response:
        return json_response(discovery.version())

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def api(request: web.Request) -> web.Response:
        return json_response(discovery.api_versions(ctx.server_address))

    async def api_v1_resources(request: web.Request) -> web.Response:
        return json_response(discovery.resource_list())

    async def apis(request: web.Request) -> web.Response:
        return json_response(discovery.api_groups())

    async def openapi_index(request: web.Request) -> web.Response:
        return json_response(discovery.openapi_index())

    async def openapi_group_version(request: web.Request) -> web.Response:
        try:
            return json_response(discovery.openapi_doc(request.match_info["gv"].strip("/")))
        except KeyError:
            return await not_found(request)

    async def not_found(request: web.Request) -> web.Response:
        return status_response(APIError(404, "the server could not find the requested resource"))

    r = app.router
    r.add_get("/version", version)
    r.add_get("/version/", version)
    for p in ("/healthz", "/livez", "/readyz"):
        r.add_get(p, healthz)
    r.add_get("/api", api)
    r.add_get("/api/", api)
    r.add_get("/api/v1", api_v1_resources)
    r.add_get("/api/v1/", api_v1_resources)
    r.add_get("/apis", apis)
    r.add_get("/apis/", apis)
    r.add_get("/openapi/v3", openapi_index)
    r.add_get("/openapi/v3/", openapi_index)
    r.add_get("/openapi/v3/{gv:.+}", openapi_group_version)  # api/v1, apis/coordination.k8s.io/v1
    r.add_get("/metrics", measured.serve)
    r.add_route("*", "/api/v1/{tail:.+}", api_v1)
    reviews.add_routes(app, ctx.authorizer)  # kubectl auth can-i, whoami
    leases.add_routes(app)  # the node Leases kubectl describe node shows
    rbac.add_routes(app)  # Roles, ClusterRoles and their bindings
    policy.add_routes(app)  # PodDisruptionBudgets
    metrics.add_routes(app)  # kubectl top
    r.add_route("*", "/{tail:.*}", not_found)
    return app


class APIServer:
    def __init__(self, store: EtcdStore, keys: Keys, config: APIServerConfig) -> None:
        self.config = config
        # no read check: the API hands out what is stored, as written through the one validation
        # layer (the check keeps malformed values out of controllers' loops; ~40 % of a
        # 10,000-pod LIST's decoding)
        self.objects = ObjectStore(store, keys, read_check=None)
        self.request_metrics = requestmetrics.RequestMetrics()  # /metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._caches: WatchCaches | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._reader: AsyncReader | None = None
        self.address: tuple[str, int] | None = None
        self.url = ""
        self.ca_file: Path | None = None

    def start(self) -> tuple[str, int]:
        """Set up TLS, bind and serve on a thread of its own; the address bound. Raises
        ConfigError for bad TLS material and OSError when the address is taken."""
        cfg = self.config
        tls = tls_setup(cfg)
        self.ca_file = tls.ca_file
        token_path = token_file_of(cfg)
        tokens = auth.TokenFile(token_path)
        schema.warm()  # ~60 ms here, not in the first writes' answers
        self._pool = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="apiserver")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._caches = WatchCaches(self.objects, loop, window=cfg.watch_window)
        self.request_metrics.watch_caches(self._caches)
        authorizer = rbac.RBACAuthorizer(self._caches.get, cfg.read_only_group)

        def escalation_check(new: dict[str, Any], current: dict[str, Any] | None) -> None:
            authorizer.check_write(CURRENT_USER.get(), new, current)

        sa_tokens = satokens.Tokens(satokens.ensure_signing_key(cfg.state_dir))

        # the CA our own serving certificate chains to (not one given with --tls-cert: unknown),
        # for kube-root-ca.crt in every namespace (controllers.rootca_publisher) and token Secrets
        own_ca = tls.ca_file.read_bytes() if cfg.tls_cert is None and tls.ca_file is not None else b""

        def token_secret(secret: dict[str, Any]) -> dict[str, Any] | None:
            return ctx.registry.fill_token_secret(secret, sa_tokens, own_ca)

        ctx = Context(objects=self.objects,
                      registry=Registry(self.objects, event_ttl=cfg.event_ttl, cached=self._caches.cached,
                                        guard=escalation_check, token_secret=token_secret),
                      scales=Scales(self.objects), authorizer=authorizer,
                      pool=self._pool, bookmark_interval=cfg.bookmark_interval, caches=self._caches,
                      nodes=NodeDialer(tls.kubelet_client),
                      sa_tokens=sa_tokens)
        app = build_app(ctx, tokens, self.request_metrics)
        caches = self._caches
        started = threading.Event()
        failure: list[BaseException] = []

        async def setup() -> None:
            # on the loop: a grpc.aio channel belongs to the loop it was made on
            ctx.reader = self._reader = AsyncReader(self.objects.store.config)
            if ctx.sa_tokens is not None:
                reader, keys = self._reader, self.objects.keys

                async def fetch_key(kid: str) -> bytes | None:
                    kv = await reader.get(keys.sa_key(kid))
                    return kv.value if kv is not None else None
                ctx.sa_keys = satokens.PublishedKeys(fetch_key, ctx.sa_tokens.signer)
            # the registry's blocking writes, in the pool, do their etcd round trips here too
            self.objects.store = LoopBridgedStore(self.objects.store, self._reader, loop, threading.get_ident())
            # the server's own etcd calls, in its /metrics (the base store may be shared: not it)
            self.objects.store.observer = self._reader.observer = self.request_metrics.observe_etcd
            caches.start(self._reader)
            for kind in KINDS:  # from now on, a watch from a revision read later is in a window
                caches.get(kind)
            for kind in RBAC_KINDS:  # the authorizer's: listed before the first request, if etcd answers
                await caches.get(kind).wait_ready(10.0)
            runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
            await runner.setup()
            site = web.TCPSite(runner, cfg.listen[0], cfg.listen[1], ssl_context=tls.context,
                               backlog=1024, reuse_address=True)
            await site.start()
            self._runner = runner
            server = getattr(site, "_server", None)
            sock = server.sockets[0] if server is not None and server.sockets else None
            self.address = (sock.getsockname()[0], sock.getsockname()[1]) if sock else cfg.listen

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(setup())
            except BaseException as e:  # noqa: BLE001 - handed to the starting thread, raised there
                failure.append(e)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=serve, name="apiserver", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._pool.shutdown(wait=False)
            raise failure[0]
        assert self.address is not None
        host = cfg.url_host()
        self.url = f"https://{host}:{self.address[1]}"
        ctx.server_address = f"{host.strip('[]')}:{self.address[1]}"
        try:
            state = read_state(cfg.state_dir)
        except ConfigError:
            state = {}

        def before(field: str, pattern: re.Pattern[str] = re.compile(r"[0-9a-f]{64}")) -> list[str]:
            return [f for f in state.get(field) or [] if isinstance(f, str) and pattern.fullmatch(f)]

        published = self._publish_cas(tls.client_ca, before("publishedClientCAs"), "client CA for node agents",
                                      self.objects.keys.client_ca)
        published_serving = self._publish_cas(own_ca, before("publishedServingCAs"), "serving CA",
                                              self.objects.keys.serving_ca)
        published_keys = self._publish_sa_key(ctx.sa_tokens, before("publishedSAKeys", satokens.KID_RE))
        write_state(cfg, url=self.url, ca_file=tls.ca_file, token_file=token_path, published=published,
                    published_serving=published_serving, published_sa_keys=published_keys)
        self._ensure_default_namespace()
        try:
            made = rbac.ensure_bootstrap(self.objects, cfg.read_only_group)
        except StoreError as e:  # etcd gone meanwhile: the policy is in the authorizer anyway; next start
            log.warning("the bootstrap RBAC roles and bindings were not stored: %s", e)
        else:
            if made:
                log.info("stored the bootstrap RBAC policy: %s", ", ".join(made))
        log.info("API server on %s", self.url)
        return self.address

    def _publish_cas(self, bundle: bytes, before: list[str], what: str, key_of: Any) -> list[str]:
        """Our CAs into etcd under `key_of(sha256)`: the client CA, where node agents take the CAs
        they accept from (`orchestrator.node.nodetls`: a user this server authenticates by
        certificate is then one the node APIs know too), and the serving CA, which the master
        hands to pods as kube-root-ca.crt. The CAs this server published `before` and no longer
        has (its CA was replaced) are withdrawn, so nobody trusts them any more; nobody else's
        are touched. Failing is logged, not fatal (nodes may have --node-api-client-ca). What it
        has published now (and what it could not withdraw yet, to try again next start)."""
        from orchestrator.node import nodetls

        current: list[str] = []
        keys = self.objects.keys
        try:
            if bundle:
                current = [nodetls.fingerprint(p) for p in nodetls.split_pem(bundle)]
                for key in nodetls.publish_client_cas(self.objects.store, keys, bundle, key_of=key_of):
                    log.info("published the %s at %s", what, key)
            stale = [f for f in before if f not in current]
            for key in nodetls.withdraw_client_cas(self.objects.store, keys, stale, key_of=key_of):
                log.info("withdrew the %s this server published before at %s", what, key)
        except (NetplaneError, ConfigError) as e:
            log.warning("cannot publish the %s: %s", what, e)
            return sorted(set(before) | set(current))
        return current

    def _publish_sa_key(self, tokens: satokens.Tokens | None, before: list[str]) -> list[str]:
        """Our service account key's public half into etcd, so that every API server accepts
        the tokens we issue; the one we published before and no longer have withdrawn. Failing
        is logged, not fatal: our own tokens still work here."""
        if tokens is None:
            return before
        try:
            now = satokens.publish_key(self.objects.store, self.objects.keys.sa_key, tokens.signer, before)
        except (NetplaneError, ConfigError) as e:
            log.warning("cannot publish the service account key: %s", e)
            return sorted(set(before) | {tokens.signer.kid})
        log.info("published the service account key %s", tokens.signer.kid)
        return now

    def _ensure_default_namespace(self) -> None:
        if self.objects.get(NAMESPACE, "default") is not None:
            return
        try:
            self.objects.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"},
                                 "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        except AlreadyExists:
            pass
        except StoreError as e:
            log.warning("could not create the default namespace: %s", e)

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._caches is not None:
            await self._caches.stop()
        if self._reader is not None:
            await self._reader.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=15)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
