"""Typed etcd key layout under one configurable prefix (default `/netplane`).

Every key netplane writes is built here, so the layout is visible in one place:

    <prefix>/network/config                       overlay config (flannel's field names)
    <prefix>/network/subnets/<a.b.c.d>-<len>      one host's subnet lease
    <prefix>/services/specs/<name>                Service
    <prefix>/services/endpoints/<name>            Endpoints of that Service
    <prefix>/nodes/<name>                         node registration / heartbeat
    <prefix>/pods/<name>                          Pod
    <prefix>/controllers/<name>                   ReplicationController
    <prefix>/pki/client-ca/<sha256>               a CA whose client certificates node APIs accept
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Network

from netplane.errors import ConfigError

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_PREFIX = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")


def check_name(kind: str, name: str) -> str:
    """Object names are DNS-1123 labels, like Kubernetes'."""
    if not _NAME.match(name):
        raise ConfigError(
            f"invalid {kind} name {name!r}: use lower-case letters, digits and '-', "
            "at most 63 characters, starting and ending with a letter or digit"
        )
    return name


def subnet_to_key_part(net: IPv4Network) -> str:
    """10.244.3.0/24 -> '10.244.3.0-24' (flannel's key form)."""
    return f"{net.network_address}-{net.prefixlen}"


def key_part_to_subnet(part: str) -> IPv4Network:
    """'10.244.3.0-24' -> 10.244.3.0/24; ValueError if it is not that shape."""
    addr, sep, plen = part.rpartition("-")
    if not sep or not plen.isdigit():
        raise ValueError(f"not a subnet key: {part!r}")
    return IPv4Network(f"{addr}/{plen}", strict=True)


@dataclass(frozen=True)
class Keys:
    prefix: str = "/netplane"

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix):
            raise ConfigError(
                f"invalid key prefix {self.prefix!r}: must look like /netplane or /a/b (no trailing /)"
            )

    # network
    @property
    def network_config(self) -> str:
        return f"{self.prefix}/network/config"

    @property
    def subnets(self) -> str:
        return f"{self.prefix}/network/subnets/"

    def subnet(self, net: IPv4Network) -> str:
        return self.subnets + subnet_to_key_part(net)

    def subnet_of(self, key: str) -> IPv4Network:
        if not key.startswith(self.subnets):
            raise ValueError(f"{key!r} is not under {self.subnets}")
        return key_part_to_subnet(key[len(self.subnets) :])

    # services
    @property
    def services(self) -> str:
        return f"{self.prefix}/services/specs/"

    def service(self, name: str) -> str:
        return self.services + check_name("service", name)

    @property
    def endpoints(self) -> str:
        return f"{self.prefix}/services/endpoints/"

    def endpoints_of(self, name: str) -> str:
        return self.endpoints + check_name("service", name)

    # orchestrator
    @property
    def nodes(self) -> str:
        return f"{self.prefix}/nodes/"

    def node(self, name: str) -> str:
        return self.nodes + check_name("node", name)

    @property
    def pods(self) -> str:
        return f"{self.prefix}/pods/"

    def pod(self, name: str) -> str:
        return self.pods + check_name("pod", name)

    @property
    def controllers(self) -> str:
        return f"{self.prefix}/controllers/"

    def controller(self, name: str) -> str:
        return self.controllers + check_name("replication controller", name)

    @property
    def client_cas(self) -> str:
        return f"{self.prefix}/pki/client-ca/"

    def client_ca(self, fingerprint: str) -> str:
        return self.client_cas + fingerprint

    @property
    def serving_cas(self) -> str:
        """The CAs that sign the API servers' serving certificates (kube-root-ca.crt's bundle)."""
        return f"{self.prefix}/pki/serving-ca/"

    def serving_ca(self, fingerprint: str) -> str:
        return self.serving_cas + fingerprint

    @property
    def sa_keys(self) -> str:
        """The public keys service account tokens are verified with, by key id
        (`orchestrator.apiserver.satokens`): the API servers' and the node agents'."""
        return f"{self.prefix}/pki/service-account-keys/"

    def sa_key(self, kid: str) -> str:
        return self.sa_keys + kid

    @staticmethod
    def name_of(key: str, under: str) -> str:
        """The last path element of `key` below the collection prefix `under`."""
        if not key.startswith(under):
            raise ValueError(f"{key!r} is not under {under}")
        return key[len(under) :]
