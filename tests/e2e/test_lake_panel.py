"""The data-lake workflow in the Rucio panel, in a real browser (issue #22).

alice on a server option that mounts EOS finds a file on the RSE behind the mount: the panel says
it is available (replica mode, paths derived by the hub from the mount and the RSE's prefix), "add
to notebook" puts its path in a variable, and a cell reads the file from the mount. "Make
available" for a file elsewhere asks Rucio for one rule (asking again is not an error) and the
panel says the copy is pending or done. On an option without EOS the panel is in download mode and
"make available" fetches the file into the home. The screenshots are the user guide's
(docs/users.md, "The data-lake workflow").
"""

from __future__ import annotations

import json
import re
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from localplatform.base import state_dir
from localplatform.controlplane import kubectl
from localplatform.hub import HubHandle
from localplatform.sessionenv import ensure_session_venv
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import Shots
from tests.e2e.test_user_journey import sign_in
from tests.support.hubclient import api, stop
from tests.support.kube import wait_no_pods

pytestmark = [pytest.mark.platform, pytest.mark.browser]

LAB_TIMEOUT = 180_000
"""ms: a cold JupyterLab on 2 shared cores, behind a spawn, can take a while."""
EOS_OPTION = "hep-slim"
"""A shipped option that mounts `eos` (the smallest): replica mode."""
PLAIN_OPTION = "base"
"""A shipped option without EOS: download mode."""
CLEAR_DOWNLOADS = (
    "import os, shutil; shutil.rmtree(os.path.expanduser('~/rucio/local/downloads'), ignore_errors=True); "
    "print('cleared')"
)


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    """The local settings as `make dev` has them; alice's server never outlives the hub.

    The notebooks' venv is shared by every checkout on the machine (a cache): this checkout's image
    files (our server extension, the kernel config) are put back into it first, as `make prepare`
    does, in case another checkout's prepare replaced them since.
    """
    from tests.support.hubclient import running_hub

    ensure_session_venv()

    ns = info["controlplane"]["namespace"]
    kubectl(info["controlplane"]["kubeconfig"], "delete", "pod", "-n", ns, "jupyter-alice", "--ignore-not-found")
    wait_no_pods(info, "alice")
    with running_hub(state_dir(), info, "lake") as handle:
        try:
            yield handle
        finally:
            if api(handle, "GET", "/users/alice").json().get("servers"):
                stop(handle, "alice")
            wait_no_pods(info, "alice")


def start_lab_with_a_notebook(page: Page, hub: HubHandle, option: str) -> None:
    """From the spawn page: start ``option``, open a clean Lab, open a Python notebook, wait for its kernel."""
    expect(page).to_have_url(re.compile(r"/hub/spawn"))
    page.locator(f"#profile-card-{option}").click()
    page.get_by_role("button", name="Start").click()
    expect(page).to_have_url(re.compile(r"/user/alice/lab"), timeout=LAB_TIMEOUT)
    page.goto(f"{hub.url}user/alice/lab?reset")  # home outlives the server: no restored workspace
    page.locator(".jp-LauncherCard[data-category='Notebook']").first.click(timeout=LAB_TIMEOUT)
    expect(page.locator(".jp-Notebook .jp-Cell .cm-content").first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)


def open_panel(page: Page) -> Locator:
    tab = page.locator(".jp-SideBar li.lm-TabBar-tab", has=page.locator("[data-icon='rucio-jupyterlab:rucio']"))
    tab.click()
    panel = page.locator(".jp-RucioExtensionPanel")
    expect(panel).to_be_visible()
    return panel


def search(panel: Locator, did: str) -> Locator:
    """Search ``did`` and open its row; return the row's status line."""
    box = panel.get_by_placeholder(re.compile("Data Identifier"))
    box.fill(did)
    box.press("Enter")
    row = panel.get_by_text(did, exact=True)
    expect(row).to_be_visible(timeout=60_000)
    row.click()  # a row opens its availability line under it
    return panel


def add_to_notebook(page: Page, panel: Locator, variable: str) -> None:
    panel.get_by_text("Add to Notebook").first.click()
    field = page.get_by_placeholder("Enter a variable name")
    field.fill(variable)
    field.press("Enter")


def run_cell(page: Page, code: str, index: int) -> Locator:
    """Type ``code`` into the notebook's last cell, run it; return its output area (``index``-th)."""
    cell = page.locator(".jp-Notebook .jp-Cell .cm-content").last
    cell.click()
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")
    return page.locator(".jp-OutputArea-output").nth(index)


