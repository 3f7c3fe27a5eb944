"""The nftables data plane (adapter): one table of our own, `ip netplane`.

Every write is one nft script, i.e. one nf_tables transaction: it applies whole or not at all,
so a failed sync leaves the kernel as it was and raises a KernelError carrying nft's own error
line (the loop then retries with a full sync). Reads use nft's JSON (`nft -j list ...`).
Only the `ip netplane` table is ever written, flushed or deleted; other tables in the namespace
(iptables-nft's, anyone's) are not looked at.

Writes go through libnftables (Debian's python3-nftables, bridged into the virtualenv by
scripts/install.sh like bcc) on one worker thread that has entered the proxy's network
namespace (setns is per thread, and libnftables binds its netlink socket when the context is
made), so the socket lives as long as the backend. That matters: `nft -f -` costs a process
spawn (~3 ms) and, after any transaction that deleted something, its exit waits for an RCU
grace period when the netlink socket closes (~11 ms here); one endpoint change through
libnftables takes ~0.3 ms. Without python3-nftables the same scripts go through `nft -f -` in
the namespace (nsenter), and reads always do.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address
from typing import Any

from netplane import ipt
from netplane import netns as nsmod
from netplane.errors import KernelError
from netplane.proxy import nftables_render as R
from netplane.proxy.conntrack import flush_removed_udp
from netplane.proxy.desired import LbKey, ProxyState

log = logging.getLogger(__name__)

NFT_TIMEOUT = 120




def _libnftables() -> Any | None:
    """Debian's `nftables` module (python3-nftables), or None when it is not installed."""
    try:
        return importlib.import_module("nftables")
    except ImportError:
        return None


class Nft:
    """The one small adapter to nft: a script in (one transaction), a KernelError out if it
    fails; JSON reads."""

    def __init__(self, *, netns: str | None = None, use_lib: bool | None = None) -> None:
        self.netns = netns
        self._lib = _libnftables() if use_lib is not False else None
        if use_lib and self._lib is None:
            raise KernelError("python3-nftables is not importable (run scripts/install.sh)")
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self.via = "libnftables" if self._lib is not None else "nft -f -"

    def _ctx(self) -> Any:
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            assert self._lib is not None
            if self.netns is not None:
                nsmod.enter(self.netns)  # this worker thread only, for good
            ctx = self._lib.Nftables()
            self._local.ctx = ctx
        return ctx

    def _lib_apply(self, script: str) -> tuple[int, str]:
        rc, _out, err = self._ctx().cmd(script)
        return int(rc), str(err)

    def apply(self, script: str, *, missing_ok: bool = False) -> None:
        if self._lib is not None:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nft")
            rc, err = self._pool.submit(self._lib_apply, script).result()
        else:
            p = ipt.run(["nft", "-f", "-"], netns=self.netns, stdin=script, check=False, timeout=NFT_TIMEOUT)
            rc, err = p.returncode, p.stderr
        if rc != 0 and not (missing_ok and "No such file or directory" in err):
            raise KernelError(f"nft transaction on table {R.FAMILY} {R.TABLE} failed, nothing applied: {_first_error(err)}")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def list_json(self, *what: str) -> list[dict[str, Any]]:
        """`nft -j list WHAT...` -> its objects (metainfo dropped); [] when the table is absent."""
        p = ipt.run(["nft", "-j", "list", *what], netns=self.netns, check=False, timeout=NFT_TIMEOUT)
        if p.returncode != 0:
            if "No such file or directory" in p.stderr:
                return []
            raise KernelError(f"nft -j list {' '.join(what)}: {_first_error(p.stderr)}")
        try:
            doc = json.loads(p.stdout or "{}")
        except ValueError as e:
            raise KernelError(f"nft -j list {' '.join(what)}: not JSON ({e})") from e
        return [o for o in doc.get("nftables", []) if "metainfo" not in o]

    def list_text(self, *what: str) -> str:
        p = ipt.run(["nft", "list", *what], netns=self.netns, check=False, timeout=NFT_TIMEOUT)
        return p.stdout if p.returncode == 0 else ""

    def chains(self) -> set[str]:
        """Names of our table's chains (`nft -j list chains ip`: cheap; listing tables or sets
        would also fetch every set element, ~1 s at 10,000 services)."""
        return {o["chain"]["name"] for o in self.list_json("chains", R.FAMILY)
                if "chain" in o and o["chain"].get("table") == R.TABLE}


def _first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "Error:" in ln:
            where = lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith("^") else ""
            return f"{ln[ln.index('Error:'):]}" + (f" (in: {where[:160]})" if where else "")
    return lines[-1] if lines else "nft failed"


