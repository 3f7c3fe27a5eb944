"""Checks of a pod's volumes and its containers' volumeMounts (Kubernetes' validateVolumes and
ValidateVolumeMounts, with their wording), plus what netplane's kubelet can run: the volume
sources it has (`emptyDir`, `hostPath`, `configMap`, `secret`, `downwardAPI`, `projected`
of the last three; the others need what this
cluster does not have, such as PersistentVolumeClaims or cloud disks, and are refused here
rather than ignored on the node) and absolute mount paths without propagation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.objects import names
from orchestrator.objects.quantity import QuantityError, parse_quantity
from orchestrator.validation.field import (
    FieldError,
    Path,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
)

SOURCES = ("configMap", "downwardAPI", "emptyDir", "hostPath", "projected", "secret")
PROJECTED_SOURCES = ("configMap", "downwardAPI", "secret", "serviceAccountToken")
ALL_PROJECTED_SOURCES = ("clusterTrustBundle", "configMap", "downwardAPI", "podCertificate", "secret",
                         "serviceAccountToken")
MAX_MODE = 0o777
# every volume source of core/v1 Volume: more than one set is "more than 1 volume type"
ALL_SOURCES = (
    "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "configMap", "csi", "downwardAPI",
    "emptyDir", "ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk", "gitRepo", "glusterfs",
    "hostPath", "image", "iscsi", "nfs", "persistentVolumeClaim", "photonPersistentDisk", "portworxVolume",
    "projected", "quobyte", "rbd", "scaleIO", "secret", "storageos", "vsphereVolume",
)
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice",
                   "BlockDevice")
MEDIA = ("", "Memory")
PROPAGATION = ("None",)  # HostToContainer and Bidirectional need mount propagation the runtimes do not set up
RECURSIVE_READ_ONLY = ("Disabled",)


def _entries(v: Any) -> list[Mapping[str, Any]]:
    return [x if isinstance(x, Mapping) else {} for x in (v or [])]


def no_backsteps(path: Path, value: str, out: list[FieldError]) -> None:
    if ".." in value.split("/"):
        out.append(invalid(path, value, "must not contain '..'"))


def volumes(path: Path, vols: Any, out: list[FieldError]) -> set[str]:
    """spec.volumes; returns the names, for the mounts to refer to."""
    seen: set[str] = set()
    for i, v in enumerate(_entries(vols)):
        vp = path.index(i)
        name = v.get("name")
        if not name:
            out.append(required(vp.child("name")))
        else:
            out.extend(invalid(vp.child("name"), name, e) for e in names.dns1123_label(name))
            if name in seen:
                out.append(duplicate(vp.child("name"), name))
            seen.add(name)
        given = [s for s in ALL_SOURCES if v.get(s) is not None]
        if not given:
            out.append(required(vp, "must specify a volume type"))
            continue
        if len(given) > 1:
            out.append(forbidden(vp.child(given[1]), "may not specify more than 1 volume type"))
            continue
        source = given[0]
        if source not in SOURCES:
            out.append(not_supported(vp, source, SOURCES))
        elif source == "hostPath":
            host_path(vp.child("hostPath"), v["hostPath"], out)
        elif source == "emptyDir":
            empty_dir(vp.child("emptyDir"), v["emptyDir"], out)
        elif source == "downwardAPI":
            downward_api(vp.child("downwardAPI"), v["downwardAPI"], out)
        elif source == "projected":
            projected(vp.child("projected"), v["projected"], out)
        else:
            config_source(vp.child(source), v[source], "secretName" if source == "secret" else "name", out)
    return seen


def _mode(path: Path, value: Any, out: list[FieldError]) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_MODE):
        out.append(invalid(path, value, "must be a number between 0 and 0777 (octal), both inclusive"))


VOLUME_FIELD_PATHS = ("metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace",
                      "metadata.uid")


def _relative(path: Path, rel: str, out: list[FieldError]) -> None:
    """A file's path in a volume: relative, never climbing out (kube's validateLocalNonReservedPath)."""
    if rel.startswith("/"):
        out.append(invalid(path, rel, "must be a relative path"))
    if ".." in rel.split("/"):
        out.append(invalid(path, rel, "must not contain '..'"))
    elif rel.startswith(".."):
        out.append(invalid(path, rel, "must not start with '..'"))


def _item_path(ip: Path, rel: str, seen: set[str], out: list[FieldError]) -> None:
    if not rel:
        out.append(required(ip.child("path")))
        return
    _relative(ip.child("path"), rel, out)
    if rel in seen:
        out.append(duplicate(ip.child("path"), rel))
    seen.add(rel)


def downward_api(path: Path, src: Any, out: list[FieldError]) -> None:
    """kube's validateDownwardAPIVolumeSource: items of one field or one resource each."""
    from orchestrator.validation.pods import field_ref, resource_field_ref

    if not isinstance(src, Mapping):
        return
    _mode(path.child("defaultMode"), src.get("defaultMode"), out)
    seen: set[str] = set()
    for i, item in enumerate(_entries(src.get("items"))):
        ip = path.child("items").index(i)
        _item_path(ip, str(item.get("path") or ""), seen, out)
        _mode(ip.child("mode"), item.get("mode"), out)
        field, res = item.get("fieldRef"), item.get("resourceFieldRef")
        if (field is None) == (res is None):
            out.append(required(ip, "one of fieldRef and resourceFieldRef") if field is None else
                       invalid(ip, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously"))
            continue
        if isinstance(field, Mapping):
            field_ref(ip.child("fieldRef"), field, VOLUME_FIELD_PATHS, VOLUME_FIELD_PATHS, out)
        elif isinstance(res, Mapping):
            resource_field_ref(ip.child("resourceFieldRef"), res, out, container_required=True)


def projected(path: Path, src: Any, out: list[FieldError]) -> None:
    """kube's validateProjectedVolumeSource, for the sources this kubelet projects: each entry
    one source, every file path once across them ("conflicting duplicate paths")."""
    if not isinstance(src, Mapping):
        return
    _mode(path.child("defaultMode"), src.get("defaultMode"), out)
    seen: set[str] = set()
    for i, entry in enumerate(_entries(src.get("sources"))):
        sp = path.child("sources").index(i)
        given = [k for k in ALL_PROJECTED_SOURCES if entry.get(k) is not None]
        if len(given) != 1:
            out.append(forbidden(sp, "may not specify more than 1 volume type") if given else
                       required(sp, "must specify exactly one source"))
            continue
        kind = given[0]
        if kind not in PROJECTED_SOURCES:
            out.append(not_supported(sp, kind, PROJECTED_SOURCES))
            continue
        body = entry[kind]
        if kind == "serviceAccountToken":
            service_account_token(path, sp.child(kind), body, seen, out)
            continue
        if kind == "downwardAPI":
            downward_api(sp.child(kind), body, out)
        else:
            config_source(sp.child(kind), body, "name", out)
        for j, item in enumerate(_entries(body.get("items") if isinstance(body, Mapping) else None)):
            rel = str(item.get("path") or "")
            if rel and rel in seen:
                out.append(invalid(sp.child(kind).child("items").index(j).child("path"), rel,
                                   "conflicting duplicate paths"))
            seen.add(rel)


def service_account_token(volume: Path, path: Path, src: Any, seen: set[str], out: list[FieldError]) -> None:
    """kube's checks of a serviceAccountToken projection: a lifetime of 10 minutes to 2^32 s
    (defaulted to an hour), a relative path within the volume, not shared with another source.
    (kube names a missing path at the volume's `path`, not the source's: its quirk, kept.)"""
    if not isinstance(src, Mapping):
        return
    exp = src.get("expirationSeconds")
    if isinstance(exp, int) and not isinstance(exp, bool):
        if exp < 600:
            out.append(invalid(path.child("expirationSeconds"), exp, "may not specify a duration less than 10 minutes"))
        elif exp > 2**32:
            out.append(invalid(path.child("expirationSeconds"), exp,
                               "may not specify a duration larger than 2^32 seconds"))
    aud = src.get("audience")
    if aud is not None and not isinstance(aud, str):
        out.append(invalid(path.child("audience"), aud, "must be a string"))
    rel = str(src.get("path") or "")
    if not rel:
        out.append(required(volume.child("path")))
        return
    _relative(path.child("path"), rel, out)
    if rel in seen:
        out.append(invalid(path.child("path"), rel, "conflicting duplicate paths"))
    seen.add(rel)


def config_source(path: Path, src: Any, name_field: str, out: list[FieldError]) -> None:
    """A configMap or secret volume (kube's validateConfigMapVolumeSource and
    validateSecretVolumeSource): the object's name, modes, items with relative paths."""
    if not isinstance(src, Mapping):
        return
    if not src.get(name_field):
        out.append(required(path.child(name_field)))
    _mode(path.child("defaultMode"), src.get("defaultMode"), out)
    seen: set[str] = set()
    for i, item in enumerate(_entries(src.get("items"))):
        ip = path.child("items").index(i)
        if not item.get("key"):
            out.append(required(ip.child("key")))
        _item_path(ip, str(item.get("path") or ""), seen, out)
        _mode(ip.child("mode"), item.get("mode"), out)


def host_path(path: Path, hp: Mapping[str, Any], out: list[FieldError]) -> None:
    p = hp.get("path")
    if not p:
        out.append(required(path.child("path")))
    else:
        no_backsteps(path.child("path"), p, out)
        if not p.startswith("/"):
            out.append(invalid(path.child("path"), p, "must be an absolute path"))
    t = hp.get("type") or ""
    if t not in HOST_PATH_TYPES:
        out.append(not_supported(path.child("type"), t, HOST_PATH_TYPES))


def empty_dir(path: Path, ed: Mapping[str, Any], out: list[FieldError]) -> None:
    medium = ed.get("medium") or ""
    if medium not in MEDIA:
        out.append(not_supported(path.child("medium"), medium, MEDIA))
    limit = ed.get("sizeLimit")
    if limit is not None:
        try:
            if parse_quantity(limit).amount <= 0:
                out.append(invalid(path.child("sizeLimit"), limit, "must be greater than zero"))
        except QuantityError as e:
            out.append(invalid(path.child("sizeLimit"), limit, str(e)))


def volume_mounts(path: Path, mounts: Any, volume_names: set[str], out: list[FieldError]) -> None:
    """A container's volumeMounts: each names a volume of the pod, at an absolute path that no
    other mount of the container uses."""
    at: set[str] = set()
    for i, m in enumerate(_entries(mounts)):
        mp = path.index(i)
        name = m.get("name")
        if not name:
            out.append(required(mp.child("name")))
        elif name not in volume_names:
            out.append(FieldError(str(mp.child("name")), "Not found", "", name))
        target = m.get("mountPath")
        if not target:
            out.append(required(mp.child("mountPath")))
        else:
            if target in at:
                out.append(invalid(mp.child("mountPath"), target, "must be unique"))
            at.add(target)
            if not target.startswith("/"):
                out.append(invalid(mp.child("mountPath"), target, "must be an absolute path"))
        sub = m.get("subPath") or ""
        if sub:
            if sub.startswith("/"):
                out.append(invalid(mp.child("subPath"), sub, "must be a relative path"))
            no_backsteps(mp.child("subPath"), sub, out)
        if m.get("subPathExpr"):
            out.append(forbidden(mp.child("subPathExpr"), "is not supported by netplane's kubelet (subPath is)"))
        prop = m.get("mountPropagation")
        if prop is not None and prop not in PROPAGATION:
            out.append(not_supported(mp.child("mountPropagation"), prop, PROPAGATION))
        rro = m.get("recursiveReadOnly")
        if rro is not None and rro not in RECURSIVE_READ_ONLY:
            out.append(not_supported(mp.child("recursiveReadOnly"), rro, RECURSIVE_READ_ONLY))
