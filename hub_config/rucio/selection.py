"""Which Rucio instances a profile's servers get, and in which extension mode: decided here only.

The spawner (what is provisioned and mounted), the spawn page's description, ``preview --pod``,
the profile loader's reference checks and the rotator all ask these functions, so none of them
can promise an admin or a user something the server does not get. (They once each decided for
themselves, and a profile with ``instances: []`` got no Rucio while the form and preview showed
it; the profile model now refuses ``[]``.) Pure: no I/O.
"""

from __future__ import annotations

from ..profiles.model import Profile
from ..settings.rucio import RucioInstance, RucioSettings
from .render import ExtensionMode

__all__ = ["extension_modes", "gets_rucio", "instances_for", "unknown_instances"]


def instances_for(rucio: RucioSettings, profile: Profile) -> list[RucioInstance]:
    """The instances a profile's servers get, in settings order.

    None when the profile disables Rucio or the hub has no instance; ``instances: null`` means
    every configured instance. Names the settings do not define are left out here (the loader
    refuses such a profile, see :func:`unknown_instances`).
    """
    if not profile.rucio.enabled:
        return []
    wanted = profile.rucio.instances
    return [i for i in rucio.instances if wanted is None or i.name in wanted]


def gets_rucio(rucio: RucioSettings, profile: Profile) -> bool:
    """Does a server of ``profile`` get Rucio at all (a Secret, its mount and the env)?"""
    return bool(instances_for(rucio, profile))


def unknown_instances(rucio: RucioSettings, profile: Profile) -> list[tuple[int, str]]:
    """(index, name) of the instances ``profile`` names that the settings do not define.

    Only when the profile enables Rucio: a disabled profile's list is never used.
    """
    if not profile.rucio.enabled or profile.rucio.instances is None:
        return []
    known = {i.name for i in rucio.instances}
    return [(n, name) for n, name in enumerate(profile.rucio.instances) if name not in known]


def extension_modes(rucio: RucioSettings, profile: Profile) -> dict[str, ExtensionMode]:
    """Extension mode per instance a server of ``profile`` gets.

    Replica mode reads files straight from where the RSE is mounted in the notebook, so it is what
    a profile gets exactly when it mounts the instance's ``rse_mount`` (the EOS mount its
    ``destination_rse`` is behind); every other profile, and every instance without an RSE mount,
    gets download mode. A profile may force ``rucio.mode: download``; forcing replica without the
    mount is refused by the profile loader, and such an instance falls back to download here.
    The paths replica mode needs are derived once, by :func:`hub_config.settings.rse.replica_paths`.
    """
    modes: dict[str, ExtensionMode] = {}
    for inst in instances_for(rucio, profile):
        ext = inst.extension
        mounted = ext.destination_rse is not None and ext.rse_mount is not None and ext.rse_mount in profile.mounts
        modes[inst.name] = "replica" if mounted and profile.rucio.mode != "download" else "download"
    return modes
