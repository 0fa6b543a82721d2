"""Give a server its Rucio files: exchange tokens, render, store them in the server's Secret.

Called by :class:`~.server.ServerRucio` at spawn and at each rotation. Never fails a spawn: every
problem (account not derivable, exchange refused, IdP unreachable, API server refusing the Secret)
becomes the instance's reason in the result, which the user sees as a progress line per instance
(:func:`hub_config.rucio.render.status_lines`); the server starts without that instance rather
than not at all, and the Secret still holds a stand-in ``rucio.cfg`` saying why. No token reaches
a log line, an event or an exception message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import KubeError
from ..kube import SecretStore
from ..profiles.model import Profile
from ..rucio import (
    AccountError,
    IdPUnavailable,
    InstanceStatus,
    RenderError,
    TokenExchangeRefused,
    TokenSet,
    account_for,
    build_rucio_secret,
    choose_account,
    default_instance,
    exchange_token,
    extension_modes,
    instance_statuses,
    instances_for,
    jwt_claims,
    jwt_expiry,
)
from ..rucio.lookup import lookup_account
from ..settings.model import Settings
from ..settings.rucio import RucioInstance
from ..shared import HubWide

__all__ = ["Provisioned", "RucioProvisioner"]

log = logging.getLogger(__name__)


@dataclass
class Provisioned:
    """Outcome of one provisioning: what the server got and what it did not."""

    secret_name: str
    instances: list[str] = field(default_factory=list)
    """The instances that work (a token and a real ``rucio.cfg`` in the Secret)."""
    expires_at: float | None = None
    """Earliest expiry among the tokens written (None: nothing written)."""
    warnings: list[str] = field(default_factory=list)
    errors: dict[str, Exception] = field(default_factory=dict)
    """Per instance that failed, the error itself (``IdPUnavailable``, ``TokenExchangeRefused``,
    ``AccountError``): the rotator's policy is decided from these, never from the words in ``warnings``."""
    statuses: list[InstanceStatus] = field(default_factory=list)
    """Every instance of the profile, ready or with its reason: what the user is told."""
    default: str | None = None
    """The default instance (``rucio.cfg``), whether or not it worked."""

    def fail_all(self, reason: str) -> None:
        """Nothing reached the server (e.g. the Secret could not be stored): every instance is unavailable.

        An instance that had already failed keeps its own reason (the first cause is the useful one).
        """
        self.statuses = [InstanceStatus(st.name, st.display_name, problem=st.problem or reason) for st in self.statuses]
        self.instances, self.expires_at = [], None


