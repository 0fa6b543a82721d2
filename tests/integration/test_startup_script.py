"""~/.jupyterlabrc in a real session: the image's hook runs it before the server starts.

The pod has no `command`, so the image's ENTRYPOINT runs first, as in a cluster; the node agent's
stand-in for it (scripts/localplatform/image-start.sh) sources the images' own before-notebook.d
hooks. The script's path comes from `datalake.spawner.startup_script` (the pod's
DATALAKE_STARTUP_SCRIPT). The home is the user's NFS home, so a file written in one session is
there for the next. One user, four starts: no script, a good one (its exports seen by a notebook kernel), a failing one,
a hanging one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from localplatform.base import state_dir
from localplatform.hub import HubHandle
from localplatform.nodeagent import agent_pods

from tests.support.hubclient import api, running_hub, spawn, stop
from tests.support.kernel import run_cell, server_token
from tests.support.kube import user_pods, wait_no_pods
from tests.support.podexec import pod_env, pod_exec, pod_pid

pytestmark = pytest.mark.platform

RC = "/home/jovyan/.jupyterlabrc"
HANG_LIMIT = 60
"""Seconds the image's hook lets a script run (its default)."""


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    with running_hub(state_dir(), info, "startup") as handle:
        yield handle
        if api(handle, "GET", "/users/frank.miller").json().get("servers"):
            stop(handle, "frank.miller")


def _start(hub: HubHandle, info: dict[str, Any]) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    assert spawn(hub, "frank.miller", {"profile": "base"}, timeout=240).status_code in (201, 202)
    (pod,) = user_pods(info, "frank.miller")
    return pod, time.monotonic() - started


def _restart_with(hub: HubHandle, info: dict[str, Any], pod: dict[str, Any], script: str | None) -> None:
    """Leave ``script`` as the user's ~/.jupyterlabrc (None: no file) and stop the server."""
    name = pod["metadata"]["name"]
    command = f"rm -f {RC}" if script is None else f"cat > {RC} <<'EOF'\n{script}\nEOF"
    result = pod_exec(info, name, ["bash", "-c", command])
    assert result.returncode == 0, result.stderr
    stop(hub, "frank.miller")
    wait_no_pods(info, "frank.miller")
    # kwok gives the next pod this IP at once: until the old server is gone it would answer the hub.
    deadline = time.monotonic() + 60
    while name in {p.name for p in agent_pods(info)}:
        assert time.monotonic() < deadline, f"the node agent still runs {name}"
        time.sleep(0.5)


def _pod_log(info: dict[str, Any], pod: dict[str, Any]) -> str:
    ns = info["controlplane"]["namespace"]
    path = Path(state_dir()) / "logs" / "pods" / f"{ns}_{pod['metadata']['name']}.log"
    text = path.read_text(errors="replace")
    return text[text.rfind("--- nodeagent: starting") :]  # this start's output only


def _server_env(info: dict[str, Any], pod: dict[str, Any]) -> dict[str, str]:
    """The server's environment, which its kernels and terminals inherit."""
    return pod_env(pod_pid(info, pod["metadata"]["name"]))


def test_startup_script_runs_before_the_server_and_failures_do_not_stop_it(
    hub: HubHandle, info: dict[str, Any]
) -> None:
    # His first sign-in makes his hub account; the token lets the test drive a kernel as he would.
    token = server_token(hub, info, "frank.miller", "frank-password")
    pod, _ = _start(hub, info)
    assert _server_env(info, pod)["DATALAKE_STARTUP_SCRIPT"] == RC
    _restart_with(hub, info, pod, "export ANALYSIS_RELEASE=2026.11\nexport PATH=$HOME/mytools:$PATH")

    pod, _ = _start(hub, info)
    env = _server_env(info, pod)
    assert env.get("ANALYSIS_RELEASE") == "2026.11", "the script's exports reach the server"
    assert env["PATH"].startswith("/home/jovyan/mytools:")
    status, outputs = run_cell(
        hub, "frank.miller", token, "python3", "import os; print(os.environ.get('ANALYSIS_RELEASE'))"
    )
    assert status == "ok" and "".join(outputs).strip() == "2026.11", f"a notebook kernel sees {outputs}"
    log = _pod_log(info, pod)
    assert "Sourcing shell script: " in log and "90-datalake-run-startup-script.sh" in log
    assert f"{RC} done; variables set: " in log and "ANALYSIS_RELEASE" in log
    assert "2026.11" not in log, "only variable names are logged, never values"
    _restart_with(hub, info, pod, "export ANALYSIS_RELEASE=broken\nfalse\nexit 3")

    pod, _ = _start(hub, info)
    assert "ANALYSIS_RELEASE" not in _server_env(info, pod), "a failing script changes nothing"
    assert f"{RC} failed (exit status 3); its settings were ignored" in _pod_log(info, pod)
    _restart_with(hub, info, pod, "export ANALYSIS_RELEASE=never\nsleep 3600")

    pod, took = _start(hub, info)
    assert "ANALYSIS_RELEASE" not in _server_env(info, pod)
    assert f"{RC} did not finish within {HANG_LIMIT}s; it was stopped" in _pod_log(info, pod)
    assert took >= HANG_LIMIT, "the hook waited for the script, up to its limit"
    print(f"start with a hanging ~/.jupyterlabrc: {took:.0f} s (limit {HANG_LIMIT} s)")
    _restart_with(hub, info, pod, None)
