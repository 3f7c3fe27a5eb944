"""Cluster DNS: `<svc>.<ns>.svc.<domain>` answered from the registry's Services (SkyDNS /
kube-dns / CoreDNS's `kubernetes` plugin, in its simplest form), plus what the master does to
make pods reach it.

Every `netplane master` started with `--dns-listen` runs a `ClusterDNS` (leader or not: answers
are reads of its own informers). It answers, with TTL 5 s (CoreDNS's default) and the AA bit:

    web.default.svc.cluster.local            A     the Service's clusterIP
                                             A     every ready endpoint address (headless, clusterIP None)
    _http._tcp.web.default.svc.cluster.local SRV   0 100 <port> web.default.svc.cluster.local. (named ports)
    any other type of an existing name       NOERROR, no answers, SOA in authority (NODATA)
    cluster.local                            SOA   ns.dns.cluster.local. hostmaster.cluster.local. ...
    unknown names inside cluster.local       NXDOMAIN, SOA in authority (negative TTL 5 s)
    names outside cluster.local              REFUSED at once: no recursion, there is no upstream
    before the first list of Services        SERVFAIL (a resolver tries again; NXDOMAIN would be cached)

`default.svc.cluster.local` (a namespace with Services) and `svc.cluster.local` exist as empty
non-terminals (NODATA, not NXDOMAIN). Names compare case-insensitively; answers carry the
question's spelling.

UDP and TCP are served on one address and port (port 0 picks a free one for both). UDP is one
thread (an answer is a dictionary lookup); TCP a thread per connection, several queries per
connection, idle connections closed after 10 s. A UDP answer larger than the client's limit
(512 bytes, or its EDNS0 payload size, capped at 1232) is sent truncated: the TC bit with the
question and no records, so the client retries over TCP. (dnslib's own `truncate()` drops the
question as well; dnspython, and glibc's resolver, do not accept such a reply as an answer to
their query.)

The master side, also here (its machinery in `orchestrator.masterservice`, shared with
`default/kubernetes`):

* every DNS-serving master registers `{"dns": "ip:port"}` (`masterservice.Registration`, on
  its own lease), once its DNS has listed the Services;
* `KubeDNSController` (leader only, fenced like every controller write): the Namespace
  `kube-system`, the selector-less Service `kube-system/kube-dns` on the DNS service IP
  (10.96.0.10; ports 53/UDP `dns` and 53/TCP `dns-tcp`, targetPort by name) and its hand-set
  Endpoints: one address per registered master, on the port its server really listens on
  (masters on different ports get separate subsets), so the proxy takes pods' queries to
  10.96.0.10:53 to a live master.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from dnslib import EDNS0, QTYPE, RCODE, RR, SOA, SRV, A, DNSError, DNSHeader, DNSLabel, DNSRecord

from netplane.errors import ConfigError
from orchestrator.controllers.base import Writer
from orchestrator.controllers.informers import Informers
from orchestrator.informer import Informer
from orchestrator.masterservice import (
    MasterService,
    MasterServiceController,
    parse_hostport,
    registered,
)
from orchestrator.objects import meta
from orchestrator.objects.meta import ENDPOINTS, SERVICE
from orchestrator.storage import ObjectStore

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DEFAULT_DOMAIN = "cluster.local"
DEFAULT_SERVICE_IP = "10.96.0.10"
TTL = 5  # seconds, answers and negative answers alike (CoreDNS kubernetes plugin: ttl 5)
UDP_MIN = 512  # RFC 1035 limit without EDNS0
UDP_MAX = 1232  # the DNS flag day 2020 payload size: we never send larger datagrams
TCP_IDLE = 10.0  # seconds an idle TCP connection is kept
BIND_TRIES = 16  # port 0: tries to find a port free for UDP and TCP both

DNS_NAMESPACE = "kube-system"
DNS_SERVICE = "kube-dns"
PORT_UDP = "dns"
PORT_TCP = "dns-tcp"
MANAGER = "kube-dns-controller"


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Port:
    name: str
    protocol: str  # lower case: tcp, udp, sctp
    port: int


@dataclass(frozen=True)
class ServiceEntry:
    cluster_ip: str | None  # None: headless (answered with the ready endpoint addresses)
    ports: tuple[Port, ...]


def service_entry(svc: Mapping[str, Any]) -> ServiceEntry | None:
    """What DNS answers for a Service; None (logged) when it has no usable cluster IP."""
    spec = svc.get("spec") or {}
    ip = spec.get("clusterIP")
    if ip == "None":
        cluster_ip = None
    else:
        try:
            cluster_ip = str(IPv4Address(str(ip)))
        except ValueError:
            log.warning("dns: service %s has no usable cluster IP (%r): not answered",
                        meta.namespaced_name(svc), ip)
            return None
    return ServiceEntry(cluster_ip, _ports(spec.get("ports")))


def _ports(raw: Any) -> tuple[Port, ...]:
    out = []
    for p in raw or []:
        if isinstance(p, dict) and isinstance(p.get("port"), int):
            out.append(Port(str(p.get("name") or "").lower(), str(p.get("protocol") or "TCP").lower(), p["port"]))
    return tuple(out)


def endpoint_addresses(ep: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[Port, ...]]:
    """The ready addresses of an Endpoints object (sorted, once each) and its first ports."""
    ips: set[str] = set()
    ports: tuple[Port, ...] = ()
    for s in ep.get("subsets") or []:
        if not ports:
            ports = _ports(s.get("ports"))
        for a in s.get("addresses") or []:
            try:
                ips.add(str(IPv4Address(str(a.get("ip")))))
            except ValueError:
                continue
    return tuple(sorted(ips, key=lambda t: int(IPv4Address(t)))), ports


class Records:
    """The lookup table DNS answers from, kept by informer handlers (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[tuple[str, str], ServiceEntry] = {}
        self._endpoints: dict[tuple[str, str], tuple[tuple[str, ...], tuple[Port, ...]]] = {}
        self._per_namespace: dict[str, int] = {}
        self.synced = threading.Event()
        self.serial = 1

    def on_service(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        key = (meta.namespace(obj), meta.name(obj))
        entry = service_entry(new) if new is not None else None
        with self._lock:
            had = key in self._services
            if entry is None:
                self._services.pop(key, None)
            else:
                self._services[key] = entry
            has = entry is not None
            if had != has:
                n = self._per_namespace.get(key[0], 0) + (1 if has else -1)
                if n > 0:
                    self._per_namespace[key[0]] = n
                else:
                    self._per_namespace.pop(key[0], None)
            self.serial = max(self.serial, meta.resource_version(obj)) & 0xFFFFFFFF or 1

    def on_endpoints(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        key = (meta.namespace(obj), meta.name(obj))
        with self._lock:
            if new is None:
                self._endpoints.pop(key, None)
            else:
                self._endpoints[key] = endpoint_addresses(new)

    def service(self, namespace: str, name: str) -> ServiceEntry | None:
        with self._lock:
            return self._services.get((namespace, name))

    def ready(self, namespace: str, name: str) -> tuple[tuple[str, ...], tuple[Port, ...]]:
        with self._lock:
            return self._endpoints.get((namespace, name), ((), ()))

    def has_namespace(self, namespace: str) -> bool:
        with self._lock:
            return namespace in self._per_namespace

    def any_service(self) -> bool:
        with self._lock:
            return bool(self._services)


# --------------------------------------------------------------------------- answering
@dataclass
class Answer:
    rcode: int
    answers: list[RR]
    authority: list[RR]
    additional: list[RR]
    authoritative: bool = True


class Resolver:
    """Answers one question from `Records` (pure: no I/O, no clocks)."""

    def __init__(self, records: Records, *, domain: str = DEFAULT_DOMAIN, ttl: int = TTL) -> None:
        self.records = records
        self.domain = tuple(domain.strip(".").lower().split("."))
        self.origin = ".".join(self.domain) + "."
        self.ttl = ttl

    def resolve(self, request: DNSRecord) -> DNSRecord:
        reply = DNSRecord(DNSHeader(id=request.header.id, qr=1, aa=0, ra=0, rd=request.header.rd,
                                    opcode=request.header.opcode), q=request.q)
        if request.header.opcode != 0:
            reply.header.rcode = RCODE.NOTIMP
            return reply
        if not request.questions:
            reply.header.rcode = RCODE.FORMERR
            return reply
        q = request.q
        if q.qclass not in (1, 255):  # IN, ANY
            reply.header.rcode = RCODE.REFUSED
            return reply
        a = self.answer(q.qname, q.qtype)
        reply.header.rcode = a.rcode
        reply.header.aa = 1 if a.authoritative else 0
        for rr in a.answers:
            reply.add_answer(rr)
        for rr in a.authority:
            reply.add_auth(rr)
        for rr in a.additional:
            reply.add_ar(rr)
        return reply

    def answer(self, qname: DNSLabel, qtype: int) -> Answer:
        labels = _lower_labels(qname)
        n = len(self.domain)
        if labels is None or len(labels) < n or labels[len(labels) - n:] != self.domain:
            return Answer(RCODE.REFUSED, [], [], [], authoritative=False)
        if not self.records.synced.is_set():
            return Answer(RCODE.SERVFAIL, [], [], [], authoritative=False)
        rel = labels[:len(labels) - n]
        if not rel:  # the zone's apex
            if qtype in (QTYPE.SOA, QTYPE.ANY):
                return Answer(RCODE.NOERROR, [self._soa()], [], [])
            return self._nodata()
        if rel[-1] == "svc":
            return self._svc(qname, rel[:-1], qtype)
        return self._nxdomain()

    def _svc(self, qname: DNSLabel, rel: tuple[str, ...], qtype: int) -> Answer:
        recs = self.records
        if not rel:  # svc.<domain>
            return self._nodata() if recs.any_service() else self._nxdomain()
        ns = rel[-1]
        if len(rel) == 1:  # <ns>.svc.<domain>
            return self._nodata() if recs.has_namespace(ns) else self._nxdomain()
        name = rel[-2]
        entry = recs.service(ns, name)
        if entry is None:
            return self._nxdomain()
        if len(rel) == 2:  # <svc>.<ns>.svc.<domain>
            if qtype not in (QTYPE.A, QTYPE.ANY):
                return self._nodata()
            ips = self._addresses(entry, ns, name)
            return Answer(RCODE.NOERROR, [self._a(qname, ip) for ip in ips], [], [])
        if len(rel) == 4 and rel[0].startswith("_") and rel[1].startswith("_"):
            return self._srv(qname, entry, ns, name, rel[0][1:], rel[1][1:], qtype)
        if len(rel) == 3 and rel[0].startswith("_"):  # _<proto>.<svc>...: parent of SRV names
            proto = rel[0][1:]
            return self._nodata() if any(p.name and p.protocol == proto for p in entry.ports) else self._nxdomain()
        return self._nxdomain()

    def _srv(self, qname: DNSLabel, entry: ServiceEntry, ns: str, name: str, port_name: str, proto: str,
             qtype: int) -> Answer:
        port = next((p for p in entry.ports if p.name and p.name == port_name and p.protocol == proto), None)
        if port is None:
            return self._nxdomain()
        if qtype not in (QTYPE.SRV, QTYPE.ANY):
            return self._nodata()
        number = port.port
        if entry.cluster_ip is None:  # headless: the endpoints' port of that name, as CoreDNS
            _ips, ep_ports = self.records.ready(ns, name)
            number = next((p.port for p in ep_ports if p.name == port_name and p.protocol == proto), number)
        target = f"{name}.{ns}.svc.{self.origin}"
        srv = RR(qname, QTYPE.SRV, ttl=self.ttl, rdata=SRV(priority=0, weight=100, port=number, target=target))
        extra = [self._a(DNSLabel(target), ip) for ip in self._addresses(entry, ns, name)]
        return Answer(RCODE.NOERROR, [srv], [], extra)

    def _addresses(self, entry: ServiceEntry, ns: str, name: str) -> tuple[str, ...]:
        if entry.cluster_ip is not None:
            return (entry.cluster_ip,)
        return self.records.ready(ns, name)[0]

    def _a(self, name: DNSLabel, ip: str) -> RR:
        return RR(name, QTYPE.A, ttl=self.ttl, rdata=A(ip))

    def _soa(self) -> RR:
        return RR(self.origin, QTYPE.SOA, ttl=self.ttl,
                  rdata=SOA(f"ns.dns.{self.origin}", f"hostmaster.{self.origin}",
                            (self.records.serial, 7200, 1800, 86400, self.ttl)))

    def _nodata(self) -> Answer:
        return Answer(RCODE.NOERROR, [], [self._soa()], [])

    def _nxdomain(self) -> Answer:
        return Answer(RCODE.NXDOMAIN, [], [self._soa()], [])


def _lower_labels(name: DNSLabel) -> tuple[str, ...] | None:
    try:
        return tuple(part.decode("ascii").lower() for part in name.label)
    except UnicodeDecodeError:
        return None


def udp_limit(request: DNSRecord) -> int:
    """The largest UDP answer a client takes: 512, or its EDNS0 payload size (max 1232)."""
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(UDP_MIN, min(int(rr.rclass), UDP_MAX))
    return UDP_MIN


def respond(resolver: Resolver, data: bytes, *, udp: bool) -> bytes | None:
    """The wire answer to one wire query; None for garbage (no reply, as resolvers do)."""
    try:
        request = DNSRecord.parse(data)
    except (DNSError, struct.error, IndexError, ValueError, UnicodeDecodeError):
        return None
    if request.header.qr:
        return None  # a response sent to us: never answer it (no loops)
    reply = resolver.resolve(request)
    edns = any(rr.rtype == QTYPE.OPT for rr in request.ar)
    if edns:
        reply.add_ar(EDNS0(udp_len=UDP_MAX))
    wire: bytes = reply.pack()
    if udp and len(wire) > udp_limit(request):
        short = DNSRecord(DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap, tc=1), q=request.q)
        short.header.rcode = reply.header.rcode
        if edns:
            short.add_ar(EDNS0(udp_len=UDP_MAX))
        wire = short.pack()
    return wire


# --------------------------------------------------------------------------- serving
class _UDPHandler(socketserver.BaseRequestHandler):
    server: _UDPServer

    def handle(self) -> None:
        data, sock = self.request
        out = respond(self.server.resolver, data, udp=True)
        if out is not None:
            try:
                sock.sendto(out, self.client_address)
            except OSError as e:
                log.debug("dns: cannot answer %s: %s", self.client_address, e)


class _TCPHandler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(TCP_IDLE)
        try:
            while True:
                head = _read_exactly(conn, 2)
                if head is None:
                    return
                (length,) = struct.unpack("!H", head)
                data = _read_exactly(conn, length)
                if data is None:
                    return
                out = respond(self.server.resolver, data, udp=False)
                if out is None:
                    return
                conn.sendall(struct.pack("!H", len(out)) + out)
        except OSError:  # timeout, reset: the client went away
            return


def _read_exactly(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class _UDPServer(socketserver.UDPServer):
    # no SO_REUSEADDR: on Linux it would let a second server bind the same UDP port silently
    allow_reuse_address = False
    max_packet_size = 65535

    def __init__(self, addr: tuple[str, int], resolver: Resolver) -> None:
        super().__init__(addr, _UDPHandler)
        self.resolver = resolver


class _TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True  # TIME_WAIT only; TCP still refuses a second listener
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], resolver: Resolver) -> None:
        super().__init__(addr, _TCPHandler)
        self.resolver = resolver


def parse_listen(text: str) -> tuple[str, int]:
    """`ADDR:PORT` (IPv4; port 0 = any free port) as a tuple; ConfigError when malformed."""
    try:
        return parse_hostport(text)
    except ConfigError:
        raise ConfigError(f"invalid DNS listen address {text!r}: expected IPv4ADDR:PORT") from None


class ClusterDNS:
    """The DNS server of one master: its own Service and Endpoints informers, UDP and TCP.

        dns = ClusterDNS(objects, ("10.0.0.2", 53)); dns.start()   # binds, or OSError
        dns.address            # ("10.0.0.2", 53): the real port when 0 was asked for
        dns.wait_synced(10)    # Services listed: answers are no longer SERVFAIL
        dns.stop()
    """

    def __init__(self, objects: ObjectStore, listen: tuple[str, int], *, domain: str = DEFAULT_DOMAIN,
                 ttl: int = TTL) -> None:
        self.objects = objects
        self.listen = listen
        self.records = Records()
        self.resolver = Resolver(self.records, domain=domain, ttl=ttl)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._udp: _UDPServer | None = None
        self._tcp: _TCPServer | None = None
        self._serving = False
        self.services = Informer(objects, SERVICE)
        self.endpoints = Informer(objects, ENDPOINTS)
        self.services.add_handler(self.records.on_service)
        self.endpoints.add_handler(self.records.on_endpoints)

    @property
    def address(self) -> tuple[str, int]:
        assert self._udp is not None, "not started"
        host, port = self._udp.server_address[:2]
        return str(host), int(port)

    def _bind(self) -> None:
        host, port = self.listen
        for attempt in range(BIND_TRIES if port == 0 else 1):
            udp = _UDPServer((host, port), self.resolver)
            try:
                self._tcp = _TCPServer((host, int(udp.server_address[1])), self.resolver)
            except OSError:
                udp.server_close()
                if port != 0 or attempt == BIND_TRIES - 1:
                    raise
                continue
            self._udp = udp
            return

    def start(self) -> None:
        """Bind both sockets (OSError when the address is taken), then follow etcd and serve."""
        self._bind()
        assert self._udp is not None and self._tcp is not None
        self._threads = [self.services.start(self._stop), self.endpoints.start(self._stop)]
        threading.Thread(target=self._mark_synced, name="dns-synced", daemon=True).start()
        for name, srv in (("dns-udp", self._udp), ("dns-tcp", self._tcp)):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, name=name,
                                 daemon=True)
            t.start()
            self._threads.append(t)
        self._serving = True
        log.info("cluster DNS on %s:%d (udp, tcp) for %s", *self.address, self.resolver.origin)

    def _mark_synced(self) -> None:
        while not self._stop.is_set():
            if self.services.wait_synced(0.2) and self.endpoints.wait_synced(0.2):
                self.records.synced.set()
                return

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self.records.synced.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        for srv in (self._udp, self._tcp):
            if srv is not None:
                if self._serving:
                    srv.shutdown()  # waits for serve_forever to return
                srv.server_close()
        self._serving = False
        for t in self._threads:
            t.join(timeout=5)


