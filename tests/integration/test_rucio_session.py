"""Rucio in a running session: the hub writes rucio.cfg and a token, `rucio whoami` works, tokens rotate.

Everything is real: the hub exchanges the user's IAM token at the platform IdP, writes the Secret
with the hub ServiceAccount, the node agent mounts it into the notebook's namespace, and the Rucio
client there talks to the real Rucio server. Commands run inside the session like `kubectl exec`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from localplatform.base import state_dir
from localplatform.controlplane import kubectl
from localplatform.hub import HubHandle, hub_log_text

from tests.support.hubclient import api, login, progress_messages, running_hub, spawn, stop
from tests.support.kube import get_json, user_pods, wait_no_pods
from tests.support.podexec import pod_env, pod_exec, pod_pid
from tests.support.rotation import fast_rotation

pytestmark = pytest.mark.platform

TTL = 60
RUCIO_DIR = "/etc/datalake/rucio"


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    """A hub whose IAM tokens live 60 s; Rucio tokens rotate with 30 s left, checked every 5 s."""
    patch = fast_rotation(iam_margin=40, rucio_margin=30)
    with running_hub(state_dir(), info, "rucio", settings_patch=patch, access_token_ttl=TTL) as handle:
        yield handle


@pytest.fixture(scope="module")
def alice_server(hub: HubHandle, info: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """alice signed in, with a running `base` server."""
    _, page = login(hub, info, "alice", "alice-password")
    assert page.status_code == 200
    assert spawn(hub, "alice", {"profile": "base"}).status_code in (201, 202)
    (pod,) = user_pods(info, "alice")
    yield pod
    if api(hub, "GET", "/users/alice").json().get("servers"):
        stop(hub, "alice")


def whoami(info: dict[str, Any], pod: dict[str, Any]) -> str:
    result = pod_exec(info, pod["metadata"]["name"], ["rucio", "whoami"])
    return result.stdout + result.stderr


SEEN_TOKENS: list[str] = []
"""Every Rucio token read from a session during this module, for the final leak scan."""


def token_digest(info: dict[str, Any], pod: dict[str, Any]) -> str:
    result = pod_exec(info, pod["metadata"]["name"], ["cat", f"{RUCIO_DIR}/token-local"])
    assert result.returncode == 0, result.stderr
    assert not result.stdout.endswith("\n"), "token file must not end with a newline"
    SEEN_TOKENS.append(result.stdout)
    return hashlib.sha256(result.stdout.encode()).hexdigest()


def test_rucio_whoami_in_the_session_prints_the_users_account(
    info: dict[str, Any], alice_server: dict[str, Any]
) -> None:
    """In alice's notebook, `rucio whoami` answers with her account from the real Rucio server."""
    out = whoami(info, alice_server)
    assert re.search(r"^account\s*:\s*alice$", out, re.MULTILINE), out


def test_session_env_points_at_files_and_holds_no_token(info: dict[str, Any], alice_server: dict[str, Any]) -> None:
    """RUCIO_CONFIG points at the mounted file; no BEARER_TOKEN*, no token value in the environment."""
    pid = pod_pid(info, alice_server["metadata"]["name"])
    env = pod_env(pid)
    assert env["RUCIO_CONFIG"] == f"{RUCIO_DIR}/rucio.cfg"
    assert not [k for k in env if k.startswith("BEARER_TOKEN")]
    listing = pod_exec(info, alice_server["metadata"]["name"], ["ls", "-l", RUCIO_DIR]).stdout
    for name in ("rucio.cfg", "rucio-local.cfg", "token-local", "jupyter_server_config.json"):
        assert name in listing


HOOK = Path(__file__).resolve().parents[2] / "images/common/before-notebook.d/50-datalake-rucio.sh"


