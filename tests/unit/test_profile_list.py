"""Profiles become KubeSpawner profile_list entries; what a choice sets matches real KubeSpawner 7."""

from __future__ import annotations

from typing import Any

import pytest
from kubespawner import KubeSpawner

from hub_config.profiles.kubespawner import (
    RENAMED_OPTION_KEYS,
    ChoiceError,
    image_ref,
    normalize_user_options,
    profile_list_for,
    resolve_overrides,
    to_profile_entry,
)
from hub_config.profiles.loader import LoadedProfile
from hub_config.profiles.model import memory_bytes
from hub_config.settings import Settings
from tests.support.expected import assert_matches_stored


def test_entries_match_stored_expected(shipped_profiles: list[LoadedProfile], reference_settings: Settings) -> None:
    """The profile_list the hub hands KubeSpawner for the shipped profiles (reviewed JSON, tests/data/expected)."""
    entries = [to_profile_entry(lp.profile, reference_settings) for lp in shipped_profiles]
    assert_matches_stored("profile_list_reference", entries)


def test_group_filter(shipped_profiles: list[LoadedProfile], reference_settings: Settings) -> None:
    """Members of escape see seven options; escape/gpu members also see the GPU one."""
    plain = [e["slug"] for e in profile_list_for(shipped_profiles, reference_settings, ["escape"])]
    gpu = [e["slug"] for e in profile_list_for(shipped_profiles, reference_settings, ["escape", "escape/gpu"])]
    assert "gpu" not in plain
    assert len(plain) == 7
    assert gpu == [*plain, "gpu"]


def test_exactly_one_default_even_when_the_default_is_hidden(
    shipped_profiles: list[LoadedProfile], reference_settings: Settings
) -> None:
    """If a user cannot see the default profile, the first visible one is preselected."""
    only_gpu = [lp for lp in shipped_profiles if lp.profile.slug == "gpu"]
    entries = profile_list_for(only_gpu, reference_settings, ["escape/gpu"])
    assert [e["default"] for e in entries] == [True]
    assert profile_list_for(only_gpu, reference_settings, ["escape"]) == []


def test_image_ref_resolution(reference_settings: Settings) -> None:
    """Bare names get registry and tag; a name with a tag keeps it; full references are untouched."""
    images = reference_settings.images
    assert image_ref("datalake-hep", images) == "ghcr.io/datalake-hub/datalake-hep:2026.11"
    assert image_ref("datalake-hep:dev", images) == "ghcr.io/datalake-hub/datalake-hep:dev"
    assert image_ref("quay.io/jupyter/scipy-notebook:2025-01-01", images) == "quay.io/jupyter/scipy-notebook:2025-01-01"


def test_description_says_what_the_server_gets(
    shipped_profiles: list[LoadedProfile], reference_settings: Settings
) -> None:
    """The spawn page tells the user cores, memory, GPUs, runtime, mounts and Rucio."""
    gpu = next(lp.profile for lp in shipped_profiles if lp.profile.slug == "gpu")
    text = to_profile_entry(gpu, reference_settings)["description"]
    assert "4–8 cores" in text
    assert "16G–64G memory" in text
    assert "up to 4 GPUs" in text
    assert "stops after 24 h at most" in text
    assert "mounts eos, scratch" in text
    assert "Rucio: ESCAPE Rucio" in text


def test_gpu_choice_sets_resources_and_scheduling(
    shipped_profiles: list[LoadedProfile], reference_settings: Settings
) -> None:
    """Choosing 2 GPUs requests and limits nvidia.com/gpu=2 and targets the tainted GPU nodes."""
    entries = profile_list_for(shipped_profiles, reference_settings, ["escape/gpu"])
    got = resolve_overrides(entries, {"profile": "gpu", "gpus": "2", "cores": "8", "memory": "32G", "runtime": "4"})
    assert got["extra_resource_limits"] == {"nvidia.com/gpu": "2"}
    assert got["extra_resource_guarantees"] == {"nvidia.com/gpu": "2"}
    assert got["node_selector"] == {"nvidia.com/gpu.present": "true"}
    assert got["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert (got["cpu_guarantee"], got["cpu_limit"], got["mem_limit"]) == (8, 8, "32G")
    assert got["extra_annotations"]["datalake-hub.io/max-runtime-hours"] == "4"
    assert got["environment"] == {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"profile": "gpu"}, "profile 'gpu' is not offered"),
        ({"profile": "hep", "cores": "64"}, "cores: '64' is not offered"),
        ({"profile": "full", "image--unlisted-choice": "latest"}, "'latest' is not allowed"),
        ({"profile": "full", "image--unlisted-choice": "2026.11; rm -rf"}, "is not allowed"),
    ],
)
def test_refused_choices(
    shipped_profiles: list[LoadedProfile], reference_settings: Settings, options: dict[str, str], error: str
) -> None:
    """Hidden profiles, unknown choices and free tags that fail the (anchored) regex are refused."""
    entries = profile_list_for(shipped_profiles, reference_settings, ["escape"])
    with pytest.raises(ChoiceError, match=error.replace("(", r"\(").replace(";", ";")):
        resolve_overrides(entries, options)