# --------------------------------------------------------------------------- kube-dns
def registered_dns(raw: bytes) -> tuple[str, int] | None:
    """The DNS address a master registered; None when it serves no DNS or (logged) when the
    registration is malformed."""
    return registered(raw, "dns")


def kube_dns(cluster_ip: str) -> MasterService:
    return MasterService(
        namespace=DNS_NAMESPACE, name=DNS_SERVICE, registered="dns", cluster_ip=str(IPv4Address(cluster_ip)),
        ports=({"name": PORT_UDP, "port": 53, "protocol": "UDP", "targetPort": PORT_UDP},
               {"name": PORT_TCP, "port": 53, "protocol": "TCP", "targetPort": PORT_TCP}),
        endpoint_ports=((PORT_UDP, "UDP"), (PORT_TCP, "TCP")),
        labels={"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "KubeDNS"},
        endpoint_labels={"k8s-app": "kube-dns"}, manager=MANAGER)


def kube_dns_service(cluster_ip: str) -> Obj:
    return kube_dns(cluster_ip).service()


class KubeDNSController(MasterServiceController):
    """`kube-system/kube-dns` (Namespace, Service, Endpoints), fronting the masters' DNS
    servers (`orchestrator.masterservice`)."""

    def __init__(self, objects: ObjectStore, informers: Informers, *, writer: Writer,
                 service_ip: str = DEFAULT_SERVICE_IP) -> None:
        super().__init__(objects, informers, kube_dns(service_ip), writer=writer)
