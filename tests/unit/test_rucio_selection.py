"""Which Rucio instances a profile gets: every consumer asks `hub_config.rucio.selection` and agrees.

One site with two instances (ESCAPE, CTA) and three profiles: one naming CTA only, one with every
instance (``instances: null``), one without Rucio. The loader, the spawn-page description,
``preview --pod``, the provisioner's Secret, the spawner's mount and env and the rotator must agree.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from traitlets.config import Config

from hub_config.errors import ConfigError
from hub_config.preview import pod_fragment
from hub_config.profiles.kubespawner import describe_profile, profile_list_for
from hub_config.profiles.loader import load_profiles
from hub_config.profiles.source import ProfileSource
from hub_config.rucio import VOLUME_NAME, cfg_key, gets_rucio, instances_for
from hub_config.rucio_service import RucioProvisioner
from hub_config.settings import Settings
from hub_config.spawner import DatalakeSpawner, apply_spawner

ROOT = Path(__file__).resolve().parents[2]

PROFILES = {
    "cta-only": "rucio: {instances: [cta]}\n",
    "every": "rucio: {instances: null}\n",
    "none": "rucio: {enabled: false}\n",
}


def _jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'at+jwt'})}.{part(claims)}.c2lnbmF0dXJl"


ACCESS = _jwt({"sub": "a11ce", "aud": ["rucio", "cta-rucio"], "exp": 2000000000, "scope": "openid profile"})


@pytest.fixture
def site(reference_settings: Settings, tmp_path: Path) -> Settings:
    """The reference site plus a CTA instance; tokens reused (no exchange), so no IdP is needed."""
    data = reference_settings.model_dump()
    cta = {
        "name": "cta",
        "display_name": "CTA Rucio",
        "rucio_host": "https://rucio.cta.example.org",
        "auth_host": "https://rucio-auth.cta.example.org",
    }
    data["rucio"]["instances"].append(cta)
    for inst in data["rucio"]["instances"]:
        inst["token_exchange"] = {**inst.get("token_exchange", {}), "enabled": False}
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for slug, rucio in PROFILES.items():
        (profiles / f"{slug}.yaml").write_text(
            f"slug: {slug}\ndisplay_name: {slug}\ndescription: For {slug}.\nimage: datalake-base\n"
            f"default: {str(slug == 'every').lower()}\n{rucio}"
        )
    data["profiles"] = {"directory": str(profiles)}
    return Settings.model_validate(data)


def _names(site: Settings, slug: str) -> list[str]:
    loaded = load_profiles([Path(site.profiles.directory or "")], site)
    profile = next(lp.profile for lp in loaded if lp.profile.slug == slug)
    return [i.name for i in instances_for(site.rucio, profile)]


def test_the_selection(site: Settings) -> None:
    """Named instances only; null is every instance; disabled is none."""
    assert _names(site, "cta-only") == ["cta"]
    assert _names(site, "every") == ["escape", "cta"]
    assert _names(site, "none") == []


def test_loader_refuses_an_empty_list_naming_file_and_key(site: Settings) -> None:
    """`instances: []` meant "none" to the spawner and "every" to the form: it is refused with the fix."""
    path = Path(site.profiles.directory or "") / "empty.yaml"
    path.write_text("slug: empty\ndisplay_name: E\ndescription: E.\nimage: x\nrucio:\n  instances: []\n")
    with pytest.raises(ConfigError) as err:
        load_profiles([path], site)
    (problem,) = err.value.problems
    assert problem.source == str(path)
    assert problem.line == 6
    assert problem.key == "rucio.instances"
    assert "use `enabled: false` for no Rucio" in problem.message


def test_loader_refuses_unknown_instances(site: Settings) -> None:
    """A profile naming an instance the settings lack is refused at its line (no silent "none")."""
    path = Path(site.profiles.directory or "") / "cta-only.yaml"
    path.write_text(path.read_text().replace("[cta]", "[cta, lhc]"))
    with pytest.raises(ConfigError) as err:
        load_profiles([path], site)
    (problem,) = err.value.problems
    assert problem.key == "rucio.instances[1]"
    assert "'lhc' is not configured (known: escape, cta)" in problem.message


def test_description_names_the_selected_instances(site: Settings) -> None:
    """The spawn page promises what the server gets, and nothing for a profile without Rucio."""
    loaded = {lp.profile.slug: lp.profile for lp in load_profiles([Path(site.profiles.directory or "")], site)}
    assert "Rucio: CTA Rucio)" in describe_profile(loaded["cta-only"], site)
    assert "Rucio: ESCAPE Rucio, CTA Rucio" in describe_profile(loaded["every"], site)
    assert "Rucio" not in describe_profile(loaded["none"], site)


def _preview(site: Settings, slug: str) -> dict[str, Any]:
    loaded = load_profiles([Path(site.profiles.directory or "")], site)
    entries = profile_list_for(loaded, site, ["escape"])
    return pod_fragment(site, loaded, entries, {"profile": slug}, username="alice")


def _rucio_in_pod(volumes: list[dict[str, Any]], env: dict[str, str]) -> bool:
    return any(v["name"] == VOLUME_NAME for v in volumes) and "RUCIO_CONFIG" in env


def test_preview_mounts_rucio_exactly_when_selected(site: Settings) -> None:
    """`preview --pod` shows the Rucio mount for profiles that get an instance, and only for them."""
    for slug, expected in (("cta-only", True), ("every", True), ("none", False)):
        spec = _preview(site, slug)["spec"]
        env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
        assert _rucio_in_pod(spec["volumes"], env) is expected, slug


async def test_provisioned_secret_holds_the_selected_instances(site: Settings) -> None:
    """The Secret written for a CTA-only server configures CTA and not ESCAPE."""
    provisioner = RucioProvisioner(
        site, token_url="https://unused.test/token", client_id="h", client_secret="s", ca_bundle=None
    )
    profile = next(
        lp.profile for lp in load_profiles([Path(site.profiles.directory or "")], site) if lp.profile.slug == "cta-only"
    )
    secret, result = await provisioner.render(
        namespace="hub", secret_name="jupyter-alice-rucio", username="alice", auth_state=_auth_state(), profile=profile
    )
    assert secret is not None, result.warnings
    assert result.instances == ["cta"]
    assert cfg_key("cta") in secret["data"]
    assert cfg_key("escape") not in secret["data"]
    assert gets_rucio(site.rucio, profile)


def _auth_state() -> dict[str, Any]:
    return {
        "access_token": ACCESS,
        "oauth_user": {"preferred_username": "alice", "sub": "a11ce", "rucio_account": "alice"},
    }


@pytest.mark.usefixtures("offline_kubeconfig")
@pytest.mark.parametrize("slug", ["cta-only", "none"])
async def test_spawner_mounts_what_preview_shows(site: Settings, slug: str) -> None:
    """The spawner's Rucio volume, mount and env are preview's, for a profile with and without Rucio."""
    source = ProfileSource(site)
    source.load_initial()
    provisioner = RucioProvisioner(
        site, token_url="https://unused.test/token", client_id="h", client_secret="s", ca_bundle=None
    )
    c = Config()
    apply_spawner(c, site, source, rucio=provisioner)
    spawner = DatalakeSpawner(_mock=True, config=c)
    spawner.user.name = "alice"
    spawner.user.groups = [SimpleNamespace(name="escape")]

    async def get_auth_state() -> dict[str, Any]:  # JupyterHub's User, which KubeSpawner's mock mode lacks
        return _auth_state()

    spawner.user.get_auth_state = get_auth_state
    spawner.user_options = {"profile": slug}
    await spawner.load_user_options()
    spec = _preview(site, slug)["spec"]
    preview_env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert _rucio_in_pod(spawner.volumes, spawner.environment) is _rucio_in_pod(spec["volumes"], preview_env)
    ours = [v for v in spawner.volumes if v["name"] == VOLUME_NAME]
    theirs = [v for v in spec["volumes"] if v["name"] == VOLUME_NAME]
    assert [v["secret"]["defaultMode"] for v in ours] == [v["secret"]["defaultMode"] for v in theirs]
    for key in ("RUCIO_CONFIG", "JUPYTER_CONFIG_PATH", "DATALAKE_RUCIO_DIR"):
        assert spawner.environment.get(key) == preview_env.get(key)


class _User:
    """JupyterHub's ``User`` as the Rucio lifecycle uses it: a name and the auth state."""

    name = "alice"

    async def get_auth_state(self) -> dict[str, Any]:
        return _auth_state()


