"""Sign in with ESCAPE IAM: a real hub behind configurable-http-proxy, against the platform's IdP.

Each test drives the login as a browser would (plain HTTP: hub → IdP login and consent forms →
hub) and checks what the user, the admin, or an attacker reading the database would notice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from localplatform import idp as idp_mod
from localplatform.base import state_dir
from localplatform.hub import HubHandle, hub_log_text

from hub_config.auth.usernames import username_candidates
from hub_config.jwt import jwt_claims
from tests.support.hubclient import api, login, running_hub, spawn, stop
from tests.support.kube import wait_no_pods

pytestmark = pytest.mark.platform

TTL = 60


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory("nodeagent")  # the IdP outage test starts a server


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    """A hub whose IdP client issues 60 s access tokens; refresh kicks in with 50 s left."""
    patch = {"iam": {"refresh_age_seconds": 3, "refresh_margin_seconds": 50}}
    with running_hub(state_dir(), info, "signin", settings_patch=patch, access_token_ttl=TTL) as handle:
        yield handle


def auth_state(hub: HubHandle, name: str) -> dict[str, Any]:
    resp = api(hub, "GET", f"/users/{name}", params={"include_stopped_servers": "1"})
    resp.raise_for_status()
    state: dict[str, Any] = resp.json().get("auth_state") or {}
    return state


def test_login_page_offers_escape_iam(hub: HubHandle) -> None:
    """The login page has one button: 'Sign in with ESCAPE IAM'."""
    page = requests.get(f"{hub.url}hub/login", timeout=10)
    assert page.status_code == 200
    assert "Sign in with ESCAPE IAM" in page.text


def test_full_login_through_the_proxy(hub: HubHandle, info: dict[str, Any]) -> None:
    """alice signs in at the IdP and lands on the hub as `alice`, not an admin."""
    session, page = login(hub, info, "alice", "alice-password")
    assert page.status_code == 200, page.text[:500]
    assert page.url.startswith(hub.url)
    user = api(hub, "GET", "/users/alice").json()
    assert user["admin"] is False
    assert "escape" in user["groups"]
    assert session.get(f"{hub.url}hub/home", allow_redirects=False, timeout=10).status_code == 200


def test_admin_by_group_and_groups_synced(hub: HubHandle, info: dict[str, Any]) -> None:
    """bob (escape/admins) becomes admin; carol's escape/gpu membership is a hub group."""
    login(hub, info, "bob", "bob-password")
    login(hub, info, "carol", "carol-password")
    assert api(hub, "GET", "/users/bob").json()["admin"] is True
    carol = api(hub, "GET", "/users/carol").json()
    assert carol["admin"] is False
    assert set(carol["groups"]) == {"escape", "escape/gpu"}
    members = api(hub, "GET", "/groups/escape%2Fgpu").json()["users"]
    assert members == ["carol"]


def test_user_outside_allowed_groups_gets_a_403_that_explains(hub: HubHandle, info: dict[str, Any]) -> None:
    """oscar (atlas only) sees why he is refused; no hub user is created for him."""
    _, page = login(hub, info, "oscar", "oscar-password")
    assert page.status_code == 403
    assert "Access requires membership of one of these ESCAPE IAM groups: escape" in page.text
    assert api(hub, "GET", "/users/oscar").status_code == 404


def test_name_taken_by_another_iam_subject_is_never_handed_over(hub: HubHandle, info: dict[str, Any]) -> None:
    """A hub name stays with its IAM subject: a different subject arriving under it gets a name of its own
    (the fallback, kept on later logins), and a 403 only if that one is taken too — never her files."""
    login(hub, info, "carol", "carol-password")
    saved = auth_state(hub, "carol")
    sub = saved["oauth_user"]["sub"]
    assert sub
    fallback = username_candidates("carol", issuer=info["idp"]["issuer"], sub=sub)[1]
    # As if carol's IAM account had been deleted and the name given to someone else.
    taken = {**saved, "oauth_user": {**saved["oauth_user"], "sub": "previous-owner-of-the-name"}}
    assert api(hub, "PATCH", "/users/carol", json={"auth_state": taken}).status_code == 200
    try:
        _, page = login(hub, info, "carol", "carol-password")
        assert page.status_code == 200, page.text[:300]
        assert _saved_sub(hub, fallback) == sub
        assert auth_state(hub, "carol")["oauth_user"]["sub"] == "previous-owner-of-the-name", "state kept"
        # The fallback taken by yet another subject too: nothing is left to hand out.
        other = {**saved, "oauth_user": {**saved["oauth_user"], "sub": "holder-of-the-fallback"}}
        assert api(hub, "PATCH", f"/users/{fallback}", json={"auth_state": other}).status_code == 200
        _, page = login(hub, info, "carol", "carol-password")
        assert page.status_code == 403
        assert "already used by a different IAM identity" in page.text
    finally:
        api(hub, "PATCH", "/users/carol", json={"auth_state": saved})
        api(hub, "DELETE", f"/users/{fallback}")
    _, page = login(hub, info, "carol", "carol-password")
    assert page.status_code == 200
    assert auth_state(hub, "carol")["oauth_user"]["sub"] == sub


def _saved_sub(hub: HubHandle, name: str) -> str | None:
    resp = api(hub, "GET", f"/users/{name}", params={"include_stopped_servers": "1"})
    if resp.status_code == 404:
        return None
    return (resp.json().get("auth_state") or {}).get("oauth_user", {}).get("sub")


