"""A pod's volumes as host paths, and the bind mounts that show them (helper of :mod:`localplatform.nodeagent`).

:func:`materialise` turns each volume into a host directory (or file): Secret/ConfigMap/downward
API/projected ones through :mod:`localplatform.nodeagent_sync`, emptyDir per pod, hostPath as is,
PVCs as a directory per claim, or per NFS export / hostPath PV so two pods share it.
:func:`mount_plan` lists what :mod:`localplatform.nodeagent_launch` bind-mounts: the "image
layer" (a private ``/tmp``, the home, a kubelet-style ``/etc/hosts``, the files the pod's image
adds, such as its web apps' launcher entries), then the ``volumeMounts``.

Two liberties, both for shared home directories: a missing ``subPath`` directory is created owned
by the pod's user (and fsGroup), as the usual NFS-home init step would leave it; the directory
standing for an NFS export or hostPath PV is world-writable, like a test export.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .imagepkgs import hidden_kernelspecs
from .nodeagent_env import IMAGE_HOME, IMAGES_DIR, Identity
from .nodeagent_sync import ATOMIC_KINDS, AtomicVolume, sync_atomic
from .nodeagent_volumes import VolumeError, apply_ownership, expand_vars

if TYPE_CHECKING:
    from .nodeagent_kube import ObjectCache

__all__ = ["image_files", "image_name", "materialise", "mount_plan"]

log = logging.getLogger("localplatform.nodeagent")


def _host_path(src: dict[str, Any]) -> Path:
    path = Path(src["path"])
    kind = src.get("type") or ""
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True, mode=0o755)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o644)
    elif kind and not path.exists():
        raise VolumeError(f"hostPath {path} ({kind}) does not exist")
    elif not kind and not path.exists():
        path.mkdir(parents=True, mode=0o755)  # the kubelet's runtime creates it too
    return path


async def _claim_dir(ns: str, claim: str, fs_group: int | None, shared: Path, objects: ObjectCache) -> Path:
    """A directory per claim; per NFS export or hostPath PV when bound to one, so pods share it."""
    pvc = await objects.api.claim(ns, claim)
    pv = None
    if pvc and pvc.get("spec", {}).get("volumeName"):
        pv = await objects.api.volume(pvc["spec"]["volumeName"])
    if pv and "nfs" in pv["spec"]:
        nfs = pv["spec"]["nfs"]
        path: Path = shared / "nfs" / str(nfs["server"]) / str(nfs["path"]).strip("/")
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o777)  # noqa: S103 - a test export: anyone may create their directory in it
        return path
    if pv and "hostPath" in pv["spec"]:
        path = shared / "hostpath" / str(pv["spec"]["hostPath"]["path"]).strip("/")
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o777)  # noqa: S103 - a shared test directory
        return path
    name = pv["metadata"]["name"] if pv else f"{ns}_{claim}"
    path = shared / "pvc" / name
    fresh = not path.exists()
    path.mkdir(parents=True, exist_ok=True, mode=0o755)
    if fs_group is not None and (fresh or path.stat().st_gid != fs_group):
        apply_ownership(path, fs_group, read_only=False)  # fsGroupChangePolicy: OnRootMismatch
    return path


def _empty_dir(path: Path, vol: dict[str, Any], fs_group: int | None, key: str) -> Path:
    path.mkdir()
    os.chmod(path, 0o777)  # noqa: S103 - the kubelet makes emptyDirs 0777
    if fs_group is not None:
        apply_ownership(path, fs_group, read_only=False)
    limit = (vol["emptyDir"] or {}).get("sizeLimit")
    if limit:
        log.info("pod %s emptyDir %s: sizeLimit %s noted, not enforced", key, vol["name"], limit)
    return path


async def materialise(
    pod: dict[str, Any], pod_dir: Path, fs_group: int | None, shared: Path, objects: ObjectCache
) -> tuple[dict[str, Path], list[AtomicVolume]]:
    """Every pod volume on disk: name → host directory (or file), and the ones to keep in sync."""
    ns = pod["metadata"]["namespace"]
    key = f"{ns}/{pod['metadata']['name']}"
    out: dict[str, Path] = {}
    atomic: list[AtomicVolume] = []
    vol_root = pod_dir / "volumes"
    vol_root.mkdir(mode=0o711)
    for vol in pod["spec"].get("volumes") or []:
        name = vol["name"]
        path = vol_root / name
        kind = next((k for k in ATOMIC_KINDS if k in vol), None)
        if kind:
            av = AtomicVolume(name, vol[kind], kind, path)
            await sync_atomic(pod, av, fs_group, objects)
            atomic.append(av)
            out[name] = path
        elif "emptyDir" in vol:
            out[name] = _empty_dir(path, vol, fs_group, key)
        elif "hostPath" in vol:
            out[name] = _host_path(vol["hostPath"])
        elif "persistentVolumeClaim" in vol:
            out[name] = await _claim_dir(ns, vol["persistentVolumeClaim"]["claimName"], fs_group, shared, objects)
        else:
            log.warning("pod %s volume %s: unsupported type %s, mounted empty", key, name, sorted(vol))
            path.mkdir(mode=0o755)
            out[name] = path
    return out, atomic


def pod_hosts_text(pod: dict[str, Any], services: list[str] | None = None) -> str:
    """A kubelet-style ``/etc/hosts``: localhost, the pod's own name on its IP, ``hostAliases``; then
    ``services`` (lines from :mod:`localplatform.nodeagent_hosts`, our stand-in for cluster DNS)."""
    lines = ["# Kubernetes-managed hosts file (node agent).", "127.0.0.1\tlocalhost", "::1\tlocalhost"]
    lines.append(f"{pod['status']['podIP']}\t{pod['metadata']['name']}")
    for alias in pod["spec"].get("hostAliases") or []:
        lines.append(f"{alias['ip']}\t{' '.join(alias.get('hostnames') or [])}")
    lines.extend(services or [])
    return "\n".join(lines) + "\n"


def _hosts_file(pod: dict[str, Any], pod_dir: Path) -> Path:
    hosts = pod_dir / "hosts"
    hosts.write_text(pod_hosts_text(pod))
    os.chmod(hosts, 0o644)
    return hosts


def _image_layer(pod: dict[str, Any], pod_dir: Path, targets: set[str], ident: Identity) -> list[dict[str, Any]]:
    """What a container's writable layer gives it, unless a volumeMount covers the same path."""
    mounts: list[dict[str, Any]] = []
    tmp = pod_dir / "tmp"
    tmp.mkdir()
    os.chmod(tmp, 0o1777)  # noqa: S103 - /tmp is sticky and world-writable
    if "/tmp" not in targets:  # noqa: S108 - the pod's own /tmp
        mounts.append({"source": str(tmp), "target": "/tmp", "is_dir": True})  # noqa: S108
    if IMAGE_HOME not in targets:
        home = pod_dir / "home"
        home.mkdir()
        os.chown(home, ident.uid, ident.gid)
        mounts.append({"source": str(home), "target": IMAGE_HOME, "is_dir": True})
    hosts = _hosts_file(pod, pod_dir)
    if "/etc/hosts" not in targets:
        mounts.append({"source": str(hosts), "target": "/etc/hosts", "is_dir": False})
    image = pod["spec"]["containers"][0].get("image", "")
    mounts.extend(image_files(image))
    hidden = hidden_kernelspecs(image_name(image))
    if hidden:
        empty = pod_dir / "absent-from-image"
        empty.mkdir()
        for path in hidden:  # another image's kernel (Debian package on the host): not in this one
            if str(path) not in targets:
                mounts.append({"source": str(empty), "target": str(path), "is_dir": True, "read_only": True})
    return mounts