@pytest.mark.parametrize(("slug", "rotated"), [("cta-only", True), ("none", False)])
async def test_rotator_gets_the_servers_that_get_rucio(site: Settings, slug: str, rotated: bool) -> None:
    """After a hub restart the rotator resumes servers whose profile gets Rucio, and only those.

    The API server here refuses connections, so the spawn's Secret write fails: the user is told,
    and the rotator retries that server (as before); a server without Rucio is never rotated.
    """
    from kubernetes_asyncio.client import ApiClient, Configuration

    from hub_config.rucio_service import Rotator, ServerRucio

    profile = next(
        lp.profile for lp in load_profiles([Path(site.profiles.directory or "")], site) if lp.profile.slug == slug
    )
    provisioner = RucioProvisioner(
        site, token_url="https://unused.test/token", client_id="h", client_secret="s", ca_bundle=None
    )
    rotator = Rotator(margin=60, interval=3600, concurrency=1)

    async def profile_of() -> Any:
        return profile

    config = Configuration(host="https://127.0.0.1:9")
    async with ApiClient(config) as api:
        restarted = ServerRucio(
            provisioner,
            rotator,
            api_client=api,
            namespace="hub",
            pod_name="jupyter-alice",
            user=_User(),
            profile_of=profile_of,
        )
        await restarted.resume()
        assert (rotator.tracked(restarted.key) is not None) is rotated
        rotator.untrack(restarted.key)

        spawned = ServerRucio(
            provisioner,
            rotator,
            api_client=api,
            namespace="hub",
            pod_name="jupyter-alice",
            user=_User(),
            profile_of=profile_of,
        )
        messages = await spawned.start(profile)
        assert bool(messages) is rotated
        if rotated:
            *instances, overall = messages
            assert instances and all(
                ": unavailable: the Rucio credentials could not be stored" in m for m in instances
            ), messages
            assert overall.startswith("Rucio access is unavailable: no Rucio instance could be set up"), messages
        await spawned.resume()
        assert (rotator.tracked(spawned.key) is not None) is rotated

        stopped: list[bool] = []

        async def stop_pod() -> None:
            stopped.append(True)

        await spawned.stop(stop_pod, retrying_start=True)
        assert (rotator.tracked(spawned.key) is not None) is rotated, "KubeSpawner's kill-and-retry keeps it all"
        await spawned.stop(stop_pod, retrying_start=False)
        assert rotator.tracked(spawned.key) is None
        assert stopped == [True, True]
    await rotator.close()


