"""What a user sees, in a real browser: sign-in, the spawn form, progress, JupyterLab with Rucio.

Everything behind the browser is the local platform: the hub (our whole configuration) behind
configurable-http-proxy, the oidc-provider IdP, the real kube-apiserver with kwok and the node agent
running the notebook server, and the real Rucio server the notebook's client talks to.
The screenshots these tests take are the ones the user guide (docs/users.md) shows.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from localplatform.base import state_dir
from localplatform.controlplane import kubectl
from localplatform.hub import HubHandle, hub_log_text
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Shots
from tests.support.hubclient import api, running_hub, stop
from tests.support.kube import user_pods, wait_no_pods

pytestmark = [pytest.mark.platform, pytest.mark.browser]

NOTICE = "Scheduled maintenance on Tuesday 08:00-10:00 UTC: running servers will be stopped. <b>Save your work</b>."
"""A maintenance banner, as sites post them; the markup in it must show as text, not HTML."""
SITE = "ESCAPE Data Lake (local)"
OFFERED = ("base", "hep", "hep-slim", "datascience", "devops", "full", "ska-sdc1")
"""The shipped options alice (group escape) is offered: all but the GPU one."""
SCREEN = {"width": 1280, "height": 900}
"""The screen the spawn page must fit on, every option of the default set included."""
WRITE_RUN = (
    "import time; from tensorboard.compat.proto import event_pb2 as e, summary_pb2 as s; "
    "from tensorboard.summary.writer.event_file_writer import EventFileWriter as W; "
    "w = W('/home/jovyan/tensorboard/journey'); "
    "[w.add_event(e.Event(step=i, wall_time=time.time(), summary=s.Summary(value=[s.Summary.Value("
    "tag='loss', simple_value=1.0 / (i + 1))]))) for i in range(20)]; w.close(); print('run written')"
)
"""A notebook cell logging a small training run where TensorBoard looks (no TensorFlow needed)."""
LAB_TIMEOUT = 180_000
"""ms: a cold JupyterLab on 2 shared cores, behind a spawn, can take a while."""


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    """A hub with the site's name and a maintenance banner; alice's server never outlives it.

    A pod left by an earlier, interrupted run would be replaced by a new one on the same pod IP
    while its process still answers there (kwok reuses IPs at once, a cluster would not), so the
    old pod is removed before the hub starts.
    """
    ns = info["controlplane"]["namespace"]
    kubectl(info["controlplane"]["kubeconfig"], "delete", "pod", "-n", ns, "jupyter-alice", "--ignore-not-found")
    wait_no_pods(info, "alice")
    patch = {"site_name": SITE, "announcement": {"text": NOTICE, "level": "warning"}}
    with running_hub(state_dir(), info, "e2e", settings_patch=patch) as handle:
        try:
            yield handle
        finally:
            if api(handle, "GET", "/users/alice").json().get("servers"):
                stop(handle, "alice")
            wait_no_pods(info, "alice")


def sign_in(page: Page, hub: HubHandle, username: str, password: str, shots: Shots | None = None) -> None:
    """Hub → "Sign in with ESCAPE IAM" → IdP login form → consent → back at the hub."""
    page.goto(hub.url)
    expect(page).to_have_url(re.compile(r"/hub/login"))
    page.get_by_role("button", name="Sign in with ESCAPE IAM").click()
    expect(page.get_by_role("heading", name="ESCAPE IAM (local test IdP)")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    if shots:
        shots.take(page, "idp-login")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Approve access")).to_be_visible()
    page.get_by_role("button", name="Approve").click()


def expect_announcement(page: Page) -> None:
    banner = page.locator("#datalake-announcement")
    expect(banner).to_be_visible()
    expect(banner).to_have_text(NOTICE)  # escaped: "<b>" is shown, not interpreted
    expect(banner).to_have_class(re.compile(r"\balert-warning\b"))


def test_login_page_names_the_site_offers_iam_and_shows_the_announcement(
    page: Page, hub: HubHandle, shots: Shots
) -> None:
    page.goto(hub.url)
    expect(page).to_have_url(re.compile(r"/hub/login"))
    expect(page).to_have_title(SITE)
    expect(page.locator("#datalake-login-header h1")).to_have_text(SITE)
    expect(page.get_by_role("button", name="Sign in with ESCAPE IAM")).to_be_visible()
    expect_announcement(page)
    shots.take(page, "login", docs=True)


def test_user_signs_in_picks_an_option_watches_progress_and_uses_rucio_in_lab(
    page: Page, hub: HubHandle, info: dict[str, Any], shots: Shots
) -> None:
    events: list[str] = []

    def record(text: str) -> None:
        events.append(text)

    # The progress page redirects as soon as the server is up; record its event log as it grows.
    page.context.expose_function("datalakeProgressEvent", record)
    page.context.add_init_script(
        """
        document.addEventListener('DOMContentLoaded', () => {
          const log = document.getElementById('progress-log');
          if (!log) return;
          new MutationObserver(() => {
            for (const el of log.querySelectorAll('.progress-log-event:not([data-seen])')) {
              el.setAttribute('data-seen', '1');
              window.datalakeProgressEvent(el.textContent.trim());
            }
          }).observe(log, {childList: true, subtree: true});
        });
        """
    )
    sign_in(page, hub, "alice", "alice-password", shots)

    # The spawn page: alice (group escape) gets every option but the GPU one, each described.
    expect(page).to_have_url(re.compile(r"/hub/spawn"))
    expect_announcement(page)
    form = page.locator("#spawn_form")
    expect(form.locator("input[name=profile][value=base]")).to_be_checked()  # the default
    for slug in OFFERED:
        expect(form.locator(f"input[name=profile][value={slug}]")).to_have_count(1)
    expect(form.locator("input[name=profile][value=gpu]")).to_have_count(0)
    expect(form).to_contain_text("JupyterLab with the Rucio client and JupyterLab panel")
    expect(form.locator("#profile-card-hep")).to_contain_text(re.compile(r"Mounts home, /eos\S*, /cvmfs, /scratch"))
    expect(form.locator("#profile-card-full")).to_contain_text("Apps: JupyterLab, VS Code, TensorBoard")
    expect(form.locator("#profile-card-base")).not_to_contain_text("Apps:")

    # Every option fits one laptop screen (1280x900, the banner included): only the chosen one's
    # choices are shown, and choosing another, by mouse or keyboard, swaps them.
    page.set_viewport_size(SCREEN)
    heights = {}
    for slug in OFFERED:
        form.locator(f"#profile-card-{slug}").click()  # anywhere on a card chooses it
        expect(form.locator(f"#profile-item-{slug}")).to_be_checked()
        heights[slug] = page.evaluate("document.documentElement.scrollHeight")
    assert max(heights.values()) <= SCREEN["height"], f"page height (px) with each option chosen: {heights}"
    form.locator("#profile-card-base").click()
    base_cores, hep_cores = (form.locator(f"#profile-option-{slug}--cores") for slug in ("base", "hep"))
    cores_menus = form.get_by_role("combobox", name="CPU cores")  # what assistive technology is offered
    expect(base_cores).to_be_visible()
    expect(hep_cores).to_be_hidden()
    expect(cores_menus).to_have_count(1)
    form.locator("#profile-card-hep").click()
    hep = page.get_by_role("radio", name="HEP analysis", exact=True)
    expect(hep).to_be_checked()
    expect(hep_cores).to_be_visible()
    expect(base_cores).to_be_hidden()
    expect(cores_menus).to_have_count(1)
    hep.focus()
    page.keyboard.press("ArrowUp")  # a radio group: the arrow keys move the choice
    expect(page.get_by_role("radio", name=re.compile("^Minimal"))).to_be_checked()
    expect(base_cores).to_be_visible()
    expect(hep_cores).to_be_hidden()
    # alice takes "Everything included": JupyterLab with VS Code and TensorBoard beside it.
    form.locator("#profile-card-full").click()
    form.locator("#profile-option-full--cores").select_option(label="4 cores")
    shots.take(page, "spawn", docs=True)
    page.get_by_role("button", name="Start").click()

    # Progress, then JupyterLab.
    expect(page).to_have_url(re.compile(r"/hub/spawn-pending/alice|/user/alice/"))
    if "/spawn-pending/" in page.url:
        # Best effort: the page leaves for Lab as soon as the server is up.
        with contextlib.suppress(PlaywrightError):
            page.locator("details summary").first.click(timeout=2_000)
            shots.take(page, "progress", docs=True)
    expect(page).to_have_url(re.compile(r"/user/alice/lab"), timeout=LAB_TIMEOUT)
    assert any("Rucio instance Local Rucio (default): ready, account" in e for e in events), events

    # The option chosen on the form is what the pod got.
    (pod,) = user_pods(info, "alice")
    assert pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] in ("4", 4)

    # JupyterLab with the Rucio panel, configured by the hub (no "not configured" error). Home is on
    # NFS and outlives the server, so start from a clean workspace (a rerun would restore the last).
    page.goto(f"{hub.url}user/alice/lab?reset")
    launcher = page.locator(".jp-LauncherCard[data-category='Notebook']").first
    expect(launcher).to_be_visible(timeout=LAB_TIMEOUT)
    rucio_tab = page.locator(".jp-SideBar li.lm-TabBar-tab", has=page.locator("[data-icon='rucio-jupyterlab:rucio']"))
    expect(rucio_tab).to_have_count(1)
    rucio_tab.click()
    panel = page.locator(".jp-RucioExtensionPanel")
    expect(panel).to_be_visible()
    expect(panel).not_to_contain_text("not configured")
    expect(panel).not_to_contain_text("Failed to activate")
    # The panel searches the real Rucio server with the token the hub wrote for alice.
    search = panel.get_by_placeholder(re.compile("Data Identifier"))
    # (wildcards are off by default, as upstream ships them: they can be costly on a big instance).
    search.fill(f"{info['rucio_server']['shared_scope']}:samples")
    search.press("Enter")
    expect(panel).to_contain_text(f"{info['rucio_server']['shared_scope']}:samples", timeout=60_000)
    expect(panel).not_to_contain_text("Authentication error")
    shots.take(page, "lab-rucio-panel", docs=True)
    rucio_tab.click()  # fold the panel away again

    # A notebook cell that runs the Rucio client prints alice's Rucio account.
    launcher.click()
    cell = page.locator(".jp-Notebook .jp-Cell .cm-content").first
    expect(cell).to_be_visible(timeout=60_000)
    # The status bar says "Idle" only once the kernel is connected; a cell run before that is dropped.
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)
    cell.click()
    page.keyboard.insert_text('from rucio.client import Client; print("rucio account:", Client().whoami()["account"])')
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-OutputArea-output").first
    expect(output).to_contain_text("rucio account: alice", timeout=60_000)
    shots.take(page, "notebook-rucio", docs=True)

    # A training run logged to ~/tensorboard (TensorBoard's own writer), then TensorBoard from the
    # launcher: jupyter-server-proxy starts it under alice's server URL, in a new browser tab.
    page.keyboard.insert_text(WRITE_RUN)
    page.keyboard.press("Shift+Enter")
    expect(page.locator(".jp-OutputArea-output").nth(1)).to_contain_text("run written", timeout=60_000)
    page.goto(f"{hub.url}user/alice/lab?reset")
    tensorboard_card = page.locator(".jp-LauncherCard", has_text="TensorBoard")
    expect(tensorboard_card).to_be_visible(timeout=LAB_TIMEOUT)
    shots.take(page, "lab-launcher", docs=True)
    with page.context.expect_page() as opened:
        tensorboard_card.click()
    board = opened.value
    expect(board).to_have_url(re.compile(r"/user/alice/tensorboard/"), timeout=60_000)
    expect(board.get_by_text("loss", exact=True).first).to_be_visible(timeout=90_000)
    shots.take(board, "lab-tensorboard", docs=True)
    board.close()

    # VS Code (code-server) from the launcher, also in a new tab under alice's server URL.
    with page.context.expect_page() as opened:
        page.locator(".jp-LauncherCard", has_text="VS Code").click()
    vscode = opened.value
    expect(vscode).to_have_url(re.compile(r"/user/alice/code-server/"), timeout=60_000)
    expect(vscode.locator(".monaco-workbench")).to_be_visible(timeout=120_000)
    shots.take(vscode, "lab-vscode", docs=True)
    vscode.close()

    # The hub's home page also carries the announcement.
    page.goto(f"{hub.url}hub/home")
    expect_announcement(page)
    expect(page.locator("#datalake-site-name")).to_have_text(SITE)
    shots.take(page, "home", docs=True)


def test_user_outside_the_allowed_groups_is_told_what_access_needs(page: Page, hub: HubHandle, shots: Shots) -> None:
    sign_in(page, hub, "oscar", "oscar-password")
    expect(page.locator("#datalake-denied")).to_have_text("Access not granted")
    expect(page.locator("#datalake-denied-detail")).to_contain_text(
        "Access requires membership of one of these ESCAPE IAM groups: escape"
    )
    expect(page.get_by_role("link", name="Back to sign-in")).to_be_visible()
    expect_announcement(page)
    shots.take(page, "denied", docs=True)
    assert api(hub, "GET", "/users/oscar").status_code == 404, "a refused user must not get a hub account"
    assert "Refusing oscar" in hub_log_text(hub)


def test_admin_opens_profile_status_from_the_navigation_and_sees_a_refused_edit(
    page: Page, hub: HubHandle, shots: Shots
) -> None:
    """bob (escape/admins) follows the navigation bar's Profiles link: the set in force, each option's
    groups, and, after a broken edit of hep.yaml (a second `mounts:` key appended), the refused edit
    with its file:line problem while the set in force keeps serving."""
    path = hub.profiles_dir / "hep.yaml"
    good = path.read_text()
    sign_in(page, hub, "bob", "bob-password")
    page.goto(f"{hub.url}hub/home")
    page.locator("#datalake-profiles-link").click()
    expect(page).to_have_url(re.compile(r"/hub/datalake/profiles$"))
    expect(page.get_by_role("heading", name="Server options in force")).to_be_visible()
    try:
        path.write_text(good + "\nmounts: [tape]\n")
        deadline = 30_000
        expect(page.get_by_text("Last refused edit")).to_have_count(0)
        for _ in range(deadline // 1000):
            page.reload()
            if page.get_by_text("Last refused edit").count():
                break
            page.wait_for_timeout(1000)
        expect(page.get_by_text("Last refused edit")).to_be_visible()
        expect(page.locator("body")).to_contain_text(re.compile(r"hep\.yaml:\d+: mounts: duplicate key"))
        expect(page.locator("body")).to_contain_text("users still get the set below")
        shots.take(page, "profile-status", docs=True, full_page=True)
    finally:
        path.write_text(good)