def test_image_start_up_hook_places_the_config_rucio_uses(info: dict[str, Any], alice_server: dict[str, Any]) -> None:
    """Our images' start-up hook, run in the session, points Rucio at the mounted files: whoami works, no token shown."""
    # The hook's text, not its path: the checkout may be under /tmp, which each pod has privately.
    script = (
        "unset RUCIO_CONFIG JUPYTER_CONFIG_PATH\n"
        f"{HOOK.read_text()}\n"
        'echo "RUCIO_CONFIG=$RUCIO_CONFIG"; echo "JUPYTER_CONFIG_PATH=$JUPYTER_CONFIG_PATH"; rucio whoami\n'
    )
    result = pod_exec(info, alice_server["metadata"]["name"], ["bash", "-c", script])
    out = result.stdout + result.stderr
    assert f"RUCIO_CONFIG={RUCIO_DIR}/rucio.cfg" in out, out
    assert f"JUPYTER_CONFIG_PATH={RUCIO_DIR}" in out, out
    assert re.search(r"^account\s*:\s*alice$", out, re.MULTILINE), out
    token = pod_exec(info, alice_server["metadata"]["name"], ["cat", f"{RUCIO_DIR}/token-local"]).stdout
    SEEN_TOKENS.append(token)
    assert token[:40] not in out


def test_the_extension_accepts_the_mounted_token(hub: HubHandle, alice_server: dict[str, Any]) -> None:
    """The JupyterLab Rucio panel's OIDC check against the Rucio server succeeds with the mounted config."""
    headers = {"Authorization": f"token {hub.service_token}"}
    base = f"{hub.url}user/alice/rucio-jupyterlab"
    instances = requests.get(f"{base}/instances", headers=headers, timeout=30)
    assert instances.status_code == 200, instances.text
    assert "local" in instances.text
    check = requests.get(f"{base}/oidc-auth-check", params={"namespace": "local"}, headers=headers, timeout=60)
    assert check.status_code == 200, check.text
    assert check.json()["success"] is True


def test_tokens_rotate_in_place_and_whoami_keeps_working(
    hub: HubHandle, info: dict[str, Any], alice_server: dict[str, Any]
) -> None:
    """With 60 s tokens, 3 minutes later `rucio whoami` still works and the token file has changed."""
    first = token_digest(info, alice_server)
    seen = {first}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        time.sleep(15)
        seen.add(token_digest(info, alice_server))
    assert len(seen) >= 3, "the token should have been rotated several times in 3 minutes"
    rotations = hub_log_text(hub).count("Rucio credentials for alice in Secret")
    assert rotations >= 3, "each rotation is an INFO line in the hub log (without the token)"
    assert re.search(r"^account\s*:\s*alice$", whoami(info, alice_server), re.MULTILINE)


def test_stop_removes_the_secret(hub: HubHandle, info: dict[str, Any], alice_server: dict[str, Any]) -> None:
    """Stopping the server deletes its Rucio Secret (and the pod owned it meanwhile)."""
    name = f"{alice_server['metadata']['name']}-rucio"
    secret = get_json(info, "secret", "-n", info["controlplane"]["namespace"], name)
    assert secret["metadata"]["ownerReferences"][0]["name"] == alice_server["metadata"]["name"]
    stop(hub, "alice")
    wait_no_pods(info, "alice")
    out = kubectl(
        info["controlplane"]["kubeconfig"], "get", "secrets", "-n", info["controlplane"]["namespace"], "-o", "name"
    )
    assert f"secret/{name}" not in out


