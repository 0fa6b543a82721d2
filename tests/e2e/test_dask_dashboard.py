"""The Dask dashboard of a user's cluster, in a real browser, from the link her kernel gives (issue 18).

alice's session starts a Dask Gateway cluster of 2 workers. In a kernel of her server,
``cluster.dashboard_link`` points under her server (``/user/alice/dask-gateway/clusters/<name>/status``):
her server forwards it to the gateway's Traefik with its own hub token (datalake_lab_dask), and the
gateway lets only the cluster's owner through (hub_config.dask.dashboard_auth). Chromium, signed in
to the hub as alice, opens that link and the status page draws the computation she runs meanwhile.
The screenshot is the user guide's (docs/users.md, Dask section).

Not the Dask side panel (dask-labextension): the panel lists clusters it starts itself, from the
cluster factory in its server's config, and the notebook env sets none for the gateway yet.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from localplatform.hub import HubHandle
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Shots
from tests.e2e.test_user_journey import sign_in
from tests.support.dask import SUBMIT, gateway_and_hub, in_session, pod_network_available
from tests.support.hubclient import api, login, spawn, stop
from tests.support.kernel import run_cell, server_token
from tests.support.kube import user_pods

pytestmark = [
    pytest.mark.platform,
    pytest.mark.browser,
    pytest.mark.skipif(
        not pod_network_available(), reason="pods are on loopback here: Services get no Endpoints (localplatform.netns)"
    ),
]

START = (
    SUBMIT
    + """
c = g.new_cluster(shutdown_on_close=False)
c.scale(2)
c.get_client().wait_for_workers(2, timeout=240)
print("NAME", c.name, flush=True)
print("LINK", c.dashboard_link, flush=True)
"""
)
WORK = (
    SUBMIT
    + """
import time
client = g.connect({name!r}).get_client()
def slow_inc(x):
    time.sleep(0.1)
    return x + 1
print("TOTAL", client.submit(sum, client.map(slow_inc, range(300))).result(), flush=True)
"""
)


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    with gateway_and_hub(info, "e2e-dask") as (handle, _):
        yield handle


@pytest.fixture(scope="module")
def cluster(hub: HubHandle, info: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str, str]]:
    """alice's session and her cluster of 2 workers: (notebook pod, cluster name, dashboard link)."""
    assert login(hub, info, "alice", "alice-password")[1].status_code == 200
    assert spawn(hub, "alice", {"profile": "base"}).status_code in (201, 202)
    (pod,) = user_pods(info, "alice")
    try:
        out = in_session(info, pod, START, timeout=360)
        found = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith(("NAME ", "LINK "))}
        assert set(found) == {"NAME", "LINK"}, out
        yield pod, found["NAME"], found["LINK"]
    finally:
        if api(hub, "GET", "/users/alice").json().get("servers"):
            stop(hub, "alice")


def test_the_dashboard_link_from_alices_kernel_opens_in_her_browser(
    page: Page,
    browser: Browser,
    cluster: tuple[dict[str, Any], str, str],
    info: dict[str, Any],
    hub: HubHandle,
    shots: Shots,
) -> None:
    """The link a kernel of alice's server gives (``cluster.dashboard_link``) is under her server:
    a browser that is not signed in is sent to sign in, carol signed in is refused, and alice signed
    in sees the status page (its scripts and Bokeh's websocket through her server and the gateway's
    Traefik) drawing the computation she runs meanwhile: task stream, progress, workers' memory."""
    pod, name, _ = cluster
    token = server_token(hub, info, "alice", "alice-password")
    code = f"{SUBMIT}print(g.connect({name!r}).dashboard_link)"
    with ThreadPoolExecutor(1) as pool:  # run_cell runs its own event loop; Playwright's holds this thread
        status, outputs = pool.submit(run_cell, hub, "alice", token, "python3", code).result()
    assert status == "ok", outputs
    link = "".join(outputs).strip()
    assert link == f"/user/alice/dask-gateway/clusters/{name}/status", outputs
    url = hub.url.rstrip("/") + link

    page.goto(url)
    expect(page).to_have_url(re.compile(r"/hub/login"))

    other = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        carols = other.new_page()
        sign_in(carols, hub, "carol", "carol-password")
        refused = carols.goto(url)
        assert refused is not None and refused.status == 403, refused and refused.status
        assert "Dask" not in carols.title()
    finally:
        other.close()

    sign_in(page, hub, "alice", "alice-password")
    page.goto(url)
    expect(page).to_have_title(re.compile(r"Dask: Status"))
    expect(page.locator(".bk-Canvas, canvas").first).to_be_visible(timeout=60_000)
    with ThreadPoolExecutor(1) as pool:
        work = pool.submit(in_session, info, pod, WORK.format(name=name), 300)
        page.wait_for_timeout(12_000)  # 300 tasks of 0.1 s on 2 one-thread workers: ~15 s
        shots.take(page, "dask-dashboard", docs=True)
        assert "TOTAL 45150" in work.result(), work.result()
    assert page.url == url


def test_the_dask_side_panel_shows_alices_cluster_from_its_link(
    page: Page, cluster: tuple[dict[str, Any], str, str], hub: HubHandle, shots: Shots
) -> None:
    """dask-labextension's side panel, given the link (as a user pastes ``cluster.dashboard_link``),
    finds the dashboard's plots through alice's server and opens one in a JupyterLab tab."""
    _, name, _ = cluster
    sign_in(page, hub, "alice", "alice-password")
    page.goto(f"{hub.url}user/alice/lab?reset")
    tab = page.locator(".jp-SideBar li.lm-TabBar-tab[title='Dask']")
    tab.click(timeout=180_000)
    box = page.locator(".dask-URLInput input")
    box.fill(f"/user/alice/dask-gateway/clusters/{name}/status")
    box.press("Enter")
    stream = page.locator(".dask-DashboardListing-item button", has_text="Task Stream")
    expect(stream).to_be_enabled(timeout=60_000)
    shots.take(page, "dask-panel", docs=True)
    stream.click()
    frame = page.frame_locator(".dask-DaskDashboard iframe, iframe").first
    expect(frame.locator(".bk-Canvas, canvas").first).to_be_visible(timeout=60_000)
