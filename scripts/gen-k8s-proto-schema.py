#!/usr/bin/env python3
"""Write orchestrator/apiserver/k8s-proto-schema.json: the protobuf field layout of the
Kubernetes types this API serves, read from the Go types of k8s.io/api and k8s.io/apimachinery
(their `protobuf:"..."` struct tags give each field's number, the Go type says whether it is a
pointer, the `json:"..."` tag its JSON name or inline).

    scripts/gen-k8s-proto-schema.py API_GIT_DIR APIMACHINERY_GIT_DIR [TAG]

Each GIT_DIR is a clone (bare is fine) of github.com/kubernetes/api or /apimachinery; TAG
(default v0.33.9, kubectl 1.33's) is read in both. Run it again only to follow a newer
Kubernetes: field numbers never change, new fields are added.

The output maps "<package>.<Type>" to {field number: [JSON name, type, flags]} where type is
"string" | "int" | "uint" | "bool" | "float" | "bytes" | a special ("Time", "MicroTime",
"Quantity", "IntOrString", "RawExtension", "FieldsV1"; a metav1.Duration is an unknown Go type
here: the reader has none) | "map:<value type>"
("map:list:<type>": values that are a named slice, a message {1: repeated <type>}) |
another "<package>.<Type>", and flags is a string of: p (a pointer: present means set, even
when zero), r (repeated), i (inline in JSON: its fields are the parent's).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

SOURCES = {  # package -> (repository, path of the Go types)
    "core/v1": ("api", "core/v1/types.go"),
    "policy/v1": ("api", "policy/v1/types.go"),
    "autoscaling/v1": ("api", "autoscaling/v1/types.go"),
    "authorization/v1": ("api", "authorization/v1/types.go"),
    "authentication/v1": ("api", "authentication/v1/types.go"),
    "coordination/v1": ("api", "coordination/v1/types.go"),
    "rbac/v1": ("api", "rbac/v1/types.go"),
    "meta/v1": ("apimachinery", "pkg/apis/meta/v1/types.go"),
}
IMPORTS = {"metav1": "meta/v1", "corev1": "core/v1", "v1": "core/v1"}
SPECIALS = {
    "metav1.Time": "Time", "Time": "Time", "metav1.MicroTime": "MicroTime", "MicroTime": "MicroTime",
    "resource.Quantity": "Quantity",
    "intstr.IntOrString": "IntOrString", "runtime.RawExtension": "RawExtension", "FieldsV1": "FieldsV1",
    "types.UID": "string", "types.NodeName": "string",
}
SCALARS = {"string": "string", "bool": "bool", "int": "int", "int32": "int", "int64": "int", "uint32": "uint",
           "uint64": "uint", "float32": "float", "float64": "float", "[]byte": "bytes"}
STRUCT = re.compile(r"^type (\w+) struct \{\n(.*?)^\}", re.DOTALL | re.MULTILINE)
NAMED = re.compile(r"^type (\w+) ([\w.\[\]*]+)\s*$", re.MULTILINE)
FIELD = re.compile(r"^\t(?:(\w+)\s+)?([\w.\[\]*]+)\s+`([^`]*)`", re.MULTILINE)
TAG = re.compile(r'(\w+):"([^"]*)"')


def read(repo_dir: str, tag: str, path: str) -> str:
    return subprocess.run(["git", "--git-dir", repo_dir, "show", f"{tag}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    dirs = {"api": sys.argv[1], "apimachinery": sys.argv[2]}
    tag = sys.argv[3] if len(sys.argv) > 3 else "v0.33.9"
    named: dict[str, str] = {}  # "<pkg>.<Name>" -> underlying Go type text
    structs: dict[str, list[tuple[str, str, str]]] = {}
    for pkg, (repo, path) in SOURCES.items():
        text = read(dirs[repo], tag, path)
        for m in NAMED.finditer(text):
            named[f"{pkg}.{m.group(1)}"] = m.group(2)
        for m in STRUCT.finditer(text):
            structs[f"{pkg}.{m.group(1)}"] = [(f.group(1) or "", f.group(2), f.group(3))
                                              for f in FIELD.finditer(m.group(2))]

    def resolve(pkg: str, go: str) -> tuple[str, str]:
        """(type, flags) of a Go type used in package `pkg` (pointer and slice stripped by the caller)."""
        if go in SPECIALS:
            return SPECIALS[go], ""
        if go in SCALARS:
            return SCALARS[go], ""
        if go.startswith("map["):
            value = go[go.index("]") + 1:]
            vtype, vflags = resolve(pkg, value.lstrip("*"))
            if vflags == "r":  # a named slice as a map value is a message {1: repeated} on the wire
                return f"map:list:{vtype}", ""
            if vflags:
                raise SystemExit(f"map of {value} not handled")
            return f"map:{vtype}", ""
        if go.startswith("[]"):
            t, flags = resolve(pkg, go[2:].lstrip("*"))
            return t, flags + "r"
        qual = f"{IMPORTS[go.split('.')[0]]}.{go.split('.')[1]}" if "." in go else f"{pkg}.{go}"
        if qual in structs:
            return qual, ""
        if qual in named:
            return resolve(qual.rsplit(".", 1)[0], named[qual])
        raise SystemExit(f"{pkg}: unknown Go type {go}")

    out: dict[str, dict[str, list[str]]] = {}
    for name, fields in structs.items():
        pkg = name.rsplit(".", 1)[0]
        entry: dict[str, list[str]] = {}
        for _field, go, tags in fields:
            t = dict(TAG.findall(tags))
            if "protobuf" not in t:
                continue  # TypeMeta and friends: not on the wire
            number = t["protobuf"].split(",")[1]
            json_name = t.get("json", "").split(",")[0]
            flags = "i" if not json_name else ""
            if go.startswith("*"):
                flags += "p"
            typ, more = resolve(pkg, go.lstrip("*"))
            entry[number] = [json_name, typ, flags + more]
        if entry:
            out[name] = entry
    target = Path(__file__).resolve().parents[1] / "orchestrator" / "apiserver" / "k8s-proto-schema.json"
    target.write_text(json.dumps({"source": f"k8s.io/api and k8s.io/apimachinery {tag}", "types": out},
                                 sort_keys=True, separators=(",", ":")) + "\n")
    print(f"{target}: {len(out)} types")


if __name__ == "__main__":
    main()