class RucioProvisioner(HubWide):
    """Exchanges tokens and writes the per-server Secret, for one hub's settings and OAuth client."""

    def __init__(
        self, settings: Settings, *, token_url: str, client_id: str, client_secret: str, ca_bundle: str | None
    ) -> None:
        self.settings = settings
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._ca_bundle = ca_bundle

    async def provision(
        self,
        *,
        store: SecretStore,
        namespace: str,
        secret_name: str,
        username: str,
        auth_state: Mapping[str, Any] | None,
        profile: Profile,
        labels: Mapping[str, str] | None = None,
        existing: bool = False,
    ) -> Provisioned:
        """Exchange, render and store; problems become warnings in the result.

        ``existing``: the Secret was written before (rotation), so patch it rather than create it.
        """
        secret, result = await self.render(
            namespace=namespace,
            secret_name=secret_name,
            username=username,
            auth_state=auth_state,
            profile=profile,
            labels=labels,
        )
        if secret is None:
            return result
        if existing and not result.instances:
            # A rotation that got nothing keeps the files of the last good one (tokens may still be valid).
            return result
        try:
            await (store.update(secret) if existing else store.apply(secret))
        except KubeError as err:
            reason = f"the Rucio credentials could not be stored ({err})"
            result.warnings.append(reason)
            result.fail_all(reason)
            return result
        left = f"{result.expires_at - time.time():.0f}s" if result.expires_at else "unknown"
        log.info(
            "Rucio credentials for %s in Secret %s (%s); tokens valid %s",
            username,
            secret_name,
            ", ".join(result.instances),
            left,
        )
        return result

    async def render(
        self,
        *,
        namespace: str,
        secret_name: str,
        username: str,
        auth_state: Mapping[str, Any] | None,
        profile: Profile,
        labels: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any] | None, Provisioned]:
        """The Secret for a server of ``profile`` and the outcome.

        Everything :meth:`provision` does except the Kubernetes write, so what a server would get
        can be checked without an API server; ``result.instances`` are the instances that work.
        The Secret is rendered even when none works (stand-in configs saying why); it is None only
        when it cannot be rendered at all.
        """
        result = Provisioned(secret_name=secret_name)
        wanted = instances_for(self.settings.rucio, profile)
        result.default = default_instance(self.settings.rucio, wanted)
        tokens: dict[str, str] = {}
        accounts: dict[str, str] = {}
        unavailable: dict[str, str] = {}
        expiries: list[float] = []
        access = (auth_state or {}).get("access_token")
        if not access:
            reason = "you have no IAM session token; sign out and in again"
            result.warnings.append(reason)
            unavailable = {inst.name: reason for inst in wanted}
        else:
            claims = {**(jwt_claims(access) or {}), **((auth_state or {}).get("oauth_user") or {})}
            for inst in wanted:
                why: list[str] = []
                got = await self._token_for(
                    inst, access, username=username, claims=claims, warnings=why, errors=result.errors
                )
                result.warnings.extend(why)
                if got is None:
                    prefix = f"{inst.display_name}: "
                    unavailable[inst.name] = "; ".join(w.removeprefix(prefix) for w in why) or "not set up"
                    continue
                accounts[inst.name], tokens[inst.name], exp = got
                if exp is not None:
                    expiries.append(exp)
        result.statuses = instance_statuses(wanted, accounts=accounts, unavailable=unavailable)
        if not wanted:
            return None, result
        try:
            secret = build_rucio_secret(
                self.settings.rucio,
                wanted,
                name=secret_name,
                namespace=namespace,
                tokens=tokens,
                accounts=accounts,
                issuer=self.settings.iam.issuer,
                modes=extension_modes(self.settings.rucio, profile),
                unavailable=unavailable,
                labels=labels,
            )
        except RenderError as err:
            reason = f"the Rucio configuration could not be written ({err})"
            result.warnings.append(reason)
            result.fail_all(reason)
            return None, result
        result.instances = [i.name for i in wanted if i.name not in unavailable]
        result.expires_at = min(expiries) if expiries else None
        return secret, result

    async def _token_for(
        self,
        inst: RucioInstance,
        access: str,
        *,
        username: str,
        claims: Mapping[str, Any],
        warnings: list[str],
        errors: dict[str, Exception],
    ) -> tuple[str, str, float | None] | None:
        """(account, token, expiry) for one instance, or None with the reason added to ``warnings``
        and the error itself to ``errors`` (by instance name)."""
        try:
            choice = choose_account(inst, username=username, claims=claims)
            account = choice.account
            if account is None and not choice.lookup_pending:
                account = account_for(inst, username=username, claims=claims)  # raises, naming each route
            if not inst.token_exchange.enabled:
                tokens_set = TokenSet(access_token=access, expires_at=jwt_expiry(access))
            else:
                tokens_set = await exchange_token(
                    self._token_url,
                    self._client_id,
                    self._client_secret,
                    access,
                    inst.token_exchange.audience,
                    inst.token_exchange.scope,
                    ca_bundle=self._ca_bundle,
                )
            if account is None:  # the lookup route: ask Rucio which account holds this token's identity
                looked_up = await lookup_account(inst.rucio_host, tokens_set.access_token, ca_bundle=self._ca_bundle)
                account = account_for(inst, username=username, claims=claims, looked_up=looked_up)
        except AccountError as err:
            errors[inst.name] = err
            warnings.append(f"{inst.display_name}: no Rucio account ({err})")
        except TokenExchangeRefused as err:
            errors[inst.name] = err
            warnings.append(f"{inst.display_name}: the identity provider refused the token exchange ({err})")
        except IdPUnavailable as err:
            errors[inst.name] = err
            warnings.append(f"{inst.display_name}: the identity provider is unreachable")
        else:
            return account, tokens_set.access_token, tokens_set.expires_at
        return None