class NftablesBackend:
    name = "nftables"

    def __init__(self, *, netns: str | None = None) -> None:
        self.netns = netns
        self.nft = Nft(netns=netns)
        self.applied: ProxyState | None = None
        self.last_plan: R.Plan | None = None
        self._picks: frozenset[str] = frozenset()
        self._refs: dict[IPv4Address, int] = {}  # hairpin refcounts in the kernel, updated in place
        self._deferred_chains: frozenset[str] = frozenset()
        self._deferred_sets: frozenset[str] = frozenset()

    # ------------------------------------------------------------------ backend protocol
    def sync(self, state: ProxyState, *, full: bool, changed: set[LbKey] | None = None) -> None:
        if full or self.applied is None:
            chains = self.nft.chains()
            plan = R.render_full(state, existing_chains=chains, existing_sets=R.affinity_sets_of_chains(chains))
        else:
            plan = R.render_partial(state, self.applied, changed=changed, picks=self._picks, refs=self._refs,
                                    deferred_chains=self._deferred_chains, deferred_sets=self._deferred_sets)
        if plan.script:
            try:
                self.nft.apply(plan.script)
            except KernelError:
                self.applied = None  # whatever the kernel holds, the next sync is a full one
                raise
        old = self.applied
        self.applied = state
        self.last_plan = plan
        self._picks = plan.picks
        if isinstance(plan.refs, R.RefCounts) and plan.refs.base is self._refs:
            for ip, n in plan.refs.changes.items():  # only what this sync changed, not a copy of all
                if n > 0:
                    self._refs[ip] = n
                else:
                    self._refs.pop(ip, None)
        else:
            self._refs = dict(plan.refs)
        self._deferred_chains, self._deferred_sets = plan.deferred_chains, plan.deferred_sets
        if old is not None:
            flush_removed_udp(old, state, changed, netns=self.netns)

    def dump(self, service: str | None = None) -> str:
        return dump_table(self.nft, self.applied, service)

    def close(self) -> None:
        """Leave the table in place: the kernel keeps balancing while the agent is away."""
        self.nft.close()

    def cleanup(self) -> None:
        self.nft.apply(R.render_cleanup(), missing_ok=True)
        self.nft.close()
        self.applied = None
        self._picks, self._refs = frozenset(), {}
        self._deferred_chains = self._deferred_sets = frozenset()


# ------------------------------------------------------------------ dump
def _text(v: Any) -> str:
    """An element key or value of nft's JSON as nft's own text."""
    if isinstance(v, dict):
        if "concat" in v:
            return " . ".join(_text(x) for x in v["concat"])
        for verdict in ("goto", "jump"):
            if verdict in v:
                return f"{verdict} {v[verdict]['target']}"
        if "elem" in v:
            return _text(v["elem"]["val"])
        return next(iter(v)) if len(v) == 1 and not next(iter(v.values())) else json.dumps(v)
    return str(v)


def chain_blocks(text: str) -> dict[str, list[str]]:
    """`nft list table` text -> chain name -> its lines (declaration and rules)."""
    out: dict[str, list[str]] = {}
    cur: list[str] | None = None
    for ln in text.splitlines():
        m = re.match(r"^\tchain (\S+) \{$", ln)
        if m:
            cur = out.setdefault(m.group(1).strip('"'), [])
        elif cur is not None and ln == "\t}":
            cur = None
        elif cur is not None and ln.strip():
            cur.append(ln.strip())
    return out


def dump_table(nft: Nft, state: ProxyState | None, service: str | None) -> str:
    """The table's elements (labelled with their service when `state` knows it) and chains,
    those of `service` only when given (its elements, the pick chains they go to, its chains)."""
    objs = nft.list_json("table", R.FAMILY, R.TABLE)
    if not objs:
        return ""
    names: dict[str, str] = {}  # element key prefix -> service:port
    if state is not None:
        for k, e in state.entries.items():
            proto = e.protocol.lower()
            names[f"{e.vip} . {proto} . {e.port}"] = str(k)
            if e.node_port is not None:
                names[f"{proto} . {e.node_port}"] = str(k)

    def owner(key: str) -> str | None:
        parts = key.split(" . ")
        for n in (3, 2):
            if " . ".join(parts[:n]) in names:
                return names[" . ".join(parts[:n])]
        return None

    lines: list[str] = []
    wanted_chains: set[str] = set()
    for o in objs:
        m = o.get("map") or o.get("set")
        if not m or m["name"] not in R.MAP_NAMES:
            continue
        rows = []
        for el in m.get("elem", []):
            if isinstance(el, list):
                key, val = _text(el[0]), _text(el[1])
            else:
                key, val = _text(el), ""
            who = owner(key)
            if service is not None and (who is None or who.split(":")[0] != service):
                continue
            rows.append(f"  {key}{' : ' + val if val else ''}{'   # ' + who if who else ''}")
            if val.startswith(("goto ", "jump ")):
                wanted_chains.add(val.split()[1])
        if rows or service is None:
            lines.append(f"{'map' if 'map' in o else 'set'} {m['name']}")
            lines += rows
    blocks = chain_blocks(nft.list_text("table", R.FAMILY, R.TABLE))
    for nm in sorted(blocks):
        if service is None or nm in wanted_chains or (R.is_service_chain(nm) and f"-{service}/" in nm):
            lines.append(f"chain {nm}")
            lines += [f"  {t}" for t in blocks[nm]]
    return "\n".join(lines)
