"""netplane's own error hierarchy.

Library errors (grpc, pyroute2, OSError, subprocess) are chained as causes, so code above the
adapters only ever catches these. The CLI maps `UserError` subclasses to exit code 2 (the user
asked for something invalid) and every other `NetplaneError` to exit code 1 (a runtime failure),
printing one line and never a traceback.
"""

from __future__ import annotations


class NetplaneError(Exception):
    """Base of every error netplane raises on purpose."""


class UserError(NetplaneError):
    """The request itself is wrong: bad argument, bad file, unknown name. Exit code 2."""


class ConfigError(UserError):
    """Invalid configuration (flags, config JSON, topology)."""


class NotFoundError(UserError):
    """A named object (lab, host, service, lease) does not exist."""


class StoreError(NetplaneError):
    """etcd could not be reached or refused an operation."""

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        super().__init__(f"{message} (etcd {endpoint})" if endpoint else message)
        self.endpoint = endpoint


class DecodeError(NetplaneError):
    """A value read from etcd is not valid JSON of the expected shape (logged and skipped)."""


class LeaseError(NetplaneError):
    """A subnet lease could not be acquired, renewed or released."""


class KernelError(NetplaneError):
    """A netlink / iptables / BPF operation failed; carries the errno when there is one."""

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class LabError(NetplaneError):
    """The lab could not be built, started or torn down."""
