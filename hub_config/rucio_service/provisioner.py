"""Give a server its Rucio files: exchange tokens, render, store them in the server's Secret.

Called by :class:`~.server.ServerRucio` at spawn and at each rotation. Never fails a spawn: every
problem (account not derivable, exchange refused, IdP unreachable, API server refusing the Secret)
becomes a warning the user sees as a progress event ("Rucio access is unavailable: ..."); the server
starts without Rucio rather than not at all. No token reaches a log line, an event or an exception
message.
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
    RenderError,
    TokenExchangeRefused,
    TokenSet,
    account_for,
    build_rucio_secret,
    choose_account,
    exchange_token,
    extension_modes,
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
    expires_at: float | None = None
    """Earliest expiry among the tokens written (None: nothing written)."""
    warnings: list[str] = field(default_factory=list)


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
        try:
            await (store.update(secret) if existing else store.apply(secret))
        except KubeError as err:
            result.warnings.append(f"the Rucio credentials could not be stored ({err})")
            result.instances, result.expires_at = [], None
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
        """The Secret for a server of ``profile`` (None if no instance got a token) and the outcome.

        Everything :meth:`provision` does except the Kubernetes write, so what a server would get
        can be checked without an API server; ``result.instances`` is what the Secret holds.
        """
        result = Provisioned(secret_name=secret_name)
        access = (auth_state or {}).get("access_token")
        if not access:
            result.warnings.append("you have no IAM session token; sign out and in again")
            return None, result
        claims = {**(jwt_claims(access) or {}), **((auth_state or {}).get("oauth_user") or {})}
        tokens: dict[str, str] = {}
        accounts: dict[str, str] = {}
        expiries: list[float] = []
        instances: list[RucioInstance] = []
        for inst in instances_for(self.settings.rucio, profile):
            got = await self._token_for(inst, access, username=username, claims=claims, warnings=result.warnings)
            if got is None:
                continue
            accounts[inst.name], tokens[inst.name], exp = got
            if exp is not None:
                expiries.append(exp)
            instances.append(inst)
        if not instances:
            return None, result
        try:
            secret = build_rucio_secret(
                self.settings.rucio,
                instances,
                name=secret_name,
                namespace=namespace,
                tokens=tokens,
                accounts=accounts,
                issuer=self.settings.iam.issuer,
                modes=extension_modes(self.settings.rucio, profile),
                labels=labels,
            )
        except RenderError as err:
            result.warnings.append(f"the Rucio configuration could not be written ({err})")
            return None, result
        result.instances = [i.name for i in instances]
        result.expires_at = min(expiries) if expiries else None
        return secret, result

    async def _token_for(
        self, inst: RucioInstance, access: str, *, username: str, claims: Mapping[str, Any], warnings: list[str]
    ) -> tuple[str, str, float | None] | None:
        """(account, token, expiry) for one instance, or None with the reason added to ``warnings``."""
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
            warnings.append(f"{inst.display_name}: no Rucio account ({err})")
        except TokenExchangeRefused as err:
            warnings.append(f"{inst.display_name}: the identity provider refused the token exchange ({err})")
        except IdPUnavailable:
            warnings.append(f"{inst.display_name}: the identity provider is unreachable")
        else:
            return account, tokens_set.access_token, tokens_set.expires_at
        return None