SERVER_PROXY_TARGET = "/etc/jupyter/jupyter_server_config.json"
"""Where the images' Dockerfiles put their jupyter-server-proxy launcher entries (a config file of its
own: Jupyter Server reads only ``jpserver_extensions`` from ``jupyter_server_config.d``)."""


def image_name(image: str) -> str:
    """The image's repository's last segment: ``.../datalake-full:2026.11`` is ``datalake-full``."""
    return image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]


def image_files(image: str) -> list[dict[str, Any]]:
    """Files the pod's image adds at fixed paths, read-only from images/ (the venv is shared by all images).

    The image is known by its repository's last segment (``.../datalake-full:2026.11`` is
    ``datalake-full``): its web apps' launcher entries are what the Lab of that profile shows.
    """
    name = image_name(image)
    proxy = IMAGES_DIR / name / "jupyter-server-proxy.json"
    if not name or not proxy.is_file():
        return []
    return [{"source": str(proxy), "target": SERVER_PROXY_TARGET, "is_dir": False, "read_only": True}]


def _sub_path(root: Path, sub: str, ident: Identity) -> Path:
    """``subPath`` inside a volume, created if missing; resolved now, so it cannot escape."""
    if Path(sub).is_absolute() or ".." in Path(sub).parts:
        raise VolumeError(f"invalid subPath {sub!r}")
    candidate = root / sub
    if not candidate.exists() and not candidate.is_symlink():
        candidate.mkdir(parents=True, mode=0o775)
        os.chown(candidate, ident.uid, ident.fs_group if ident.fs_group is not None else ident.gid)
    # Resolve now: a subPath into a Secret pins today's generation, like the kubelet.
    src = Path(os.path.realpath(candidate))
    if not str(src).startswith(os.path.realpath(root)):
        raise VolumeError(f"subPath {sub!r} escapes its volume")
    return src


def mount_plan(
    pod: dict[str, Any], pod_dir: Path, volumes: dict[str, Path], env: dict[str, str], ident: Identity
) -> list[dict[str, Any]]:
    """Bind mounts for the launcher: image layer (/tmp, home, /etc/hosts), then volumeMounts."""
    container = pod["spec"]["containers"][0]
    targets = {os.path.normpath(m["mountPath"]) for m in container.get("volumeMounts") or []}
    mounts = _image_layer(pod, pod_dir, targets, ident)
    for vm in container.get("volumeMounts") or []:
        src = volumes.get(vm["name"])
        if src is None:
            raise VolumeError(f"volumeMount {vm['name']!r} has no volume")
        sub = vm.get("subPath") or (expand_vars(vm["subPathExpr"], env) if vm.get("subPathExpr") else "")
        if sub:
            src = _sub_path(src, sub, ident)
        mounts.append(
            {
                "source": str(src),
                "target": os.path.normpath(vm["mountPath"]),
                "read_only": bool(vm.get("readOnly")),
                "is_dir": src.is_dir(),
            }
        )
    return mounts