def test_hostile_username_is_normalised(hub: HubHandle, info: dict[str, Any]) -> None:
    """`../Evil User@x` signs in as a safe name with a subject digest (JupyterHub alone refuses it)."""
    _, page = login(hub, info, "../Evil User@x", "evil-password")
    assert page.status_code == 200, page.text[:300]
    names = [u["name"] for u in api(hub, "GET", "/users").json()]
    evil = [n for n in names if n.startswith("evil-user-x-")]
    assert len(evil) == 1
    assert len(evil[0]) == len("evil-user-x-") + 8


def test_session_survives_token_expiry_by_refresh(hub: HubHandle, info: dict[str, Any]) -> None:
    """With 60 s tokens dave keeps using the hub past expiry; the hub refreshed, he never logged in again."""
    session, page = login(hub, info, "dave.smith", "dave-password")
    assert page.status_code == 200
    first = auth_state(hub, "dave.smith")
    assert first["refresh_token"]
    past_expiry = time.monotonic() + TTL + 10
    while time.monotonic() < past_expiry:
        time.sleep(4)
        resp = session.get(f"{hub.url}hub/home", allow_redirects=False, timeout=10)
        assert resp.status_code == 200, f"session lost: {resp.status_code} {resp.headers.get('location')}"
    refreshed = auth_state(hub, "dave.smith")
    assert refreshed["access_token"] != first["access_token"]
    claims = jwt_claims(refreshed["access_token"])
    assert claims["exp"] > time.time(), "the hub holds an unexpired access token after the first one expired"
    for state in (first, refreshed):  # each token stored once: the token reply keeps only its other fields
        assert state["token_response"].get("token_type"), state["token_response"]
        assert not {"access_token", "refresh_token", "id_token"} & set(state["token_response"])


def test_rejected_refresh_token_sends_user_to_login(hub: HubHandle, info: dict[str, Any]) -> None:
    """When IAM revokes the refresh token, the next page asks the user to sign in again (no 500)."""
    session, _ = login(hub, info, "alice", "alice-password")
    state = auth_state(hub, "alice")
    secret = (hub.dir / "iam-client-secret").read_text()
    revoke = requests.post(
        f"{info['idp']['issuer']}token/revocation",
        data={"token": state["refresh_token"], "token_type_hint": "refresh_token"},
        auth=(hub.client_id, secret),
        verify=info["idp"]["ca_bundle"],
        timeout=10,
    )
    assert revoke.status_code == 200
    deadline = time.monotonic() + 40
    resp = session.get(f"{hub.url}hub/home", allow_redirects=False, timeout=10)
    while resp.status_code == 200 and time.monotonic() < deadline:
        time.sleep(3)
        resp = session.get(f"{hub.url}hub/home", allow_redirects=False, timeout=10)
    assert resp.status_code == 302
    assert "/hub/login" in resp.headers["location"]


def test_idp_outage_during_login_is_a_503_and_the_hub_recovers(hub: HubHandle, info: dict[str, Any]) -> None:
    """IdP stopped for real between its login page and the hub's callback: a clear 503 page without a
    traceback, a running server keeps answering; back up, login works."""
    running = "bob"
    login(hub, info, running, "bob-password")
    assert spawn(hub, running, {"profile": "base"}).status_code in (201, 202)
    status = f"{hub.url}user/{running}/api/status"
    headers = {"Authorization": f"token {hub.service_token}"}
    try:
        session = requests.Session()
        session.verify = info["idp"]["ca_bundle"]
        callback = f"{hub.url}hub/oauth_callback"
        redirect = idp_mod.login_via_http(
            session, f"{hub.url}hub/oauth_login", "alice", "alice-password", stop_at=callback
        )
        state = Path(info["idp"]["state_dir"]).parent
        idp_mod.stop(state)
        try:
            page = session.get(redirect.headers["location"], timeout=30)
            assert page.status_code == 503
            assert "ESCAPE IAM (the identity provider) is unavailable" in page.text
            assert "Traceback" not in page.text and "HTTPClientError" not in page.text
            assert requests.get(f"{hub.url}hub/health", timeout=10).status_code == 200
            assert requests.get(status, headers=headers, timeout=10).status_code == 200, "the running server"
        finally:
            idp_mod.start(state)
        _, page = login(hub, info, "alice", "alice-password")
        assert page.status_code == 200
    finally:
        stop(hub, running)
        wait_no_pods(info, running)


def test_auth_state_is_encrypted_and_no_secret_is_logged(hub: HubHandle, info: dict[str, Any]) -> None:
    """Reading the hub database or its log reveals no token and no client secret."""
    login(hub, info, "carol", "carol-password")
    secrets_seen: list[str] = [(hub.dir / "iam-client-secret").read_text()]
    for name in ("alice", "carol", "dave.smith", "bob"):
        state = auth_state(hub, name)
        secrets_seen += [state.get("access_token", ""), state.get("refresh_token", ""), state.get("id_token", "")]
    secrets_seen = [s for s in secrets_seen if s]
    assert len(secrets_seen) >= 9
    db = (hub.dir / "jupyterhub.sqlite").read_bytes()
    log = hub_log_text(hub)
    for value in secrets_seen:
        assert value.encode() not in db
        assert value not in log
        # also no 40-character prefix (a truncated token is still a leak)
        assert value[:40] not in log
    assert json.dumps(secrets_seen[0])[1:-1] not in (hub.dir / "settings.yaml").read_text()
