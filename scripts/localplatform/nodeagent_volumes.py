"""Pod volumes as files, the way the kubelet lays them out (helper of :mod:`localplatform.nodeagent`).

Secret, ConfigMap, downward API and projected volumes are written with the kubelet's
*atomic writer* layout: the payload lives in a timestamped directory ``..2024_01_01_00_00_00.123``,
``..data`` is a symlink to it, and each top-level name is a symlink through ``..data``. An update
writes a new timestamped directory and renames a fresh ``..data_tmp`` symlink over ``..data``, so a
reader sees the old set or the new set of files, never a mix. Because the node agent bind-mounts
the *volume directory* (not the files) into the pod's mount namespace, the swap is visible inside
it, just as in a real pod; ``subPath`` mounts resolve to one file at start and so never update,
also as in a real pod.

Ownership follows the kubelet's ``SetVolumeOwnership``: with ``fsGroup`` set, files get group
``fsGroup`` and group read (read-only volumes) or read/write (emptyDir, claims), directories also
setgid. The owner stays root. So a Secret with ``defaultMode: 0400`` and no ``fsGroup`` is not
readable by a non-root user, exactly as on a real node.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Payload",
    "VolumeError",
    "apply_ownership",
    "atomic_write",
    "downward_value",
    "expand_vars",
    "payload_digest",
]

log = logging.getLogger("localplatform.nodeagent")

_DATA = "..data"
_DATA_TMP = "..data_tmp"
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


class VolumeError(RuntimeError):
    """A volume cannot be set up yet (missing non-optional Secret, bad path); the pod waits."""


@dataclass
class Payload:
    """Files of one atomic-writer volume: relative path → (content, mode)."""

    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)

    def add(self, rel: str, content: bytes, mode: int) -> None:
        """Add a file, refusing paths that would escape the volume (as the API server also does)."""
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts or parts[0].startswith(".."):
            raise VolumeError(f"invalid volume item path {rel!r}")
        self.files[rel] = (content, mode)


def payload_digest(payload: Payload) -> str:
    """A digest of content and modes, to write a new generation only when something changed."""
    h = hashlib.sha256()
    for rel in sorted(payload.files):
        content, mode = payload.files[rel]
        h.update(rel.encode() + b"\0" + str(mode).encode() + b"\0" + hashlib.sha256(content).digest())
    return h.hexdigest()


def atomic_write(target: Path, payload: Payload, fs_group: int | None) -> None:
    """Write ``payload`` into ``target`` as a new generation and swap ``..data`` to it.

    Mirrors ``pkg/volume/util/atomic_writer.go``: new timestamped dir, ``..data_tmp`` symlink,
    rename over ``..data``, top-level symlinks added/removed, old generation deleted.
    """
    target.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    gen = target / stamp
    gen.mkdir(mode=0o755)
    for rel, (content, mode) in payload.files.items():
        path = gen / rel
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        path.write_bytes(content)
        os.chmod(path, mode)
    if fs_group is not None:
        apply_ownership(gen, fs_group, read_only=True)
    old = os.readlink(target / _DATA) if (target / _DATA).is_symlink() else None
    tmp = target / _DATA_TMP
    tmp.unlink(missing_ok=True)
    os.symlink(stamp, tmp)
    os.rename(tmp, target / _DATA)
    wanted = {Path(rel).parts[0] for rel in payload.files}
    for name in wanted:
        link = target / name
        if not link.is_symlink():
            os.symlink(f"{_DATA}/{name}", link)
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.is_symlink() and entry.name not in wanted:
            entry.unlink()
    if old and old != stamp:
        shutil.rmtree(target / old, ignore_errors=True)


def apply_ownership(root: Path, fs_group: int, read_only: bool) -> None:
    """The kubelet's ``SetVolumeOwnership``: group ``fs_group``, group rw/ro bits, setgid dirs."""
    mask = 0o440 if read_only else 0o660
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            st = os.lstat(name)
            if os.path.islink(name):
                continue
            os.chown(name, -1, fs_group)
            extra = mask | 0o2110 if os.path.isdir(name) else mask
            os.chmod(name, (st.st_mode & 0o7777) | extra)


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known vars replaced, ``$$`` → ``$``, unknown kept verbatim."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(repl, text)


def downward_value(pod: Mapping[str, Any], field_path: str) -> str:
    """A ``fieldRef`` value, for env vars and downward API volumes."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    status = pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.podIPs": ",".join(p.get("ip", "") for p in status.get("podIPs", []) or []),
        "status.hostIP": status.get("hostIP", ""),
        "status.hostIPs": ",".join(p.get("ip", "") for p in status.get("hostIPs", []) or []),
    }
    if field_path in simple:
        return str(simple[field_path])
    for prefix, key in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        values: dict[str, str] = meta.get(key) or {}
        if field_path == prefix:
            return "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(values.items()))
        match = re.fullmatch(re.escape(prefix) + r"\['(.+)'\]", field_path)
        if match:
            return values.get(match.group(1), "")
    raise VolumeError(f"unsupported fieldRef {field_path!r}")


def decode_secret(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's ``data`` (base64) and ``stringData`` as bytes."""
    out = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    out.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
    return out


def decode_configmap(cm: Mapping[str, Any]) -> dict[str, bytes]:
    """A ConfigMap's ``data`` and ``binaryData`` as bytes."""
    out = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return out


def add_keyed(
    payload: Payload,
    data: Mapping[str, bytes] | None,
    items: list[dict[str, Any]] | None,
    default_mode: int,
    optional: bool,
    what: str,
) -> None:
    """Add a Secret's or ConfigMap's keys (all, or those in ``items``) the way the kubelet does."""
    if data is None:
        if optional:
            return
        raise VolumeError(f"{what} not found")
    if not items:
        for key, content in data.items():
            payload.add(key, content, default_mode)
        return
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise VolumeError(f"{what} has no key {key!r}")
        payload.add(item.get("path") or key, data[key], int(item.get("mode", default_mode)))
