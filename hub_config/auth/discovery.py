"""OIDC discovery at hub start: endpoints from `<issuer>.well-known/openid-configuration`.

GenericOAuthenticator has no discovery, and hard-coding IAM's endpoints in values drifts. The hub's
configuration runs synchronously before the event loop, so this uses urllib with bounded retries
and backoff; if the issuer stays unreachable the hub refuses to start with a message naming it
(a hub that cannot log anyone in should not look healthy).
"""

from __future__ import annotations

import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from ..errors import DiscoveryError
from ..settings.iam import IAMSettings

__all__ = ["DiscoveryError", "OIDCEndpoints", "discover"]

log = logging.getLogger(__name__)

_CACHE: dict[str, dict[str, Any]] = {}


@dataclass(frozen=True)
class OIDCEndpoints:
    """The endpoints the hub uses."""

    authorize_url: str
    token_url: str
    userdata_url: str
    end_session_url: str | None
    jwks_uri: str | None


def _discovery_url(issuer: str) -> str:
    """IAM issuers end with `/`; both spellings map to one discovery URL."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def _fetch(url: str, timeout: float, ca_bundle: str | None) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - https only
    with urllib.request.urlopen(request, timeout=timeout, context=ctx) as resp:  # noqa: S310
        doc = json.loads(resp.read(1_000_000))
    if not isinstance(doc, dict):
        raise DiscoveryError(f"{url} did not return a JSON object")
    return doc


def discover(iam: IAMSettings, *, sleep: Any = time.sleep) -> OIDCEndpoints:
    """Endpoints for ``iam``: explicit settings win, the rest come from discovery (cached per issuer)."""
    explicit = iam.endpoints
    needed = (explicit.authorize_url, explicit.token_url, explicit.userdata_url)
    doc: dict[str, Any] = {}
    if not all(needed) or (iam.logout_at_idp and explicit.end_session_url is None):
        doc = _CACHE.get(iam.issuer) or _discover_with_retries(iam, sleep)
        _CACHE[iam.issuer] = doc
        issuer_in_doc = doc.get("issuer")
        if issuer_in_doc is not None and issuer_in_doc.rstrip("/") != iam.issuer.rstrip("/"):
            raise DiscoveryError(
                f"discovery document of {iam.issuer} names issuer {issuer_in_doc!r}; "
                "fix datalake.iam.issuer (tokens would not validate)"
            )

    def pick(value: str | None, key: str) -> str:
        found = value or doc.get(key)
        if not isinstance(found, str) or not found.startswith("https://"):
            raise DiscoveryError(f"no https {key} for issuer {iam.issuer} (set datalake.iam.endpoints)")
        return found

    end_session = explicit.end_session_url or doc.get("end_session_endpoint")
    return OIDCEndpoints(
        authorize_url=pick(explicit.authorize_url, "authorization_endpoint"),
        token_url=pick(explicit.token_url, "token_endpoint"),
        userdata_url=pick(explicit.userdata_url, "userinfo_endpoint"),
        end_session_url=end_session if isinstance(end_session, str) else None,
        jwks_uri=doc.get("jwks_uri") if isinstance(doc.get("jwks_uri"), str) else None,
    )


def _discover_with_retries(iam: IAMSettings, sleep: Any) -> dict[str, Any]:
    url = _discovery_url(iam.issuer)
    attempts = iam.discovery_retries + 1
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            return _fetch(url, iam.discovery_timeout_seconds, iam.ca_bundle)
        except (OSError, ValueError, DiscoveryError) as err:  # URLError is an OSError
            last = err
            reason = getattr(err, "reason", None) or err
            log.warning("OIDC discovery of %s failed (attempt %d/%d): %s", iam.issuer, attempt + 1, attempts, reason)
            if attempt + 1 < attempts:
                sleep(min(2.0**attempt, 30.0))
    reason = getattr(last, "reason", None) or last
    raise DiscoveryError(
        f"the identity provider {iam.issuer} is unreachable ({reason}) after {attempts} attempt(s): "
        f"cannot read {url}. Check datalake.iam.issuer, the network policy egress, and iam.ca_bundle."
    )