def test_free_image_tag(shipped_profiles: list[LoadedProfile], reference_settings: Settings) -> None:
    """A typed tag matching the profile's regex selects that tag of the same image."""
    entries = profile_list_for(shipped_profiles, reference_settings, ["escape"])
    got = resolve_overrides(entries, {"profile": "full", "image--unlisted-choice": "2025.06.2"})
    assert got["image"] == "ghcr.io/datalake-hub/datalake-full:2025.06.2"


pytestmark = pytest.mark.usefixtures("offline_kubeconfig")


async def _kubespawner_traits(entries: list[dict[str, Any]], options: dict[str, str]) -> KubeSpawner:
    spawner = KubeSpawner(_mock=True)
    spawner.profile_list = entries
    spawner.user_options = options
    await spawner.load_user_options()
    return spawner


def _normalise(key: str, value: Any) -> Any:
    if key in ("mem_limit", "mem_guarantee") and isinstance(value, str):
        return memory_bytes(value)
    return value


CASES = [
    {"profile": "base"},
    {"profile": "base", "cores": "4", "memory": "8G", "runtime": "24"},
    {"profile": "hep", "cores": "8", "memory": "32G"},
    {"profile": "full", "image": "2026.10"},
    {"profile": "full", "image--unlisted-choice": "2025.06"},
    {"profile": "gpu", "gpus": "4", "cores": "4"},
    {"profile": "ska-sdc1"},
    {"profile": "base", "cores": "4", "memory": "8G", "runtime_hours": "24"},
    {"profile": "full", "image_tag": "2026.10"},
    {"profile": "full", "image_tag--unlisted-choice": "2025.06"},
]


@pytest.mark.parametrize("options", CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
async def test_preview_matches_real_kubespawner(
    shipped_profiles: list[LoadedProfile], reference_settings: Settings, options: dict[str, str]
) -> None:
    """`preview` shows exactly what KubeSpawner 7 sets when it loads the same profile and choices."""
    entries = profile_list_for(shipped_profiles, reference_settings, ["escape", "escape/gpu"])
    ours = resolve_overrides(entries, options)
    # KubeSpawner knows only the current option keys: the spawner hands it normalised options.
    spawner = await _kubespawner_traits(entries, normalize_user_options(options))
    for key, value in ours.items():
        theirs = getattr(spawner, key)
        if isinstance(value, dict):
            assert {k: theirs.get(k) for k in value} == value, key
        else:
            assert _normalise(key, theirs) == _normalise(key, value), key


async def test_kubespawner_alone_crashes_on_an_unknown_choice(
    shipped_profiles: list[LoadedProfile], reference_settings: Settings
) -> None:
    """Why we validate choices ourselves: KubeSpawner 7 raises KeyError (a 500) for a choice not offered."""
    entries = profile_list_for(shipped_profiles, reference_settings, ["escape"])
    with pytest.raises(KeyError):
        await _kubespawner_traits(entries, {"profile": "hep", "cores": "64"})
    with pytest.raises(ChoiceError):
        resolve_overrides(entries, {"profile": "hep", "cores": "64"})


def test_option_keys_are_the_profile_field_names(
    shipped_profiles: list[LoadedProfile], reference_settings: Settings
) -> None:
    """Form and REST use `runtime_hours` and `image_tag`, the names admins write in the profile YAML."""
    full = next(lp.profile for lp in shipped_profiles if lp.profile.slug == "full")
    gpu = next(lp.profile for lp in shipped_profiles if lp.profile.slug == "gpu")
    assert "image_tag" in to_profile_entry(full, reference_settings)["profile_options"]
    assert "runtime_hours" in to_profile_entry(gpu, reference_settings)["profile_options"]
    assert not set(RENAMED_OPTION_KEYS) & set(to_profile_entry(gpu, reference_settings)["profile_options"])


def test_old_option_keys_are_renamed_and_new_keys_win() -> None:
    """Requests with the pre-2026.12 keys keep working for one release; a new key beats its old one."""
    assert normalize_user_options({"profile": "p", "runtime": "8", "image--unlisted-choice": "v2"}) == {
        "profile": "p",
        "runtime_hours": "8",
        "image_tag--unlisted-choice": "v2",
    }
    assert normalize_user_options({"image": "old", "image_tag": "new"}) == {"image_tag": "new"}
