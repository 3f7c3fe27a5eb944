"""Manifest reading like `kubectl apply -f`: documents, Lists, directories, stdin, errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from orchestrator.manifests import ManifestError, load, parse
from orchestrator.validation import admit

TWO_DOCS = """\
# guestbook backend
apiVersion: v1
kind: Service
metadata: {name: redis}
spec:
  ports: [{port: 6379}]
---
apiVersion: v1
kind: ReplicationController
metadata:
  name: redis
  annotations:
    built: 2024-01-02
    when: 2024-01-02T03:04:05Z
spec:
  template:
    metadata: {labels: {app: redis}}
    spec:
      containers: [{name: r, image: redis, ports: [{containerPort: 6379.0}]}]
---
"""


def test_documents_in_order_and_empty_ones_skipped() -> None:
    ms = parse(TWO_DOCS, "gb.yaml")
    assert [(m.index, m.object["kind"]) for m in ms] == [(1, "Service"), (2, "ReplicationController")]
    assert ms[1].where == "gb.yaml (document 2)"
    ann = ms[1].object["metadata"]["annotations"]
    assert ann == {"built": "2024-01-02", "when": "2024-01-02T03:04:05Z"}  # strings, like kubectl
    json.dumps([m.object for m in ms])  # plain JSON all the way down
    rc = admit(ms[1].object).object
    assert rc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 6379


def test_json_and_lists() -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}]}
    ms = parse(json.dumps(doc), "ns.json")
    assert [m.object["metadata"]["name"] for m in ms] == ["a", "b"] and {m.index for m in ms} == {1}
    pods = parse(json.dumps({"apiVersion": "v1", "kind": "PodList", "items": [{"kind": "Pod"}]}))
    assert [m.object["kind"] for m in pods] == ["Pod"]


def test_non_string_keys_become_strings() -> None:
    (m,) = parse("kind: ConfigMap\ndata:\n  2: two\n  true: yes\n  1.5: x\n")
    assert m.object["data"] == {"2": "two", "true": True, "1.5": "x"}


def test_parse_errors_name_file_and_line() -> None:
    with pytest.raises(ManifestError, match=r"^error parsing bad.yaml: error converting YAML to JSON: yaml: line 3: "):
        parse("kind: Pod\nmetadata:\n  name: a: b\nspec: {}\n", "bad.yaml")
    with pytest.raises(ManifestError, match=r"error validating x.yaml \(document 2\): expected an object, got list"):
        parse("kind: Pod\n---\n- a\n- b\n", "x.yaml")
    with pytest.raises(ManifestError, match=r"items\[1\] is not an object"):
        parse('{"kind": "List", "items": [{}, 3]}')


def test_files_directories_stdin(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(TWO_DOCS)
    (tmp_path / "a.json").write_text(json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}))
    (tmp_path / "notes.txt").write_text("not a manifest")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "c.yml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: deep}\n")
    ms = load([str(tmp_path)])
    assert [(Path(m.source).name, m.object["kind"]) for m in ms] == [
        ("a.json", "Namespace"), ("b.yaml", "Service"), ("b.yaml", "ReplicationController")]
    assert [m.object["metadata"]["name"] for m in load([str(tmp_path)], recursive=True)][-1] == "deep"
    piped = load(["-", str(tmp_path / "a.json")], stdin=io.StringIO("kind: Namespace\nmetadata: {name: s}\n"))
    assert [(m.source, m.object["metadata"]["name"]) for m in piped] == [("-", "s"), (str(tmp_path / "a.json"), "n")]


def test_missing_and_empty_paths(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match='the path ".*nope.yaml" does not exist'):
        load([str(tmp_path / "nope.yaml")])
    with pytest.raises(ManifestError, match="no .yaml, .yml or .json files"):
        load([str(tmp_path)])
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"\xff\xfe kind")
    with pytest.raises(ManifestError, match="error reading"):
        load([str(bad)])
