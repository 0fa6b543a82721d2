"""The local proxy outlives a hub restart, as z2jh's proxy Deployment does in a cluster.

The platform runs configurable-http-proxy apart from the hub; stopping the hub leaves a user's
session reachable through the proxy, and the hub, started again on the same database, still knows
the server (and the proxy's route to it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from localplatform.base import pid_alive, state_dir
from localplatform.hub import HubHandle, resume_hub, stop_hub

from tests.support.hubclient import api, login, running_hub, spawn, stop
from tests.support.kube import get_json
from tests.support.rotation import fast_rotation

pytestmark = pytest.mark.platform

USER = "alice"


TTL = 30
"""IAM (and so Rucio) tokens live 30 s, so rotations are seen within the test."""


@pytest.fixture(scope="module")
def hub(platform_info: dict[str, Any]) -> Iterator[HubHandle]:
    patch = fast_rotation(iam_margin=20, rucio_margin=15)
    with running_hub(state_dir(), platform_info, "proxyrestart", settings_patch=patch, access_token_ttl=TTL) as handle:
        _, page = login(handle, platform_info, USER, f"{USER}-password")
        assert page.status_code == 200
        yield handle


def _status(hub: HubHandle) -> int:
    """The session's own API, through the proxy (the server checks the token with the hub, and
    caches the answer: that is what keeps a session usable while the hub is away)."""
    url = f"{hub.url}user/{USER}/api/status"
    return requests.get(url, headers={"Authorization": f"token {hub.service_token}"}, timeout=10).status_code


def _proxy_routes(hub: HubHandle) -> dict[str, Any]:
    """The proxy's routing table, from its own API (with the token the platform gave it)."""
    run = json.loads((hub.dir / "run.json").read_text())
    headers = {"Authorization": f"token {run['proxy_auth_token']}"}
    resp = requests.get(f"{run['proxy_api_url']}/api/routes", headers=headers, timeout=10)
    resp.raise_for_status()
    routes: dict[str, Any] = resp.json()
    return routes


def _rucio_secrets(info: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The user's Rucio Secrets (name → their token files), found by the labels every one carries."""
    items = get_json(
        info, "secrets", "-n", info["controlplane"]["namespace"], "-l", "app.kubernetes.io/component=rucio-credentials"
    )["items"]
    return {
        s["metadata"]["name"]: {k: v for k, v in s.get("data", {}).items() if k.startswith("token-")}
        for s in items
        if s["metadata"]["name"].startswith(f"jupyter-{USER}")
    }


def _pid(name: str) -> int:
    return int((state_dir() / "pids" / f"{name}.pid").read_text())


def test_session_stays_reachable_while_the_hub_is_down_and_the_hub_comes_back_knowing_it(
    hub: HubHandle, platform_info: dict[str, Any]
) -> None:
    """Hub stopped and started again while a server runs: the proxy keeps routing, the hub knows the
    server, and it rotates the server's tokens again by itself, in the one Secret the server has."""
    resp = spawn(hub, USER, {"profile": "base"})
    assert resp.status_code in (201, 202), resp.text
    try:
        assert _status(hub) == 200
        assert f"/user/{USER}" in _proxy_routes(hub)
        proxy_pid, hub_pid = _pid(f"proxy-{hub.name}"), _pid(f"hub-{hub.name}")

        stopped = time.monotonic()
        stop_hub(state_dir(), hub.name, keep_proxy=True)
        assert not pid_alive(hub_pid)
        assert pid_alive(proxy_pid)
        # The hub is gone: its pages are the proxy's error, the session still answers.
        assert requests.get(f"{hub.url}hub/health", timeout=10).status_code != 200
        for _ in range(3):
            assert _status(hub) == 200, "the session is unreachable while the hub is down"
            time.sleep(1)

        resume_hub(state_dir(), hub.name)
        print(f"hub down and back in {time.monotonic() - stopped:.1f}s")
        assert pid_alive(proxy_pid), "the proxy did not outlive the hub restart"
        server = api(hub, "GET", f"/users/{USER}").json()["servers"].get("")
        assert server and server["ready"], server
        assert f"/user/{USER}" in _proxy_routes(hub), "the proxy lost the session's route"
        assert _status(hub) == 200

        # Rotation resumes with no user action: the server's token changes within a token's life.
        (name, before), *others = _rucio_secrets(platform_info).items()
        assert not others, "more than one Rucio Secret for one server"
        assert before, "the server's Secret holds no token"
        deadline = time.monotonic() + TTL + 30
        while (now := _rucio_secrets(platform_info)).get(name) == before:
            assert time.monotonic() < deadline, f"no rotation after the hub restart; hub log {hub.log}"
            time.sleep(2)
        assert list(now) == [name], f"duplicate Rucio Secrets after the restart: {sorted(now)}"
        assert _status(hub) == 200
    finally:
        stop(hub, USER)
