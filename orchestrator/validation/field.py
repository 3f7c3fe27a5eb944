"""Field paths and field errors, formatted like Kubernetes' `field.Error`.

`Path("spec").child("containers").index(0).child("ports").index(0).child("containerPort")`
prints `spec.containers[0].ports[0].containerPort`; map entries print as `requests[cpu]`.
An error prints `<path>: <type>: <value>: <detail>`, e.g.

    spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive

which is the text kube-apiserver returns, so users can search for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

ErrorType = Literal[
    "Required value", "Invalid value", "Unsupported value", "Duplicate value", "Forbidden",
    "Too long", "Not found",
]
_WITH_VALUE = ("Invalid value", "Unsupported value", "Duplicate value", "Not found")


@dataclass(frozen=True)
class Path:
    text: str = ""

    def child(self, name: str) -> Path:
        return Path(f"{self.text}.{name}" if self.text else name)

    def index(self, i: int) -> Path:
        return Path(f"{self.text}[{i}]")

    def key(self, k: str) -> Path:
        return Path(f"{self.text}[{k}]")

    def __str__(self) -> str:
        return self.text or "<root>"


ROOT = Path()


def _value_text(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if v is None:
        return "null"
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class FieldError:
    path: str
    type: ErrorType
    detail: str = ""
    value: Any = None

    def __str__(self) -> str:
        body: str = self.type
        if self.type in _WITH_VALUE:
            body += ": " + _value_text(self.value)
        if self.detail:
            body += ": " + self.detail
        return f"{self.path}: {body}"


def required(path: Path, detail: str = "") -> FieldError:
    return FieldError(str(path), "Required value", detail)


def invalid(path: Path, value: Any, detail: str) -> FieldError:
    return FieldError(str(path), "Invalid value", detail, value)


def not_supported(path: Path, value: Any, supported: tuple[str, ...]) -> FieldError:
    valid = ", ".join(json.dumps(s) for s in sorted(supported))
    return FieldError(str(path), "Unsupported value", f"supported values: {valid}", value)


def duplicate(path: Path, value: Any) -> FieldError:
    return FieldError(str(path), "Duplicate value", "", value)


def forbidden(path: Path, detail: str) -> FieldError:
    return FieldError(str(path), "Forbidden", detail)


def too_long(path: Path, limit: int) -> FieldError:
    return FieldError(str(path), "Too long", f"must have at most {limit} bytes")
