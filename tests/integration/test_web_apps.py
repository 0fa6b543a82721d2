"""Web apps beside JupyterLab in a real session: TensorBoard through jupyter-server-proxy, behind the hub.

alice starts the `datascience` option through the hub like any user. The node agent runs the
session from the venv that holds the images' pins (jupyter-server-proxy 4.6.0, TensorBoard 2.21.0)
with the image's launcher entries at the image's path. Her TensorBoard reads runs from her home (the
NFS home, written here from inside her session); it answers under her server's URL to her browser
session only: another user, signed in, and an anonymous browser are refused by the server's hub auth.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from localplatform.base import state_dir
from localplatform.hub import HubHandle

from tests.support.hubclient import api, login, running_hub, spawn, stop
from tests.support.kube import user_pods, wait_no_pods
from tests.support.podexec import pod_exec

pytestmark = pytest.mark.platform

WRITE_RUN = """
import sys, time
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
w = EventFileWriter(sys.argv[1])
for step, loss in enumerate([0.9, 0.5, 0.25]):
    value = summary_pb2.Summary.Value(tag="loss", simple_value=loss)
    w.add_event(event_pb2.Event(step=step, wall_time=time.time(), summary=summary_pb2.Summary(value=[value])))
w.close()
"""
"""An event file as any training script writes one (TensorBoard's own writer, no TensorFlow needed)."""


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    with running_hub(state_dir(), info, "webapps") as handle:
        yield handle


@pytest.fixture(scope="module")
def alice(hub: HubHandle, info: dict[str, Any]) -> Iterator[tuple[requests.Session, dict[str, Any]]]:
    """alice signed in (her browser session) with a running `datascience` server."""
    session, page = login(hub, info, "alice", "alice-password")
    assert page.status_code == 200
    assert spawn(hub, "alice", {"profile": "datascience"}).status_code in (201, 202)
    (pod,) = user_pods(info, "alice")
    yield session, pod
    if api(hub, "GET", "/users/alice").json().get("servers"):
        stop(hub, "alice")
    wait_no_pods(info, "alice")


def test_the_lab_offers_the_images_web_apps(hub: HubHandle, alice: tuple[requests.Session, dict[str, Any]]) -> None:
    """jupyter-server-proxy lists TensorBoard (the datascience image's one app), as the launcher shows it."""
    session, _ = alice
    resp = session.get(f"{hub.url}user/alice/server-proxy/servers-info", timeout=30)
    assert resp.status_code == 200, resp.text[:300]
    servers = {s["name"]: s for s in resp.json()["server_processes"]}
    assert set(servers) == {"tensorboard"}, servers
    assert servers["tensorboard"]["launcher_entry"]["title"] == "TensorBoard"


def test_tensorboard_serves_the_users_runs_behind_the_hub(
    hub: HubHandle, info: dict[str, Any], alice: tuple[requests.Session, dict[str, Any]]
) -> None:
    session, pod = alice
    name = pod["metadata"]["name"]
    run = f"run-{time.time_ns()}"  # the home outlives the server: earlier runs may be there too
    written = pod_exec(info, name, ["python", "-c", WRITE_RUN, f"/home/jovyan/tensorboard/{run}"])
    assert written.returncode == 0, written.stderr

    url = f"{hub.url}user/alice/tensorboard/"
    started = time.monotonic()
    page = session.get(url, timeout=120)  # the proxy starts TensorBoard on the first request
    first = time.monotonic() - started
    assert page.status_code == 200, page.text[:300]
    assert "<tf-tensorboard" in page.text or "TensorBoard" in page.text
    runs: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and run not in runs:
        runs = session.get(f"{url}data/runs", timeout=30).json()
        time.sleep(2)
    assert run in runs, f"TensorBoard saw {runs}, not alice's new run in her home"
    print(f"TensorBoard first page through the proxy: {first:.1f} s")

    dave, _ = login(hub, info, "dave.smith", "dave-password")  # signed in, not an admin (bob is one)
    refused = dave.get(f"{url}data/runs", timeout=30, allow_redirects=True)
    assert refused.status_code == 403, f"dave.smith got {refused.status_code} for alice's TensorBoard"
    assert run not in refused.text
    anonymous = requests.get(f"{url}data/runs", timeout=30, allow_redirects=False)
    assert anonymous.status_code == 302
    assert "/hub/" in anonymous.headers["Location"], anonymous.headers["Location"]
    assert run not in anonymous.text


def test_vs_code_serves_the_users_home_behind_the_hub(
    hub: HubHandle, info: dict[str, Any], alice: tuple[requests.Session, dict[str, Any]]
) -> None:
    """code-server (its npm package, the version in localplatform.codeserver) in the `devops` option."""
    session, _ = alice
    stop(hub, "alice")
    wait_no_pods(info, "alice")
    assert spawn(hub, "alice", {"profile": "devops"}).status_code in (201, 202)
    info_resp = session.get(f"{hub.url}user/alice/server-proxy/servers-info", timeout=30)
    assert {s["name"] for s in info_resp.json()["server_processes"]} == {"code-server"}

    url = f"{hub.url}user/alice/code-server/"
    started = time.monotonic()
    page = session.get(url, timeout=180)  # the proxy starts code-server on the first request
    first = time.monotonic() - started
    assert page.status_code == 200, page.text[:300]
    assert "vscode" in page.text.lower(), page.text[:300]
    print(f"code-server first page through the proxy: {first:.1f} s")

    anonymous = requests.get(url, timeout=30, allow_redirects=False)
    assert anonymous.status_code == 302 and "/hub/" in anonymous.headers["Location"]
