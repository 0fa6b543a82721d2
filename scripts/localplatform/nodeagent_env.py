"""What a pod's process runs as: user, env, argv (helper of :mod:`localplatform.nodeagent`).

No image is pulled, so the "image" is taken to be a docker-stacks style notebook image: user 1000
with primary group 100 when the pod sets no ``runAsUser``/``runAsGroup``, ``HOME=/home/jovyan``
unless the pod's env sets it, WORKDIR ``/home/jovyan``, CMD ``jupyterhub-singleuser``, and bare
command names resolved on a PATH starting with the session venv's ``bin``.

The one deviation from a kubelet lives here too: every pod would otherwise bind ``0.0.0.0:8888``
on the one host network, so ``0.0.0.0`` becomes the pod's IP in ``JUPYTERHUB_SERVICE_URL`` and in
the container's args; the process listens on its pod IP, as it would in a cluster. The other
spellings of "all interfaces" in args get the same treatment: an address ``:PORT`` (Dask's
``--dashboard-address :8787``) becomes ``<podIP>:PORT``, and an empty ``--host`` value (the Dask
Gateway controller's ``--host ""``) the pod IP.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .codeserver import code_server_dir
from .nodeagent_volumes import VolumeError, decode_configmap, decode_secret, downward_value, expand_vars
from .sessionenv import IMAGE_START_COMMAND

if TYPE_CHECKING:
    from .nodeagent_kube import ObjectCache

__all__ = [
    "IMAGES_DIR",
    "IMAGE_CMD",
    "IMAGE_GID",
    "IMAGE_HOME",
    "IMAGE_UID",
    "Identity",
    "container_argv",
    "image_paths",
    "pod_env",
    "resource_value",
]

IMAGE_UID, IMAGE_GID, IMAGE_HOME = 1000, 100, "/home/jovyan"
"""The notebook image's user (jovyan:users) and home, used when the pod does not say otherwise."""
IMAGE_CMD = ["jupyterhub-singleuser"]
"""The image's CMD, used when the container has neither ``command`` nor ``args``."""
IMAGES_DIR = Path(__file__).resolve().parents[2] / "images"
"""The notebook images' sources: what an image adds besides its Python packages is taken from here."""

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


@dataclass(frozen=True)
class Identity:
    """The user, groups and fsGroup a pod's first container runs with."""

    uid: int
    gid: int
    groups: list[int]
    fs_group: int | None

    @classmethod
    def of(cls, pod: dict[str, Any]) -> Identity:
        """From the pod's and container's securityContext, else the image's user."""
        psc = pod["spec"].get("securityContext") or {}
        csc = pod["spec"]["containers"][0].get("securityContext") or {}
        uid = int(csc.get("runAsUser", psc.get("runAsUser", IMAGE_UID)))
        default_gid = IMAGE_GID if uid == IMAGE_UID else 0
        gid = int(csc.get("runAsGroup", psc.get("runAsGroup", default_gid)))
        groups = [int(g) for g in psc.get("supplementalGroups") or []]
        if uid == IMAGE_UID:
            groups.append(IMAGE_GID)  # jovyan is in "users" in the image's /etc/group
        fs_group = psc.get("fsGroup")
        if fs_group is not None:
            fs_group = int(fs_group)
            groups.append(fs_group)
        return cls(uid, gid, sorted(set(groups)), fs_group)


def _quantity(text: str | int | float) -> float:
    match = _QUANTITY.match(str(text))
    if not match or match.group(2) not in _SUFFIX:
        raise VolumeError(f"bad quantity {text!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def resource_value(container: dict[str, Any], ref: dict[str, Any]) -> str:
    """``resourceFieldRef``: the container's request/limit, or the node's capacity (this machine)."""
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name) or (resources.get("limits") or {}).get(name)
    if value is not None:
        amount = _quantity(value)
    elif name == "cpu":
        amount = float(os.cpu_count() or 1)
    elif name == "memory":
        amount = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    else:
        amount = 0.0
    divisor = _quantity(ref.get("divisor") or "1") or 1.0
    return str(math.ceil(amount / divisor))


def _rewrite_wildcard(text: str, pod_ip: str) -> str:
    return text.replace("0.0.0.0", pod_ip)  # noqa: S104 - the point is to replace it


_PORT_ONLY = re.compile(r"^:[0-9]+$")