def _spawn_following_progress(hub: HubHandle, user: str) -> list[str]:
    """Spawn like the spawn page does: follow the progress while the spawn request is still in flight."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        request = pool.submit(api, hub, "POST", f"/users/{user}/server", json={"profile": "base"})
        messages = progress_messages(hub, user, wait_pending=30)
        assert request.result().status_code in (201, 202)
    return messages


def _refused_instance(info: dict[str, Any]) -> dict[str, Any]:
    """The real Rucio server, but with a scope the IdP refuses to exchange for: fails for every user."""
    return {
        **_local_instance(info),
        "name": "refused",
        "display_name": "Refused Rucio",
        "token_exchange": {"scope": "openid profile storage.admin"},
    }


NO_TRACEBACK = ("Traceback", "ConfigLoadingError")


def test_exchange_refused_server_starts_and_rucio_says_why(info: dict[str, Any]) -> None:
    """No instance works: the server starts, progress says so, and `rucio whoami` gives a reason, no traceback."""
    with running_hub(
        state_dir(),
        info,
        "rucio-refused",
        settings_patch={"rucio": {"instances": [_refused_instance(info)]}},
        access_token_ttl=TTL,
    ) as hub:
        login(hub, info, "carol", "carol-password")
        try:
            messages = [m for m in _spawn_following_progress(hub, "carol") if "Rucio" in m]
            assert messages[0].startswith(
                "Rucio instance Refused Rucio (default): unavailable: the identity provider refused the token exchange"
            ), messages
            assert messages[1] == (
                "Rucio access is unavailable: no Rucio instance could be set up for you; the server starts without Rucio"
            ), messages
            assert api(hub, "GET", "/users/carol").json()["servers"][""]["ready"] is True
            (pod,) = user_pods(info, "carol")
            env = pod_env(pod_pid(info, pod["metadata"]["name"]))
            assert env["RUCIO_CONFIG"] == f"{RUCIO_DIR}/rucio.cfg"
            out = whoami(info, pod)
            assert not any(bad in out for bad in NO_TRACEBACK), out
            (details,) = [line for line in out.splitlines() if line.startswith("Details:")]
            assert details.startswith(
                "Details: auth type 'unavailable - datalake-hub could not set up rucio instance refused rucio "
                "for you in this session: the identity provider refused the token exchange"
            ), out
            assert len([line for line in out.splitlines() if line.strip()]) == 2, out
        finally:
            stop(hub, "carol")
            wait_no_pods(info, "carol")


def test_default_instance_fails_the_other_works_and_the_default_is_still_named(info: dict[str, Any]) -> None:
    """Two instances, the first (the default) refused for carol: rucio.cfg does not silently become the
    second's; the second's file works; the session, the panel and the progress name the default."""
    instances = [_refused_instance(info), _local_instance(info)]
    with running_hub(
        state_dir(), info, "rucio-two", settings_patch={"rucio": {"instances": instances}}, access_token_ttl=TTL
    ) as hub:
        login(hub, info, "carol", "carol-password")
        try:
            messages = [m for m in _spawn_following_progress(hub, "carol") if "Rucio" in m]
            assert len(messages) == 3, messages
            assert messages[0].startswith(
                "Rucio instance Refused Rucio (default): unavailable: the identity provider refused the token exchange"
            ), messages
            assert messages[1] == "Rucio instance Local Rucio: ready, account carol", messages
            assert messages[2] == (
                "Rucio is partly ready: the default, Refused Rucio, is unavailable (rucio.cfg says why); "
                f"working: Local Rucio (rucio --config {RUCIO_DIR}/rucio-local.cfg)"
            ), messages
            (pod,) = user_pods(info, "carol")
            name = pod["metadata"]["name"]
            env = pod_env(pod_pid(info, name))
            assert env["RUCIO_CONFIG"] == f"{RUCIO_DIR}/rucio.cfg"
            assert env["DATALAKE_RUCIO_DEFAULT"] == "refused"

            default = whoami(info, pod)
            assert not any(bad in default for bad in NO_TRACEBACK), default
            assert "account" not in default.split("Details:")[0], "rucio.cfg must not be Local Rucio's"
            assert f"working instead: rucio --config {RUCIO_DIR}/rucio-local.cfg whoami" in default, default
            local = pod_exec(info, name, ["rucio", "--config", f"{RUCIO_DIR}/rucio-local.cfg", "whoami"])
            assert re.search(r"^account\s*:\s*carol$", local.stdout, re.MULTILINE), local.stdout + local.stderr

            status = pod_exec(info, name, ["cat", f"{RUCIO_DIR}/status.txt"]).stdout.splitlines()
            assert status[1:] == messages
            listing = pod_exec(info, name, ["ls", RUCIO_DIR]).stdout.split()
            assert "token-local" in listing
            assert "token-refused" not in listing

            headers = {"Authorization": f"token {hub.service_token}"}
            base = f"{hub.url}user/carol/rucio-jupyterlab"
            panel = requests.get(f"{base}/instances", headers=headers, timeout=30)
            assert panel.status_code == 200, panel.text
            assert panel.json()["active_instance"] == "refused"
            shown = {i["name"]: i["display_name"] for i in panel.json()["instances"]}
            assert shown == {"refused": "Refused Rucio (unavailable)", "local": "Local Rucio"}
            check = requests.get(f"{base}/oidc-auth-check", params={"namespace": "local"}, headers=headers, timeout=60)
            assert check.status_code == 200, check.text
            assert check.json()["success"] is True
        finally:
            stop(hub, "carol")
            wait_no_pods(info, "carol")


def test_server_keeps_rucio_when_kubespawner_replaces_a_stale_pod(hub: HubHandle, info: dict[str, Any]) -> None:
    """A pod left with the server's name (409 at create) is killed and replaced by KubeSpawner
    while it starts; the new server must still get the Secret written for this start, owned by it."""
    namespace = info["controlplane"]["namespace"]
    stale = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "jupyter-carol", "namespace": namespace},
        "spec": {
            "containers": [{"name": "notebook", "image": "datalake-base"}],
            "nodeSelector": {"datalake.test/no-such-node": "true"},  # stays Pending
            "terminationGracePeriodSeconds": 0,
        },
    }
    manifest = Path(info["_state"] if "_state" in info else state_dir()) / "stale-carol-pod.json"
    manifest.write_text(json.dumps(stale))
    kubectl(info["controlplane"]["kubeconfig"], "apply", "-f", str(manifest))
    login(hub, info, "carol", "carol-password")
    try:
        assert spawn(hub, "carol", {"profile": "base"}).status_code in (201, 202)
        assert "Found existing pod jupyter-carol, attempting to kill" in hub_log_text(hub)
        (pod,) = user_pods(info, "carol")
        deadline = time.monotonic() + 30
        while True:
            secret = get_json(info, "secret", "-n", namespace, "jupyter-carol-rucio")
            owners = [o["uid"] for o in secret["metadata"].get("ownerReferences") or []]
            if owners == [pod["metadata"]["uid"]]:
                break
            assert time.monotonic() < deadline, f"Secret owners {owners}, not the new pod"
            time.sleep(1)
        assert re.search(r"^account\s*:\s*carol$", whoami(info, pod), re.MULTILINE)
    finally:
        stop(hub, "carol")
        wait_no_pods(info, "carol")


def _local_instance(info: dict[str, Any]) -> dict[str, Any]:
    rucio = info["rucio_server"]
    return {
        "name": "local",
        "display_name": "Local Rucio",
        "rucio_host": rucio["url"],
        "auth_host": rucio["auth_url"],
        "ca_cert": info["idp"]["ca_bundle"],
    }


def test_no_issued_token_anywhere_visible(hub: HubHandle, info: dict[str, Any]) -> None:
    """Hub log, pod specs, ConfigMaps and events of the whole run contain none of the issued tokens."""
    tokens: list[str] = []
    for user in ("alice", "carol"):
        state = api(hub, "GET", f"/users/{user}").json().get("auth_state") or {}
        tokens += [state.get(k, "") for k in ("access_token", "refresh_token", "id_token")]
    tokens += SEEN_TOKENS
    tokens = [t for t in tokens if t]
    assert len(SEEN_TOKENS) >= 3
    visible = hub_log_text(hub)
    for kind in ("pods", "configmaps", "events"):
        visible += json.dumps(get_json(info, kind, "-A"))
    for token in tokens:
        assert token[:40] not in visible
