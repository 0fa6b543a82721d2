"""The hub's OAuth login at the platform IdP, driven over plain HTTP (no hub involved).

Authorization code + PKCE with `prompt=consent` (so a refresh token is issued), then the code is
redeemed at the token endpoint with the confidential client's credentials — what the hub does.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from localplatform import idp

__all__ = ["REDIRECT", "code_login"]

REDIRECT = "http://127.0.0.1:9/hub/oauth_callback"
"""Nothing listens there: the login stops at the redirect carrying the code."""


def code_login(
    info: dict[str, Any],
    username: str,
    password: str,
    *,
    client_id: str,
    client_secret: str,
    scope: str,
    redirect: str = REDIRECT,
) -> dict[str, Any]:
    """Sign ``username`` in and return the token endpoint's JSON (access, refresh and id tokens)."""
    session = requests.Session()
    session.verify = info["ca_bundle"]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {
        "client_id": client_id,
        "redirect_uri": redirect,
        "response_type": "code",
        "scope": scope,
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "prompt": "consent",
    }
    start = f"{info['authorization_endpoint']}?{urlencode(query)}"
    resp = idp.login_via_http(session, start, username, password, stop_at=redirect)
    assert resp.is_redirect, resp.text[:500]
    params = parse_qs(urlsplit(resp.headers["location"]).query)
    assert params["iss"] == [info["issuer"]], "the IdP names its issuer on the redirect (RFC 9207)"
    token = requests.post(
        info["token_endpoint"],
        auth=(client_id, client_secret),
        data={
            "grant_type": "authorization_code",
            "code": params["code"][0],
            "redirect_uri": redirect,
            "code_verifier": verifier,
        },
        verify=info["ca_bundle"],
        timeout=10,
    )
    assert token.status_code == 200, token.text
    body: dict[str, Any] = token.json()
    return body
