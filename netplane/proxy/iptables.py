"""The iptables data plane (adapter): applies rendered rules with `iptables-restore --noflush`.

The proxy's iptables binaries run through `netplane.ipt` (there is no library for the nft-compat
xtables matches we need). Every run happens in the proxy's network namespace (`netns=` for tests and
the lab; None = the calling process's namespace). We only ever write our own chains and the
jump rules listed in `iptables_render.JUMPS`; `cleanup` removes exactly those.
"""

from __future__ import annotations

import logging
import re
import subprocess

from netplane import ipt
from netplane.proxy import iptables_render as R
from netplane.proxy.conntrack import flush_removed_udp
from netplane.proxy.desired import LbKey, ProxyState

log = logging.getLogger(__name__)

# One iptables-restore run; batches keep each run well under this even at 10,000 services.
RESTORE_TIMEOUT = 300


class IptablesBackend:
    name = "iptables"

    def __init__(self, *, netns: str | None = None) -> None:
        self.netns = netns
        self.applied: ProxyState | None = None
        self.last_plan: R.Plan | None = None

    # ------------------------------------------------------------------ plumbing
    def _run(self, argv: list[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return ipt.run(argv, netns=self.netns, stdin=stdin, check=check, timeout=RESTORE_TIMEOUT)

    def chains(self, table: str) -> set[str]:
        out = self._run(["iptables-save", "-t", table]).stdout
        return {line[1:].split()[0] for line in out.splitlines() if line.startswith(":")}

    def _ensure_jumps(self) -> None:
        for table, chain, spec in R.JUMPS:
            ipt.ensure_jump(table, chain, list(spec), netns=self.netns)

    def _remove_jumps(self) -> None:
        for table, chain, spec in R.JUMPS:
            ipt.remove_jump(table, chain, list(spec), netns=self.netns)

    def restore(self, text: str) -> None:
        self._run(["iptables-restore", "-w", "--noflush"], stdin=text)

    # ------------------------------------------------------------------ backend protocol
    def sync(self, state: ProxyState, *, full: bool, changed: set[LbKey] | None = None) -> None:
        previous = None if full or self.applied is None else self.applied
        existing = self.chains("nat") if previous is None else set()
        plan = R.render(state, previous=previous, existing=existing, changed=changed)
        for text in plan.batches or (plan.text,):
            self.restore(text)
        if previous is None:
            self._ensure_jumps()
        old = self.applied
        self.applied = state
        self.last_plan = plan
        if old is not None:
            flush_removed_udp(old, state, changed, netns=self.netns)

    def dump(self, service: str | None = None) -> str:
        lines = []
        for table in ("nat", "filter"):
            out = self._run(["iptables-save", "-t", table]).stdout
            jumps = {f"-j {spec[-1]}" for _, _, spec in R.JUMPS}
            mine = [
                ln for ln in out.splitlines()
                if (ln.startswith(":") and R.is_ours(ln[1:].split()[0]))
                or (ln.startswith("-A ") and (R.is_ours(ln.split()[1]) or any(ln.endswith(j) for j in jumps)))
            ]
            if service is not None:
                pat = re.compile(r'--comment "?' + re.escape(service) + ":")
                rules = [ln for ln in mine if ln.startswith("-A ") and pat.search(ln)]
                chains = {ln.split()[1] for ln in rules}
                mine = [ln for ln in mine if ln.startswith(":") and ln[1:].split()[0] in chains] + rules
            if mine:
                lines += [f"*{table}", *mine]
        return "\n".join(lines)

    def close(self) -> None:
        """Leave rules in place: the kernel keeps balancing while the agent is away."""

    def cleanup(self) -> None:
        self._remove_jumps()
        for text in R.render_cleanup(self.chains("nat"), self.chains("filter")):
            self.restore(text)
        self.applied = None
