"""Which Rucio account a user's notebook names: the one place that decides it.

For JWTs the Rucio server takes the account from its own identity mapping (``SUB=..., ISS=...``)
and ignores the client's ``account`` setting; the setting still matters for every other
authentication method and for what ``rucio whoami`` users compare against. Claims come from
the IdP and usernames from users, so every result is checked against Rucio's own account schema
before it goes anywhere near a config file.

Real IAM usernames are often not Rucio account names (ESCAPE: ``dave.smith``), so a site has up
to three routes, tried in this order: the ``account_claim`` (used as is), the
``account_template`` with its ``account_transforms``, and ``account_lookup`` (asking Rucio which
account holds the user's OIDC identity). A route that gives nothing, or a name Rucio refuses,
falls through to the next; when none gives an account the error names every route tried and why.
Everything here is pure: the lookup's answer is fetched by the provisioner
(:mod:`hub_config.rucio.lookup`) and passed in.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import AccountError
from ..redact import redact
from ..settings.rucio import AccountTransform, ReplaceTransform, RucioInstance

__all__ = [
    "ACCOUNT_MAX_LENGTH",
    "ACCOUNT_PATTERN",
    "LOOKUP_AT_SPAWN",
    "AccountChoice",
    "LookupResult",
    "Route",
    "account_for",
    "choose_account",
    "routes_of",
    "transform_account",
    "validate_account",
]

ACCOUNT_MAX_LENGTH = 25
"""``ACCOUNT_LENGTH`` in ``rucio/common/schema/generic.py`` (rucio 41.5.1)."""

ACCOUNT_PATTERN = re.compile(r"^[a-z0-9_-]{1,25}$")
"""Rucio's generic schema: ``"pattern": "^[a-z0-9-_]+$"`` with ``maxLength`` 25."""

_INVALID_CHARS = re.compile(r"[^a-z0-9_-]")

LOOKUP_AT_SPAWN = "asked from Rucio at spawn"
"""What ``preview`` shows for an account only the lookup route can give."""

Route = Literal["claim", "template", "lookup"]


@dataclass(frozen=True)
class LookupResult:
    """Rucio's answer to "which account holds this identity": an account, or why there is none."""

    account: str | None
    reason: str | None = None


@dataclass(frozen=True)
class AccountChoice:
    """What the claim and template routes gave (pure), and whether the lookup is still to be asked."""

    account: str | None
    route: Route | None
    tried: tuple[str, ...]
    """One ``route: why not`` per route that gave nothing."""
    lookup_pending: bool
    """No static route gave an account and ``account_lookup`` is on: ask Rucio."""


def validate_account(instance: str, account: str) -> str:
    """Return ``account`` if Rucio would accept it as an account name, else raise :class:`AccountError`."""
    reason = _invalid_reason(account)
    if reason is not None:
        raise AccountError(instance, reason)
    return account


def _invalid_reason(account: str) -> str | None:
    if ACCOUNT_PATTERN.fullmatch(account):
        return None
    return (
        f"{redact(account, limit=40)!r} is not a valid Rucio account name "
        f"(lowercase a-z, 0-9, '-', '_', at most {ACCOUNT_MAX_LENGTH} characters)"
    )


def routes_of(instance: RucioInstance) -> tuple[Route, ...]:
    """The routes configured for ``instance``, in the order they are tried."""
    out: list[Route] = []
    if instance.account_claim is not None:
        out.append("claim")
    if instance.effective_account_template is not None:
        out.append("template")
    if instance.account_lookup:
        out.append("lookup")
    return tuple(out)


def transform_account(value: str, transforms: Sequence[AccountTransform]) -> str:
    """``value`` after each step in order: lowercase, replace, drop what Rucio refuses, truncate."""
    for step in transforms:
        if isinstance(step, ReplaceTransform):
            for old, new in step.replace.items():
                value = value.replace(old, new)
        elif step == "lowercase":
            value = value.lower()
        elif step == "drop_invalid":
            value = _INVALID_CHARS.sub("", value)
        elif step == "truncate":
            value = value[:ACCOUNT_MAX_LENGTH]
    return value


def _claim_str(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and value else None


def _fill_template(template: str, *, username: str, claims: Mapping[str, Any]) -> str:
    """``template`` with its placeholders filled; ValueError naming the first value the user lacks."""
    used = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    values: dict[str, str] = {}
    for name in sorted(used):
        found: str | None
        if name == "username":
            found = username or None
        elif name == "email_local":
            email = _claim_str(claims, "email")
            found = (email.split("@", 1)[0] or None) if email and "@" in email else None
        else:
            found = _claim_str(claims, name)
        if found is None:
            raise ValueError(f"account_template needs {{{name}}} but the user has no such value")
        values[name] = found
    return template.format(**values)


def choose_account(instance: RucioInstance, *, username: str, claims: Mapping[str, Any]) -> AccountChoice:
    """Try the claim, then the template route; say whether the lookup is still to be asked.

    ``username`` is the JupyterHub name; the template also sees ``preferred_username``, ``sub``
    and ``email_local`` (the part of ``email`` before ``@``). The claim is used as is (it is
    IAM's statement of the account: transforming it would guess); the template's result goes
    through ``account_transforms``. A claim falls through only to a template the site set
    explicitly (``{username}`` is implied only when no other route is configured): a silently
    guessed account would be someone else's or nobody's.
    """
    tried: list[str] = []
    if instance.account_claim is not None:
        claim = instance.account_claim
        value = _claim_str(claims, claim)
        if value is None:
            tried.append(f"claim {claim!r}: the user's claims have no (string) {claim!r} claim")
        elif (why := _invalid_reason(value)) is not None:
            tried.append(f"claim {claim!r}: {why}")
        else:
            return AccountChoice(value, "claim", tuple(tried), lookup_pending=False)
    template = instance.effective_account_template
    if template is not None:
        label = f"template {template!r}" + (" with transforms" if instance.account_transforms else "")
        try:
            filled = _fill_template(template, username=username, claims=claims)
        except ValueError as err:
            tried.append(f"{label}: {err}")
        else:
            value = transform_account(filled, instance.account_transforms)
            if not value:
                tried.append(f"{label}: {redact(filled, limit=40)!r} became an empty name")
            elif (why := _invalid_reason(value)) is not None:
                tried.append(f"{label}: {why}")
            else:
                return AccountChoice(value, "template", tuple(tried), lookup_pending=False)
    return AccountChoice(None, None, tuple(tried), lookup_pending=instance.account_lookup)


def account_for(
    instance: RucioInstance,
    *,
    username: str,
    claims: Mapping[str, Any],
    looked_up: LookupResult | None = None,
) -> str:
    """The Rucio account for this user on ``instance``, or :class:`AccountError` naming every route tried.

    ``looked_up`` is Rucio's answer for the lookup route (``account_lookup``), fetched by the
    caller with the user's Rucio token; None means it was not asked.
    """
    choice = choose_account(instance, username=username, claims=claims)
    if choice.account is not None:
        return choice.account
    tried = list(choice.tried)
    if choice.lookup_pending:
        if looked_up is None:
            tried.append("Rucio lookup: not asked")
        elif looked_up.account is None:
            tried.append(f"Rucio lookup: {looked_up.reason or 'no account'}")
        elif (why := _invalid_reason(looked_up.account)) is not None:
            tried.append(f"Rucio lookup: {why}")
        else:
            return looked_up.account
    raise AccountError(instance.name, "; ".join(tried) or "no account route is configured")
