"""Acquire, renew and release a host's subnet lease in etcd.

Acquire follows `alloc.plan`: adopt a lease that carries our PublicIP (after a restart), else
create one for the remembered subnet, else a random free one. Creation is create-only (txn on
`version == 0`); losing the race to another host moves on to the next candidate instead of
failing. Renewal is an etcd lease keepalive only — the key is never re-put, so peers watching
the prefix see no event. Release revokes the etcd lease, which deletes the key.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from ipaddress import IPv4Network

from netplane.errors import DecodeError, LeaseError, StoreError
from netplane.store import EtcdStore, Keys
from netplane.subnet import alloc
from netplane.subnet.config import NetworkConfig
from netplane.subnet.lease import Lease, LeaseAttrs, decoder

log = logging.getLogger(__name__)

DEFAULT_TTL = 86400
MAX_ATTEMPTS = 20


class LeaseManager:
    def __init__(
        self, store: EtcdStore, keys: Keys, *, ttl: int = DEFAULT_TTL, rng: random.Random | None = None
    ) -> None:
        if ttl < 2:
            raise LeaseError(f"lease TTL must be at least 2 s, got {ttl}")
        self.store = store
        self.keys = keys
        self.ttl = ttl
        self.rng = rng or random.Random()

    def _snapshot(self) -> tuple[list[Lease], list[IPv4Network]]:
        items, _ = self.store.list(self.keys.subnets)
        decode = decoder(self.keys)
        leases: list[Lease] = []
        taken: list[IPv4Network] = []
        for kv in items:
            try:
                subnet = self.keys.subnet_of(kv.key)
            except ValueError:
                log.warning("ignoring key %s: not a subnet key", kv.key)
                continue
            taken.append(subnet)
            try:
                lease = decode(kv.key, kv.value)
            except DecodeError as e:
                log.warning("skipping malformed lease at %s: %s", kv.key, e)
                continue
            leases.append(replace(lease, lease_id=kv.lease, mod_revision=kv.mod_revision))
        return leases, taken

    def acquire(self, config: NetworkConfig, attrs: LeaseAttrs, *, remembered: IPv4Network | None = None) -> Lease:
        """Return our lease (adopted or new). LeaseError when the range is exhausted."""
        grant_id = 0
        try:
            for attempt in range(MAX_ATTEMPTS):
                leases, taken = self._snapshot()
                p = alloc.plan(config, leases, taken=taken, public_ip=attrs.public_ip, remembered=remembered, rng=self.rng)
                if p.reuse:
                    got = self._adopt(p.reuse[0], attrs)
                    if got is not None:
                        for stale in p.reuse[1:]:
                            log.info("deleting duplicate lease %s that also carries our PublicIP", stale.subnet)
                            self.store.delete(self.keys.subnet(stale.subnet), mod_revision=stale.mod_revision)
                        return got
                    continue
                if not p.candidates:
                    raise LeaseError(
                        f"no free subnet: all {config.subnet_count()} /{config.subnet_len} subnets between "
                        f"{config.subnet_min.network_address} and {config.subnet_max.network_address} are leased"
                    )
                if grant_id == 0:
                    grant_id = self.store.grant(self.ttl)
                for subnet in p.candidates[:8]:
                    if self.store.create(self.keys.subnet(subnet), attrs.encode(), lease=grant_id):
                        why = "remembered in the subnet file" if subnet == remembered else "free"
                        log.info("acquired subnet %s (%s) on etcd lease %x, TTL %ds", subnet, why, grant_id, self.ttl)
                        lease = Lease(subnet=subnet, attrs=attrs, lease_id=grant_id, ttl_left=self.ttl)
                        grant_id = 0  # now owned by the key
                        return lease
                    log.info("subnet %s was taken by another host meanwhile; trying another", subnet)
            raise LeaseError(f"could not acquire a subnet after {MAX_ATTEMPTS} attempts (heavy contention)")
        finally:
            if grant_id:
                try:
                    self.store.revoke(grant_id)
                except StoreError:
                    pass

    def _adopt(self, lease: Lease, attrs: LeaseAttrs) -> Lease | None:
        """Take over the lease that carries our PublicIP; None if it changed under us.

        Nothing is written when the value and the etcd lease's TTL are what we want (a plain
        restart: peers see no event). A changed VtepMAC, or a different TTL, rebinds the key
        with a compare-and-swap on its mod revision."""
        key = self.keys.subnet(lease.subnet)
        granted = self.store.keepalive(lease.lease_id) if lease.lease_id else 0
        if granted == self.ttl and lease.attrs == attrs:
            log.info("re-using our lease %s (etcd lease %x)", lease.subnet, lease.lease_id)
            return replace(lease, ttl_left=self.ttl)
        lease_id = lease.lease_id if granted == self.ttl else self.store.grant(self.ttl)
        if not self.store.cas(key, attrs.encode(), mod_revision=lease.mod_revision, lease=lease_id):
            if lease_id != lease.lease_id:
                self.store.revoke(lease_id)
            return None
        if lease_id != lease.lease_id and granted > 0:
            self.store.revoke(lease.lease_id)  # the key is no longer bound to it
        why = []
        if lease.attrs.vtep_mac != attrs.vtep_mac:
            why.append("VtepMAC changed")
        elif lease.attrs != attrs:
            why.append("attributes updated")
        if lease_id != lease.lease_id:
            why.append(f"bound to a new etcd lease with TTL {self.ttl}s")
        log.info("re-using our subnet %s (%s)", lease.subnet, ", ".join(why))
        return Lease(subnet=lease.subnet, attrs=attrs, lease_id=lease_id, ttl_left=self.ttl)

    def renew(self, lease: Lease) -> int:
        """Keep the etcd lease alive (the key is not touched). Returns the TTL, 0 if it is gone."""
        return self.store.keepalive(lease.lease_id)

    def still_ours(self, lease: Lease) -> bool:
        """True if the key exists, is bound to our etcd lease and carries our attributes."""
        kv = self.store.get(self.keys.subnet(lease.subnet))
        if kv is None or kv.lease != lease.lease_id:
            return False
        try:
            return decoder(self.keys)(kv.key, kv.value).attrs == lease.attrs
        except DecodeError:
            return False

    def release(self, lease: Lease) -> None:
        """Give the subnet back: revoking the etcd lease deletes the key."""
        self.store.revoke(lease.lease_id)
        log.info("released subnet %s", lease.subnet)
