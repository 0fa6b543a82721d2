"""Ask a Rucio server which account holds a user's OIDC identity (the ``account_lookup`` route).

Rucio maps a JWT to an account by the identity ``SUB=<sub>, ISS=<iss>`` (the mapping's default
account, else the oldest): ``GET /accounts/whoami`` with that token answers ``303`` with the
account as ``Location`` (``rucio/web/rest/flaskapi/v1/accounts.py``, rucio 41.5.1), and ``401``
when no account holds the identity (or the token is refused). Nothing is ever raised: every
failure becomes a :class:`~.account.LookupResult` reason, which the account error lists with the
other routes. The token never reaches a log line or a reason.
"""

from __future__ import annotations

import logging
import ssl
from urllib.parse import unquote, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..jwt import jwt_claims
from ..redact import redact
from ..tls import request_tls_options
from .account import LookupResult

__all__ = ["identity_of", "lookup_account"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0


def identity_of(token: str) -> str | None:
    """Rucio's identity string for ``token`` (``SUB=<sub>, ISS=<iss>``), None if it has neither."""
    claims = jwt_claims(token) or {}
    sub, iss = claims.get("sub"), claims.get("iss")
    if not isinstance(sub, str) or not isinstance(iss, str):
        return None
    return f"SUB={sub}, ISS={iss}"


async def lookup_account(
    rucio_host: str, token: str, *, ca_bundle: str | None, timeout: float = DEFAULT_TIMEOUT
) -> LookupResult:
    """The account Rucio at ``rucio_host`` maps ``token``'s identity to, or why there is none."""
    identity = identity_of(token)
    shown = redact(identity, (token,), limit=200) if identity else "the token's identity"
    url = f"{rucio_host.rstrip('/')}/accounts/whoami"
    request = HTTPRequest(
        url,
        method="GET",
        headers={"X-Rucio-Auth-Token": token, "Accept": "application/json"},
        connect_timeout=timeout,
        request_timeout=timeout,
        follow_redirects=False,
        **request_tls_options(ca_bundle),
    )
    try:
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
    except HTTPClientError as err:
        return LookupResult(None, f"Rucio at {url} did not answer ({redact(err.message or err, (token,))})")
    except ssl.SSLError as err:
        return LookupResult(None, f"Rucio at {url}: TLS error ({err.reason or type(err).__name__})")
    except OSError as err:
        return LookupResult(None, f"Rucio at {url}: cannot connect ({err.strerror or type(err).__name__})")
    log.info("Rucio account lookup at %s: HTTP %s", url, response.code)
    if response.code in (301, 302, 303, 307, 308):
        location = response.headers.get("Location") or ""
        account = unquote(urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1])
        if account:
            return LookupResult(account)
        return LookupResult(None, f"Rucio at {url} redirected without an account")
    if response.code == 401:
        return LookupResult(None, f"Rucio has no account for {shown} (or refused the token)")
    return LookupResult(None, f"Rucio at {url} answered HTTP {response.code}")
