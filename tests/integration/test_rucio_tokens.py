"""The hub's token calls against the real local IdP (npm ``oidc-provider`` behaving like ESCAPE IAM).

The IdP runs in a state dir of this module's own: users sign in over plain HTTP (authorization
code + PKCE, as the hub's login does), then :func:`exchange_token`
talk to its token endpoint over HTTPS exactly as they will in the hub. Tokens are checked the
way Rucio checks them (JWKS signature, exact issuer, ``aud`` ∋ ``rucio``), and every error and
log line is searched for the tokens and the client secret.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from localplatform import idp
from localplatform.clients import REDIRECT, code_login
from tornado.httpclient import AsyncHTTPClient

from hub_config.rucio import IdPUnavailable, TokenExchangeRefused, exchange_token
from tests.support.expected import fake_jwt

pytestmark = [pytest.mark.platform, pytest.mark.timeout(300)]

HUB_CLIENT = "datalake-hub"
HUB_SECRET = "hub-secret-for-token-tests"
SHORT_CLIENT = "datalake-hub-short"
LOGIN_SCOPE = "openid profile email offline_access wlcg.groups"
RUCIO_SCOPE = "openid profile offline_access"


@pytest.fixture(autouse=True, params=["simple", "curl"])
def http_client(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test with tornado's own client and with pycurl's, which the z2jh hub image makes the default."""
    saved = AsyncHTTPClient.configured_class()
    AsyncHTTPClient.configure("tornado.curl_httpclient.CurlAsyncHTTPClient" if request.param == "curl" else None)
    try:
        yield str(request.param)
    finally:
        AsyncHTTPClient.configure(saved)


@pytest.fixture(scope="module")
def idp_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A state dir of this module's own; the IdP in it is stopped afterwards."""
    state = tmp_path_factory.mktemp("idp-tokens")
    yield state
    idp.down(state)


@pytest.fixture(scope="module")
def info(idp_state: Path) -> dict[str, Any]:
    """The running IdP with the hub's confidential client (and one with 2 s access tokens)."""
    section = idp.up(idp_state, {})
    idp.register_client(section, HUB_CLIENT, HUB_SECRET, [REDIRECT])
    idp.register_client(section, SHORT_CLIENT, HUB_SECRET, [REDIRECT], access_token_ttl=2)
    return section


@pytest.fixture(scope="module")
def users(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {u["username"]: u for u in idp.load_users(info)}


def _login(info: dict[str, Any], user: dict[str, Any], client_id: str = HUB_CLIENT) -> dict[str, Any]:
    """The hub's login: authorization code + PKCE with `prompt=consent` (so a refresh token is issued)."""
    return code_login(
        info, user["username"], user["password"], client_id=client_id, client_secret=HUB_SECRET, scope=LOGIN_SCOPE
    )


def _verify(info: dict[str, Any], token: str, audience: str) -> dict[str, Any]:
    """Validate as Rucio does: JWKS signature, exact issuer, audience, expiry."""
    keys = requests.get(info["jwks_uri"], verify=info["ca_bundle"], timeout=10).json()
    key = jwt.PyJWKSet.from_dict(keys)[jwt.get_unverified_header(token)["kid"]]
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=info["issuer"])
    return claims


def _secrets_absent(texts: list[str], *values: str) -> None:
    for text in texts:
        for value in values:
            assert value not in text, "a token or secret leaked into an error or the log"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


async def test_exchange_gives_rucio_audience_for_same_subject(
    info: dict[str, Any], users: dict[str, dict[str, Any]], logs: pytest.LogCaptureFixture
) -> None:
    """Dave's login token (audience: the hub) becomes a token Rucio accepts: aud ∋ rucio, same sub."""
    dave = users["dave.smith"]
    login = _login(info, dave)
    with pytest.raises(jwt.InvalidAudienceError):
        _verify(info, login["access_token"], "rucio")
    ts = await exchange_token(
        info["token_endpoint"],
        HUB_CLIENT,
        HUB_SECRET,
        login["access_token"],
        "rucio",
        RUCIO_SCOPE,
        ca_bundle=info["ca"],
    )
    claims = _verify(info, ts.access_token, "rucio")
    assert claims["sub"] == dave["sub"]
    assert {"openid", "profile"} <= set(claims["scope"].split())
    assert ts.expires_at is not None and abs(ts.expires_at - claims["exp"]) < 5
    assert ts.refresh_token, "offline_access was requested, so the exchange returns a refresh token"
    _secrets_absent([repr(ts), logs.text], ts.access_token, ts.refresh_token, login["access_token"], HUB_SECRET)


