"""Reading manifests the way `kubectl apply -f` does: YAML or JSON, several documents per
file (`---`), `kind: List` flattened into its items, a directory's `.yaml`/`.yml`/`.json` files
in name order, `-` for standard input.

YAML goes to JSON like kubectl's sigs.k8s.io/yaml: timestamps stay strings, map keys become
strings, integral floats are left to validation (which turns `80.0` into 80). A document that
is not a mapping, or a file that does not parse, is a `ManifestError` naming the file and the
document or line, and nothing from that file is returned — so `apply` writes nothing.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from netplane.errors import UserError

EXTENSIONS = (".yaml", ".yml", ".json")


class ManifestError(UserError):
    """A manifest file that cannot be read or parsed."""


@dataclass(frozen=True)
class Manifest:
    source: str  # file name or "-"
    index: int  # document number in the file, from 1 (items of a List share it)
    object: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.source} (document {self.index})"


def _key(k: Any) -> str:
    if isinstance(k, bool):
        return "true" if k else "false"  # Go's spelling, as sigs.k8s.io/yaml writes it
    return k if isinstance(k, str) else str(k)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {_key(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dt.datetime):
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def parse(text: str, source: str = "-") -> list[Manifest]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ManifestError(f"error parsing {source}: error converting YAML to JSON: yaml:{where}: {problem}") from e
    out: list[Manifest] = []
    for i, doc in enumerate(docs, start=1):
        if doc is None:
            continue  # an empty document (`---` at the end, comments only)
        if not isinstance(doc, dict):
            raise ManifestError(f"error validating {source} (document {i}): expected an object, "
                                f"got {type(doc).__name__}")
        obj = _jsonable(doc)
        if obj.get("kind") == "List" or (isinstance(obj.get("kind"), str) and obj["kind"].endswith("List")
                                          and isinstance(obj.get("items"), list)):
            for j, item in enumerate(obj.get("items") or []):
                if not isinstance(item, dict):
                    raise ManifestError(f"error validating {source} (document {i}): items[{j}] is not an object")
                out.append(Manifest(source, i, item))
            continue
        out.append(Manifest(source, i, obj))
    return out


def files_in(path: Path, *, recursive: bool = False) -> list[Path]:
    """The manifest files of a directory, sorted by name (kubectl's order)."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix in EXTENSIONS)


def load(paths: Iterable[str], *, recursive: bool = False, stdin: IO[str] | None = None) -> list[Manifest]:
    """Every manifest in the given files, directories and `-`, in order."""
    out: list[Manifest] = []
    for name in paths:
        if name == "-":
            out.extend(parse((stdin or sys.stdin).read(), "-"))
            continue
        p = Path(name)
        if p.is_dir():
            found = files_in(p, recursive=recursive)
            if not found:
                raise ManifestError(f"error reading {name}: no .yaml, .yml or .json files in it")
            for f in found:
                out.extend(_read(f))
        else:
            out.extend(_read(p))
    return out


def _read(p: Path) -> list[Manifest]:
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f'the path "{p}" does not exist') from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"error reading {p}: {e}") from e
    return parse(text, str(p))
