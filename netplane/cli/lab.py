"""`netplane lab`: emulate several hosts with network namespaces on one machine."""

from __future__ import annotations

import click


@click.group()
def lab() -> None:
    """Build, inspect and tear down a lab of emulated hosts."""