async def test_refreshed_login_token_exchanges_again(
    info: dict[str, Any], users: dict[str, dict[str, Any]], logs: pytest.LogCaptureFixture
) -> None:
    """The rotator's path: the login refresh token yields a new access token (OAuthenticator's
    refresh grant, done here with a plain request), and that token exchanges for Rucio again."""
    alice = users["alice"]
    login = _login(info, alice)
    time.sleep(1.1)  # `iat` has one-second resolution: make the new token differ
    reply = requests.post(
        info["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": login["refresh_token"]},
        auth=(HUB_CLIENT, HUB_SECRET),
        verify=info["ca"],
        timeout=30,
    )
    reply.raise_for_status()
    fresh = reply.json()["access_token"]
    assert fresh != login["access_token"]
    exchanged = await exchange_token(
        info["token_endpoint"], HUB_CLIENT, HUB_SECRET, fresh, "rucio", RUCIO_SCOPE, ca_bundle=info["ca"]
    )
    assert _verify(info, exchanged.access_token, "rucio")["sub"] == alice["sub"]
    _secrets_absent([logs.text, repr(exchanged)], login["refresh_token"], fresh, exchanged.access_token, HUB_SECRET)


async def test_garbage_subject_token_is_refused(info: dict[str, Any], logs: pytest.LogCaptureFixture) -> None:
    """A token the IdP did not issue: TokenExchangeRefused with the OAuth code, token nowhere in the text."""
    garbage = fake_jwt({"alg": "RS256"}, {"sub": "nobody"}, b"forged-signature")
    with pytest.raises(TokenExchangeRefused) as exc:
        await exchange_token(
            info["token_endpoint"], HUB_CLIENT, HUB_SECRET, garbage, "rucio", RUCIO_SCOPE, ca_bundle=info["ca"]
        )
    assert exc.value.error == "invalid_grant"
    assert exc.value.status == 400
    _secrets_absent([str(exc.value), repr(exc.value), logs.text], garbage, HUB_SECRET)


async def test_expired_subject_and_wrong_secret_and_wider_scope_are_refused(
    info: dict[str, Any], users: dict[str, dict[str, Any]], logs: pytest.LogCaptureFixture
) -> None:
    """Expired token → invalid_grant; wrong client secret → invalid_client; more scope → invalid_scope."""
    login = _login(info, users["carol"], client_id=SHORT_CLIENT)
    access = login["access_token"]
    with pytest.raises(TokenExchangeRefused) as wider:
        await exchange_token(
            info["token_endpoint"],
            SHORT_CLIENT,
            HUB_SECRET,
            access,
            "rucio",
            "openid profile rucio:admin",
            ca_bundle=info["ca"],
        )
    assert wider.value.error == "invalid_scope"
    with pytest.raises(TokenExchangeRefused) as bad_client:
        await exchange_token(
            info["token_endpoint"], SHORT_CLIENT, "wrong-secret", access, "rucio", RUCIO_SCOPE, ca_bundle=info["ca"]
        )
    assert bad_client.value.error == "invalid_client"
    assert bad_client.value.status in {400, 401}
    time.sleep(3)
    with pytest.raises(TokenExchangeRefused) as expired:
        await exchange_token(
            info["token_endpoint"], SHORT_CLIENT, HUB_SECRET, access, "rucio", RUCIO_SCOPE, ca_bundle=info["ca"]
        )
    assert expired.value.error == "invalid_grant"
    texts = [logs.text] + [t for e in (wider, bad_client, expired) for t in (str(e.value), repr(e.value))]
    _secrets_absent(texts, access, login["refresh_token"], HUB_SECRET, "wrong-secret")


async def test_untrusted_certificate_is_unavailable(info: dict[str, Any], logs: pytest.LogCaptureFixture) -> None:
    """Without the IdP's CA the TLS handshake fails: IdPUnavailable, never a request sent in clear."""
    with pytest.raises(IdPUnavailable, match="TLS|certificate|SSL") as exc:
        await exchange_token(info["token_endpoint"], HUB_CLIENT, HUB_SECRET, "some-subject-token-value", "rucio", "")
    assert exc.value.status is None
    _secrets_absent([str(exc.value), repr(exc.value), logs.text], "some-subject-token-value", HUB_SECRET)


async def test_stopped_idp_is_unavailable(
    idp_state: Path, info: dict[str, Any], users: dict[str, dict[str, Any]], logs: pytest.LogCaptureFixture
) -> None:
    """IdP down: IdPUnavailable at once (connection refused), no token in the text; back up, it works again."""
    login = _login(info, users["bob"])
    idp.stop(idp_state)
    try:
        started = time.monotonic()
        with pytest.raises(IdPUnavailable) as exc:
            await exchange_token(
                info["token_endpoint"],
                HUB_CLIENT,
                HUB_SECRET,
                login["access_token"],
                "rucio",
                RUCIO_SCOPE,
                ca_bundle=info["ca"],
                timeout=5,
            )
        assert time.monotonic() - started < 5
        assert info["token_endpoint"] in str(exc.value)
        _secrets_absent([str(exc.value), repr(exc.value), logs.text], login["access_token"], HUB_SECRET)
    finally:
        idp.start(idp_state)
    ts = await exchange_token(
        info["token_endpoint"],
        HUB_CLIENT,
        HUB_SECRET,
        login["access_token"],
        "rucio",
        RUCIO_SCOPE,
        ca_bundle=info["ca"],
    )
    assert _verify(info, ts.access_token, "rucio")["sub"] == users["bob"]["sub"]
