"""Give a server its Rucio files: exchange tokens, render, store them in the server's Secret.

Called by :class:`~.server.ServerRucio` at spawn and at each rotation, and by the spawner when the
spawn page is shown (:meth:`RucioProvisioner.preexchange`: the exchange done ahead, kept in an
:class:`~.preexchange.ExchangeCache` for the Start). Whether a Start reuses that token or exchanges
is decided in one place, :meth:`RucioProvisioner._exchange`. Never fails a spawn: every
problem (account not derivable, exchange refused, IdP unreachable, API server refusing the Secret)
becomes the instance's reason in the result, which the user sees as a progress line per instance
(:func:`hub_config.rucio.render.status_lines`); the server starts without that instance rather
than not at all, and the Secret still holds a stand-in ``rucio.cfg`` saying why. No token reaches
a log line, an event or an exception message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import KubeError
from ..kube import SecretStore
from ..metrics import METRICS
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
from ..rucio.tokens import DEFAULT_TIMEOUT
from ..settings.model import Settings
from ..settings.rse import replica_paths_by_instance
from ..settings.rucio import RucioInstance
from ..shared import HubWide
from .preexchange import ExchangeCache

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
        self.preexchanged = ExchangeCache(margin=settings.rucio.refresh_margin_seconds)
        self._inflight: dict[str, asyncio.Task[None]] = {}
        """Pre-exchanges running, by user: one at a time per user; a Start waits for its user's."""
        self._first_uses: set[asyncio.Task[None]] = set()

    def preexchange(
        self,
        username: str,
        auth_state_of: Callable[[], Awaitable[Mapping[str, Any] | None]],
        profiles: Iterable[Profile],
    ) -> None:
        """Exchange ahead, in the background, for the instances of the profiles the user is offered.

        Called when the spawn page is shown; returns at once. Instances already holding a fresh
        token are skipped (a reloaded page exchanges nothing). A failure leaves nothing behind:
        the Start then exchanges as it would have without this.
        """
        wanted: dict[str, RucioInstance] = {}
        for profile in profiles:
            for inst in instances_for(self.settings.rucio, profile):
                if inst.token_exchange.enabled:
                    wanted.setdefault(inst.name, inst)
        if not wanted or username in self._inflight:
            return
        task = asyncio.get_running_loop().create_task(self._preexchange(username, auth_state_of, list(wanted.values())))
        self._inflight[username] = task
        task.add_done_callback(lambda _: self._inflight.pop(username, None))

    async def _preexchange(
        self,
        username: str,
        auth_state_of: Callable[[], Awaitable[Mapping[str, Any] | None]],
        instances: list[RucioInstance],
    ) -> None:
        try:
            access = ((await auth_state_of()) or {}).get("access_token")
            if not isinstance(access, str) or not access:
                return
            expiry = jwt_expiry(access)
            if expiry is not None and expiry - time.time() < self.settings.rucio.refresh_margin_seconds:
                return  # the Start refreshes this login token first, so a token exchanged from it now would miss
            self.preexchanged.prune()
            for inst in instances:
                if self.preexchanged.fresh(username, inst.name, access):
                    continue
                tokens = await self._exchange_at_idp(inst, access)
                await self._first_use(inst, tokens)
                self.preexchanged.put(username, inst.name, access, tokens)
        except (TokenExchangeRefused, IdPUnavailable) as err:  # the Start exchanges again and reports it
            log.info("Pre-exchange of Rucio tokens for %s failed; the Start exchanges again: %s", username, err)
        except Exception:  # a background task: never an unhandled error in the hub's loop
            log.exception("Pre-exchange of Rucio tokens for %s failed", username)

    async def _preexchange_done(self, username: str) -> None:
        """Wait (bounded) for the user's running pre-exchange: a Start clicked at once should not exchange twice."""
        task = self._inflight.get(username)
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout=DEFAULT_TIMEOUT)

    async def _exchange(
        self, inst: RucioInstance, access: str, *, username: str, reuse: bool, first_use: bool = True
    ) -> TokenSet:
        """The instance's token for this server: the pre-exchanged one if ``reuse`` and fresh, else a new exchange.

        The one place this is decided. A rotation never reuses (it needs a token newer than the one it replaces).
        A new token is used once at Rucio before anyone else may use it (:meth:`_first_use`),
        unless ``first_use`` is False: the caller's own account lookup is that use.
        """
        if reuse:
            cached = self.preexchanged.take(username, inst.name, access)
            METRICS.spawn_exchange("preexchanged" if cached is not None else "at_start")
            if cached is not None:
                return cached  # used once already, when it was pre-exchanged
        tokens = await self._exchange_at_idp(inst, access)
        if first_use and reuse:
            # A Start: its pod needs seconds before anything in it reads the token, so this
            # leaves the critical path (the spawn storm's p95).
            task = asyncio.get_running_loop().create_task(self._first_use(inst, tokens))
            self._first_uses.add(task)
            task.add_done_callback(self._first_uses.discard)
        elif first_use:
            await self._first_use(inst, tokens)  # a rotation: before the Secret the workers read
        return tokens

    async def _first_use(self, inst: RucioInstance, tokens: TokenSet) -> None:
        """Use a new token once at Rucio (``whoami``) before the server's processes may all use it at once.

        Rucio (41.5.1) records a JWT it has not seen on its first use, and two first uses at the
        same moment race on that insert: the loser gets a 401 (rucio/rucio#8217, #8380). Right
        after a rotation every Dask worker of the user reads the new token together, so the
        hub, which exchanged it, uses it first. Best effort: a failure is logged (no token in it)
        and the token is written all the same.
        """
        try:
            result = await lookup_account(inst.rucio_host, tokens.access_token, ca_bundle=self._ca_bundle)
        except Exception:  # best effort: lookup_account reports its failures as results; anything else is logged
            log.exception("First use of a new Rucio token at %s failed", inst.name)
            return
        if result.account is None:
            log.info("First use of a new Rucio token at %s: %s", inst.name, result.reason)

    async def _exchange_at_idp(self, inst: RucioInstance, access: str) -> TokenSet:
        return await exchange_token(
            self._token_url,
            self._client_id,
            self._client_secret,
            access,
            inst.token_exchange.audience,
            inst.token_exchange.scope,
            ca_bundle=self._ca_bundle,
        )

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

        ``existing``: the Secret was written before (rotation), so patch it rather than create it,
        with newly exchanged tokens; otherwise (a Start) a fresh pre-exchanged token is used.
        """
        secret, result = await self.render(
            namespace=namespace,
            secret_name=secret_name,
            username=username,
            auth_state=auth_state,
            profile=profile,
            labels=labels,
            reuse=not existing,
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
        reuse: bool = False,
    ) -> tuple[dict[str, Any] | None, Provisioned]:
        """The Secret for a server of ``profile`` and the outcome.

        Everything :meth:`provision` does except the Kubernetes write, so what a server would get
        can be checked without an API server; ``result.instances`` are the instances that work.
        The Secret is rendered even when none works (stand-in configs saying why); it is None only
        when it cannot be rendered at all. ``reuse``: take a fresh pre-exchanged token if there is one.
        """
        if reuse:
            await self._preexchange_done(username)
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
                    inst, access, username=username, claims=claims, warnings=why, errors=result.errors, reuse=reuse
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
                replica=replica_paths_by_instance(self.settings.rucio, self.settings.storage),
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
        reuse: bool = False,
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
                tokens_set = await self._exchange(
                    inst, access, username=username, reuse=reuse, first_use=account is not None
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
