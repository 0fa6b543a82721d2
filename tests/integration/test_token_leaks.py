"""No token or client secret reaches a log line, an event, a progress message or a page, whatever the IdP sends.

The local IdP's fault mode (``idp.set_fault``) makes its token endpoint answer a grant with a
reply that echoes real secrets — the token it just issued, the refresh or subject token it was
sent, the hub's client secret — verbatim, cut short, base64- or URL-encoded, as an OAuth error,
a proxy's 5xx dump, an HTML error page, a 200 without an access token, or a 200 that is not JSON.
Each failure path is driven through the real hub with every shape: sign-in (code exchange),
refresh (OAuthenticator's ``refresh_user``, on page requests), the token exchange at spawn, and
the rotation of a running server's tokens. Then the hub log, the namespace's Kubernetes events,
the spawn progress messages and every page the user saw are scanned for every token and secret
the IdP issued or received in this run, and for their encoded forms and 20-character pieces.
"""

from __future__ import annotations

import base64
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from localplatform import idp
from localplatform.base import state_dir
from localplatform.hub import HubHandle, hub_log_text

from tests.support.hubclient import api, login, progress_messages, running_hub, stop
from tests.support.kube import get_json, wait_no_pods
from tests.support.rotation import fast_rotation

pytestmark = [pytest.mark.platform, pytest.mark.timeout(1200)]

TTL = 30
CHECK_INTERVAL = 5
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
PIECE = 20
"""Length of the pieces of each secret searched for: a piece this long of a token is never shown."""


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


NAME = "token-leaks"
TRANSIENT = ("proxy-dump", "html-error", "no-access-token", "not-json")
"""Shapes the hub treats as the IdP's trouble (5xx, a reply without tokens): the session is kept."""
REFUSING = ("oauth-error", "partial")
"""Shapes that are OAuth refusals (4xx): a refused refresh ends the session, a refused exchange parks."""


@pytest.fixture(scope="module")
def log_start() -> int:
    """Where this module's part of the hub log begins (the file outlives runs)."""
    log = state_dir() / "logs" / f"hub-{NAME}.log"
    return log.stat().st_size if log.exists() else 0


@pytest.fixture(scope="module")
def hub(info: dict[str, Any], log_start: int) -> Iterator[HubHandle]:
    """IAM tokens live 30 s; the hub refreshes them with 20 s left, at most every 5 s; rotations every 5 s."""
    patch = fast_rotation(
        iam_margin=20,
        rucio_margin=15,
        check_interval=CHECK_INTERVAL,
        rotation_retry_min_seconds=2,
        rotation_retry_max_seconds=5,
    )
    with running_hub(state_dir(), info, NAME, settings_patch=patch, access_token_ttl=TTL) as handle:
        try:
            yield handle
        finally:
            idp.set_fault(info, None)


