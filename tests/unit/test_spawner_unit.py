"""DatalakeSpawner logic that needs no cluster: security contexts, the runtime limit, refusals."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from traitlets.config import Config

from hub_config.pod import security_contexts
from hub_config.profiles.source import ProfileSource
from hub_config.settings import Settings
from hub_config.spawner import DatalakeSpawner, apply_spawner, runtime_exceeded

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("offline_kubeconfig")


def _spawner(reference: Settings, groups: list[str]) -> DatalakeSpawner:
    data = reference.model_dump()
    data["profiles"] = {"directory": str(ROOT / "profiles")}
    settings = Settings.model_validate(data)
    source = ProfileSource(settings)
    source.load_initial()
    c = Config()
    apply_spawner(c, settings, source)
    spawner = DatalakeSpawner(_mock=True, config=c)
    spawner.user.groups = [SimpleNamespace(name=g) for g in groups]
    return spawner


def test_security_contexts_are_restrictive(reference_settings: Settings) -> None:
    """Non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp, fsGroup on mismatch only."""
    pod, container = security_contexts(reference_settings)
    assert pod["runAsNonRoot"] is True
    assert pod["fsGroupChangePolicy"] == "OnRootMismatch"
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["allowPrivilegeEscalation"] is False
    assert container["seccompProfile"] == {"type": "RuntimeDefault"}


def test_runtime_limit() -> None:
    """A server started 9 h ago with an 8 h limit is over it; with 24 h, or no limit, it is not."""
    now = dt.datetime(2026, 11, 22, 12, 0)
    started = now - dt.timedelta(hours=9)
    assert runtime_exceeded(8, started, now) is True
    assert runtime_exceeded(24, started, now) is False
    assert runtime_exceeded(None, started, now) is False
    assert runtime_exceeded(8, None, now) is False


async def test_profile_list_follows_groups(reference_settings: Settings) -> None:
    """The spawn form of a GPU-group member lists the GPU option; others do not see it."""
    gpu = _spawner(reference_settings, ["escape", "escape/gpu"])
    plain = _spawner(reference_settings, ["escape"])
    assert "gpu" in [e["slug"] for e in await gpu.datalake_profile_list()]
    assert "gpu" not in [e["slug"] for e in await plain.datalake_profile_list()]


async def test_every_spawner_shares_the_hubs_single_services(reference_settings: Settings) -> None:
    """traitlets deep-copies config values per spawner: the rotator, provisioner and profiles must not be copied."""
    from hub_config.rucio_service import Rotator, RucioProvisioner

    source = ProfileSource(reference_settings)
    rotator = Rotator(margin=60, interval=10, concurrency=4)
    rucio = RucioProvisioner(
        reference_settings, token_url="https://idp.test/token", client_id="h", client_secret="s", ca_bundle=None
    )
    c = Config()
    apply_spawner(c, reference_settings, source, rucio=rucio, rotator=rotator)
    first, second = DatalakeSpawner(_mock=True, config=c), DatalakeSpawner(_mock=True, config=c)
    for spawner in (first, second):
        assert spawner.datalake_rotator is rotator, "one rotator per hub, bounding the hub's IdP load"
        assert spawner.datalake_rucio is rucio
        assert spawner.datalake_profiles is source, "one profile set per hub, not a copy per server"
        assert spawner._settings() is reference_settings
        # KubeSpawner's 3 s / 30 s make a lagging API server create pods twice, then fail the spawn.
        assert (spawner.k8s_api_request_timeout, spawner.k8s_api_request_retry_timeout) == (10, 90)


async def test_spawn_form_is_shared_by_group_set_and_follows_edits(
    reference_settings: Settings, tmp_path: Path
) -> None:
    """Two users with the same groups get one rendering; other groups, or a profile edit, a new one."""
    import shutil

    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    data = reference_settings.model_dump()
    data["profiles"] = {"directory": str(tmp_path / "profiles"), "reload_seconds": 1}
    settings = Settings.model_validate(data)
    now = [0.0]
    source = ProfileSource(settings, clock=lambda: now[0])
    source.load_initial()
    c = Config()
    apply_spawner(c, settings, source)

    def spawner(groups: list[str]) -> DatalakeSpawner:
        sp = DatalakeSpawner(_mock=True, config=c)
        sp.user.groups = [SimpleNamespace(name=g) for g in groups]
        return sp

    alice, dave, carol = spawner(["escape"]), spawner(["escape"]), spawner(["escape", "escape/gpu"])
    form = await alice._render_options_form_dynamically(alice)
    assert await dave._render_options_form_dynamically(dave) is form, "same groups: rendered once"
    assert form == alice._render_options_form(await alice.datalake_profile_list()), "identical to a fresh render"
    gpu_form = await carol._render_options_form_dynamically(carol)
    assert "GPU" in gpu_form and "GPU" not in form

    hep = tmp_path / "profiles" / "hep.yaml"
    hep.write_text(hep.read_text().replace("display_name: ", "display_name: Renamed ", 1))
    now[0] += 2  # the reload interval has passed
    edited = await alice._render_options_form_dynamically(alice)
    assert "Renamed " in edited and "Renamed " not in form, "an edit shows at the next page view"


@pytest.mark.parametrize(
    ("options", "status"),
    [({"profile": "gpu"}, 403), ({"profile": "hep", "cores": "64"}, 400), ({"profile": 3}, 400)],
)
async def test_refusals_happen_before_kubespawner(
    reference_settings: Settings, options: dict[str, Any], status: int
) -> None:
    """Hidden profiles are 403, unknown or malformed choices 400 — before any pod is built."""
    from prometheus_client import REGISTRY
    from tornado import web

    def refused() -> float:
        return REGISTRY.get_sample_value("datalake_hub_spawn_failures_total", {"phase": "options"}) or 0.0

    spawner = _spawner(reference_settings, ["escape"])
    spawner.user_options = options
    before = refused()
    with pytest.raises(web.HTTPError) as err:
        await spawner.load_user_options()
    assert err.value.status_code == status
    assert refused() == before + 1, "counted as a spawn failure in the options phase (/hub/metrics)"


@pytest.mark.parametrize(
    ("groups", "options"),
    [
        (["escape"], {"profile": "hep", "cores": "8", "memory": "32G"}),
        (["escape", "escape/gpu"], {"profile": "gpu", "gpus": "2"}),
        (["escape"], {"profile": "full", "image_tag--unlisted-choice": "2025.06"}),
        (["escape"], {"profile": "full", "image--unlisted-choice": "2025.06"}),  # the old key, for one release
    ],
)
async def test_preview_pod_matches_kubespawners_manifest(
    reference_settings: Settings, groups: list[str], options: dict[str, str]
) -> None:
    """`preview --pod` shows what KubeSpawner 7 really puts in the pod for that user and choice."""
    from kubernetes_asyncio.client import ApiClient

    from hub_config.preview import pod_fragment
    from hub_config.profiles.kubespawner import profile_list_for

    data = reference_settings.model_dump()
    data["rucio"] = {"instances": []}  # no IdP here; the Rucio mount is covered by the Rucio tests
    data["profiles"] = {"directory": str(ROOT / "profiles")}
    settings = Settings.model_validate(data)
    spawner = _spawner(settings, groups)
    spawner.user.name = "dave.smith"
    spawner.user_options = options
    await spawner.load_user_options()
    manifest = ApiClient().sanitize_for_serialization(await spawner.get_pod_manifest())
    source = ProfileSource(settings)
    loaded = source.load_initial()
    ours = pod_fragment(settings, loaded, profile_list_for(loaded, settings, groups), options, username="dave.smith")
    spec, their_spec = ours["spec"], manifest["spec"]
    (c,) = spec["containers"]
    theirs = their_spec["containers"][0]
    assert theirs["image"] == c["image"]
    assert theirs["resources"] == c["resources"]
    assert theirs["volumeMounts"] == c["volumeMounts"]
    assert {e["name"]: e.get("value") for e in theirs["env"]}.items() >= {
        e["name"]: e["value"] for e in c["env"]
    }.items()
    for key, value in c["securityContext"].items():
        assert theirs["securityContext"][key] == value
    assert their_spec["volumes"] == spec["volumes"]
    assert their_spec.get("initContainers", []) == spec["initContainers"]
    assert their_spec.get("nodeSelector", {}) == spec["nodeSelector"]
    assert their_spec.get("tolerations", []) == spec["tolerations"]
    for key, value in spec["securityContext"].items():
        assert their_spec["securityContext"][key] == value
    for key, value in ours["metadata"]["annotations"].items():
        assert manifest["metadata"]["annotations"][key] == value


async def test_pod_env_names_the_startup_script(reference_settings: Settings) -> None:
    """`spawner.startup_script` reaches the pod as DATALAKE_STARTUP_SCRIPT, the image hook's only source."""
    from hub_config.settings import startup_script_env

    spawner = _spawner(reference_settings, ["escape"])
    spawner.user_options = {"profile": "hep"}
    await spawner.load_user_options()
    env = {e.name: e.value for e in (await spawner.get_pod_manifest()).spec.containers[0].env}
    assert env.items() >= startup_script_env(reference_settings.spawner).items()


