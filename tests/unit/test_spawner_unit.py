"""DatalakeSpawner logic that needs no cluster: security contexts, the runtime limit, refusals."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from traitlets.config import Config

from hub_config.profiles.source import ProfileSource
from hub_config.settings import Settings
from hub_config.spawner import DatalakeSpawner, apply_spawner, runtime_exceeded, security_contexts

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _offline_kubeconfig(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """KubeSpawner reads a kubeconfig when built; nothing here calls the API."""
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: unused}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    monkeypatch.setattr("kubernetes_asyncio.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(path))


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


@pytest.mark.parametrize(
    ("options", "status"),
    [({"profile": "gpu"}, 403), ({"profile": "hep", "cores": "64"}, 400), ({"profile": 3}, 400)],
)
async def test_refusals_happen_before_kubespawner(
    reference_settings: Settings, options: dict[str, Any], status: int
) -> None:
    """Hidden profiles are 403, unknown or malformed choices 400 — before any pod is built."""
    from tornado import web

    spawner = _spawner(reference_settings, ["escape"])
    spawner.user_options = options
    with pytest.raises(web.HTTPError) as err:
        await spawner.load_user_options()
    assert err.value.status_code == status


@pytest.mark.parametrize(
    ("groups", "options"),
    [
        (["escape"], {"profile": "hep", "cores": "8", "memory": "32G"}),
        (["escape", "escape/gpu"], {"profile": "gpu", "gpus": "2"}),
        (["escape"], {"profile": "full", "image--unlisted-choice": "2025.06"}),
    ],
)
async def test_preview_pod_matches_kubespawners_manifest(
    reference_settings: Settings, groups: list[str], options: dict[str, str]
) -> None:
    """`preview --pod` shows what KubeSpawner 7 really puts in the pod for that user and choice."""
    from kubernetes_asyncio.client import ApiClient

    from hub_config.preview import pod_fragment
    from hub_config.profiles import profile_list_for

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
