"""Servers the hub stops on its own: idle ones (z2jh's culler) and ones past their chosen runtime.

The hub runs jupyterhub-idle-culler as z2jh 4.4.0 does for ``cull.*`` values (a hub-managed
service with its own role; :mod:`localplatform.cull`), here ``timeout: 20`` and ``every: 5`` so a
test sees it act. Everything is real: the culler finds alice's idle JupyterLab through the hub API
and deletes it; the hub stops the pod and deletes the per-server Rucio Secret, as it does for any stop.

The runtime limit is the hours the user chose on the spawn page, which the hub reads from the
pod's annotation (so it survives hub restarts). No test can wait hours, so the one thing not
produced for real is time passing: the test shortens the limit recorded on bob's pod to seconds,
where the hub reads it. Those tests run on a second hub with ``cull.enabled: false``: the culler
stops *any* idle server after ``timeout``, admins' included (``adminUsers: false`` only spares admin
*users* from deletion with ``cull.users``), so on the culling hub the two stops would race.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from localplatform.base import state_dir
from localplatform.controlplane import kubectl
from localplatform.hub import HubHandle, resume_hub, stop_hub

from tests.support.hubclient import api, login, running_hub, spawn
from tests.support.kube import get_json, user_pods, wait_no_pods

pytestmark = pytest.mark.platform

CULL = {"timeout": 20, "every": 5}
NO_CULL = {"enabled": False}
RUNTIME_ANNOTATION = "datalake-hub.io/max-runtime-hours"


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


LOG_START: dict[str, int] = {}
"""Where this module's hub began writing in its log (the file is appended to across runs)."""


def _hub(info: dict[str, Any], name: str, cull: dict[str, Any]) -> Iterator[HubHandle]:
    log = state_dir() / "logs" / f"hub-{name}.log"
    LOG_START[name] = log.stat().st_size if log.exists() else 0
    with running_hub(state_dir(), info, name, cull=cull) as handle:
        yield handle


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    """A hub whose culler stops servers idle for 20 s."""
    yield from _hub(info, "cull", CULL)


@pytest.fixture(scope="module")
def runtime_hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    """A hub without the culler: only the runtime limit stops servers here."""
    yield from _hub(info, "runtime", NO_CULL)


def _log(hub: HubHandle) -> str:
    """The hub's log since this module started it."""
    with hub.log.open("rb") as f:
        f.seek(LOG_START.get(hub.name, 0))
        return f.read().decode(errors="replace")


def _secrets_of(info: dict[str, Any], pod_name: str) -> list[str]:
    ns = info["controlplane"]["namespace"]
    items = get_json(info, "secrets", "-n", ns, "-l", f"datalake-hub.io/server={pod_name}")["items"]
    return [s["metadata"]["name"] for s in items]


def _wait(what: str, check: Callable[[], bool], timeout: float, hub: HubHandle) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout:.0f}s; hub log {hub.log}")
        time.sleep(1)


def _has_server(hub: HubHandle, user: str) -> bool:
    return bool(api(hub, "GET", f"/users/{user}").json().get("servers"))


def _shorten_runtime(info: dict[str, Any], pod_name: str, hours: str) -> None:
    """Time passing, the one thing not real here: the limit on the pod, where the hub reads it, becomes ``hours``."""
    ns = info["controlplane"]["namespace"]
    kubectl(
        info["controlplane"]["kubeconfig"],
        "annotate",
        "--overwrite",
        "-n",
        ns,
        "pod",
        pod_name,
        f"{RUNTIME_ANNOTATION}={hours}",
    )


def test_idle_server_is_culled_and_its_rucio_secret_removed(hub: HubHandle, info: dict[str, Any]) -> None:
    """alice leaves her server idle: the culler stops it after 20 s; pod and Rucio Secret are gone."""
    _, page = login(hub, info, "alice", "alice-password")
    assert page.status_code == 200
    assert spawn(hub, "alice", {"profile": "base"}).status_code in (201, 202)
    (pod,) = user_pods(info, "alice")
    name = pod["metadata"]["name"]
    assert _secrets_of(info, name), "a running server has its Rucio Secret"
    _wait("alice's server culled", lambda: not _has_server(hub, "alice"), 120, hub)
    wait_no_pods(info, "alice")
    _wait("alice's Rucio Secret deleted", lambda: not _secrets_of(info, name), 30, hub)
    text = _log(hub)
    assert "Culling server alice (inactive for" in text, "the culler, not something else, stopped it"
    assert "maximum runtime" not in text.split("Culling server alice", 1)[1].split("\n", 1)[0]


