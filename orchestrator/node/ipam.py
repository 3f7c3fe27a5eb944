"""Host-local address allocation for pods, like CNI's host-local IPAM plugin.

Each allocated address is one file, `<state_dir>/<ip>`, holding its owner (a pod's id). The file
is created with O_CREAT|O_EXCL, its content and the directory entry are fsync'ed before the
address is returned, and it is removed on release; so the directory *is* the allocation table,
and an address handed out is never handed out again until it is released, also across agent
restarts, a SIGKILL mid-way or a power cut. Every operation holds an exclusive `flock` on
`<state_dir>/lock` (released by the kernel when a holder dies), so two processes or threads
never race; the table is re-read under the lock each time, nothing is cached.

A record left empty (its creator died between create and write, before it returned) was never
handed out, and the next allocation takes it back. Like host-local, a pointer to the last
reserved address (`last_reserved_ip`) makes allocation round-robin: a just-released address is
the last to be reused, so stale conntrack entries, ARP caches and endpoints have time to age out.

Addresses come from `.2` upward: the network address (also the VXLAN device's `.0/32`), the
gateway `.1` (the pod bridge's address, netplane.vxlan.desired.gateway) and the broadcast address
are never given out, nor any of `reserved`. The subnet is remembered in `<state_dir>/subnet`; a
host that comes back with a different lease gets `subnet_change` set (and a warning logged) and
its old records are `stale()`: they stay reserved until released, and an owner allocating again
is moved into the new subnet.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from netplane.errors import NetplaneError
from netplane.vxlan.desired import gateway as bridge_address

log = logging.getLogger(__name__)

LOCK_FILE = "lock"
LAST_RESERVED_FILE = "last_reserved_ip"
SUBNET_FILE = "subnet"
MAX_OWNER_BYTES = 255  # also fits a link's ifalias (IFALIASZ 256 with its NUL)


class IPAMError(NetplaneError):
    """The pod address table could not be read or written, or a request was invalid."""


class SubnetFullError(IPAMError):
    """Every address of the subnet is allocated or reserved."""


@dataclass(frozen=True)
class SubnetChange:
    """The state dir was last used with another subnet (the host's lease changed)."""

    previous: IPv4Network
    current: IPv4Network
    stale: dict[IPv4Address, str]  # records outside `current` when it was noticed


class HostLocalIPAM:
    def __init__(self, subnet: IPv4Network, state_dir: Path, *, reserved: Iterable[IPv4Address] = ()) -> None:
        if subnet.prefixlen > 30:
            raise IPAMError(f"pod subnet {subnet} is too small (at most /30: network, gateway and broadcast are reserved)")
        self.subnet = subnet
        self.state_dir = Path(state_dir)
        self.gateway = bridge_address(subnet).ip
        self.reserved = frozenset(
            {subnet.network_address, self.gateway, subnet.broadcast_address} | {IPv4Address(a) for a in reserved if IPv4Address(a) in subnet}
        )
        self.subnet_change: SubnetChange | None = None
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise IPAMError(f"pod address state dir {self.state_dir}: {e.strerror or e}") from e
        with self._locked():
            self._check_subnet()

    # ---------------------------------------------------------------- API
    def allocate(self, owner: str) -> IPv4Address:
        """The owner's address: the one it already holds, else the next free one (durable)."""
        _check_owner(owner)
        with self._locked():
            records = self._records(reclaim_torn=True)
            held = [ip for ip, o in records.items() if o == owner]
            current = [ip for ip in held if ip in self.subnet]
            if current:
                return min(current)
            ip = self._reserve(owner, records)
            for old in held:  # only stale ones (another subnet): the owner moves to the new one
                log.info("%s moved from %s (old subnet) to %s", owner, old, ip)
                self._remove(old)
            return ip

    def release(self, owner: str) -> bool:
        """Give back every address of `owner`; False when it held none."""
        _check_owner(owner)
        with self._locked():
            mine = [ip for ip, o in self._records().items() if o == owner]
            for ip in mine:
                self._remove(ip)
            return bool(mine)

    def owner_of(self, ip: IPv4Address | str) -> str | None:
        with self._locked():
            return self._read(self.state_dir / str(IPv4Address(ip))) or None

    def ip_of(self, owner: str) -> IPv4Address | None:
        """The owner's address in the current subnet, if it holds one."""
        mine = [ip for ip, o in self.allocations().items() if o == owner and ip in self.subnet]
        return min(mine) if mine else None

    def allocations(self) -> dict[IPv4Address, str]:
        """Every record, {ip: owner}, stale ones (outside the current subnet) included."""
        with self._locked():
            return self._records()

    def stale(self) -> dict[IPv4Address, str]:
        """Records left from an earlier subnet of this host."""
        return {ip: o for ip, o in self.allocations().items() if ip not in self.subnet}

    # ---------------------------------------------------------------- internals
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A fresh open file description per operation: flock then excludes other threads of
        # this process as well as other processes.
        path = self.state_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise IPAMError(f"open {path}: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _check_subnet(self) -> None:
        path = self.state_dir / SUBNET_FILE
        try:
            previous: IPv4Network | None = IPv4Network(path.read_text().strip())
        except FileNotFoundError:
            previous = None
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable %s: %s", path, e)
            previous = None
        if previous == self.subnet:
            return
        stale = {ip: o for ip, o in self._records().items() if ip not in self.subnet}
        if previous is not None:
            self.subnet_change = SubnetChange(previous=previous, current=self.subnet, stale=stale)
            log.warning(
                "pod subnet changed from %s to %s; %d address(es) of the old subnet stay reserved until released: %s",
                previous, self.subnet, len(stale), ", ".join(f"{ip} ({o})" for ip, o in sorted(stale.items())) or "none",
            )
        _write_atomic(path, f"{self.subnet}\n", durable=True)

    def _records(self, *, reclaim_torn: bool = False) -> dict[IPv4Address, str]:
        out: dict[IPv4Address, str] = {}
        try:
            names = os.listdir(self.state_dir)
        except OSError as e:
            raise IPAMError(f"list {self.state_dir}: {e.strerror or e}") from e
        for name in names:
            try:
                ip = IPv4Address(name)
            except ValueError:
                continue  # lock, pointer, subnet, temporary files
            owner = self._read(self.state_dir / name)
            if owner is None:
                continue  # released meanwhile (cannot happen under the lock, but harmless)
            if owner == "":
                # Created but never written: its creator died inside allocate() before the
                # fsync'ed write, so the address was never handed out. We hold the lock, so no
                # live allocation is in that window.
                if reclaim_torn:
                    log.warning("reclaiming %s: its allocation was interrupted before it completed", ip)
                    self._remove(ip)
                continue
            out[ip] = owner
        return out

    def _read(self, path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8").rstrip("\n")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise IPAMError(f"read pod address record {path}: {e}") from e

    def _candidates(self) -> Iterator[IPv4Address]:
        """Every allocatable address once, starting after the last reserved one (round robin)."""
        first, last = int(self.subnet.network_address) + 1, int(self.subnet.broadcast_address) - 1
        start = first
        pointer = self._read_pointer()
        if pointer is not None and first <= int(pointer) <= last:
            start = int(pointer) + 1 if int(pointer) < last else first
        n = last - first + 1
        for i in range(n):
            ip = IPv4Address(first + (start - first + i) % n)
            if ip not in self.reserved:
                yield ip

    def _reserve(self, owner: str, records: dict[IPv4Address, str]) -> IPv4Address:
        for ip in self._candidates():
            if ip in records:
                continue
            if self._create(ip, owner):
                _write_atomic(self.state_dir / LAST_RESERVED_FILE, f"{ip}\n", durable=False)
                return ip
        used = sum(1 for ip in records if ip in self.subnet)
        free_total = self.subnet.num_addresses - len(self.reserved)
        raise SubnetFullError(
            f"no free pod address in {self.subnet}: {used} of {free_total} allocated "
            f"({self.state_dir}); delete pods or give the host a larger subnet"
        )

    def _create(self, ip: IPv4Address, owner: str) -> bool:
        path = self.state_dir / str(ip)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return False  # a record appeared since the listing (not under our lock: be safe)
        except OSError as e:
            raise IPAMError(f"create pod address record {path}: {e.strerror or e}") from e
        try:
            try:
                os.write(fd, f"{owner}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_dir(self.state_dir)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise IPAMError(f"write pod address record {path}: {e.strerror or e}") from e
        return True

    def _remove(self, ip: IPv4Address) -> None:
        path = self.state_dir / str(ip)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as e:
            raise IPAMError(f"remove pod address record {path}: {e.strerror or e}") from e
        _fsync_dir(self.state_dir)

    def _read_pointer(self) -> IPv4Address | None:
        try:
            return IPv4Address((self.state_dir / LAST_RESERVED_FILE).read_text().strip())
        except (OSError, ValueError):
            return None  # only a hint


def _check_owner(owner: str) -> None:
    if not owner or len(owner.encode()) > MAX_OWNER_BYTES or any(c in owner for c in "\n\r\0"):
        raise IPAMError(f"invalid pod address owner {owner!r}: 1-{MAX_OWNER_BYTES} bytes, one line")


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise IPAMError(f"open {d}: {e.strerror or e}") from e
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:  # some filesystems cannot fsync a directory
            raise IPAMError(f"fsync {d}: {e.strerror or e}") from e
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str, *, durable: bool) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    except OSError as e:
        raise IPAMError(f"write {path}: {e.strerror or e}") from e
