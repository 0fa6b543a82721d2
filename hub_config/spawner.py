"""KubeSpawner configured from settings and profiles, plus what KubeSpawner lacks.

`DatalakeSpawner` adds three things to KubeSpawner 7:

- choices are validated before KubeSpawner sees them: a profile outside the user's groups is a
  403 and an unknown choice a 400 (KubeSpawner would raise KeyError → 500), and no pod is created;
- the chosen profile's pod wiring (storage, the Rucio mount, env, security contexts; built by
  :func:`hub_config.pod.build_pod_wiring`, which ``preview --pod`` shows) is attached after its
  overrides apply (profile-dependent pod changes cannot happen earlier: pre_spawn_hook runs
  before overrides);
- the Rucio token exchange is done when the spawn page is shown (in the background) and reused by
  the Start if still fresh (``RucioProvisioner.preexchange``), taking an IdP round trip per Rucio
  instance off the Start click; the Secret is still written before the pod exists;
- the maximum runtime chosen on the spawn page is enforced in `poll()` (every ``poll_interval``
  and when the hub starts), from the pod's annotation, so it survives hub restarts; the server is
  stopped cleanly like any other stop (its Rucio Secret goes too), with a WARNING in the hub log
  and a notice on the user's hub pages saying why (:mod:`hub_config.stop_notices`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
from collections.abc import AsyncIterator
from typing import Any

from kubespawner import KubeSpawner
from tornado import web
from traitlets import Any as AnyTrait

from . import stop_notices
from .dask.clusters import DaskClusters
from .errors import ChoiceError, KubeError
from .kube import delete_dask_clusters
from .metrics import METRICS
from .pod import PodWiring, base_environment, build_pod_wiring, merge_site_entries, security_contexts
from .profiles.kubespawner import (
    PROFILE_KEY,
    RUNTIME_KEY,
    normalize_user_options,
    resolve_overrides,
    user_may_use,
)
from .profiles.model import Profile
from .profiles.source import ProfileSource
from .rucio_service import Rotator, RucioProvisioner, ServerRucio
from .settings.model import Settings
from .spawn_form import SpawnForm
from .storage import pvc_settings

__all__ = ["DatalakeSpawner", "apply_spawner", "runtime_exceeded"]


class DatalakeSpawner(SpawnForm, KubeSpawner):  # type: ignore[misc]
    """KubeSpawner with group-filtered, validated profiles, per-profile storage and a runtime limit."""

    datalake_profiles = AnyTrait(help="hub_config ProfileSource").tag(config=True)
    datalake_rucio = AnyTrait(None, allow_none=True, help="hub_config RucioProvisioner").tag(config=True)
    datalake_rotator = AnyTrait(None, allow_none=True, help="hub_config Rotator").tag(config=True)
    datalake_dask = AnyTrait(None, allow_none=True, help="hub_config DaskClusters (metrics)").tag(config=True)

    def _settings(self) -> Settings:
        """The hub's settings, from the shared profile source (see ``hub_config.shared``)."""
        source: ProfileSource = self.datalake_profiles
        return source.settings

    def user_groups(self) -> list[str]:
        """Names of the user's JupyterHub groups (synced from IAM at each login and refresh)."""
        return sorted(g.name for g in getattr(self.user, "groups", []) or [])

    def _chosen_profile(self, entries: list[dict[str, Any]]) -> Profile:
        slug = (self.user_options or {}).get("profile") or next(e["slug"] for e in entries if e["default"])
        source: ProfileSource = self.datalake_profiles
        return next(lp.profile for lp in source.current() if lp.profile.slug == slug)

    def _options_loaded(self) -> asyncio.Event:
        event: asyncio.Event | None = self.__dict__.get("_datalake_loaded")
        if event is None:
            event = self.__dict__["_datalake_loaded"] = asyncio.Event()
        return event

    def clear_state(self) -> None:
        """A new spawn starts: forget the previous spawn's progress messages."""
        super().clear_state()
        self._datalake_events: list[dict[str, Any]] = []
        self._options_loaded().clear()

    async def load_user_options(self) -> None:
        try:
            await self._load_user_options()
        except Exception:
            METRICS.spawn_failed("options")
            raise
        finally:
            self._options_loaded().set()

    # --- metrics: spawn failures of KubeSpawner's phase, running servers per profile -----------

    @property
    def _metrics_key(self) -> str:
        return f"{self.namespace}/{self.pod_name}"

    @property
    def _default_of(self) -> str | None:
        """The user, when this is their default server (the one their Dask clusters run beside)."""
        return None if self.name else str(self.user.name)

    async def _profile_slug(self) -> str:
        """The running server's profile slug (a bounded label: admins define profiles)."""
        slug: str | None = self.__dict__.get("_datalake_slug")
        if slug is None:
            profile = await self._current_profile()
            options = self.user_options or {}
            slug = profile.slug if profile is not None else str(options.get("profile") or "unknown")
            self.__dict__["_datalake_slug"] = slug
        return slug

    def start(self) -> Any:
        """KubeSpawner's start (a future it keeps for `progress()`, so it stays synchronous), counted."""
        profile: Profile | None = getattr(self, "_datalake_profile", None)
        if profile is not None:
            self.__dict__["_datalake_slug"] = profile.slug  # chosen by load_user_options for this spawn
        self._watch_dask()
        future = super().start()
        future.add_done_callback(self._start_done)
        return future

    def _watch_dask(self) -> None:
        """The hub's Dask cluster metrics list through the spawners' API client (see ``hub_config.dask.clusters``)."""
        clusters: DaskClusters | None = self.datalake_dask
        if clusters is not None:
            clusters.attach(self.api.api_client, self.namespace)

    def _start_done(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            METRICS.spawn_failed("pod")
            return
        self._own_rucio_secret()
        slug = self.__dict__.get("_datalake_slug") or str((self.user_options or {}).get("profile") or "unknown")
        METRICS.server_running(self._metrics_key, slug, default_of=self._default_of)

    async def _load_user_options(self) -> None:
        entries = await self.datalake_profile_list()
        # Keys renamed in this release (runtime -> runtime_hours, ...) still work in REST requests.
        options: dict[str, Any] = normalize_user_options(getattr(self, "user_options", None) or {})
        self.user_options = options
        if not entries:
            raise _refusal(403, "No server options are available to your groups. Contact the hub admins.")
        if any(not isinstance(v, str) for v in options.values()):
            raise _refusal(400, "Server options must be strings (profile slug and choice keys).")
        try:
            resolve_overrides(entries, options)
        except ChoiceError as err:
            slug = options.get("profile")
            offered = {e["slug"] for e in entries}
            status = 403 if slug and slug not in offered else 400
            self.log.info("Refusing spawn of %s: %s", self.user.name, err)
            raise _refusal(status, str(err)) from None
        await super().load_user_options()
        stop_notices.clear(self.user.name)  # a new start: the last stop's notice has been read
        profile = self._chosen_profile(entries)
        self._datalake_profile = profile
        rucio = self._rucio()
        rucio_secret = rucio.secret_name if rucio is not None else None
        wiring = build_pod_wiring(self._settings(), profile, image=self.image, rucio_secret=rucio_secret)
        self._attach_site_and_wiring(wiring)
        environment: dict[str, Any] = dict(getattr(self, "environment", {}))  # the profile's env merged in
        self.environment = {**environment, **wiring.environment}
        self.pod_security_context = wiring.pod_security_context
        self.container_security_context = wiring.container_security_context
        self._datalake_events = []
        if rucio is not None:
            for message in await rucio.start(profile):
                self._datalake_events.append({"progress": 5, "message": message})

    def _attach_site_and_wiring(self, wiring: PodWiring) -> None:
        """The site's own volumes, mounts and init containers (z2jh's ``singleuser.storage.extra*``,
        ``singleuser.initContainers``), then ours. The site's lists are remembered at the first spawn:
        the same spawner object serves every later start of this server, whose traits by then hold
        the previous start's merged lists."""
        site = self.__dict__.get("_datalake_site_entries")
        if site is None:
            traits: dict[str, Any] = {n: getattr(self, n) for n in ("volumes", "volume_mounts", "init_containers")}
            site = self.__dict__["_datalake_site_entries"] = (
                list(traits["volumes"]),
                list(traits["volume_mounts"]),
                list(traits["init_containers"]),
            )
        replaced: list[str] = []
        self.volumes, names = merge_site_entries(site[0], list(wiring.volumes), "name")
        replaced += names
        self.volume_mounts, paths = merge_site_entries(site[1], list(wiring.volume_mounts), "mountPath")
        replaced += paths
        self.init_containers, names = merge_site_entries(site[2], list(wiring.init_containers), "name")
        replaced += names
        if replaced:
            self.log.warning(
                "singleuser entries %s are replaced by datalake-hub's own of the same name or path",
                sorted(set(replaced)),
            )

    # --- Rucio: the server's credentials are ServerRucio's job; these are the calls into it ----

    async def _render_options_form_dynamically(self, current_spawner: Any) -> str:
        """The spawn page is being shown: exchange the user's Rucio tokens ahead, then render the form.

        The exchange runs in the background (the page is not delayed by it), for the instances of
        the profiles this user may choose; the Start takes the result if it is still fresh.
        """
        provisioner: RucioProvisioner | None = self.datalake_rucio
        if provisioner is not None:
            source: ProfileSource = self.datalake_profiles
            groups = self.user_groups()
            offered = [lp.profile for lp in source.current() if user_may_use(lp.profile, groups)]
            provisioner.preexchange(self.user.name, self.user.get_auth_state, offered)
        html: str = await super()._render_options_form_dynamically(current_spawner)
        return html

    def _rucio(self) -> ServerRucio | None:
        """This server's Rucio lifecycle, or None when the hub provisions no Rucio."""
        provisioner: RucioProvisioner | None = self.datalake_rucio
        if provisioner is None:
            return None
        rucio: ServerRucio | None = getattr(self, "_datalake_rucio_server", None)
        if rucio is None:
            rucio = self._datalake_rucio_server = ServerRucio(
                provisioner,
                self.datalake_rotator,
                api_client=self.api.api_client,
                namespace=self.namespace,
                pod_name=self.pod_name,
                user=self.user,
                profile_of=self._current_profile,
            )
        return rucio

    async def _current_profile(self) -> Profile | None:
        """The running server's profile (from its options after a hub restart); None if no longer offered."""
        profile: Profile | None = getattr(self, "_datalake_profile", None)
        if profile is not None:
            return profile
        try:
            return self._chosen_profile(await self.datalake_profile_list())
        except StopIteration:
            return None

    def _own_rucio_secret(self) -> None:
        """The server is running: its pod becomes the owner of its Rucio Secret (``ServerRucio.pod_created``).

        Not KubeSpawner's ``after_pod_created_hook``: with a hook set, KubeSpawner first polls its
        pod reflector for the new pod's uid with a backoff that, in a spawn storm, added seconds to
        every start (docs/performance.md). When the start returns, the reflector has the running pod.
        A start that fails never gets here; its stop deletes the Secret.
        """
        rucio = self._rucio()
        reflector = getattr(self, "pod_reflector", None)
        pod = reflector.pods.get(f"{self.namespace}/{self.pod_name}") if reflector is not None else None
        uid = (pod or {}).get("metadata", {}).get("uid")
        if rucio is not None and uid:
            rucio.pod_created(uid)

    async def stop(self, now: bool = False) -> None:
        METRICS.server_stopped(self._metrics_key)
        retrying = getattr(self, "_start_pending", False) and not getattr(self, "_stop_pending", False)
        if not retrying:
            await self._stop_dask_clusters()
        rucio = self._rucio()
        if rucio is None:
            await super().stop(now=now)
            return
        # KubeSpawner itself stops while starting when its pod create timed out but the pod was
        # made, or an old pod had the name (409); it then creates the pod again.
        await rucio.stop(functools.partial(super().stop, now=now), retrying_start=retrying)

    async def _stop_dask_clusters(self) -> None:
        """The user's Dask clusters end with their default server (the one they run alongside, see
        ``hub_config.dask.gateway``), before its Rucio Secret goes: no worker outlives its owner's
        session. A failure is logged, never blocks the stop."""
        if self.name or not self._settings().dask_gateway.enabled:
            return
        try:
            names = await delete_dask_clusters(self.api.api_client, self.namespace, self.user.name)
        except KubeError as err:
            self.log.warning("could not stop %s's Dask clusters: %s", self.user.name, err)
            return
        if names:
            self.log.info("stopped %d Dask cluster(s) of %s with their server", len(names), self.user.name)

    def _max_runtime_hours(self) -> float | None:
        reflector = getattr(self, "pod_reflector", None)
        pod = reflector.pods.get(f"{self.namespace}/{self.pod_name}") if reflector is not None else None
        if not pod:
            return None
        value = (pod.get("metadata", {}).get("annotations") or {}).get(RUNTIME_KEY)
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    def runtime_exceeded(self, now: dt.datetime | None = None) -> bool:
        """True when the server has run longer than the runtime its user chose."""
        started = self.orm_spawner.started if self.orm_spawner is not None else None
        return runtime_exceeded(self._max_runtime_hours(), started, now)

    async def poll(self) -> int | None:
        status: int | None = await super().poll()
        self._watch_dask()
        if status is None:
            # after a hub restart too
            METRICS.server_running(self._metrics_key, await self._profile_slug(), default_of=self._default_of)
        else:
            METRICS.server_stopped(self._metrics_key)
        rucio = self._rucio()
        if status is None and rucio is not None:
            await rucio.resume()  # after a hub restart, servers started before it are rotated again
        if status is None and self.runtime_exceeded():
            await self._stop_for_runtime()
            return 0
        return status

    async def _stop_for_runtime(self) -> None:
        """Stop a server past its chosen runtime, once, saying why to the admins and the user."""
        if getattr(self, "_datalake_runtime_stop", False):
            return  # a poll during the stop: the first one is on it
        self._datalake_runtime_stop = True
        try:
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            hours = self._max_runtime_hours() or 0.0
            started = self.orm_spawner.started if self.orm_spawner is not None else None
            server = f"Your server '{self.name}'" if self.name else "Your server"
            message = stop_notices.runtime_message(server, hours, started, now)
            self.log.warning("Stopping %s (maximum runtime reached): %s", self._log_name, message)
            stop_notices.record(self.user.name, message)
            await self.stop(now=False)
        finally:
            self._datalake_runtime_stop = False

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        # Our messages (Rucio unavailable, ...) are known once the options are loaded; a user who
        # opened the spawn page earlier must still get them, so wait for that (bounded).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._options_loaded().wait(), timeout=60)
        for event in getattr(self, "_datalake_events", []):
            yield event
        async for event in super().progress():
            yield event


def runtime_exceeded(hours: float | None, started: dt.datetime | None, now: dt.datetime | None = None) -> bool:
    """Has a server started at ``started`` (naive UTC, as JupyterHub stores it) outlived ``hours``?"""
    if hours is None or started is None:
        return False
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    elapsed: dt.timedelta = now - started
    return elapsed > dt.timedelta(hours=hours)


def _refusal(status: int, message: str) -> web.HTTPError:
    err = web.HTTPError(status, "%s", message)
    err.jupyterhub_message = message  # type: ignore[attr-defined]
    return err


async def _profile_list(spawner: DatalakeSpawner) -> list[dict[str, Any]]:
    return await spawner.datalake_profile_list()


def apply_spawner(
    c: Any,
    settings: Settings,
    profiles: ProfileSource,
    *,
    rucio: RucioProvisioner | None = None,
    rotator: Rotator | None = None,
) -> None:
    """Configure KubeSpawner (as DatalakeSpawner) from settings, the profile source and the Rucio services."""
    sp = settings.spawner
    c.JupyterHub.spawner_class = "hub_config.spawner.DatalakeSpawner"
    k = c.DatalakeSpawner
    k.datalake_profiles = profiles
    k.datalake_rucio = rucio
    k.datalake_rotator = rotator
    k.datalake_dask = DaskClusters() if settings.dask_gateway.enabled else None
    k.profile_list = _profile_list
    k.slug_scheme = "safe"
    k.uid = sp.uid
    k.gid = sp.gid
    k.fs_gid = sp.fs_group
    k.allow_privilege_escalation = False
    k.pod_security_context, k.container_security_context = security_contexts(settings)
    k.start_timeout = sp.start_timeout_seconds
    k.http_timeout = sp.http_timeout_seconds
    k.k8s_api_request_timeout = sp.api_request_timeout_seconds
    k.k8s_api_request_retry_timeout = sp.api_retry_timeout_seconds
    k.default_url = sp.default_url
    if sp.node_selector:
        k.node_selector = dict(sp.node_selector)
    k.extra_labels = {**sp.extra_labels}
    k.events_enabled = True
    for key, value in pvc_settings(settings).items():
        setattr(k, key, value)
    k.environment = base_environment(settings)
    k.extra_annotations = {PROFILE_KEY: ""}