class Seen:
    """Everything a user or operator could read during the test: pages, progress messages."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))


@pytest.fixture(scope="module")
def seen() -> Seen:
    return Seen()


def _forms(secret: str) -> set[str]:
    raw = secret.encode()
    b64 = base64.b64encode(raw).decode()
    forms = {secret, b64, base64.urlsafe_b64encode(raw).decode().rstrip("="), urllib.parse.quote(b64, safe="")}
    pieces = {f[i : i + PIECE] for f in forms for i in range(0, max(len(f) - PIECE, 0) + 1)}
    return forms | pieces


def _leaks(texts: Iterable[tuple[str, str]], secrets: Iterable[str]) -> list[str]:
    needles = {n: s for s in secrets if len(s) >= PIECE for n in _forms(s)}
    found = []
    for where, text in texts:
        for needle in needles:
            if needle in text:
                at = text.index(needle)
                found.append(f"{where}: …{text[max(at - 80, 0) : at + len(needle) + 20]!r}")
                break
    return found


def _page(session: requests.Session, hub: HubHandle, path: str) -> requests.Response:
    return session.get(f"{hub.url}{path.lstrip('/')}", timeout=60, verify=session.verify)


@pytest.mark.parametrize("shape", idp.FAULT_SHAPES)
def test_sign_in_with_a_faulty_code_exchange_shows_a_clean_page(
    hub: HubHandle, info: dict[str, Any], seen: Seen, shape: str
) -> None:
    """The IdP answers the code exchange with a reply echoing secrets: a 502/503 page, no traceback."""
    idp.set_fault(info, shape, ["authorization_code"], remaining=1)
    try:
        _, page = login(hub, info, "alice", "alice-password")
    finally:
        idp.set_fault(info, None)
    seen.add(f"sign-in page ({shape})", page.text)
    assert page.status_code in (502, 503), page.text[:500]
    assert "Traceback" not in page.text
    assert "ESCAPE IAM" in page.text or "identity provider" in page.text


def test_refresh_failures_keep_the_session_and_show_nothing(hub: HubHandle, info: dict[str, Any], seen: Seen) -> None:
    """Signed in, then each refresh of the IAM tokens gets a faulty reply: the IdP's trouble keeps the
    session (pages work), a refusal sends the user to sign in again; no page shows a traceback."""
    session, page = login(hub, info, "carol", "carol-password")
    assert page.status_code == 200, page.text[:300]
    time.sleep(TTL - 20 + 1)  # now inside the refresh margin: every page request past refresh_age refreshes
    for shape in (*TRANSIENT, *REFUSING):
        idp.set_fault(info, shape, ["refresh_token"])
        try:
            time.sleep(6)  # past refresh_age_seconds
            resp = _page(session, hub, "hub/home")
        finally:
            idp.set_fault(info, None)
        seen.add(f"hub/home after a faulty refresh ({shape})", resp.text)
        assert resp.status_code == 200, (shape, resp.status_code, resp.text[:300])
        assert "Traceback" not in resp.text
        if shape in TRANSIENT:
            assert resp.url.startswith(f"{hub.url}hub/home"), (shape, resp.url)
        else:  # sent through the sign-in again (the IdP's own session may sign the user straight back in)
            visited = [r.url for r in resp.history] + [resp.url]
            assert any("/hub/login" in u or "/hub/oauth_login" in u for u in visited), (shape, visited)


def _spawn_following(hub: HubHandle, user: str) -> list[str]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        request = pool.submit(api, hub, "POST", f"/users/{user}/server", json={"profile": "base"})
        messages = progress_messages(hub, user, wait_pending=30)
        assert request.result().status_code in (201, 202)
    return messages


@pytest.mark.parametrize("shape", ["proxy-dump", "not-json", "oauth-error"])
def test_a_faulty_exchange_at_spawn_is_told_in_clean_words(
    hub: HubHandle, info: dict[str, Any], seen: Seen, log_start: int, shape: str
) -> None:
    """The spawn's token exchange gets a faulty reply: the server starts without Rucio and the progress
    says why; the IdP's trouble (5xx, no token) is retried by the rotator, a refusal is parked.

    The fault is armed before the sign-in: the spawn page it lands on pre-exchanges in the background,
    and a pre-exchanged token would let the Start succeed without asking the IdP (test_preexchange).
    Both the pre-exchange and the Start's own exchange meet the fault here."""
    user = "bob"
    idp.set_fault(info, shape, [EXCHANGE])
    try:
        _, page = login(hub, info, user, "bob-password")
        assert page.status_code == 200
        messages = _spawn_following(hub, user)
    finally:
        idp.set_fault(info, None)
    seen.add(f"progress ({shape})", "\n".join(messages))
    try:
        assert any("Rucio" in m and "unavailable" in m for m in messages), messages
        time.sleep(3 * CHECK_INTERVAL)
        log = hub.log.read_bytes()[log_start:].decode(errors="replace")
        parked = [ln for ln in log.splitlines() if "jupyter-bob are no longer rotated" in ln]
        if shape in TRANSIENT:
            assert not parked or "unreachable" not in parked[-1], parked[-1:]
        else:
            assert parked and "refused the token exchange" in parked[-1], parked[-1:]
    finally:
        stop(hub, user)
        wait_no_pods(info, user)


def test_rotation_failures_show_no_secret(hub: HubHandle, info: dict[str, Any], seen: Seen) -> None:
    """A running server's rotations meet faulty refreshes and exchanges, the IdP's trouble first (the
    server is retried), then refusals (it is parked); the user's pages stay clean."""
    user = "alice"
    session, page = login(hub, info, user, "alice-password")
    assert page.status_code == 200
    messages = _spawn_following(hub, user)
    assert any("Rucio is ready" in m for m in messages), messages
    try:
        for shape in (*TRANSIENT, *REFUSING):
            idp.set_fault(info, shape, [EXCHANGE, "refresh_token"])
            try:
                time.sleep(TTL / 2 + CHECK_INTERVAL)  # at least one rotation attempt meets the fault
            finally:
                idp.set_fault(info, None)
            time.sleep(CHECK_INTERVAL + 3)  # a clean refresh in between, so the login token stays valid
            seen.add(f"hub/home during faulty rotations ({shape})", _page(session, hub, "hub/home").text)
        assert "Rucio token rotation for datalake/jupyter-alice failed" in hub_log_text(hub)
    finally:
        stop(hub, user)
        wait_no_pods(info, user)


def test_nothing_issued_reaches_logs_events_progress_or_pages(
    hub: HubHandle, info: dict[str, Any], seen: Seen, log_start: int
) -> None:
    """The scan: every token and secret the IdP issued or received, in any encoding or 20-character piece."""
    secrets = set(idp.fault_echoes(info)) | {(hub.dir / "iam-client-secret").read_text().strip()}
    assert len(secrets) > 10, "the faulty replies should have echoed tokens"
    assert seen.texts, "the other tests of this module did not run"
    events = get_json(info, "events", "-n", info["controlplane"]["namespace"])["items"]
    log = hub.log.read_bytes()[log_start:].decode(errors="replace")
    texts = [*seen.texts, ("hub log", log), ("events", "\n".join(str(e.get("message", "")) for e in events))]
    assert "Error fetching" in log or "without an access token" in log, "the faults did not reach the hub"
    leaks = _leaks(texts, secrets)
    assert not leaks, "\n".join(leaks[:20])