def test_replica_mode_a_file_on_the_eos_rse_is_available_and_a_cell_reads_it(
    page: Page, hub: HubHandle, info: dict[str, Any], shots: Shots
) -> None:
    rucio = info["rucio_server"]
    did = "user.alice:hello.txt"
    sign_in(page, hub, "alice", "alice-password")
    start_lab_with_a_notebook(page, hub, EOS_OPTION)
    panel = search(open_panel(page), did)
    expect(panel.get_by_text("Available", exact=True)).to_be_visible(timeout=60_000)
    shots.take(page, "lake-replica-available", docs=True)

    add_to_notebook(page, panel, "hello")
    out = run_cell(page, "print(hello); print(open(hello).read())", 0)
    expect(out).to_contain_text("/eos/lake/user/alice/hello.txt", timeout=60_000)
    expect(out).to_contain_text(f"Hello alice, this file is on {rucio['rse']}.")
    shots.take(page, "lake-notebook-path", docs=True)

    # A file only on the other RSE: "make available" asks Rucio for a rule to the EOS RSE. Nothing
    # on this platform transfers, so the panel says the copy is pending (a site runs FTS for it).
    remote = other_rse_file(info)
    widen_panel(page)
    search(panel, remote)
    make = panel.get_by_text("Make Available", exact=True)
    expect(make).to_be_visible(timeout=60_000)
    shots.take(page, "lake-not-available", docs=True)
    with page.expect_response(re.compile(r"/rucio-jupyterlab/did/make-available")) as made:
        make.click()
    first = made.value
    assert first.status == 200, first.text()
    pending = panel.get_by_text(re.compile(rf"^Pending transfer to {rucio['rse']}, 0 of 1 file\(s\) copied: "))
    expect(pending).to_be_visible(timeout=60_000)
    expect(pending).to_contain_text(f"Rule {first.json()['rule_id']}")
    shots.take(page, "lake-pending", docs=True)

    # Asking again (another tab, a retry) is not an error: the answer names the same rule.
    again = page.request.post(
        f"{hub.url}user/alice/rucio-jupyterlab/did/make-available?namespace=local",
        data={"did": remote},
        headers={"X-XSRFToken": xsrf(page)},
    )
    assert again.status == 200, again.text()
    assert again.json()["rule_id"] == first.json()["rule_id"] and again.json()["existing"] is True
    assert rules_to(info, remote, rucio["rse"], account="alice") == [first.json()["rule_id"]]


def widen_panel(page: Page, to: int = 640) -> None:
    """Drag the left sidebar's edge, as a user would, so the panel's status lines are not cut short."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle:visible").first
    box = handle.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(to, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()


def xsrf(page: Page) -> str:
    """Jupyter Server's XSRF cookie: a POST with the browser's cookies must echo it in a header."""
    return next(c["value"] for c in page.context.cookies() if c["name"] == "_xsrf")


def other_rse_file(info: dict[str, Any]) -> str:
    """A new file DID with its one replica on the user RSE (registered as root), for this run.

    The platform's sample (`datalake:calibration.csv`) would do once; but the platform outlives test
    runs (``DATALAKE_KEEP_PLATFORM=1``), a rule cannot be taken back through Rucio's REST API (it
    expires an hour later, removed by a daemon this platform does not run), and the panel's "Not
    Available" state needs a file without a rule. Nothing is copied, so the file's bytes need not exist.
    """
    rucio = info["rucio_server"]
    user_rse = next(name for name, rse in rucio["rses"].items() if rse["user_upload"])
    name = f"calibration-{uuid.uuid4().hex[:8]}.csv"
    content = b"channel,gain\n1,0.98\n"
    as_root(info, "POST", "/replicas", {
        "rse": user_rse,
        "files": [{"scope": rucio["shared_scope"], "name": name, "bytes": len(content),
                   "adler32": f"{zlib.adler32(content):08x}"}],
    })  # fmt: skip
    return f"{rucio['shared_scope']}:{name}"


def as_root(info: dict[str, Any], method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
    """A Rucio REST call as its root account (the test's own view, never through the panel)."""
    rucio = info["rucio_server"]
    root = rucio["root"]
    auth = requests.get(
        f"{rucio['auth_url']}/auth/userpass",
        headers={"X-Rucio-Account": "root", "X-Rucio-Username": root["username"], "X-Rucio-Password": root["password"]},
        timeout=30,
    )
    token = auth.headers["X-Rucio-Auth-Token"]
    resp = requests.request(
        method, f"{rucio['url']}{path}", headers={"X-Rucio-Auth-Token": token}, json=body, timeout=30
    )
    assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
    return resp


def rules_to(info: dict[str, Any], did: str, rse: str, *, account: str) -> list[str]:
    """Ids of ``account``'s rules on ``did`` to ``rse``."""
    scope, name = did.split(":")
    resp = as_root(info, "GET", f"/dids/{scope}/{name}/rules")
    rules = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
    return [r["id"] for r in rules if r["rse_expression"] == rse and r["account"] == account]
