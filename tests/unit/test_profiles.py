"""Profile files: every field, every mistake an admin can make, and the shipped defaults."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hub_config.errors import ConfigError
from hub_config.profiles.loader import LoadedProfile, load_profile_text, load_profiles
from hub_config.profiles.model import Profile
from hub_config.settings import Settings

GOOD = {
    "slug": "hep",
    "display_name": "HEP",
    "description": "ROOT and friends",
    "image": "datalake-hep",
}


def write(tmp: Path, name: str, data: dict[str, Any] | str) -> Path:
    path = tmp / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def messages(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


# --- fields ---------------------------------------------------------------------------------


def test_minimal_profile_defaults() -> None:
    """A profile needs only slug, name, description and image; it is then open to everyone."""
    p = Profile.model_validate(GOOD)
    assert (p.default, p.groups, p.mounts, p.env, p.order) == (False, [], [], {}, 100)
    assert p.rucio.enabled
    assert p.rucio.instances is None
    assert not p.has_gpu


@pytest.mark.parametrize("missing", ["slug", "display_name", "description", "image"])
def test_required_fields(missing: str) -> None:
    """Each of the four required fields is reported by name when absent."""
    data = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ValidationError, match=missing):
        Profile.model_validate(data)


def test_slug_must_be_dns_label() -> None:
    """Slugs end up in URLs, labels and form field names: 'HEP Analysis' is refused."""
    with pytest.raises(ValidationError):
        Profile.model_validate({**GOOD, "slug": "HEP Analysis"})


def test_resources_guarantee_within_limit() -> None:
    """A guarantee above its limit is refused for CPU and memory (compared in bytes)."""
    with pytest.raises(ValidationError, match="cpu_guarantee 4.0 exceeds cpu_limit 2.0"):
        Profile.model_validate({**GOOD, "resources": {"cpu_guarantee": 4, "cpu_limit": 2}})
    with pytest.raises(ValidationError, match="mem_guarantee 2T exceeds mem_limit 4G"):
        Profile.model_validate({**GOOD, "resources": {"mem_guarantee": "2T", "mem_limit": "4G"}})
    ok = Profile.model_validate({**GOOD, "resources": {"mem_guarantee": "1024M", "mem_limit": "1G"}})
    assert ok.resources.mem_limit == "1G"


def test_memory_uses_jupyterhub_units() -> None:
    """JupyterHub reads 4G, not 4Gi; the Kubernetes spelling is refused with a hint."""
    with pytest.raises(ValidationError):
        Profile.model_validate({**GOOD, "resources": {"mem_limit": "4Gi"}})


def test_choices_defaults_must_be_offered() -> None:
    """A default that is not among the options, or repeated options, are refused."""
    with pytest.raises(ValidationError, match="default 3.0 is not one of"):
        Profile.model_validate({**GOOD, "choices": {"cores": {"options": [1, 2], "default": 3}}})
    with pytest.raises(ValidationError, match="distinct"):
        Profile.model_validate({**GOOD, "choices": {"memory": {"options": ["4G", "4G"]}}})
    with pytest.raises(ValidationError):
        Profile.model_validate({**GOOD, "choices": {"gpus": {"options": []}}})


def test_all_choice_kinds() -> None:
    """Cores, memory, GPUs, runtime hours and an image tag can all be offered."""
    p = Profile.model_validate(
        {
            **GOOD,
            "choices": {
                "cores": {"options": [1, 2], "guarantee_fraction": 0.5},
                "memory": {"options": ["2G", "4G"], "default": "4G"},
                "gpus": {"options": [0, 1]},
                "runtime_hours": {"options": [2, 8], "default": 8},
                "image_tag": {"options": ["v1"], "free_regex": "v[0-9]+"},
            },
        }
    )
    assert p.has_gpu
    assert p.choices.runtime_hours is not None
    assert p.choices.runtime_hours.default == 8


def test_image_tag_choice_needs_something_and_a_valid_regex() -> None:
    """An image-tag choice with neither options nor regex, or a broken regex, is refused."""
    with pytest.raises(ValidationError, match="give `options`"):
        Profile.model_validate({**GOOD, "choices": {"image_tag": {}}})
    with pytest.raises(ValidationError, match="does not compile"):
        Profile.model_validate({**GOOD, "choices": {"image_tag": {"free_regex": "v[0-"}}})


@pytest.mark.parametrize("name", ["BEARER_TOKEN", "BEARER_TOKEN_FILE", "RUCIO_CONFIG", "JUPYTERHUB_API_TOKEN"])
def test_env_cannot_override_what_the_hub_sets(name: str) -> None:
    """BEARER_TOKEN* would silently beat the rotated token file; the hub's own variables are off limits."""
    with pytest.raises(ValidationError, match="set by the hub"):
        Profile.model_validate({**GOOD, "env": {name: "x"}})


