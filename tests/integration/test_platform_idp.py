"""The local platform's IdP behaves like ESCAPE IAM where the hub and Rucio depend on it.

Runs the real Node ``oidc-provider`` over HTTPS in a temporary state dir, without the rest
of the platform (the IdP needs nothing from the control plane).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
import requests
from localplatform import idp
from localplatform.clients import REDIRECT, code_login, exchange

pytestmark = [pytest.mark.platform, pytest.mark.timeout(300)]

HUB_CLIENT = "hub"
HUB_SECRET = "hub-secret-for-tests"
LOGIN_SCOPE = "openid profile email offline_access wlcg.groups eduperson_entitlement"


@pytest.fixture(scope="module")
def idp_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A state dir of its own, so these tests never touch a platform someone else runs."""
    state = tmp_path_factory.mktemp("platform")
    yield state
    idp.down(state)


@pytest.fixture(scope="module")
def idp_info(idp_state: Path) -> dict[str, Any]:
    """The IdP's ``platform.json`` section, with the hub's client registered."""
    info = idp.up(idp_state, {})
    idp.register_client(info, HUB_CLIENT, HUB_SECRET, [REDIRECT])
    return info


@pytest.fixture(scope="module")
def users(idp_info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Fixture users by username."""
    return {u["username"]: u for u in idp.load_users(idp_info)}


def _login(
    info: dict[str, Any],
    user: dict[str, Any],
    client_id: str = HUB_CLIENT,
    secret: str = HUB_SECRET,
    scope: str = LOGIN_SCOPE,
) -> dict[str, Any]:
    """Authorization code + PKCE driven over plain HTTP, as the hub and a browser do it."""
    return code_login(info, user["username"], user["password"], client_id=client_id, client_secret=secret, scope=scope)


def _exchange(info: dict[str, Any], subject_token: str, **extra: str) -> requests.Response:
    return exchange(info, subject_token, client_id=HUB_CLIENT, client_secret=HUB_SECRET, **extra)


def _verify(info: dict[str, Any], token: str, audience: str) -> dict[str, Any]:
    """Validate a JWT the way Rucio does: keys from the JWKS, exact issuer, audience, expiry."""
    keys = requests.get(info["jwks_uri"], verify=info["ca_bundle"], timeout=10).json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(keys)[kid]
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=info["issuer"])
    return claims


def test_discovery_over_https_with_our_ca(idp_info: dict[str, Any]) -> None:
    """The hub and Rucio find every IAM endpoint, over TLS they can verify, at the exact issuer."""
    resp = requests.get(idp_info["discovery_url"], verify=idp_info["ca"], timeout=10)
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["issuer"] == idp_info["issuer"]
    assert doc["issuer"].endswith("/")
    assert idp_info["discovery_url"] == f"{doc['issuer']}.well-known/openid-configuration"
    for key in (
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "end_session_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
    ):
        assert doc[key].startswith(idp_info["issuer"]), key
        if key in idp_info:
            assert doc[key] == idp_info[key]
    assert idp.TOKEN_EXCHANGE_GRANT in doc["grant_types_supported"]
    assert {"wlcg.groups", "offline_access"} <= set(doc["scopes_supported"])
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(idp_info["discovery_url"], verify=True, timeout=10)


def test_login_over_http_gives_fixture_groups(idp_info: dict[str, Any], users: dict[str, dict[str, Any]]) -> None:
    """A GPU user signing in gets an id token with the groups the hub filters profiles on."""
    carol = users["carol"]
    tokens = _login(idp_info, carol)
    claims = jwt.decode(
        tokens["id_token"],
        options={"verify_signature": False},
    )
    assert claims["iss"] == idp_info["issuer"]
    assert claims["sub"] == carol["sub"]
    assert claims["preferred_username"] == "carol"
    assert claims["groups"] == carol["groups"] == ["escape", "escape/gpu"]
    assert claims["wlcg.groups"] == ["/escape", "/escape/gpu"]
    assert "urn:mace:escape:group:escape:gpu" in claims["eduperson_entitlement"]
    info = requests.get(
        idp_info["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        verify=idp_info["ca_bundle"],
        timeout=10,
    ).json()
    assert info["groups"] == carol["groups"]
    assert info["preferred_username"] == "carol"


def test_hostile_username_logs_in_verbatim(idp_info: dict[str, Any], users: dict[str, dict[str, Any]]) -> None:
    """A user named ``../Evil User@x`` can sign in, and the hub receives the name unaltered."""
    evil = users["../Evil User@x"]
    tokens = _login(idp_info, evil)
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert claims["preferred_username"] == "../Evil User@x"
    assert claims["sub"] == evil["sub"]


def test_wrong_password_is_refused(idp_info: dict[str, Any]) -> None:
    """A mistyped password leaves the user on the IdP's login page with an error, not at the hub."""
    session = requests.Session()
    session.verify = idp_info["ca_bundle"]
    query = {"client_id": HUB_CLIENT, "redirect_uri": REDIRECT, "response_type": "code", "scope": "openid"}
    start = f"{idp_info['authorization_endpoint']}?{urlencode(query)}"
    resp = idp.login_via_http(session, start, "alice", "not-her-password", stop_at=REDIRECT)
    assert resp.status_code == 200
    assert "Invalid username or password" in resp.text


def test_access_token_is_a_jwt_with_aud_and_scope(idp_info: dict[str, Any], users: dict[str, dict[str, Any]]) -> None:
    """Access tokens validate offline like IAM's: signed JWT, audience, scope, groups."""
    alice = users["alice"]
    tokens = _login(idp_info, alice)
    claims = _verify(idp_info, tokens["access_token"], audience=HUB_CLIENT)
    assert claims["sub"] == alice["sub"]
    assert set(LOGIN_SCOPE.split()) <= set(claims["scope"].split())
    assert claims["wlcg.groups"] == ["/escape"]
    assert claims["exp"] - claims["iat"] == 3600
    assert "refresh_token" in tokens


def test_refresh_grant_gives_a_new_access_token(idp_info: dict[str, Any], users: dict[str, dict[str, Any]]) -> None:
    """A session outlives its first access token: the hub's refresh yields a fresh, valid one."""
    tokens = _login(idp_info, users["alice"])
    resp = requests.post(
        idp_info["token_endpoint"],
        auth=(HUB_CLIENT, HUB_SECRET),
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        verify=idp_info["ca_bundle"],
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    new = resp.json()
    assert new["access_token"] != tokens["access_token"]
    old_claims = _verify(idp_info, tokens["access_token"], HUB_CLIENT)
    new_claims = _verify(idp_info, new["access_token"], HUB_CLIENT)
    assert new_claims["sub"] == old_claims["sub"]
    assert new_claims["jti"] != old_claims["jti"]


def test_token_exchange_gives_a_rucio_token(idp_info: dict[str, Any], users: dict[str, dict[str, Any]]) -> None:
    """The hub swaps the user's token for one Rucio accepts: same user, audience ``rucio``."""
    dave = users["dave.smith"]
    tokens = _login(idp_info, dave)
    resp = _exchange(idp_info, tokens["access_token"], audience="rucio", scope="openid profile offline_access")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    claims = _verify(idp_info, body["access_token"], audience="rucio")
    assert claims["sub"] == dave["sub"]
    assert claims["iss"] == idp_info["issuer"]
    assert {"openid", "profile"} <= set(claims["scope"].split())
    # offline_access asked: the hub can renew the Rucio token without the user's token
    renewed = requests.post(
        idp_info["token_endpoint"],
        auth=(HUB_CLIENT, HUB_SECRET),
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        verify=idp_info["ca_bundle"],
        timeout=10,
    )
    assert renewed.status_code == 200, renewed.text
    assert _verify(idp_info, renewed.json()["access_token"], audience="rucio")["sub"] == dave["sub"]


def test_token_exchange_refuses_bad_subject_tokens(idp_info: dict[str, Any], users: dict[str, dict[str, Any]]) -> None:
    """No Rucio token for garbage, expired tokens or wider scopes: the user sees Rucio unavailable."""
    garbage = _exchange(idp_info, "not-a-token", audience="rucio")
    assert garbage.status_code == 400
    assert garbage.json()["error"] == "invalid_grant"

    tokens = _login(idp_info, users["alice"], scope="openid profile")
    wider = _exchange(idp_info, tokens["access_token"], audience="rucio", scope="openid storage.modify:/")
    assert wider.status_code == 400
    assert wider.json()["error"] == "invalid_scope"

    idp.register_client(idp_info, "hub-1s", HUB_SECRET, [REDIRECT], access_token_ttl=1)
    short = _login(idp_info, users["alice"], client_id="hub-1s")
    time.sleep(2.1)
    expired = _exchange(idp_info, short["access_token"], audience="rucio")
    assert expired.status_code == 400
    assert expired.json()["error"] == "invalid_grant"


def test_short_lifetime_client(idp_info: dict[str, Any], users: dict[str, dict[str, Any]]) -> None:
    """A client registered with a 60 s lifetime gets 60 s tokens, so rotation tests run in minutes."""
    idp.register_client(idp_info, "hub-60s", HUB_SECRET, [REDIRECT], access_token_ttl=60)
    tokens = _login(idp_info, users["alice"], client_id="hub-60s")
    claims = _verify(idp_info, tokens["access_token"], audience="hub-60s")
    assert claims["exp"] - claims["iat"] == 60
    assert tokens["expires_in"] == 60


def test_up_is_idempotent_and_ships_chp(idp_state: Path, idp_info: dict[str, Any]) -> None:
    """A second ``up`` returns the running IdP at once, and the proxy the hub needs is installed."""
    started = time.monotonic()
    again = idp.up(idp_state, {})
    assert time.monotonic() - started < 5
    assert again["pid"] == idp_info["pid"]
    out = subprocess.run(
        [again["node"], again["chp"], "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip().startswith("5.3.")


def test_outage_keeps_issuer_and_tokens(
    idp_state: Path, idp_info: dict[str, Any], users: dict[str, dict[str, Any]]
) -> None:
    """After an IdP outage the same issuer comes back, and tokens issued before still work."""
    tokens = _login(idp_info, users["bob"])
    idp.stop(idp_state)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(idp_info["discovery_url"], verify=idp_info["ca"], timeout=5)
    back = idp.start(idp_state)
    assert back["issuer"] == idp_info["issuer"]
    doc = requests.get(back["discovery_url"], verify=back["ca"], timeout=10).json()
    assert doc["issuer"] == idp_info["issuer"]
    claims = _verify(back, tokens["access_token"], HUB_CLIENT)
    assert claims["sub"] == users["bob"]["sub"]
    resp = requests.post(
        back["token_endpoint"],
        auth=(HUB_CLIENT, HUB_SECRET),
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        verify=back["ca_bundle"],
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    assert _verify(back, resp.json()["access_token"], HUB_CLIENT)["sub"] == users["bob"]["sub"]
