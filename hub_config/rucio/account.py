"""Which Rucio account a user's notebook names.

For JWTs the Rucio server takes the account from its own identity mapping (``SUB=..., ISS=...``)
and ignores the client's ``account`` setting; the setting still matters for every other
authentication method and for what ``rucio whoami`` users compare against. Claims come from
the IdP and usernames from users, so the result is checked against Rucio's own account schema
before it goes anywhere near a config file.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

from ..errors import AccountError
from ..redact import redact
from ..settings.rucio import RucioInstance

__all__ = ["ACCOUNT_MAX_LENGTH", "ACCOUNT_PATTERN", "account_for", "validate_account"]

ACCOUNT_MAX_LENGTH = 25
"""``ACCOUNT_LENGTH`` in ``rucio/common/schema/generic.py`` (rucio 41.5.1)."""

ACCOUNT_PATTERN = re.compile(r"^[a-z0-9_-]{1,25}$")
"""Rucio's generic schema: ``"pattern": "^[a-z0-9-_]+$"`` with ``maxLength`` 25."""


def validate_account(instance: str, account: str) -> str:
    """Return ``account`` if Rucio would accept it as an account name, else raise :class:`AccountError`."""
    if not ACCOUNT_PATTERN.fullmatch(account):
        raise AccountError(
            instance,
            f"{redact(account, limit=40)!r} is not a valid Rucio account name "
            f"(lowercase a-z, 0-9, '-', '_', at most {ACCOUNT_MAX_LENGTH} characters)",
        )
    return account


def _claim_str(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and value else None


def account_for(instance: RucioInstance, *, username: str, claims: Mapping[str, Any]) -> str:
    """The Rucio account for this user on ``instance``.

    ``account_claim`` wins when set (IAM can carry the account in a claim, e.g. ``dave.smith`` →
    ``dsmith``); a missing claim is an error rather than a fallback to the template, because a
    guessed account would silently be the wrong one. Otherwise ``account_template`` is filled
    with ``username`` (the JupyterHub name), ``preferred_username``, ``sub`` and
    ``email_local`` (the part of ``email`` before ``@``). Nothing is lowercased or trimmed: the
    result must already be a valid Rucio account name.
    """
    if instance.account_claim is not None:
        value = _claim_str(claims, instance.account_claim)
        if value is None:
            raise AccountError(instance.name, f"the user's claims have no (string) {instance.account_claim!r} claim")
        return validate_account(instance.name, value)

    used = {f for _, f, _, _ in string.Formatter().parse(instance.account_template) if f}
    values: dict[str, str] = {}
    for field in used:
        found: str | None
        if field == "username":
            found = username or None
        elif field == "email_local":
            email = _claim_str(claims, "email")
            found = (email.split("@", 1)[0] or None) if email and "@" in email else None
        else:
            found = _claim_str(claims, field)
        if found is None:
            raise AccountError(instance.name, f"account_template needs {{{field}}} but the user has no such value")
        values[field] = found
    return validate_account(instance.name, instance.account_template.format(**values))