def test_env_names_must_be_valid() -> None:
    """'MY-VAR' is not an environment variable name."""
    with pytest.raises(ValidationError, match="not a valid variable name"):
        Profile.model_validate({**GOOD, "env": {"MY-VAR": "1"}})


def test_gpus_fixed_or_chosen_not_both() -> None:
    """GPUs come from resources.gpus or a choice, never both (the spawn would be ambiguous)."""
    with pytest.raises(ValidationError, match="not both"):
        Profile.model_validate({**GOOD, "resources": {"gpus": 1}, "choices": {"gpus": {"options": [1]}}})


def test_tolerations_node_selector_and_rucio_fields() -> None:
    """Scheduling and Rucio fields are typed; a bad toleration operator is refused."""
    p = Profile.model_validate(
        {
            **GOOD,
            "node_selector": {"site": "cern"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "hep", "effect": "NoSchedule"}],
            "rucio": {"instances": ["escape"], "mode": "download"},
            "default_url": "/lab/tree/README.md",
        }
    )
    assert p.tolerations[0].value == "hep"
    assert p.rucio.mode == "download"
    with pytest.raises(ValidationError):
        Profile.model_validate({**GOOD, "tolerations": [{"key": "k", "operator": "Maybe"}]})


def test_web_apps_are_known_and_listed_once(tmp_path: Path) -> None:
    """An app the spawn page cannot name, or one listed twice, is refused with the file and line."""
    assert Profile.model_validate({**GOOD, "web_apps": ["tensorboard", "code-server"]}).web_apps == [
        "tensorboard",
        "code-server",
    ]
    with pytest.raises(ValidationError, match="twice"):
        Profile.model_validate({**GOOD, "web_apps": ["tensorboard", "tensorboard"]})
    path = write(tmp_path, "x.yaml", "slug: x\ndisplay_name: X\ndescription: d\nimage: x\nweb_apps: [vscode]\n")
    with pytest.raises(ConfigError) as err:
        load_profiles([tmp_path])
    (problem,) = messages(err)
    assert problem.startswith(f"{path}:5: web_apps[0]: ") and "'code-server', 'tensorboard' or 'rstudio'" in problem


# --- files ----------------------------------------------------------------------------------


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    """A misspelt key is reported with the file and line to fix."""
    path = write(tmp_path, "hep.yaml", "slug: hep\ndisplay_name: HEP\ndescription: d\nimage: x\nmounst: [eos]\n")
    with pytest.raises(ConfigError) as err:
        load_profiles([tmp_path])
    assert messages(err) == [f"{path}:5: mounst: unknown key (check the spelling; see `python -m hub_config schema`)"]


def test_yaml_error_names_file_and_line(tmp_path: Path) -> None:
    """A YAML syntax error in one file names that file and line."""
    path = write(tmp_path, "bad.yaml", "slug: hep\nchoices: {cores: [1, 2}\n")
    with pytest.raises(ConfigError) as err:
        load_profiles([tmp_path])
    assert messages(err)[0].startswith(f"{path}:2: YAML syntax error")


def test_duplicate_slug_names_both_files(tmp_path: Path) -> None:
    """Two files with one slug: the second is refused, naming where the first is."""
    a = write(tmp_path, "a.yaml", GOOD)
    b = write(tmp_path, "b.yaml", GOOD)
    with pytest.raises(ConfigError) as err:
        load_profiles([tmp_path])
    assert messages(err) == [f"{b}:1: slug: duplicate slug 'hep', already defined in {a}:1"]


def test_two_defaults_refused(tmp_path: Path) -> None:
    """Only one profile can be preselected."""
    write(tmp_path, "a.yaml", {**GOOD, "default": True})
    b = write(tmp_path, "b.yaml", {**GOOD, "slug": "other", "default": True})
    with pytest.raises(ConfigError) as err:
        load_profiles([tmp_path])
    assert messages(err) == [
        f"{b}:5: default: more than one profile is the default: hep ({tmp_path}/a.yaml), other ({b})"
    ]


