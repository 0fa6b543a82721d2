"""Spawning on the real local cluster: profiles, choices, storage, security, refusals, hot reload.

The hub runs KubeSpawner (as DatalakeSpawner) with the hub ServiceAccount's RBAC against the real
kube-apiserver; kwok schedules pods; the node agent runs jupyterhub-singleuser for each, so
"ready" means the hub really reached the notebook server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from localplatform.base import state_dir
from localplatform.hub import HubHandle, hub_log_text

from hub_config.profiles.model import memory_bytes
from tests.support.hubclient import api, login, running_hub, spawn, stop
from tests.support.kube import user_pods, wait_no_pods

pytestmark = pytest.mark.platform


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    with running_hub(state_dir(), info, "spawning") as handle:
        for user, password in (("alice", "alice-password"), ("carol", "carol-password")):
            _, page = login(handle, info, user, password)
            assert page.status_code == 200
        yield handle


def _bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "k": 1000, "M": 1000**2, "G": 1000**3}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")


CASES = [
    ("alice", {"profile": "base"}, {"image": "datalake-base", "cpu": ("1", "2"), "mem": ("4G", "4G"), "gpus": None}),
    (
        "alice",
        {"profile": "hep", "cores": "8", "memory": "32G"},
        {"image": "datalake-hep", "cpu": ("4", "8"), "mem": ("16G", "32G"), "gpus": None},
    ),
    (
        "alice",
        {"profile": "hep-slim"},
        {"image": "datalake-hep-slim", "cpu": ("1", "1"), "mem": ("4G", "4G"), "gpus": None},
    ),
    (
        "alice",
        {"profile": "datascience", "cores": "4"},
        {"image": "datalake-datascience", "cpu": ("4", "4"), "mem": ("8G", "8G"), "gpus": None},
    ),
    (
        "alice",
        {"profile": "devops"},
        {"image": "datalake-devops", "cpu": ("2", "2"), "mem": ("4G", "4G"), "gpus": None},
    ),
    (
        "alice",
        {"profile": "full", "image_tag--unlisted-choice": "2025.06"},
        {"image": "datalake-full:2025.06", "cpu": ("2", "4"), "mem": ("8G", "16G"), "gpus": None},
    ),
    (
        "alice",
        {"profile": "ska-sdc1", "memory": "8G"},
        {"image": "datalake-ska-sdc1", "cpu": ("4", "4"), "mem": ("8G", "8G"), "gpus": None},
    ),
    (
        "carol",
        {"profile": "gpu", "gpus": "2"},
        {"image": "datalake-full", "cpu": ("4", "4"), "mem": ("16G", "16G"), "gpus": "2"},
    ),
]


@pytest.mark.parametrize(("user", "options", "want"), CASES, ids=[c[1]["profile"] for c in CASES])
def test_every_profile_spawns_the_pod_it_promises(
    hub: HubHandle, info: dict[str, Any], user: str, options: dict[str, str], want: dict[str, Any]
) -> None:
    """Each shipped option starts a reachable server with its image, resources, GPUs, mounts and safety."""
    resp = spawn(hub, user, options)
    assert resp.status_code in (201, 202), resp.text
    try:
        (pod,) = user_pods(info, user)
        c = _container(pod)
        assert want["image"] in c["image"]
        res = c["resources"]
        assert (res["requests"]["cpu"], res["limits"]["cpu"]) == want["cpu"]
        assert (_bytes(res["requests"]["memory"]), _bytes(res["limits"]["memory"])) == tuple(
            memory_bytes(m) for m in want["mem"]
        )
        assert res["limits"].get("nvidia.com/gpu") == want["gpus"]
        spec = pod["spec"]
        if want["gpus"]:
            assert spec["nodeSelector"]["nvidia.com/gpu.present"] == "true"
            assert spec["nodeName"] in info["kwok"]["gpu_nodes"]
        else:
            assert spec["nodeName"] not in info["kwok"]["gpu_nodes"]
        sc, psc = c["securityContext"], spec["securityContext"]
        assert sc["runAsUser"] == 1000
        assert sc["runAsGroup"] == 100
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert psc["fsGroup"] == 100
        assert psc["fsGroupChangePolicy"] == "OnRootMismatch"
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        assert mounts["home"]["mountPath"] == "/home/jovyan"
        assert "subPath" in mounts["home"]
        assert pod["metadata"]["labels"]["datalake-hub.io/profile"] == options["profile"]
        url = f"{hub.url}user/{user}/api/status"
        status = requests.get(url, headers={"Authorization": f"token {hub.service_token}"}, timeout=10)
        assert status.status_code == 200, f"notebook server not reachable through the proxy: {status.status_code}"
    finally:
        stop(hub, user)
    wait_no_pods(info, user)


def test_gpu_profile_refused_to_a_user_outside_the_group(hub: HubHandle, info: dict[str, Any]) -> None:
    """alice asking the REST API for the GPU profile gets a 403 and no pod is created."""
    resp = api(hub, "POST", "/users/alice/server", json={"profile": "gpu"})
    assert resp.status_code == 403
    assert "not offered" in resp.json()["message"]
    assert user_pods(info, "alice") == []


def test_unknown_choice_is_a_400_not_a_500(hub: HubHandle, info: dict[str, Any]) -> None:
    """A choice that is not on the form (64 cores) is refused cleanly; KubeSpawner alone would 500."""
    resp = api(hub, "POST", "/users/alice/server", json={"profile": "hep", "cores": "64"})
    assert resp.status_code == 400
    assert "'64' is not offered" in resp.json()["message"]
    assert user_pods(info, "alice") == []


def _spawn_form(session: requests.Session, hub: HubHandle) -> str:
    page = session.get(f"{hub.url}hub/spawn", timeout=10)
    assert page.status_code == 200
    return page.text


def test_profile_edits_hot_reload_and_broken_edits_keep_last_good(hub: HubHandle, info: dict[str, Any]) -> None:
    """A new profile file shows on the spawn page within seconds; a broken one is refused and logged."""
    session, _ = login(hub, info, "alice", "alice-password")
    assert "Summer school" not in _spawn_form(session, hub)
    new = hub.profiles_dir / "tutorial.yaml"
    new.write_text(
        "slug: tutorial\ndisplay_name: Summer school\ndescription: Tutorial notebooks.\nimage: datalake-base\n"
    )
    deadline = time.monotonic() + 15
    while "Summer school" not in _spawn_form(session, hub):
        assert time.monotonic() < deadline, "new profile not offered within 15 s"
        time.sleep(1)
    assert "Profiles reloaded (9): added tutorial" in hub_log_text(hub), "the admin sees the reload in the hub log"
    (hub.profiles_dir / "broken.yaml").write_text("slug: broken\ndisplay_name: [\n")
    time.sleep(4)
    form = _spawn_form(session, hub)
    assert "Summer school" in form
    assert "HEP analysis" in form
    assert f"{hub.profiles_dir}/broken.yaml:3: YAML syntax error" in hub_log_text(
        hub
    ) or "broken.yaml:2" in hub_log_text(hub)
    (hub.profiles_dir / "broken.yaml").unlink()
    new.unlink()


def test_hostile_username_gets_valid_distinct_names_and_a_contained_home(hub: HubHandle, info: dict[str, Any]) -> None:
    """`../Evil User@x` gets a valid pod name and a home subdirectory inside the share."""
    login(hub, info, "../Evil User@x", "evil-password")
    name = next(u["name"] for u in api(hub, "GET", "/users").json() if u["name"].startswith("evil-user-x-"))
    resp = spawn(hub, name, {"profile": "base"})
    assert resp.status_code in (201, 202)
    try:
        (pod,) = user_pods(info, name)
        assert pod["metadata"]["name"].startswith("jupyter-evil-user-x-")
        home = next(m for m in _container(pod)["volumeMounts"] if m["name"] == "home")
        assert "/" not in home["subPath"]
        assert ".." not in home["subPath"]
    finally:
        stop(hub, name)
        wait_no_pods(info, name)


def test_home_directory_persists_between_servers(hub: HubHandle, info: dict[str, Any]) -> None:
    """A notebook saved in the home is still there after the server is stopped and started again."""
    headers = {"Authorization": f"token {hub.service_token}"}
    contents = f"{hub.url}user/alice/api/contents/persist-check.txt"
    assert spawn(hub, "alice", {"profile": "base"}).status_code in (201, 202)
    try:
        put = requests.put(
            contents, json={"type": "file", "format": "text", "content": "kept"}, headers=headers, timeout=20
        )
        assert put.status_code in (200, 201), put.text
    finally:
        stop(hub, "alice")
    wait_no_pods(info, "alice")
    assert spawn(hub, "alice", {"profile": "hep-slim"}).status_code in (201, 202)
    try:
        got = requests.get(contents, headers=headers, timeout=20)
        assert got.status_code == 200
        assert got.json()["content"] == "kept"
    finally:
        stop(hub, "alice")
