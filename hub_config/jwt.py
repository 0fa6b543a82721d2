"""Reading JWTs without verifying them: the package's one claims reader.

The hub is never the audience of the tokens it handles (they are for Rucio, or came to the
authenticator over TLS from the IdP), so it cannot and need not verify them; it only needs to know
a token's shape (is it a compact JWS at all?), its groups and when it expires (to refresh and
rotate in time). Nothing here is a security decision: Rucio verifies. Sign-in (groups, refresh
margin) and the Rucio side (token files, rotation) read claims here, so both agree on what a JWT is.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import MalformedToken

__all__ = ["COMPACT_JWS", "jwt_claims", "jwt_expiry", "parse_compact_jws"]

COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
"""Three non-empty base64url parts (an unsigned token, with an empty third part, is refused)."""


def _malformed(reason: str) -> MalformedToken:
    """The error for a value that is not a JWT (its message never contains the value).

    Imported here, not at the top: `hub_config.rucio` imports this module while it initialises,
    so a top-level import of its errors would make the import order decide whether either loads.
    """
    from .errors import MalformedToken

    return MalformedToken(reason)


def _b64url_json(part: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError) as err:
        raise _malformed(f"the {what} is not base64url-encoded JSON") from err
    if not isinstance(value, dict):
        raise _malformed(f"the {what} is not a JSON object")
    return value


def parse_compact_jws(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, or :class:`MalformedToken` (which never shows the token)."""
    if not COMPACT_JWS.fullmatch(token):
        raise _malformed("expected three base64url parts separated by '.'")
    header_part, payload_part, _ = token.split(".")
    return _b64url_json(header_part, "header"), _b64url_json(payload_part, "payload")


def jwt_claims(token: str | None) -> dict[str, Any] | None:
    """The unverified claims of a JWT, or None if it is not one (or there is no token)."""
    if not token:
        return None
    try:
        return parse_compact_jws(token)[1]
    except ValueError:  # MalformedToken
        return None


def jwt_expiry(token: str | None) -> float | None:
    """The token's ``exp`` (seconds since the epoch), unverified; None when absent or not a JWT."""
    claims = jwt_claims(token)
    exp = claims.get("exp") if claims else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)
