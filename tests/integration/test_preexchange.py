"""The Rucio token exchange moved off the Start click, on the real platform.

alice opens the spawn page: the hub exchanges her login token at the platform IdP in the
background. She clicks Start (the form's POST, as the browser sends it): the IdP's own count of
exchanges for her does not move, the hub's metric says the Start took the pre-exchanged token, and
`rucio whoami` in her session answers with her account (the Secret was there when the pod
started). bob starts twice through the REST API: the first Start takes the token exchanged when
he signed in (signing in lands on the spawn page); the second, with no page view since, exchanges
at the IdP, so the count that stayed still for alice is one that moves.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from localplatform import idp
from localplatform.base import state_dir
from localplatform.hub import HubHandle

from tests.support.hubclient import api, login, running_hub, spawn, stop
from tests.support.kube import user_pods, wait_no_pods
from tests.support.podexec import pod_exec

pytestmark = pytest.mark.platform


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    with running_hub(state_dir(), info, "preexchange") as handle:
        yield handle


def _sub(info: dict[str, Any], username: str) -> str:
    sub: str = next(u["sub"] for u in idp.load_users(info) if u["username"] == username)
    return sub


def _exchanges_at_start(hub: HubHandle, info: dict[str, Any], source: str) -> float:
    """``datalake_hub_spawn_token_exchanges_total{source=...}`` from the hub's `/hub/metrics`
    (with the platform Prometheus's `read:metrics` token)."""
    token = Path(info["prometheus"]["token_file"]).read_text().strip()
    resp = requests.get(f"{hub.url}hub/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status_code == 200, resp.status_code
    match = re.search(rf'^datalake_hub_spawn_token_exchanges_total{{source="{source}"}} (\S+)$', resp.text, re.M)
    assert match, "the metric is not exported"
    return float(match.group(1))


def _wait_for(check: Any, timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, why
        time.sleep(0.2)


def _whoami(info: dict[str, Any], user: str) -> str:
    (pod,) = user_pods(info, user)
    result = pod_exec(info, pod["metadata"]["name"], ["rucio", "whoami"])
    return result.stdout + result.stderr


def test_start_after_viewing_the_spawn_page_does_not_exchange_at_the_idp(hub: HubHandle, info: dict[str, Any]) -> None:
    sub = _sub(info, "alice")
    before_login = idp.exchanges_for(info, sub)
    session, page = login(hub, info, "alice", "alice-password")  # signing in lands on the spawn page
    assert page.status_code == 200 and 'name="profile"' in page.text
    _wait_for(lambda: idp.exchanges_for(info, sub) > before_login, 30, "the spawn page made no exchange at the IdP")
    at_click = idp.exchanges_for(info, sub)
    assert at_click == before_login + 1, "one instance, one exchange"
    form = session.get(f"{hub.url}hub/spawn", timeout=30)  # the page again: its token is still fresh
    assert form.status_code == 200
    reused = _exchanges_at_start(hub, info, "preexchanged")

    # The form posts to its action URL, which carries the page's xsrf token (as the browser sends it).
    action = re.search(r'<form[^>]*action="([^"]+)"', form.text, re.S)
    assert action, "no form on the spawn page"
    url = urljoin(f"{hub.url}hub/spawn", html.unescape(action.group(1)))
    started = session.post(url, data={"profile": "base"}, timeout=60, allow_redirects=False)
    assert started.status_code in (302, 303), started.status_code
    try:

        def ready() -> bool:
            server = api(hub, "GET", "/users/alice").json().get("servers", {}).get("")
            return bool(server and server.get("ready"))

        _wait_for(ready, 180, f"alice's server not ready; hub log {hub.log}")
        assert idp.exchanges_for(info, sub) == at_click, "the page reload or the Start exchanged at the IdP again"
        assert _exchanges_at_start(hub, info, "preexchanged") == reused + 1
        out = _whoami(info, "alice")
        assert re.search(r"^account\s*:\s*alice$", out, re.MULTILINE), out
    finally:
        stop(hub, "alice")
        wait_no_pods(info, "alice")


def test_start_without_a_fresh_page_view_exchanges_at_the_idp(hub: HubHandle, info: dict[str, Any]) -> None:
    """bob's first Start (REST API, after signing in on the spawn page) takes the pre-exchanged token;
    his second, with no page view in between, finds none and exchanges at the IdP, as before."""
    sub = _sub(info, "bob")
    before_login = idp.exchanges_for(info, sub)
    login(hub, info, "bob", "bob-password")
    _wait_for(lambda: idp.exchanges_for(info, sub) > before_login, 30, "the spawn page made no exchange at the IdP")
    assert spawn(hub, "bob", {"profile": "base"}).status_code in (201, 202)
    stop(hub, "bob")
    wait_no_pods(info, "bob")
    before = idp.exchanges_for(info, sub)
    assert before == before_login + 1, "the first Start exchanged again"
    at_start = _exchanges_at_start(hub, info, "at_start")
    assert spawn(hub, "bob", {"profile": "base"}).status_code in (201, 202)
    try:
        assert idp.exchanges_for(info, sub) == before + 1
        assert _exchanges_at_start(hub, info, "at_start") == at_start + 1
        assert re.search(r"^account\s*:\s*bob$", _whoami(info, "bob"), re.MULTILINE)
    finally:
        stop(hub, "bob")
        wait_no_pods(info, "bob")
