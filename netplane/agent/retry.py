"""Start-up steps that may pass if tried again (etcd away, no free subnet yet, an iptables or
netlink call failing once) are retried with back-off and a logged reason, never given up on:
an agent that waits says why, one that cannot start fails on a `ConfigError` instead."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from netplane.errors import KernelError, NetplaneError, StoreError

log = logging.getLogger(__name__)


def retrying(
    what: str,
    stop: threading.Event,
    step: Callable[[], None],
    *,
    counted: Callable[[str], None] = lambda kind: None,
    logger: logging.Logger = log,
) -> bool:
    """Run `step` until it succeeds, backing off 0.5 s to 5 s; a `NetplaneError` is logged with
    its cause each time and counted by kind (`etcd`, `kernel`, `startup`); any other exception
    is raised. False if `stop` was set first."""
    delay = 0.5
    while not stop.is_set():
        try:
            step()
            return True
        except NetplaneError as e:
            kind = "etcd" if isinstance(e, StoreError) else "kernel" if isinstance(e, KernelError) else "startup"
            counted(kind)
            logger.warning("%s failed: %s; retrying in %.1fs", what, e, delay, exc_info=not isinstance(e, StoreError))
            stop.wait(delay)
            delay = min(delay * 2, 5.0)
    return False
