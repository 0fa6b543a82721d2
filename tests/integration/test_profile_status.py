"""Admins see the profile set in force and the last refused edit, through the hub; others get 403."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from localplatform.base import state_dir
from localplatform.hub import HubHandle

from tests.support.hubclient import api, login, running_hub


@pytest.fixture(scope="module")
def hub(platform_info: dict[str, Any]) -> Iterator[HubHandle]:
    with running_hub(state_dir(), platform_info, "status", settings_patch={"profiles": {"reload_seconds": 1}}) as h:
        yield h


def test_admin_sees_the_set_in_force_and_the_last_refused_edit(hub: HubHandle, platform_info: dict[str, Any]) -> None:
    bob, _ = login(hub, platform_info, "bob", "bob-password")  # escape/admins
    assert 'id="datalake-profiles-link"' in bob.get(f"{hub.url}hub/home", timeout=30).text
    page = bob.get(f"{hub.url}hub/datalake/profiles", timeout=30)
    assert page.status_code == 200
    assert "Server options in force" in page.text and "<code>hep</code>" in page.text

    status = api(hub, "GET", "/datalake/profiles").json()
    assert status["generation"] == 1 and status["last_refused"] is None
    assert {p["slug"] for p in status["profiles"]} >= {"base", "hep", "gpu"}
    assert next(p for p in status["profiles"] if p["slug"] == "gpu")["groups"] == ["escape/gpu"]

    (hub.profiles_dir / "hep.yaml").write_text(
        "slug: hep\ndisplay_name: HEP\ndescription: d\nimage: x\nmounts: [tape]\n"
    )
    time.sleep(1.5)
    status = api(hub, "GET", "/datalake/profiles").json()
    assert status["generation"] == 1, "a refused edit leaves the set in force"
    refused = status["last_refused"]
    assert refused and not refused["superseded"]
    assert any("hep.yaml:5: mounts[0]: mount 'tape' is not defined" in p for p in refused["problems"])
    page = bob.get(f"{hub.url}hub/datalake/profiles", timeout=30)
    assert "Last refused edit" in page.text and "hep.yaml:5" in page.text


def test_non_admins_are_refused(hub: HubHandle, platform_info: dict[str, Any]) -> None:
    alice, _ = login(hub, platform_info, "alice", "alice-password")
    assert alice.get(f"{hub.url}hub/datalake/profiles", timeout=30).status_code == 403
    assert alice.get(f"{hub.url}hub/api/datalake/profiles", timeout=30).status_code == 403
    assert 'id="datalake-profiles-link"' not in alice.get(f"{hub.url}hub/home", timeout=30).text
