"""The pod wiring a profile's server gets, built once for both the spawner and `preview --pod`.

Storage volumes and mounts, the home init container, the Rucio Secret's volume and env, the
hub's env and the security contexts: :func:`build_pod_wiring` decides all of them. The spawner
hands its output to KubeSpawner and ``preview --pod`` prints it, so the preview an admin trusts
cannot drift from what is submitted (a unit test also compares it with KubeSpawner 7's manifest).
Pure: no I/O, no KubeSpawner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .dask.hub import notebook_environment
from .profiles.model import Profile
from .rucio.secret import build_secret_volume, default_instance, env_for
from .rucio.selection import gets_rucio, instances_for
from .settings.model import Settings
from .settings.spawner import startup_script_env
from .storage import build_storage

__all__ = ["PodWiring", "base_environment", "build_pod_wiring", "merge_site_entries", "security_contexts"]


@dataclass(frozen=True)
class PodWiring:
    """What datalake-hub adds to a server's pod, as KubeSpawner traits take it.

    Values may hold KubeSpawner templates (``{escaped_username}``, ``{pvc_name}``): KubeSpawner
    expands them per user; ``preview`` expands them the same way.
    """

    volumes: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    init_containers: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    """The hub's variables; they win over a profile's ``env`` (which may not set them anyway)."""
    pod_security_context: dict[str, Any] = field(default_factory=dict)
    container_security_context: dict[str, Any] = field(default_factory=dict)


def security_contexts(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod, container) security contexts: non-root, no escalation, no capabilities, RuntimeDefault seccomp.

    Complete, ids included, so what ``preview`` shows is what the pod gets: KubeSpawner lets
    these override the ``fsGroup``/``runAsUser``/``runAsGroup`` it derives from ``fs_gid``, ``uid``
    and ``gid`` (set to the same values).
    """
    sp = settings.spawner
    pod = {
        "fsGroup": sp.fs_group,
        "runAsNonRoot": True,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "runAsUser": sp.uid,
        "runAsGroup": sp.gid,
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return pod, container


def base_environment(settings: Settings) -> dict[str, str]:
    """Variables every server gets, whatever its profile: the site's name, where the image's
    start-up hook finds the user's start-up script (``datalake.spawner.startup_script``) and, when
    the site runs Dask Gateway, where ``dask_gateway.Gateway()`` finds it."""
    return {
        "DATALAKE_SITE_NAME": settings.site_name,
        **startup_script_env(settings.spawner),
        **notebook_environment(settings.dask_gateway),
    }


def build_pod_wiring(settings: Settings, profile: Profile, *, image: str, rucio_secret: str | None) -> PodWiring:
    """Everything datalake-hub decides for a server of ``profile`` running ``image``.

    ``rucio_secret`` names the server's Rucio Secret, or is None when the hub provisions no Rucio;
    whether this profile gets Rucio is :func:`~hub_config.rucio.selection.gets_rucio`'s call. The
    Secret volume is ``optional``: the server starts even when the Secret could not be made
    (the user is told by a progress event).
    """
    storage = build_storage(settings, profile, image=image)
    volumes, mounts = list(storage.volumes), list(storage.volume_mounts)
    env = base_environment(settings)
    if rucio_secret is not None and gets_rucio(settings.rucio, profile):
        volume, mount = build_secret_volume(settings.rucio, rucio_secret)
        volume["secret"]["optional"] = True
        volumes.append(volume)
        mounts.append(mount)
        env.update(env_for(settings.rucio, default_instance(settings.rucio, instances_for(settings.rucio, profile))))
        # JUPYTER_CONFIG_PATH lets rucio-jupyterlab find its config in the Secret with any image
        # (ours also prepend it in a start-up hook, keeping other entries).
        env["JUPYTER_CONFIG_PATH"] = settings.rucio.mount_path
    pod_sc, container_sc = security_contexts(settings)
    return PodWiring(
        volumes=volumes,
        volume_mounts=mounts,
        init_containers=list(storage.init_containers),
        environment=env,
        pod_security_context=pod_sc,
        container_security_context=container_sc,
    )


def merge_site_entries(site: list[Any], ours: list[dict[str, Any]], key: str) -> tuple[list[Any], list[str]]:
    """The site's own entries (z2jh's ``singleuser.storage.extraVolumes``, ``extraVolumeMounts``,
    ``initContainers``, set on KubeSpawner before we run) followed by ours.

    Ours replace a site entry with the same ``key`` (a volume's or container's ``name``, a mount's
    ``mountPath``): two such entries would make Kubernetes refuse the pod, and the home, EOS and
    Rucio wiring is what every profile promises. Returns the merged list and the keys replaced, so
    the caller can say so once.
    """
    taken = {entry.get(key) for entry in ours}
    kept, replaced = [], []
    for entry in site:
        value = entry.get(key) if isinstance(entry, dict) else getattr(entry, _snake(key), None)
        if value in taken:
            replaced.append(str(value))
        else:
            kept.append(entry)
    return [*kept, *ours], replaced


def _snake(key: str) -> str:
    """``mountPath`` → ``mount_path``: the attribute of a kubernetes client model object."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)
