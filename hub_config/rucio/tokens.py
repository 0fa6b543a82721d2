"""The RFC 8693 token exchange against the IdP's token endpoint (the Rucio audience token).

Refreshing the user's login tokens is OAuthenticator's (`DatalakeOAuthenticator.refresh_user`,
the one refresh path); the rotator refreshes through it and then exchanges here again.

Uses tornado's ``AsyncHTTPClient`` — what OAuthenticator already uses in the stock z2jh hub image,
which has neither httpx nor requests-oauthlib — so the hub's event loop is never blocked (the
CERN VRE's blocking exchange is one of the things this project exists to fix).

Secrets are handled so they cannot leak: :class:`TokenSet` hides its tokens in ``repr``, errors
are built from OAuth error codes and statuses with anything the IdP echoes back redacted, and
log lines name the endpoint, grant and audience only.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse

from ..errors import IdPUnavailable, TokenExchangeRefused
from ..jwt import jwt_expiry
from ..metrics import METRICS, timer
from ..redact import redact
from ..tls import idp_client, request_tls_options

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "DEFAULT_TIMEOUT",
    "TOKEN_EXCHANGE_GRANT",
    "TokenSet",
    "exchange_token",
    "jwt_expiry",
]

log = logging.getLogger("hub_config.rucio.tokens")

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a grant name
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a token type name
DEFAULT_TIMEOUT = 10.0
"""Seconds for connecting and for the whole request; a spawn must not hang on a slow IdP."""


_RETRYABLE_4XX = frozenset({408, 425, 429})
"""Client-error statuses that mean "try later", not "this request is wrong"."""


@dataclass(frozen=True, repr=False)
class TokenSet:
    """Tokens from one successful token-endpoint call. ``repr`` shows expiry and scope, never tokens."""

    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    """Seconds since the epoch: from ``expires_in`` when given, else the access token's ``exp``."""
    scope: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    """Other non-secret response fields (``token_type``, ``issued_token_type``)."""

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds until the access token expires (negative when expired; None when unknown)."""
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def __repr__(self) -> str:
        return (
            f"TokenSet(access_token=<hidden>, refresh_token={'<hidden>' if self.refresh_token else None}, "
            f"expires_at={self.expires_at!r}, scope={self.scope!r})"
        )

    __str__ = __repr__


def _basic_auth(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1: id and secret are form-encoded before being joined and base64-encoded."""
    raw = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


async def _post(
    operation: str,
    token_url: str,
    form: dict[str, str],
    *,
    client_id: str,
    client_secret: str,
    secrets: tuple[str | None, ...],
    ca_bundle: str | None,
    timeout: float,
) -> TokenSet:
    request = HTTPRequest(
        token_url,
        method="POST",
        body=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "Authorization": _basic_auth(client_id, client_secret),
        },
        **request_tls_options(ca_bundle),
        connect_timeout=timeout,
        request_timeout=timeout,
        follow_redirects=False,
    )
    all_secrets = (*secrets, client_secret, _basic_auth(client_id, client_secret))
    started = time.monotonic()
    try:
        response: HTTPResponse = await idp_client().fetch(request, raise_error=False)
    except HTTPClientError as err:  # timeouts (599) and the like
        raise IdPUnavailable(operation, token_url, redact(f"{err.message or err}", all_secrets)) from None
    except ssl.SSLError as err:
        raise IdPUnavailable(operation, token_url, f"TLS error: {err.reason or type(err).__name__}") from None
    except OSError as err:
        raise IdPUnavailable(operation, token_url, f"cannot connect: {err.strerror or type(err).__name__}") from None
    elapsed = time.monotonic() - started

    body = _json_body(response)
    if response.code == 200 and body is not None and isinstance(body.get("access_token"), str):
        log.debug("%s at %s: HTTP 200 in %.2fs", operation, token_url, elapsed)
        return _token_set(body)
    log.info("%s at %s: HTTP %s in %.2fs", operation, token_url, response.code, elapsed)
    if 400 <= response.code < 500 and response.code not in _RETRYABLE_4XX:
        error = body.get("error") if body else None
        description = body.get("error_description") if body else None
        raise TokenExchangeRefused(
            operation,
            token_url,
            status=response.code,
            error=redact(error, all_secrets) if isinstance(error, str) else "unknown_error",
            description=redact(description, all_secrets) if isinstance(description, str) else None,
        )
    if response.code == 200:
        raise IdPUnavailable(operation, token_url, "HTTP 200 without an access_token in JSON", status=200)
    raise IdPUnavailable(operation, token_url, f"HTTP {response.code}", status=response.code)


def _json_body(response: HTTPResponse) -> dict[str, Any] | None:
    try:
        value = json.loads(response.body or b"")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _token_set(body: dict[str, Any]) -> TokenSet:
    access = body["access_token"]
    expires_in = body.get("expires_in")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        expires_at: float | None = time.time() + float(expires_in)
    else:
        expires_at = jwt_expiry(access)
    refresh = body.get("refresh_token")
    scope = body.get("scope")
    extra = {k: body[k] for k in ("token_type", "issued_token_type") if isinstance(body.get(k), str)}
    return TokenSet(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_at=expires_at,
        scope=scope if isinstance(scope, str) else None,
        extra=extra,
    )


async def exchange_token(
    token_url: str,
    client_id: str,
    client_secret: str,
    subject_token: str,
    audience: str,
    scope: str,
    *,
    ca_bundle: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> TokenSet:
    """Exchange the user's access token for one meant for ``audience`` (RFC 8693).

    The hub authenticates as its confidential client (HTTP Basic). Raises
    :class:`TokenExchangeRefused` when the IdP says no (expired or foreign subject token, scope
    beyond the subject's, client not allowed) and :class:`IdPUnavailable` when it cannot be asked.
    """
    form = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": subject_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "requested_token_type": ACCESS_TOKEN_TYPE,
        "audience": audience,
        "scope": scope,
    }
    log.debug("token exchange at %s for audience %r, scope %r", token_url, audience, scope)
    took = timer()
    outcome = "unavailable"
    try:
        tokens = await _post(
            "token exchange",
            token_url,
            form,
            client_id=client_id,
            client_secret=client_secret,
            secrets=(subject_token,),
            ca_bundle=ca_bundle,
            timeout=timeout,
        )
        outcome = "success"
        return tokens
    except TokenExchangeRefused:
        outcome = "refused"
        raise
    finally:
        METRICS.token_request("token_exchange", outcome, took())
