"""The `datalake:` settings: every section's defaults, rules and errors an operator would hit."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from hub_config.errors import ConfigError
from hub_config.settings import (
    HomeStorage,
    RucioExtension,
    RucioInstance,
    RucioSettings,
    Settings,
    SharedVolume,
    StorageSettings,
    TokenExchange,
)
from hub_config.yamlsource import parse_yaml


def with_(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``base`` with dotted ``path`` set to ``value``."""
    out = copy.deepcopy(base)
    node = out
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return out


def errors_of(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as err:
        Settings.model_validate(data)
    return str(err.value)


# --- IAM -------------------------------------------------------------------------------------


def test_iam_defaults_ask_for_refresh_and_groups(minimal: dict[str, Any]) -> None:
    """Out of the box the hub asks for offline_access (so tokens can be refreshed) and wlcg.groups."""
    iam = Settings.model_validate(minimal).iam
    assert iam.scopes == ["openid", "profile", "email", "offline_access", "wlcg.groups"]
    assert iam.username_claim == "preferred_username"
    assert iam.login_service == "ESCAPE IAM"
    assert iam.client_secret.file == "/etc/datalake/secrets/iam-client-secret"
    assert iam.pkce is True


def test_iam_refuses_to_let_nobody_or_everybody_in_implicitly(minimal: dict[str, Any]) -> None:
    """Empty allowed_groups is not silently 'everyone' (CERN VRE's allow_all): it must be explicit."""
    msg = errors_of(with_(minimal, "iam.allowed_groups", []))
    assert "nobody could sign in" in msg
    ok = with_(with_(minimal, "iam.allowed_groups", []), "iam.allow_all", True)
    assert Settings.model_validate(ok).iam.allow_all


def test_iam_needs_openid_scope_and_https_issuer(minimal: dict[str, Any]) -> None:
    """A scope list without openid, or a plain-HTTP issuer, is refused."""
    assert "openid" in errors_of(with_(minimal, "iam.scopes", ["profile"]))
    assert "issuer" in errors_of(with_(minimal, "iam.issuer", "http://iam.example.org/"))


def test_client_secret_is_a_source_never_a_value(minimal: dict[str, Any]) -> None:
    """There is no field for the secret itself; a `value` key is an unknown key."""
    assert "extra" in errors_of(with_(minimal, "iam.client_secret", {"value": "s3cr3t"})).lower()
    assert "file` or `env" in errors_of(with_(minimal, "iam.client_secret", {"file": None}))
    env = Settings.model_validate(with_(minimal, "iam.client_secret", {"file": None, "env": "IAM_SECRET"}))
    assert env.iam.client_secret.env == "IAM_SECRET"


def test_groups_claim_for_entitlements(minimal: dict[str, Any]) -> None:
    """eduperson_entitlement is supported by a prefix and separator mapping."""
    s = Settings.model_validate(
        with_(
            minimal,
            "iam.groups",
            {"claim": "eduperson_entitlement", "prefix": "urn:mace:escape:group:", "separator": ":"},
        )
    )
    assert s.iam.groups.claim == "eduperson_entitlement"
    assert s.iam.groups.separator == ":"


def test_empty_string_is_not_unset(minimal: dict[str, Any]) -> None:
    """`""` never means 'unset' (nebari's outage): it is an error; null is how to unset."""
    assert "at least 1 character" in errors_of(with_(minimal, "iam.client_id", ""))
    with pytest.raises(ConfigError, match="iam.ca_bundle: '' must be an absolute path"):
        Settings.from_document(
            parse_yaml("iam:\n  issuer: https://i/\n  client_id: c\n  allow_all: true\n  ca_bundle: ''\n", "s")
        )
    assert Settings.model_validate(with_(minimal, "iam.ca_bundle", None)).iam.ca_bundle is None


# --- Rucio -----------------------------------------------------------------------------------

INSTANCE = {"name": "escape", "display_name": "ESCAPE", "rucio_host": "https://r", "auth_host": "https://a"}


def test_rucio_instance_defaults_exchange_for_rucio_audience() -> None:
    """By default the hub exchanges the login token for one with aud=rucio and openid profile scope."""
    inst = RucioInstance.model_validate(INSTANCE)
    assert inst.token_exchange == TokenExchange(enabled=True, audience="rucio", scope="openid profile offline_access")
    assert inst.extension.destination_rse is None  # no RSE mount: download mode for every profile
    assert inst.account_template is None
    assert inst.effective_account_template == "{username}"


def test_rucio_exchange_scope_must_satisfy_the_server() -> None:
    """Rucio rejects tokens without openid and profile; say so at configuration time."""
    with pytest.raises(ValidationError, match="lacks profile"):
        TokenExchange(scope="openid")


def test_an_rse_read_in_place_needs_name_mount_and_prefix() -> None:
    """An RSE named without its mount or prefix (or the reverse) cannot work; the message names the missing key."""
    with pytest.raises(ValidationError, match="destination_rse set but rse_mount and rse_prefix missing"):
        RucioExtension(destination_rse="EOS")
    with pytest.raises(ValidationError, match="rse_mount, rse_prefix set but destination_rse missing"):
        RucioExtension(rse_mount="eos", rse_prefix="/eos/lake")
    with pytest.raises(ValidationError, match=r"must not contain \. or \.\."):
        RucioExtension(destination_rse="EOS", rse_mount="eos", rse_prefix="/eos/../etc")
    ok = RucioExtension(destination_rse="EOS", rse_mount="eos", rse_prefix="/eos/lake")
    assert ok.rse_prefix == "/eos/lake"


def test_account_template_placeholders_are_checked() -> None:
    """A typo like {usrname} is caught before any user spawns."""
    with pytest.raises(ValidationError, match="usrname"):
        RucioInstance.model_validate({**INSTANCE, "account_template": "{usrname}"})
    ok = RucioInstance.model_validate({**INSTANCE, "account_template": "u_{preferred_username}"})
    assert ok.account_template == "u_{preferred_username}"


def test_rucio_instance_names_unique_and_default_known() -> None:
    """Two instances with one name, or a default that does not exist, are refused."""
    with pytest.raises(ValidationError, match="duplicate instance"):
        RucioSettings.model_validate({"instances": [INSTANCE, INSTANCE]})
    with pytest.raises(ValidationError, match="default_instance 'nope'"):
        RucioSettings.model_validate({"instances": [INSTANCE], "default_instance": "nope"})
    two = RucioSettings.model_validate(
        {"instances": [INSTANCE, {**INSTANCE, "name": "cta"}], "default_instance": "cta"}
    )
    assert two.default is not None and two.default.name == "cta"
    assert RucioSettings().default is None


def test_rucio_rse_mount_must_be_an_eos_mount(minimal: dict[str, Any]) -> None:
    """The extension's RSE mount refers to an EOS mount by name; a missing one is named."""
    inst = {**INSTANCE, "extension": {"destination_rse": "E", "rse_mount": "eos", "rse_prefix": "/eos/lake"}}
    msg = errors_of(with_(minimal, "rucio", {"instances": [inst]}))
    assert "'eos' is not an EOS mount in storage.eos (known: none)" in msg
    ok = with_(with_(minimal, "rucio", {"instances": [inst]}), "storage", {"eos": [{"name": "eos"}]})
    assert Settings.model_validate(ok).rucio.instances[0].extension.rse_mount == "eos"


def test_instance_name_must_be_a_dns_label() -> None:
    """Instance names become file and Secret key names: hostile ones are refused."""
    with pytest.raises(ValidationError):
        RucioInstance.model_validate({**INSTANCE, "name": "../etc"})


# --- Storage ---------------------------------------------------------------------------------


def test_home_defaults_to_dynamic_pvc() -> None:
    """Without settings each user gets a PVC at /home/jovyan from the default storage class."""
    home = HomeStorage()
    assert (home.type, home.storage_class, home.capacity, home.mount_path) == ("dynamic", None, "10Gi", "/home/jovyan")


def test_static_nfs_needs_a_share_and_only_then() -> None:
    """static-nfs without a share is refused; a share given for dynamic homes is flagged, not ignored."""
    with pytest.raises(ValidationError, match="needs `nfs`"):
        HomeStorage(type="static-nfs")
    with pytest.raises(ValidationError, match="only used with type static-nfs"):
        HomeStorage.model_validate({"type": "dynamic", "nfs": {"server": "s", "path": "/x"}})


def test_shared_volume_has_exactly_one_source() -> None:
    """A shared area is a PVC or an NFS share, not both or neither."""
    with pytest.raises(ValidationError, match="exactly one"):
        SharedVolume.model_validate({"name": "p", "mount_path": "/p"})
    with pytest.raises(ValidationError, match="exactly one"):
        SharedVolume.model_validate(
            {"name": "p", "mount_path": "/p", "claim_name": "c", "nfs": {"server": "s", "path": "/x"}}
        )


def test_mount_names_and_paths_are_unique() -> None:
    """Two mounts with one name, or two at one path, would shadow each other: refused."""
    with pytest.raises(ValidationError, match="mount name"):
        StorageSettings.model_validate({"eos": [{"name": "x"}], "scratch": [{"name": "x", "mount_path": "/s"}]})
    with pytest.raises(ValidationError, match="mount path"):
        StorageSettings.model_validate({"eos": [{"name": "a", "mount_path": "/home/jovyan"}]})


def test_eos_scratch_cvmfs_defaults(reference_settings: Settings) -> None:
    """EOS is a hostPath at /eos, scratch a sized emptyDir, CVMFS at /cvmfs."""
    st = reference_settings.storage
    assert (st.eos[0].host_path, st.eos[0].mount_path, st.eos[0].read_only) == ("/eos", "/eos", False)
    assert (st.scratch[0].type, st.scratch[0].size_limit) == ("emptyDir", "20Gi")
    assert st.cvmfs is not None and st.cvmfs.mount_path == "/cvmfs"
    assert st.mount_names == {"projects", "eos", "scratch", "cvmfs"}


def test_scratch_hostpath_needs_path() -> None:
    """A hostPath scratch without a path is refused."""
    with pytest.raises(ValidationError, match="needs `host_path`"):
        StorageSettings.model_validate({"scratch": [{"name": "s", "type": "hostPath"}]})


# --- Spawner, images, profiles, announcement ---------------------------------------------------


def test_spawner_defaults_are_non_root(minimal: dict[str, Any]) -> None:
    """Notebooks run as uid 1000 / gid 100; uid 0 is refused."""
    s = Settings.model_validate(minimal)
    assert (s.spawner.uid, s.spawner.gid, s.spawner.fs_group) == (1000, 100, 100)
    assert "uid" in errors_of(with_(minimal, "spawner.uid", 0))


def test_gpu_scheduling_defaults(minimal: dict[str, Any]) -> None:
    """GPU servers request nvidia.com/gpu and tolerate the GPU nodes' taint."""
    gpu = Settings.model_validate(minimal).spawner.gpu
    assert gpu.resource_name == "nvidia.com/gpu"
    assert gpu.node_selector == {"nvidia.com/gpu.present": "true"}
    assert gpu.tolerations[0].key == "nvidia.com/gpu"


def test_images_and_profiles_defaults(minimal: dict[str, Any]) -> None:
    """Bare image names resolve against one registry/tag; profiles are read from the ConfigMap mount."""
    s = Settings.model_validate(minimal)
    assert s.images.registry == "ghcr.io/datalake-hub"
    assert s.profiles.directory == "/etc/datalake/profiles"
    assert s.profiles.reload_seconds == 30
    assert "pull_policy" in errors_of(with_(minimal, "images.pull_policy", "Sometimes"))


def test_announcement_levels(minimal: dict[str, Any]) -> None:
    """An announcement has text and one of three levels."""
    s = Settings.model_validate(with_(minimal, "announcement", {"text": "Maintenance Monday"}))
    assert s.announcement is not None and s.announcement.level == "info"
    assert "level" in errors_of(with_(minimal, "announcement", {"text": "x", "level": "shout"}))


def test_inline_profiles_are_typed(minimal: dict[str, Any]) -> None:
    """Profiles written inline in values get the same validation as files."""
    bad = with_(minimal, "profiles.inline", [{"slug": "x", "display_name": "X", "description": "d"}])
    assert "image" in errors_of(bad)


# --- Files -----------------------------------------------------------------------------------


def test_from_file_reports_file_line_and_key(tmp_path: Path) -> None:
    """A typo in the settings file is reported as file:line: key: message."""
    path = tmp_path / "settings.yaml"
    path.write_text(
        "iam:\n  issuer: https://iam.example.org/\n  client_id: hub\n  allowed_groups: [escape]\n  scopez: []\n"
    )
    with pytest.raises(ConfigError) as err:
        Settings.from_file(path)
    assert (
        str(err.value) == f"{path}:5: iam.scopez: unknown key (check the spelling; see `python -m hub_config schema`)"
    )


def test_from_file_reports_missing_required_key(tmp_path: Path) -> None:
    """A missing required key names its parent's line."""
    path = tmp_path / "settings.yaml"
    path.write_text("site_name: x\niam:\n  issuer: https://iam.example.org/\n  allow_all: true\n")
    with pytest.raises(ConfigError) as err:
        Settings.from_file(path)
    assert f"{path}:2: iam.client_id: required key is missing" in str(err.value)


def test_from_file_unreadable_and_not_a_mapping(tmp_path: Path) -> None:
    """A missing file or a file holding a list is a clear one-line error."""
    with pytest.raises(ConfigError, match="cannot read"):
        Settings.from_file(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        Settings.from_file(tmp_path / "list.yaml")


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    for field in model.model_fields.values():
        for arg in _walk_types(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                _models(arg, seen)


def _walk_types(tp: Any) -> list[Any]:
    out = [tp]
    for arg in getattr(tp, "__args__", ()) or ():
        out.extend(_walk_types(arg))
    meta = getattr(tp, "__origin__", None)
    if meta is not None:
        out.append(meta)
    return out


def test_every_field_is_described_and_models_forbid_unknown_keys() -> None:
    """Operators read field descriptions in the values reference; none may be missing."""
    seen: set[type[BaseModel]] = set()
    _models(Settings, seen)
    assert len(seen) > 15
    undocumented = [f"{m.__name__}.{n}" for m in seen for n, f in m.model_fields.items() if not f.description]
    assert undocumented == []
    assert all(m.model_config.get("extra") == "forbid" for m in seen)


def test_startup_script_reaches_the_pod_env_or_nothing() -> None:
    """`spawner.startup_script` becomes DATALAKE_STARTUP_SCRIPT, the images' only source for the path."""
    from hub_config.settings import SpawnerSettings, startup_script_env

    assert startup_script_env(SpawnerSettings()) == {"DATALAKE_STARTUP_SCRIPT": "/home/jovyan/.jupyterlabrc"}
    assert startup_script_env(SpawnerSettings(startup_script="/opt/site/rc.sh")) == {
        "DATALAKE_STARTUP_SCRIPT": "/opt/site/rc.sh"
    }
    assert startup_script_env(SpawnerSettings(startup_script=None)) == {}
