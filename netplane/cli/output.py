"""Rendering of command results as table, JSON or YAML (`-o table|json|yaml`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click
import yaml

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("table", "json", "yaml")


def output_option(func: F) -> F:
    """Add `-o/--output table|json|yaml` to a command that lists things."""
    return click.option(
        "-o",
        "--output",
        "output",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format.",
    )(func)


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Plain aligned columns, headers upper-cased, like kubectl."""
    cells = [[c.upper() for c in columns]]
    for row in rows:
        cells.append(["" if row.get(c) is None else _cell(row.get(c)) for c in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def emit(
    data: Any,
    fmt: str,
    *,
    rows: Sequence[Mapping[str, Any]] | None = None,
    columns: Sequence[str] | None = None,
    text: str | None = None,
) -> None:
    """Print `data` as JSON/YAML, or as a table of `rows`/`columns` (or free `text`)."""
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
    elif fmt == "yaml":
        click.echo(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False).rstrip())
    elif text is not None:
        click.echo(text)
    else:
        click.echo(render_table(rows or [], columns or []))
