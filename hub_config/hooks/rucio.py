"""Give a server its Rucio files: exchange tokens, render, store them in the server's Secret.

Used at spawn and by the rotator. Never fails a spawn: every problem (account not derivable,
exchange refused, IdP unreachable, API server refusing the Secret) becomes a warning the user
sees as a progress event ("Rucio access is unavailable: ..."); the server starts without Rucio
rather than not at all. No token reaches a log line, an event or an exception message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..kube import KubeError, SecretStore
from ..profiles.model import Profile
from ..rucio import (
    AccountError,
    IdPUnavailable,
    RenderError,
    TokenExchangeRefused,
    account_for,
    build_rucio_secret,
    exchange_token,
    extension_modes,
    jwt_claims,
    jwt_expiry,
    selected_instances,
)
from ..rucio.secret import OwnerPod
from ..settings.model import Settings
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

    @property
    def ok(self) -> bool:
        """True when every selected instance got a token."""
        return bool(self.instances) and not self.warnings


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

    def wanted(self, profile: Profile) -> bool:
        """Does a server of ``profile`` get Rucio at all?"""
        return bool(self.settings.rucio.instances) and profile.rucio.enabled and bool(self._selected(profile))

    def _selected(self, profile: Profile) -> list[Any]:
        return list(selected_instances(self.settings.rucio, profile))

    async def provision(
        self,
        *,
        store: SecretStore,
        namespace: str,
        secret_name: str,
        username: str,
        auth_state: Mapping[str, Any] | None,
        profile: Profile,
        owner: OwnerPod | None = None,
        labels: Mapping[str, str] | None = None,
        existing: bool = False,
    ) -> Provisioned:
        """Exchange, render and store; problems become warnings in the result.

        ``existing``: the Secret was written before (rotation), so patch it rather than create it.
        """
        result = Provisioned(secret_name=secret_name)
        access = (auth_state or {}).get("access_token")
        if not access:
            result.warnings.append("you have no IAM session token; sign out and in again")
            return result
        claims = {**(jwt_claims(access) or {}), **((auth_state or {}).get("oauth_user") or {})}
        tokens: dict[str, str] = {}
        accounts: dict[str, str] = {}
        expiries: list[float] = []
        instances = []
        for inst in self._selected(profile):
            try:
                account = account_for(inst, username=username, claims=claims)
                if inst.token_exchange.enabled:
                    tokens_set = await exchange_token(
                        self._token_url,
                        self._client_id,
                        self._client_secret,
                        access,
                        inst.token_exchange.audience,
                        inst.token_exchange.scope,
                        ca_bundle=self._ca_bundle,
                    )
                    token, exp = tokens_set.access_token, tokens_set.expires_at
                else:
                    token, exp = access, jwt_expiry(access)
            except AccountError as err:
                result.warnings.append(f"{inst.display_name}: no Rucio account ({err})")
                continue
            except TokenExchangeRefused as err:
                result.warnings.append(f"{inst.display_name}: the identity provider refused the token exchange ({err})")
                continue
            except IdPUnavailable:
                result.warnings.append(f"{inst.display_name}: the identity provider is unreachable")
                continue
            tokens[inst.name] = token
            accounts[inst.name] = account
            if exp is not None:
                expiries.append(exp)
            instances.append(inst)
        if not instances:
            return result
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
                owner=owner,
            )
            await (store.update(secret) if existing else store.apply(secret))
        except RenderError as err:
            result.warnings.append(f"the Rucio configuration could not be written ({err})")
            return result
        except KubeError as err:
            result.warnings.append(f"the Rucio credentials could not be stored ({err})")
            return result
        result.instances = [i.name for i in instances]
        result.expires_at = min(expiries) if expiries else None
        left = f"{result.expires_at - time.time():.0f}s" if result.expires_at else "unknown"
        log.info(
            "Rucio credentials for %s in Secret %s (%s); tokens valid %s",
            username,
            secret_name,
            ", ".join(result.instances),
            left,
        )
        return result