def test_server_past_its_runtime_is_stopped_with_a_notice(runtime_hub: HubHandle, info: dict[str, Any]) -> None:
    """bob's server outlives its limit: the hub stops it, logs why, and bob's hub page says why."""
    hub = runtime_hub
    session, page = login(hub, info, "bob", "bob-password")
    assert page.status_code == 200
    assert spawn(hub, "bob", {"profile": "base", "runtime_hours": "4"}).status_code in (201, 202)
    (pod,) = user_pods(info, "bob")
    name = pod["metadata"]["name"]
    assert pod["metadata"]["annotations"][RUNTIME_ANNOTATION] == "4", "the choice is recorded on the pod"
    assert _secrets_of(info, name)
    # Time passing is the one thing not real here: 4 h become 0.005 h (18 s) where the hub reads them.
    _shorten_runtime(info, name, "0.005")
    _wait("bob's server stopped", lambda: not _has_server(hub, "bob"), 120, hub)
    wait_no_pods(info, "bob")
    _wait("bob's Rucio Secret deleted", lambda: not _secrets_of(info, name), 30, hub)

    text = _log(hub)
    assert "jupyterhub-idle-culler" not in text, "no culler on this hub: the stop is the runtime limit's"
    (line,) = [ln for ln in text.splitlines() if "Stopping bob (maximum runtime reached)" in ln]
    assert "[W " in line, "a WARNING admins see"
    assert "maximum runtime of 0.005 hours chosen when it was started" in line

    home = session.get(f"{hub.url}hub/home", timeout=30)
    assert home.status_code == 200
    assert 'id="datalake-stop-notice"' in home.text
    assert "Your server was stopped at" in home.text
    assert "it reached the maximum runtime of 0.005 hours chosen when it was started" in home.text

    alice_session, _ = login(hub, info, "alice", "alice-password")
    assert 'id="datalake-stop-notice"' not in alice_session.get(f"{hub.url}hub/home", timeout=30).text

    assert spawn(hub, "bob", {"profile": "base"}).status_code in (201, 202)
    assert 'id="datalake-stop-notice"' not in session.get(f"{hub.url}hub/home", timeout=30).text, "gone on restart"
    api(hub, "DELETE", "/users/bob/server")
    _wait("bob's second server stopped", lambda: not _has_server(hub, "bob"), 60, hub)


def test_runtime_limit_holds_across_a_hub_restart(runtime_hub: HubHandle, info: dict[str, Any]) -> None:
    """The limit lives on the pod: a server that outlived it while the hub was down is stopped when the hub is back."""
    hub = runtime_hub
    session, _ = login(hub, info, "bob", "bob-password")
    assert spawn(hub, "bob", {"profile": "base", "runtime_hours": "4"}).status_code in (201, 202)
    (pod,) = user_pods(info, "bob")
    name = pod["metadata"]["name"]
    stop_hub(state_dir(), hub.name, keep_proxy=True)
    _shorten_runtime(info, name, "0.001")
    resume_hub(state_dir(), hub.name)
    _wait("bob's server stopped after the restart", lambda: not _has_server(hub, "bob"), 90, hub)
    wait_no_pods(info, "bob")
    _wait("bob's Rucio Secret deleted", lambda: not _secrets_of(info, name), 30, hub)
    text = _log(hub)  # appended to across the restart
    restarted = text.rsplit("Running JupyterHub version", 1)[1]
    assert "Stopping bob (maximum runtime reached)" in restarted, "stopped by the hub that came back"
    assert "maximum runtime of 0.001 hours" in session.get(f"{hub.url}hub/home", timeout=30).text
