"""Python mirror of the map layouts in lb_maps.h (the one place they are mirrored).

Addresses and ports are stored in network byte order: `ip_u32` / `port_u16` produce the
native integers whose memory layout is the network-order bytes, as the kernel hands them to
the programs.
"""

from __future__ import annotations

import ctypes
import socket
from ipaddress import IPv4Address

IPPROTO = {"TCP": socket.IPPROTO_TCP, "UDP": socket.IPPROTO_UDP}
PROTO_NAME = {v: k for k, v in IPPROTO.items()}
LB_F_AFFINITY = 1
SERVICES_MAX = 524288
BACKENDS_MAX = 262144
MAP_NAMES = ("lb_services", "lb_backends", "lb_affinity", "lb_revnat", "np_ct_fwd", "np_ct_rev", "np_snat_rev")


class SvcKey(ctypes.Structure):
    _fields_ = [
        ("vip", ctypes.c_uint32),
        ("port", ctypes.c_uint16),
        ("proto", ctypes.c_uint8),
        ("pad", ctypes.c_uint8),
        ("slot", ctypes.c_uint16),
        ("pad2", ctypes.c_uint16),
    ]


class SvcVal(ctypes.Structure):
    _fields_ = [
        ("backend_id", ctypes.c_uint32),
        ("count", ctypes.c_uint16),
        ("flags", ctypes.c_uint8),
        ("pad", ctypes.c_uint8),
        ("affinity_timeout", ctypes.c_uint32),
        ("svc_id", ctypes.c_uint32),
    ]


class BackendVal(ctypes.Structure):
    _fields_ = [
        ("ip", ctypes.c_uint32),
        ("port", ctypes.c_uint16),
        ("proto", ctypes.c_uint8),
        ("pad", ctypes.c_uint8),
        ("svc_id", ctypes.c_uint32),
    ]


class CtKey(ctypes.Structure):
    _fields_ = [
        ("addr1", ctypes.c_uint32),
        ("addr2", ctypes.c_uint32),
        ("port1", ctypes.c_uint16),
        ("port2", ctypes.c_uint16),
        ("proto", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 3),
    ]


class CtVal(ctypes.Structure):
    _fields_ = [
        ("ip", ctypes.c_uint32),
        ("port", ctypes.c_uint16),
        ("snat_port", ctypes.c_uint16),
        ("backend_id", ctypes.c_uint32),
        ("pad2", ctypes.c_uint32),
    ]


class SnatVal(ctypes.Structure):
    _fields_ = [
        ("client_ip", ctypes.c_uint32),
        ("client_port", ctypes.c_uint16),
        ("node_port", ctypes.c_uint16),
        ("last_seen", ctypes.c_uint32),
        ("closing", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 3),
    ]


SIZES = {"lb_services": (ctypes.sizeof(SvcKey), ctypes.sizeof(SvcVal)), "lb_backends": (4, ctypes.sizeof(BackendVal))}
assert ctypes.sizeof(SvcKey) == 12 and ctypes.sizeof(SvcVal) == 16 and ctypes.sizeof(BackendVal) == 12
assert ctypes.sizeof(CtKey) == 16 and ctypes.sizeof(CtVal) == 16 and ctypes.sizeof(SnatVal) == 16


def ip_u32(ip: IPv4Address) -> int:
    return int.from_bytes(ip.packed, "little")


def u32_ip(v: int) -> IPv4Address:
    return IPv4Address(int(v).to_bytes(4, "little"))


def port_u16(port: int) -> int:
    return socket.htons(port)


def u16_port(v: int) -> int:
    return socket.ntohs(v)
