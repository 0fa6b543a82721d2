"""KubeSpawner configured from settings and profiles, plus what KubeSpawner lacks.

`DatalakeSpawner` adds three things to KubeSpawner 7:

- choices are validated before KubeSpawner sees them: a profile outside the user's groups is a
  403 and an unknown choice a 400 (KubeSpawner would raise KeyError → 500), and no pod is created;
- the chosen profile's storage (home, EOS, scratch, ...) is attached after its overrides apply
  (profile-dependent pod changes cannot happen earlier: pre_spawn_hook runs before overrides);
- the maximum runtime chosen on the spawn page is enforced in `poll()`, from the pod's annotation,
  so it survives hub restarts; the server is stopped cleanly like any other stop.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from kubespawner import KubeSpawner
from tornado import web
from traitlets import Any as AnyTrait

from .profiles.kubespawner import PROFILE_KEY, RUNTIME_KEY, ChoiceError, profile_list_for, resolve_overrides
from .profiles.model import Profile
from .profiles.source import ProfileSource
from .settings.model import Settings
from .storage import build_storage, pvc_settings

__all__ = ["DatalakeSpawner", "apply_spawner", "security_contexts"]


def security_contexts(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod, container) security contexts: non-root, no escalation, no capabilities, RuntimeDefault seccomp."""
    pod = {
        "runAsNonRoot": True,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return pod, container


class DatalakeSpawner(KubeSpawner):  # type: ignore[misc]
    """KubeSpawner with group-filtered, validated profiles, per-profile storage and a runtime limit."""

    datalake_settings = AnyTrait(help="hub_config Settings").tag(config=True)
    datalake_profiles = AnyTrait(help="hub_config ProfileSource").tag(config=True)

    def _settings(self) -> Settings:
        settings: Settings = self.datalake_settings
        return settings

    def user_groups(self) -> list[str]:
        """Names of the user's JupyterHub groups (synced from IAM at each login and refresh)."""
        return sorted(g.name for g in getattr(self.user, "groups", []) or [])

    async def datalake_profile_list(self) -> list[dict[str, Any]]:
        """The profile_list this user may see and use (KubeSpawner calls it for the form and at spawn)."""
        source: ProfileSource = self.datalake_profiles
        return profile_list_for(source.current(), self._settings(), self.user_groups())

    def _chosen_profile(self, entries: list[dict[str, Any]]) -> Profile:
        slug = (self.user_options or {}).get("profile") or next(e["slug"] for e in entries if e["default"])
        source: ProfileSource = self.datalake_profiles
        return next(lp.profile for lp in source.current() if lp.profile.slug == slug)

    async def load_user_options(self) -> None:
        entries = await self.datalake_profile_list()
        options = self.user_options or {}
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
        profile = self._chosen_profile(entries)
        spec = build_storage(self._settings(), profile, image=self.image)
        self.volumes = [*spec.volumes, *self._extra_volumes()]
        self.volume_mounts = [*spec.volume_mounts, *self._extra_volume_mounts()]
        self.init_containers = list(spec.init_containers)

    def _extra_volumes(self) -> list[dict[str, Any]]:
        """Volumes added by later hooks (the Rucio Secret); none by default."""
        return []

    def _extra_volume_mounts(self) -> list[dict[str, Any]]:
        return []

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
        hours = self._max_runtime_hours()
        started = self.orm_spawner.started if self.orm_spawner is not None else None
        if hours is None or started is None:
            return False
        now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        elapsed: dt.timedelta = now - started
        return elapsed > dt.timedelta(hours=hours)

    async def poll(self) -> int | None:
        status: int | None = await super().poll()
        if status is None and self.runtime_exceeded():
            self.log.info("Stopping %s: its chosen maximum runtime has passed", self._log_name)
            await self.stop(now=False)
            return 0
        return status

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        for event in getattr(self, "_datalake_events", []):
            yield event
        async for event in super().progress():
            yield event


def _refusal(status: int, message: str) -> web.HTTPError:
    err = web.HTTPError(status, "%s", message)
    err.jupyterhub_message = message  # type: ignore[attr-defined]
    return err


async def _profile_list(spawner: DatalakeSpawner) -> list[dict[str, Any]]:
    return await spawner.datalake_profile_list()


def apply_spawner(c: Any, settings: Settings, profiles: ProfileSource) -> None:
    """Configure KubeSpawner (as DatalakeSpawner) from settings and the profile source."""
    sp = settings.spawner
    c.JupyterHub.spawner_class = "hub_config.spawner.DatalakeSpawner"
    k = c.DatalakeSpawner
    k.datalake_settings = settings
    k.datalake_profiles = profiles
    k.profile_list = _profile_list
    k.slug_scheme = "safe"
    k.uid = sp.uid
    k.gid = sp.gid
    k.fs_gid = sp.fs_group
    k.allow_privilege_escalation = False
    pod_sc, container_sc = security_contexts(settings)
    k.pod_security_context = pod_sc
    k.container_security_context = container_sc
    k.start_timeout = sp.start_timeout_seconds
    k.http_timeout = sp.http_timeout_seconds
    k.default_url = sp.default_url
    if sp.node_selector:
        k.node_selector = dict(sp.node_selector)
    k.extra_labels = {**sp.extra_labels}
    k.events_enabled = True
    for key, value in pvc_settings(settings).items():
        setattr(k, key, value)
    k.environment = {"DATALAKE_SITE_NAME": settings.site_name}
    k.extra_annotations = {PROFILE_KEY: ""}
