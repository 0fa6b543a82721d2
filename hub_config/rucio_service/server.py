"""One server's Rucio credentials from spawn to stop: the object that creates the Secret owns it.

:class:`ServerRucio` provisions the server's Secret at spawn, makes the pod own it once the pod
exists, hands the server to the rotator, and deletes the Secret at stop, except when KubeSpawner
stops a pod only to create it again (its kill-and-retry while starting), whose new pod must find
the Secret written for this start. The spawner creates one per server and calls it at those
points; it holds no Secret name, store or owner reference itself. Whether a server gets Rucio at
all is :func:`hub_config.rucio.selection.gets_rucio`'s call, here as in the pod wiring.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import AccountError, IdPUnavailable, KubeError, TokenExchangeRefused
from ..kube import SecretStore
from ..metrics import METRICS
from ..profiles.model import Profile
from ..rucio.render import status_lines
from ..rucio.secret import OwnerPod, owner_reference, secret_name_for
from ..rucio.selection import gets_rucio
from .provisioner import Provisioned, RucioProvisioner
from .rotator import RotationStopped, Rotator

_PERMANENT_CAUSES = (AccountError, TokenExchangeRefused)
"""Per-instance failures that stay until the user signs in again (the rotator's permanent class)."""

__all__ = ["ServerRucio", "progress_messages"]

log = logging.getLogger(__name__)

_BACKGROUND: set[asyncio.Task[None]] = set()
"""Fire-and-forget tasks (owner patches), referenced until done so they are not collected."""

SERVER_LABEL = "datalake-hub.io/server"
"""Label on the Secret naming its server's pod (truncated to a label value)."""


def progress_messages(result: Provisioned, *, mount_path: str) -> list[str]:
    """The spawn's progress lines about Rucio: one per instance, then the overall state.

    The same lines as the session's ``status.txt`` (both from :func:`status_lines`). A result with
    no instance status (nothing could be rendered) still ends in one clear overall line.
    """
    if not result.statuses:
        reason = "; ".join(result.warnings) or "no Rucio instance could be set up for you"
        return [f"Rucio access is unavailable: {reason}; the server starts without Rucio"]
    return status_lines(result.statuses, default=result.default or "", mount_path=mount_path)


class ServerRucio:
    """The Rucio Secret of one server (one pod name), and everything done to it."""

    def __init__(
        self,
        provisioner: RucioProvisioner,
        rotator: Rotator | None,
        *,
        api_client: Any,
        namespace: str,
        pod_name: str,
        user: Any,
        profile_of: Callable[[], Awaitable[Profile | None]],
    ) -> None:
        """``user``: JupyterHub's ``User`` (name, auth state, authenticator for refreshes).

        ``profile_of``: the server's profile when it is not known from this spawn (after a hub
        restart), or None when it is no longer offered.
        """
        self._provisioner = provisioner
        self._rotator = rotator
        self._store = _WatchedStore(api_client)
        self._namespace = namespace
        self._pod_name = pod_name
        self._user = user
        self._profile_of = profile_of
        self._profile: Profile | None = None
        self._resume_decided = False
        self._login_seen: str | None = None
        """Digest of the refresh token the last provisioning used: a new sign-in resumes a parked server."""

    @property
    def secret_name(self) -> str:
        """The Secret's name, for the pod's volume: ``<pod_name>-rucio``."""
        return secret_name_for(self._pod_name)

    @property
    def key(self) -> str:
        """The rotator's key for this server."""
        return f"{self._namespace}/{self._pod_name}"

    def _wanted(self, profile: Profile) -> bool:
        return gets_rucio(self._provisioner.settings.rucio, profile)

    async def start(self, profile: Profile) -> list[str]:
        """Fill the Secret for a server of ``profile``; the progress messages the user should see.

        A failure is a message, never a failed spawn (the volume is optional). A server that got
        tokens is handed to the rotator.
        """
        self._profile = profile
        self._resume_decided = True
        if not self._wanted(profile):
            return []
        result = await self.provision(profile)
        for warning in result.warnings:
            log.warning("Rucio for %s: %s", self._pod_name, warning)
        if any(status.problem for status in result.statuses) or not result.instances:
            METRICS.spawn_failed("rucio")  # the server starts, without (some of) its Rucio instances
        if result.instances:
            if self._rotator is not None:
                self._rotator.track(self.key, self.rotate, result.expires_at)
        elif self._rotator is not None:
            try:
                await self._why_not(result)
            except RotationStopped as err:  # retrying would refresh the user's tokens for nothing
                self._rotator.park(self.key, self.rotate, str(err))
            except (IdPUnavailable, KubeError):
                pass  # transient: resume() hands the server to the rotator, which retries it
        return progress_messages(result, mount_path=self._provisioner.settings.rucio.mount_path)

    async def provision(self, profile: Profile, *, existing: bool = False) -> Provisioned:
        """Exchange, render and write the Secret (``existing``: patch it, as a rotation does)."""
        auth_state = await self._user.get_auth_state()
        self._login_seen = _login_digest(auth_state)
        self._store.error = None
        return await self._provisioner.provision(
            store=self._store,
            namespace=self._namespace,
            secret_name=self.secret_name,
            username=self._user.name,
            auth_state=auth_state,
            profile=profile,
            labels={SERVER_LABEL: self._pod_name[:63].rstrip("-._")},
            existing=existing,
        )

    def pod_created(self, pod_uid: str) -> None:
        """The pod now has a uid: make it own the Secret (deleted with the pod, whoever deletes it).

        Called when the start has returned, in the background: the owner reference is only a
        safety net (the Secret is deleted at stop anyway), so an API server slow to answer the
        patch must not delay anything.
        """
        if self._profile is None or not self._wanted(self._profile):
            return
        task = asyncio.get_running_loop().create_task(self._own(pod_uid))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    async def _own(self, pod_uid: str) -> None:
        reference = owner_reference(OwnerPod(name=self._pod_name, uid=pod_uid))
        try:
            await self._store.set_owner(self._namespace, self.secret_name, reference)
        except KubeError as err:  # the Secret is still deleted at stop
            log.warning("Could not make %s own its Rucio Secret: %s", self._pod_name, err)

    async def rotate(self) -> float | None:
        """Rotator callback: fresh IAM tokens (refresh if near expiry), new exchange, patched Secret.

        Raises what the rotator's policy needs: :class:`RotationStopped` when retrying cannot help
        (checked before the refresh where possible, so the user's login tokens are not refreshed
        for nothing), :class:`IdPUnavailable` when the IdP cannot be asked, :class:`KubeError`
        when the Secret could not be written.
        """
        profile = self._profile or await self._profile_of()
        if profile is None:
            raise RotationStopped("the server's profile is no longer offered to the user")
        if not self._wanted(profile):
            raise RotationStopped("the server's profile gets no Rucio")
        self._login_seen = _login_digest(await self._user.get_auth_state())
        refreshed = await self._user.authenticator.refresh_user(self._user)
        if refreshed is False:
            raise RotationStopped("the user's IAM session ended (refresh token rejected); they must sign in again")
        result = await self.provision(profile, existing=True)
        if not result.instances:
            await self._why_not(result)
        return result.expires_at

    async def _why_not(self, result: Provisioned) -> None:
        """Raise the class of the reason ``result`` holds no instance, for the rotator's policy.

        The class comes from the errors themselves: the Secret write's own error, else an
        instance's :class:`IdPUnavailable` (a 5xx, a timeout, a reply without a token: transient,
        even when the IdP answers a probe), else, when every instance failed for a permanent
        reason (no valid account, exchange refused), permanent until the user signs in again.
        Without a per-instance error (no session token, nothing renderable) the IdP is probed:
        unavailable is transient, else permanent.
        """
        reason = "; ".join(result.warnings) or "no Rucio instance could be configured"
        if self._store.error is not None:
            raise self._store.error
        unavailable = next((e for e in result.errors.values() if isinstance(e, IdPUnavailable)), None)
        if unavailable is not None:
            raise unavailable  # the exchange itself failed transiently, even if the IdP answers a probe
        if result.errors and all(isinstance(e, _PERMANENT_CAUSES) for e in result.errors.values()):
            raise RotationStopped(reason)
        problem = await self._rotator.idp_problem() if self._rotator is not None else None
        if problem is not None:
            raise problem
        raise RotationStopped(reason)

    async def resume(self) -> None:
        """The server runs but is not rotated (the hub restarted, or the spawn got no token): rotate it.

        Due at once, so a server whose provisioning failed at spawn for a transient reason is
        retried by the rotator. Servers whose profile gets no Rucio are left alone (decided once
        per server); a server parked for a permanent reason is tried again only when its user's
        sign-in has changed (a new refresh token: a new login, or an IdP that rotates refresh
        tokens), since a new login may bring what was missing (an account claim, a valid session).
        """
        if self._rotator is None:
            return
        tracked = self._rotator.tracked(self.key)
        if tracked is not None:
            if tracked.stopped is not None and await self._signed_in_again():
                log.info("Rucio for %s: the user signed in again; rotating its tokens again", self._pod_name)
                self._rotator.track(self.key, self.rotate, None)
            return
        if not self._resume_decided:
            self._profile = self._profile or await self._profile_of()
            self._resume_decided = True
        if self._profile is not None and self._wanted(self._profile):
            self._rotator.track(self.key, self.rotate, None)

    async def _signed_in_again(self) -> bool:
        login = _login_digest(await self._user.get_auth_state())
        return login is not None and login != self._login_seen

    async def stop(self, stop_pod: Callable[[], Awaitable[None]], *, retrying_start: bool) -> None:
        """Stop rotating, let ``stop_pod`` stop the pod, then delete the Secret.

        ``retrying_start``: KubeSpawner stops the pod while still starting (its create timed out
        but the pod was made, or an old pod had the name) and will create a new one, which must
        still find the Secret written for this start: only the pod is stopped.
        """
        if retrying_start:
            await stop_pod()
            return
        if self._rotator is not None:
            self._rotator.untrack(self.key)
        try:
            await stop_pod()
        finally:  # a pod stop that failed (an API timeout in a storm) must not leave the token behind
            try:
                await self._store.delete(self._namespace, self.secret_name)
            except KubeError as err:
                log.warning("Could not delete the Rucio Secret of %s: %s", self._pod_name, err)


class _WatchedStore(SecretStore):
    """The server's Secret store, remembering the last write's :class:`KubeError`.

    The provisioner turns a failed write into a warning; the rotator needs the error itself to
    tell "the API server refused" (retry) from the permanent reasons.
    """

    error: KubeError | None = None

    async def apply(self, secret: dict[str, Any]) -> None:
        try:
            await super().apply(secret)
        except KubeError as err:
            self.error = err
            raise

    async def update(self, secret: dict[str, Any]) -> None:
        try:
            await super().update(secret)
        except KubeError as err:
            self.error = err
            raise


def _login_digest(auth_state: Any) -> str | None:
    """Which sign-in ``auth_state`` is from (its refresh token, hashed): changes when the user signs in again."""
    token = (auth_state or {}).get("refresh_token") if isinstance(auth_state, dict) else None
    return hashlib.sha256(token.encode()).hexdigest()[:16] if isinstance(token, str) and token else None