def _rewrite_wildcard_args(argv: list[str], pod_ip: str) -> list[str]:
    out: list[str] = []
    for arg in argv:
        if out and out[-1] == "--host" and arg == "":
            out.append(pod_ip)
        elif _PORT_ONLY.match(arg):
            out.append(f"{pod_ip}{arg}")
        else:
            out.append(_rewrite_wildcard(arg, pod_ip))
    return out


def container_argv(container: dict[str, Any], env: dict[str, str], pod_ip: str) -> list[str]:
    """``command`` + ``args`` with ``$(VAR)`` expanded and ``0.0.0.0`` made the pod IP; else the CMD;
    behind the image's ENTRYPOINT stand-in unless the pod sets ``command`` (which replaces it).

    Also rewrites ``JUPYTERHUB_SERVICE_URL`` in ``env``: the server binds what that URL says.
    """
    argv = [expand_vars(a, env) for a in (container.get("command") or []) + (container.get("args") or [])]
    if "JUPYTERHUB_SERVICE_URL" in env:
        env["JUPYTERHUB_SERVICE_URL"] = _rewrite_wildcard(env["JUPYTERHUB_SERVICE_URL"], pod_ip)
    argv = _rewrite_wildcard_args(argv, pod_ip) or list(IMAGE_CMD)
    if not container.get("command"):
        # No `command`: the image's ENTRYPOINT runs first (its start-up hooks), as in a cluster.
        argv = [IMAGE_START_COMMAND, *argv]
    return argv


def image_paths(venv: Path) -> list[str]:
    """The session venv, the interpreter it was made from (its stdlib lives there) and code-server."""
    paths = [str(venv)]
    for line in (venv / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            paths.append(str(Path(value.strip()).parent))
    if (code_server_dir() / "bin" / "code-server").exists():
        paths.append(str(code_server_dir()))
    return paths


async def _add_env_from(env: dict[str, str], container: dict[str, Any], ns: str, objects: ObjectCache) -> None:
    for src in container.get("envFrom") or []:
        ref = src.get("configMapRef") or src.get("secretRef") or {}
        kind = "configmap" if "configMapRef" in src else "secret"
        obj = await objects.get(kind, ns, ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                continue
            raise VolumeError(f"envFrom {kind} {ns}/{ref.get('name')} not found")
        data = decode_configmap(obj) if kind == "configmap" else decode_secret(obj)
        for key, value in data.items():
            env[src.get("prefix", "") + key] = value.decode(errors="replace")


async def _value_from(
    pod: dict[str, Any], container: dict[str, Any], name: str, vf: dict[str, Any], objects: ObjectCache
) -> str | None:
    """One ``valueFrom``; None when an optional key is missing (the variable is then left out)."""
    if "fieldRef" in vf:
        return downward_value(pod, vf["fieldRef"]["fieldPath"])
    if "resourceFieldRef" in vf:
        return resource_value(container, vf["resourceFieldRef"])
    ns = pod["metadata"]["namespace"]
    kind = "secret" if "secretKeyRef" in vf else "configmap"
    ref = vf.get("secretKeyRef") or vf.get("configMapKeyRef") or {}
    obj = await objects.get(kind, ns, ref.get("name", ""))
    found = None if obj is None else (decode_secret(obj) if kind == "secret" else decode_configmap(obj))
    if found is None or ref.get("key") not in found:
        if ref.get("optional"):
            return None
        raise VolumeError(f"env {name}: {kind} {ns}/{ref.get('name')} key {ref.get('key')!r} missing")
    return found[ref["key"]].decode(errors="replace")


async def pod_env(pod: dict[str, Any], venv: Path, objects: ObjectCache) -> dict[str, str]:
    """The image's env, then ``envFrom``, then ``env`` with ``$(VAR)`` expansion and ``valueFrom``.

    The session venv's ``bin`` stays first on PATH whatever the pod sets: that is where the
    "image's" executables are.
    """
    container = pod["spec"]["containers"][0]
    bin_dir = str(venv / "bin")
    env: dict[str, str] = {
        "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": IMAGE_HOME,
        "HOSTNAME": pod["metadata"]["name"],
        "LANG": "C.UTF-8",
        "SHELL": "/bin/bash",
    }
    await _add_env_from(env, container, pod["metadata"]["namespace"], objects)
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand_vars(item.get("value", ""), env)
            continue
        value = await _value_from(pod, container, name, item["valueFrom"], objects)
        if value is not None:
            env[name] = value
    if bin_dir not in env["PATH"].split(":"):
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return env