def test_missing_image(tmp_path: Path) -> None:
    """A profile without an image is refused with its file."""
    path = write(tmp_path, "a.yaml", {k: v for k, v in GOOD.items() if k != "image"})
    with pytest.raises(ConfigError) as err:
        load_profiles([tmp_path])
    assert messages(err) == [f"{path}:1: image: required key is missing"]


def test_unknown_mount_and_rucio_instance(tmp_path: Path, reference_settings: Settings) -> None:
    """Mount names and Rucio instances must exist in settings; each unknown one is located."""
    path = write(tmp_path, "a.yaml", {**GOOD, "mounts": ["eos", "tape"], "rucio": {"instances": ["cta"]}})
    with pytest.raises(ConfigError) as err:
        load_profiles([tmp_path], reference_settings)
    assert messages(err) == [
        f"{path}:7: mounts[1]: mount 'tape' is not defined in settings storage (known: cvmfs, eos, projects, scratch)",
        f"{path}:10: rucio.instances[0]: Rucio instance 'cta' is not configured (known: escape)",
    ]


def test_replica_mode_needs_the_rse_mount(tmp_path: Path, reference_settings: Settings) -> None:
    """Replica mode without EOS mounted cannot find files; the profile is refused."""
    path = write(tmp_path, "a.yaml", {**GOOD, "rucio": {"mode": "replica"}})
    with pytest.raises(ConfigError) as err:
        load_profiles([tmp_path], reference_settings)
    assert messages(err) == [f"{path}:6: rucio.mode: replica mode needs mount 'eos' (instance 'escape') in mounts"]


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    """One validate run lists every problem across files, not just the first."""
    write(tmp_path, "a.yaml", "slug: [\n")
    write(tmp_path, "b.yaml", {**GOOD, "extra": 1})
    write(tmp_path, "c.yaml", "- not a mapping\n")
    with pytest.raises(ConfigError) as err:
        load_profiles([tmp_path])
    assert len(err.value.problems) == 3


def test_configmap_layout_is_read_and_hidden_entries_skipped(tmp_path: Path) -> None:
    """A mounted ConfigMap (..data symlink, timestamped dir) yields each profile once."""
    data = tmp_path / "..2026_11_22_00_00_00.1"
    data.mkdir()
    write(data, "hep.yaml", GOOD)
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "hep.yaml").symlink_to("..data/hep.yaml")
    (tmp_path / "README.txt").write_text("not a profile")
    loaded = load_profiles([tmp_path])
    assert [lp.profile.slug for lp in loaded] == ["hep"]


def test_missing_directory_is_a_problem(tmp_path: Path) -> None:
    """A profiles path that does not exist is reported, not treated as 'no profiles'."""
    with pytest.raises(ConfigError, match="no such file"):
        load_profiles([tmp_path / "nope"])


def test_order_then_slug(tmp_path: Path) -> None:
    """Profiles appear by `order`, then by slug."""
    write(tmp_path, "a.yaml", {**GOOD, "slug": "zeta", "order": 1})
    write(tmp_path, "b.yaml", {**GOOD, "slug": "alpha", "order": 5})
    write(tmp_path, "c.yaml", {**GOOD, "slug": "beta", "order": 5})
    assert [lp.profile.slug for lp in load_profiles([tmp_path])] == ["zeta", "alpha", "beta"]


# --- shipped defaults -----------------------------------------------------------------------


def test_shipped_profiles_cover_the_image_family(shipped_profiles: list[LoadedProfile]) -> None:
    """The seed's family is offered: minimal, DevOps, HEP, slim HEP, full, data science, SKA SDC1, GPU."""
    images = {lp.profile.slug: lp.profile.image for lp in shipped_profiles}
    assert images == {
        "base": "datalake-base",
        "devops": "datalake-devops",
        "hep": "datalake-hep",
        "hep-slim": "datalake-hep-slim",
        "full": "datalake-full",
        "datascience": "datalake-datascience",
        "ska-sdc1": "datalake-ska-sdc1",
        "gpu": "datalake-full",
    }
    defaults = [lp.profile.slug for lp in shipped_profiles if lp.profile.default]
    assert defaults == ["base"]


APP_WORDS = {"code-server": ("vs code", "code-server"), "tensorboard": ("tensorboard",), "rstudio": ("rstudio",)}


