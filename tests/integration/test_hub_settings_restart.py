"""A real hub on the local platform restarts itself when its settings change, and only then.

In a cluster the settings ConfigMap is a directory mount the kubelet updates in place and the
container is restarted by Kubernetes; here the hub is the platform's process, so the test checks
the hub's side of that contract: a profile edit and an invalid settings edit leave the process
serving, a valid settings edit makes it exit cleanly, saying why.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from localplatform.base import Proc, state_dir
from localplatform.hub import HubHandle

from tests.support.hubclient import running_hub

CHECK_SECONDS = 1


@pytest.fixture(scope="module")
def hub(platform_info: dict[str, Any]) -> Iterator[HubHandle]:
    patch = {"settings_check_seconds": CHECK_SECONDS, "profiles": {"reload_seconds": 1}}
    with running_hub(state_dir(), platform_info, "restart", settings_patch=patch) as handle:
        yield handle


def _process(hub: HubHandle) -> Proc:
    pidfile = state_dir() / "pids" / f"hub-{hub.name}.pid"
    return Proc(f"hub-{hub.name}", int(pidfile.read_text()), pidfile, hub.log)


def _healthy(hub: HubHandle) -> bool:
    try:
        return requests.get(f"{hub.url}hub/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _log(hub: HubHandle) -> str:
    return hub.log.read_text(errors="replace")


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return bool(predicate())


def test_profile_edit_and_bad_settings_keep_the_hub_settings_edit_restarts_it(hub: HubHandle) -> None:
    proc = _process(hub)
    original = hub.settings_file.read_text()

    # A profile edit is hot-reloaded: no restart.
    profile = next(iter(sorted(hub.profiles_dir.glob("*.yaml"))))
    profile.write_text(profile.read_text().replace("description:", "description: Edited.", 1))
    time.sleep(4 * CHECK_SECONDS)
    assert proc.alive() and _healthy(hub)

    # An invalid settings edit is reported and ignored: the hub keeps serving.
    hub.settings_file.write_text(original + "site_nmae: a typo\n")
    assert _wait_for(lambda: "changed but is invalid" in _log(hub), 15)
    assert "site_nmae: unknown key" in _log(hub)
    assert proc.alive() and _healthy(hub)

    # A valid change: the hub says why and exits cleanly, for its supervisor to restart it.
    settings = yaml.safe_load(original)
    settings["site_name"] = "Renamed site"
    hub.settings_file.write_text(yaml.safe_dump(settings, sort_keys=False))
    assert _wait_for(lambda: not proc.alive(), 30), "the hub did not stop after its settings changed"
    log = _log(hub)
    assert "changed: restarting the hub to apply it" in log
    assert "Traceback" not in log
