"""What each profile's server mounts, from settings; stored expected objects for every storage mode."""

from __future__ import annotations

from typing import Any

import pytest

from hub_config.profiles.loader import LoadedProfile
from hub_config.profiles.model import Profile
from hub_config.settings import Settings
from hub_config.storage import build_storage, pvc_settings
from tests.support.expected import assert_matches_stored

IMAGE = "ghcr.io/datalake-hub/datalake-hep:2026.11"


def _settings(reference: Settings, home: dict[str, Any]) -> Settings:
    data = reference.model_dump()
    data["storage"]["home"] = home
    return Settings.model_validate(data)


@pytest.mark.parametrize("slug", ["base", "hep", "gpu"])
def test_static_nfs_storage_matches_stored(
    reference_settings: Settings, shipped_profiles: list[LoadedProfile], slug: str
) -> None:
    """Home on the NFS share in the user's own subdirectory, plus the profile's named mounts."""
    profile = next(lp.profile for lp in shipped_profiles if lp.profile.slug == slug)
    spec = build_storage(reference_settings, profile, image=IMAGE)
    assert_matches_stored(f"storage/static-nfs-{slug}", spec.__dict__)


def test_dynamic_home_uses_a_pvc_per_user(reference_settings: Settings, shipped_profiles: list[LoadedProfile]) -> None:
    """Dynamic homes: KubeSpawner creates `home-<user>` from the storage class; no init container."""
    settings = _settings(reference_settings, {"type": "dynamic", "storage_class": "cephfs", "capacity": "20Gi"})
    profile = next(lp.profile for lp in shipped_profiles if lp.profile.slug == "hep")
    spec = build_storage(settings, profile, image=IMAGE)
    assert_matches_stored("storage/dynamic-hep", spec.__dict__)
    assert pvc_settings(settings) == {
        "storage_pvc_ensure": True,
        "pvc_name_template": "home-{user_server}",
        "storage_capacity": "20Gi",
        "storage_access_modes": ["ReadWriteOnce"],
        "storage_class": "cephfs",
    }


def test_ephemeral_home(reference_settings: Settings) -> None:
    """Ephemeral homes are an emptyDir (demos): nothing survives a restart, and no PVC is made."""
    settings = _settings(reference_settings, {"type": "ephemeral"})
    spec = build_storage(settings, Profile(slug="x", display_name="X", description="d", image="i"), image=IMAGE)
    assert spec.volumes == [{"name": "home", "emptyDir": {}}]
    assert pvc_settings(settings) == {"storage_pvc_ensure": False}


def test_nfs_home_subdirectory_is_the_escaped_username(reference_settings: Settings) -> None:
    """The per-user subdirectory is KubeSpawner's `{escaped_username}`, created owned by uid 1000:100."""
    spec = build_storage(
        reference_settings, Profile(slug="x", display_name="X", description="d", image="i"), image=IMAGE
    )
    (home_mount,) = spec.volume_mounts
    assert home_mount["subPath"] == "{escaped_username}"
    (init,) = spec.init_containers
    assert "chown 1000:100" in init["command"][2]
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]}
    assert init["securityContext"]["allowPrivilegeEscalation"] is False


def test_eos_and_cvmfs_propagate_host_mounts(
    reference_settings: Settings, shipped_profiles: list[LoadedProfile]
) -> None:
    """EOS and CVMFS are host mounts seen with HostToContainer propagation; CVMFS is read-only."""
    profile = next(lp.profile for lp in shipped_profiles if lp.profile.slug == "hep")
    spec = build_storage(reference_settings, profile, image=IMAGE)
    by_name = {m["name"]: m for m in spec.volume_mounts}
    assert by_name["eos"]["mountPropagation"] == "HostToContainer"
    assert by_name["cvmfs"] == {
        "name": "cvmfs",
        "mountPath": "/cvmfs",
        "readOnly": True,
        "mountPropagation": "HostToContainer",
    }
    vols = {v["name"]: v for v in spec.volumes}
    assert vols["scratch"] == {"name": "scratch", "emptyDir": {"sizeLimit": "20Gi"}}


def test_shared_and_read_only_eos(reference_settings: Settings) -> None:
    """A read-only EOS mount and an NFS project area are mounted as configured."""
    data = reference_settings.model_dump()
    data["storage"]["eos"] = [{"name": "eos", "read_only": True}]
    settings = Settings.model_validate(data)
    profile = Profile(slug="x", display_name="X", description="d", image="i", mounts=["eos", "projects"])
    spec = build_storage(settings, profile, image=IMAGE)
    by_name = {m["name"]: m for m in spec.volume_mounts}
    assert by_name["eos"]["readOnly"] is True
    assert by_name["projects"] == {"name": "projects", "mountPath": "/projects", "readOnly": False}
    vols = {v["name"]: v for v in spec.volumes}
    assert vols["projects"]["nfs"] == {"server": "nfs.example.org", "path": "/exports/projects", "readOnly": False}


def test_reserved_mount_names_refused(reference_settings: Settings) -> None:
    """A storage entry named `home` would clash with the home volume."""
    data = reference_settings.model_dump()
    data["storage"]["scratch"] = [{"name": "home", "mount_path": "/s"}]
    with pytest.raises(ValueError, match="reserved"):
        Settings.model_validate(data)