def test_shipped_profiles_offer_the_web_apps_their_images_ship(shipped_profiles: list[LoadedProfile]) -> None:
    """Each profile lists its image's web apps (images/family.toml), and no description promises one it lacks."""
    import tomllib

    family = tomllib.loads((Path(__file__).resolve().parents[2] / "images" / "family.toml").read_text())
    shipped = {image["name"]: image.get("web_apps", []) for image in family["image"]}
    for lp in shipped_profiles:
        p = lp.profile
        assert sorted(p.web_apps) == sorted(shipped[p.image]), f"{p.slug}: web_apps differ from {p.image}'s"
        for app, words in APP_WORDS.items():
            if any(w in p.description.lower() for w in words):
                assert app in p.web_apps, f"{p.slug}: its description promises {app}, which {p.image} does not ship"


def test_only_the_gpu_profile_is_group_restricted(shipped_profiles: list[LoadedProfile]) -> None:
    """GPUs are for one group; everything else is open to every signed-in user."""
    restricted = {lp.profile.slug: lp.profile.groups for lp in shipped_profiles if lp.profile.groups}
    assert restricted == {"gpu": ["escape/gpu"]}
    gpu = next(lp.profile for lp in shipped_profiles if lp.profile.slug == "gpu")
    assert gpu.has_gpu


# --- property test --------------------------------------------------------------------------

FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5000),
    st.text(max_size=12),
    st.lists(st.text(max_size=6), max_size=3),
    st.dictionaries(st.sampled_from(["options", "default", "cpu_limit", "x"]), st.integers(0, 4), max_size=2),
)
PROFILE_DOCS = st.dictionaries(
    st.sampled_from([*GOOD, "default", "groups", "mounts", "choices", "resources", "env", "rucio", "bogus"]),
    FIELD_VALUES,
    max_size=9,
)


@settings(max_examples=300, deadline=None)
@given(PROFILE_DOCS)
def test_any_profile_document_gives_a_profile_or_our_error(doc: dict[str, Any]) -> None:
    """Whatever shape a profile file has, the loader answers with a Profile or ConfigError."""
    text = yaml.safe_dump(doc)
    try:
        lp = load_profile_text(text, "p.yaml")
    except ConfigError as err:
        assert all(str(p).startswith("p.yaml") for p in err.problems)
    else:
        assert isinstance(lp.profile, Profile)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_profile_or_our_error(raw: bytes) -> None:
    """Random bytes in a profile file never raise anything but ConfigError."""
    with contextlib.suppress(ConfigError):
        load_profile_text(raw, "p.yaml")


@pytest.mark.parametrize(
    "image",
    ["datalake-hep", "datalake-hep:v2", "registry.example.org:5000/team/img:2026.11", f"ghcr.io/a/b@sha256:{'0' * 64}"],
)
def test_image_references_the_runtime_can_pull_are_accepted(image: str) -> None:
    Profile.model_validate({**GOOD, "image": image})


@pytest.mark.parametrize(
    "image", ["UPPER", "a//b", "img:", "img:bad tag", "reg.example.org/Team/img", "-lead", "img@sha256:short"]
)
def test_image_references_that_would_fail_at_spawn_are_refused(image: str) -> None:
    """InvalidImageName at the kubelet is caught by `validate` instead."""
    with pytest.raises(ValidationError, match="should match pattern"):
        Profile.model_validate({**GOOD, "image": image})


@pytest.mark.parametrize("size", ["0", "0G", "0.0G", "00M"])
def test_zero_memory_is_refused(size: str) -> None:
    """KubeSpawner would set no limit at all for 0: refused, not silently unlimited."""
    with pytest.raises(ValidationError):
        Profile.model_validate({**GOOD, "resources": {"mem_limit": size}})


@pytest.mark.parametrize("name", ["JUPYTER_CONFIG_PATH", "RUCIO_ACCOUNT", "JUPYTERHUB_API_TOKEN", "JUPYTER_IMAGE"])
def test_env_the_hub_sets_is_refused_at_its_own_line(name: str) -> None:
    from hub_config.errors import ConfigError
    from hub_config.profiles.loader import load_profile_text

    text = "slug: x\ndisplay_name: X\ndescription: d\nimage: datalake-base\nenv:\n  OK: '1'\n" + f"  {name}: v\n"
    with pytest.raises(ConfigError) as err:
        load_profile_text(text, "p.yaml")
    assert str(err.value) == f"p.yaml:7: env.{name}: {name} is set by the hub and cannot be overridden by a profile"
