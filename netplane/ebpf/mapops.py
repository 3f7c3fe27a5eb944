"""Reading and writing the service/backend maps by fd, in batches (adapter).

Batch syscalls (BPF_MAP_*_BATCH, via libbcc's exported wrappers) fill 10,000 services × 5
backends in tens of milliseconds where one syscall per element would take a second.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from typing import Any

from netplane.ebpf import maps as M
from netplane.ebpf.plan import BackendT, Frontend, MapState, Plan, SlotKey
from netplane.errors import KernelError


def _lib() -> Any:
    from bcc.libbcc import lib

    return lib


def _svc_key(f: Frontend | SlotKey, slot: int = 0) -> M.SvcKey:
    return M.SvcKey(vip=f[0], port=f[1], proto=f[2], slot=slot)


class MapOps:
    def __init__(self, svc_fd: int, be_fd: int) -> None:
        self.svc_fd = svc_fd
        self.be_fd = be_fd

    # ------------------------------------------------------------------ batches
    def _update(self, fd: int, keys: ctypes.Array, vals: ctypes.Array) -> None:
        n = len(keys)
        if n == 0:
            return
        cnt = ctypes.c_uint32(n)
        if _lib().bpf_update_batch(fd, ctypes.byref(keys), ctypes.byref(vals), ctypes.byref(cnt)) != 0:
            err = ctypes.get_errno()
            # fall back to single updates (older kernels, or a partial batch)
            for i in range(cnt.value, n):
                ks, vs = ctypes.sizeof(keys._type_), ctypes.sizeof(vals._type_)
                if _lib().bpf_update_elem(fd, ctypes.byref(keys, i * ks), ctypes.byref(vals, i * vs), 0) != 0:
                    e2 = ctypes.get_errno()
                    raise KernelError(f"bpf map update: {os.strerror(e2 or err)}", errno=e2 or err)

    def _delete(self, fd: int, keys: ctypes.Array) -> None:
        size = ctypes.sizeof(keys._type_)
        for i in range(len(keys)):
            _lib().bpf_delete_elem(fd, ctypes.byref(keys, i * size))  # ENOENT is fine: already gone

    def _svc_keys(self, items: Sequence[Frontend | SlotKey], slot0: bool) -> ctypes.Array:
        arr = (M.SvcKey * len(items))()
        for i, f in enumerate(items):
            k = arr[i]
            k.vip, k.port, k.proto = f[0], f[1], f[2]
            k.slot = 0 if slot0 else f[3]  # type: ignore[misc]
        return arr

    def apply(self, plan: Plan) -> None:
        self._delete(self.svc_fd, self._svc_keys(plan.del_heads, True))
        if plan.put_backends:
            n = len(plan.put_backends)
            ks = (ctypes.c_uint32 * n)()
            vs = (M.BackendVal * n)()
            for i, (bid, (ip, port, proto, sid)) in enumerate(plan.put_backends):
                ks[i] = bid
                v = vs[i]
                v.ip, v.port, v.proto, v.svc_id = ip, port, proto, sid
            self._update(self.be_fd, ks, vs)
        if plan.put_slots:
            ks2 = self._svc_keys([sk for sk, _ in plan.put_slots], False)
            vs2 = (M.SvcVal * len(plan.put_slots))()
            for i, (_, bid) in enumerate(plan.put_slots):
                vs2[i].backend_id = bid
            self._update(self.svc_fd, ks2, vs2)
        if plan.put_heads:
            ks3 = self._svc_keys([f for f, _ in plan.put_heads], True)
            vs3 = (M.SvcVal * len(plan.put_heads))()
            for i, (_, (sid, count, flags, timeout)) in enumerate(plan.put_heads):
                h = vs3[i]
                h.svc_id, h.count, h.flags, h.affinity_timeout = sid, count, flags, timeout
            self._update(self.svc_fd, ks3, vs3)
        self._delete(self.svc_fd, self._svc_keys(plan.del_slots, False))
        if plan.del_backends:
            kb = (ctypes.c_uint32 * len(plan.del_backends))(*plan.del_backends)
            self._delete(self.be_fd, kb)

    # ------------------------------------------------------------------ read back
    def _read_all(self, fd: int, ktype: Any, vtype: Any, chunk: int = 4096) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        lib = _lib()
        in_b = ctypes.c_uint32(0)
        out_b = ctypes.c_uint32(0)
        first = True
        while True:
            ks = (ktype * chunk)()
            vs = (vtype * chunk)()
            cnt = ctypes.c_uint32(chunk)
            r = lib.bpf_lookup_batch(fd, None if first else ctypes.byref(in_b), ctypes.byref(out_b),
                                     ctypes.byref(ks), ctypes.byref(vs), ctypes.byref(cnt))
            err = ctypes.get_errno() if r != 0 else 0
            out.extend((ks[i], vs[i]) for i in range(cnt.value))
            if r != 0:
                if err == 2:  # ENOENT: walked everything
                    return out
                raise KernelError(f"bpf map batch lookup: {os.strerror(err)}", errno=err)
            in_b.value = out_b.value
            first = False

    def read(self) -> MapState:
        st = MapState()
        for k, v in self._read_all(self.svc_fd, M.SvcKey, M.SvcVal):
            f = (k.vip, k.port, k.proto)
            if k.slot == 0:
                st.heads[f] = (v.svc_id, v.count, v.flags, v.affinity_timeout)
            else:
                st.slots[(*f, k.slot)] = v.backend_id
        for k, v in self._read_all(self.be_fd, ctypes.c_uint32, M.BackendVal):
            bt: BackendT = (v.ip, v.port, v.proto, v.svc_id)
            st.backends[k if isinstance(k, int) else int(k.value)] = bt
        return st