@pytest.mark.usefixtures("offline_kubeconfig")
async def test_preview_rucio_mount_is_in_kubespawners_manifest(site: Settings) -> None:
    """KubeSpawner 7's real manifest for a CTA-only server has preview's Rucio volume, mount and env.

    Only the Secret's name differs: preview cannot know the pod name KubeSpawner picks.
    """
    from kubernetes_asyncio.client import ApiClient

    from hub_config.preview import RUCIO_SECRET_SHOWN

    source = ProfileSource(site)
    source.load_initial()
    provisioner = RucioProvisioner(
        site, token_url="https://unused.test/token", client_id="h", client_secret="s", ca_bundle=None
    )
    c = Config()
    apply_spawner(c, site, source, rucio=provisioner)
    spawner = DatalakeSpawner(_mock=True, config=c)
    spawner.user.name = "alice"
    spawner.user.groups = [SimpleNamespace(name="escape")]

    async def get_auth_state() -> dict[str, Any]:  # JupyterHub's User, which KubeSpawner's mock mode lacks
        return _auth_state()

    spawner.user.get_auth_state = get_auth_state
    spawner.user_options = {"profile": "cta-only"}
    await spawner.load_user_options()
    manifest = ApiClient().sanitize_for_serialization(await spawner.get_pod_manifest())
    spec = _preview(site, "cta-only")["spec"]
    shown = json.loads(json.dumps(spec).replace(RUCIO_SECRET_SHOWN, f"{spawner.pod_name}-rucio"))
    assert manifest["spec"]["volumes"] == shown["volumes"]
    (theirs,) = manifest["spec"]["containers"]
    (ours,) = shown["containers"]
    assert theirs["volumeMounts"] == ours["volumeMounts"]
    their_env = {e["name"]: e.get("value") for e in theirs["env"]}
    assert their_env.items() >= {e["name"]: e["value"] for e in ours["env"]}.items()
    for key, value in ours["securityContext"].items():
        assert theirs["securityContext"][key] == value