async def test_site_volumes_from_z2jh_values_survive_and_are_not_doubled(reference_settings: Settings) -> None:
    """z2jh turns `singleuser.storage.extraVolumes`/`extraVolumeMounts`/`initContainers` into
    KubeSpawner traits: the pod keeps them beside ours, ours win a name clash, and a second start
    of the same server does not list them twice."""
    data = reference_settings.model_dump()
    data["profiles"] = {"directory": str(ROOT / "profiles")}
    settings = Settings.model_validate(data)
    source = ProfileSource(settings)
    source.load_initial()
    c = Config()
    apply_spawner(c, settings, source)
    c.KubeSpawner.volumes = [
        {"name": "site-cvmfs", "hostPath": {"path": "/cvmfs"}},
        {"name": "home", "emptyDir": {}},  # clashes with ours
    ]
    c.KubeSpawner.volume_mounts = [{"name": "site-cvmfs", "mountPath": "/cvmfs", "readOnly": True}]
    c.KubeSpawner.init_containers = [{"name": "site-init", "image": "busybox", "command": ["true"]}]
    spawner = DatalakeSpawner(_mock=True, config=c)
    spawner.user.groups = [SimpleNamespace(name="escape")]
    for _ in range(2):
        spawner.user_options = {"profile": "hep"}
        await spawner.load_user_options()
        spec = (await spawner.get_pod_manifest()).spec
        names = [v.name for v in spec.volumes]
        assert names.count("site-cvmfs") == 1
        assert len(names) == len(set(names)), names
        home = next(v for v in spec.volumes if v.name == "home")
        assert home.empty_dir is None, "the site's clashing 'home' replaced datalake-hub's home"
        mounts = [m.mount_path for m in spec.containers[0].volume_mounts]
        assert mounts.count("/cvmfs") == 1
        assert [i.name for i in spec.init_containers or []].count("site-init") == 1
