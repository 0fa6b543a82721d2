"""Pure builders: the volumes, mounts and init container a profile's server gets.

Output is plain Kubernetes dicts with KubeSpawner templates (`{escaped_username}`, `{pvc_name}`)
left in place: KubeSpawner expands them per user when it builds the pod, so these builders run
once per profile, need no user, and are unit-tested against stored expected objects.

The NFS home subdirectory is `{escaped_username}` (KubeSpawner's escaping: every character outside
`a-z0-9` becomes `-xx`, so `.` and `/` can never traverse out of the share). This was chosen once
and must never change: changing it would give every user an empty home.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .profiles.model import Profile
from .settings.model import Settings
from .settings.storage import CVMFSMount, EOSMount, ScratchSpace, SharedVolume

__all__ = ["HOME_SUBDIR_TEMPLATE", "HOME_VOLUME", "StorageSpec", "build_storage", "pvc_settings"]

HOME_VOLUME = "home"
HOME_SUBDIR_TEMPLATE = "{escaped_username}"
NFS_ROOT_IN_INIT = "/datalake-home-root"


@dataclass(frozen=True)
class StorageSpec:
    """What a server of one profile mounts."""

    volumes: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    init_containers: list[dict[str, Any]] = field(default_factory=list)


def pvc_settings(settings: Settings) -> dict[str, Any]:
    """KubeSpawner traits for per-user PVCs (dynamic homes); empty otherwise."""
    home = settings.storage.home
    if home.type != "dynamic":
        return {"storage_pvc_ensure": False}
    out: dict[str, Any] = {
        "storage_pvc_ensure": True,
        "pvc_name_template": "home-{user_server}",
        "storage_capacity": home.capacity,
        "storage_access_modes": ["ReadWriteOnce"],
    }
    if home.storage_class is not None:
        out["storage_class"] = home.storage_class
    return out


def _home(settings: Settings, image: str) -> StorageSpec:
    home = settings.storage.home
    sp = settings.spawner
    if home.type == "ephemeral":
        return StorageSpec(
            volumes=[{"name": HOME_VOLUME, "emptyDir": {}}],
            volume_mounts=[{"name": HOME_VOLUME, "mountPath": home.mount_path}],
        )
    if home.type == "dynamic":
        return StorageSpec(
            volumes=[{"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": "{pvc_name}"}}],
            volume_mounts=[{"name": HOME_VOLUME, "mountPath": home.mount_path}],
        )
    # static-nfs: one share, a subdirectory per user. The kubelet would create a missing subPath
    # as root (unwritable for uid 1000), so an init container creates it once with the user's
    # ownership; it gets only the capabilities that needs.
    create = (
        f'd="{NFS_ROOT_IN_INIT}/$HOME_SUBDIR"; '
        f'if [ ! -d "$d" ]; then mkdir "$d" && chown {sp.uid}:{sp.gid} "$d" && chmod 0750 "$d"; fi'
    )
    init = {
        "name": "datalake-home-dir",
        "image": image,
        "command": ["sh", "-c", create],
        "env": [{"name": "HOME_SUBDIR", "value": HOME_SUBDIR_TEMPLATE}],
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": HOME_VOLUME, "mountPath": NFS_ROOT_IN_INIT}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
    }
    return StorageSpec(
        volumes=[{"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": home.claim_name}}],
        volume_mounts=[{"name": HOME_VOLUME, "mountPath": home.mount_path, "subPath": HOME_SUBDIR_TEMPLATE}],
        init_containers=[init],
    )


def _named(mount: SharedVolume | EOSMount | ScratchSpace | CVMFSMount) -> tuple[dict[str, Any], dict[str, Any]]:
    name = mount.name
    vol: dict[str, Any]
    vm: dict[str, Any] = {"name": name, "mountPath": mount.mount_path}
    if isinstance(mount, SharedVolume):
        if mount.claim_name is not None:
            vol = {"name": name, "persistentVolumeClaim": {"claimName": mount.claim_name, "readOnly": mount.read_only}}
        else:
            assert mount.nfs is not None
            vol = {
                "name": name,
                "nfs": {"server": mount.nfs.server, "path": mount.nfs.path, "readOnly": mount.read_only},
            }
        vm["readOnly"] = mount.read_only
        if mount.sub_path is not None:
            vm["subPath"] = mount.sub_path
    elif isinstance(mount, EOSMount):
        # EOS is fuse-mounted on the node; HostToContainer shows mounts that appear later (autofs).
        vol = {"name": name, "hostPath": {"path": mount.host_path, "type": "Directory"}}
        vm.update(readOnly=mount.read_only, mountPropagation="HostToContainer")
    elif isinstance(mount, CVMFSMount):
        vol = {"name": name, "hostPath": {"path": mount.host_path, "type": "Directory"}}
        vm.update(readOnly=True, mountPropagation="HostToContainer")
    else:
        if mount.type == "emptyDir":
            empty: dict[str, Any] = {}
            if mount.size_limit is not None:
                empty["sizeLimit"] = mount.size_limit
            if mount.medium is not None:
                empty["medium"] = mount.medium
            vol = {"name": name, "emptyDir": empty}
        else:
            vol = {"name": name, "hostPath": {"path": mount.host_path, "type": "DirectoryOrCreate"}}
    return vol, vm


def build_storage(settings: Settings, profile: Profile, *, image: str) -> StorageSpec:
    """Home plus the named mounts ``profile`` lists, in the profile's order."""
    home = _home(settings, image)
    by_name = {m.name: m for m in settings.storage.named_mounts()}
    volumes = list(home.volumes)
    mounts = list(home.volume_mounts)
    for name in profile.mounts:
        vol, vm = _named(by_name[name])
        volumes.append(vol)
        mounts.append(vm)
    return StorageSpec(volumes=volumes, volume_mounts=mounts, init_containers=list(home.init_containers))
