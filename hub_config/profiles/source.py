"""Profiles that follow their files while the hub runs, keeping the last good set on a bad edit.

The profiles ConfigMap is mounted as a directory; the kubelet swaps a `..data` symlink when it
changes. We fingerprint the directory (names, sizes, mtimes, symlink targets) at most every
`reload_seconds`; on a change we load and validate everything, and only a fully valid set replaces
the current one. A broken edit is logged once per change with file:line, and users keep the options
they had — no hub restart, no outage.

The hub calls :meth:`ProfileSource.refresh` (async): the check and the parse run on a worker thread,
so a large or slow edit never blocks the event loop; :meth:`current` returns the set in force at
once. Any failure of a reload — a refused edit, an unreadable mount, an unexpected exception — is
logged once per change and the last good set keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import MAX_PROBLEMS, ConfigError
from ..metrics import METRICS
from ..redact import redact
from ..settings.model import Settings
from ..shared import HubWide
from .loader import LoadedProfile, load_profiles

__all__ = ["ProfileSource", "RefusedEdit"]

log = logging.getLogger(__name__)


def _fingerprint(paths: list[Path]) -> tuple[object, ...]:
    parts: list[object] = []
    for root in paths:
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name) if root.is_dir() else []
        except OSError as err:
            parts.append((str(root), "error", err.errno))
            continue
        targets = [root] if root.is_file() else [Path(e.path) for e in entries]
        for path in targets:
            try:
                st = path.stat()
                link = os.readlink(path) if path.is_symlink() else None
            except OSError:
                parts.append((str(path), "gone"))
                continue
            parts.append((str(path), st.st_size, st.st_mtime_ns, st.st_ino, link))
    return tuple(parts)


@dataclass(frozen=True)
class RefusedEdit:
    """The last edit the hub refused: when (epoch seconds) and why (file:line problems)."""

    at: float
    problems: tuple[str, ...]


class ProfileSource(HubWide):
    """The current valid profiles for ``settings``; call :meth:`current` as often as you like."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.paths = [Path(settings.profiles.directory)] if settings.profiles.directory else []
        self.interval = settings.profiles.reload_seconds
        self._clock = clock
        self._checked_at = float("-inf")
        self._fingerprint: tuple[object, ...] | None = None
        self._profiles: list[LoadedProfile] = []
        self._lock = threading.Lock()
        self.generation = 0
        self.loaded_at: float | None = None
        """Wall-clock time the set in force was loaded (admins' status page)."""
        self.last_refused: RefusedEdit | None = None
        self._check_task: asyncio.Task[list[LoadedProfile]] | None = None
        METRICS.watch_profiles(self)

    @property
    def refused_at(self) -> float | None:
        """When the last edit was refused (epoch seconds), for the metrics."""
        return self.last_refused.at if self.last_refused is not None else None

    def slugs(self) -> list[str]:
        """The slugs of the profiles in force (the metrics' profile label values)."""
        return [lp.profile.slug for lp in self._profiles]

    def load_initial(self) -> list[LoadedProfile]:
        """Load at hub start; a broken set here is fatal (there is no last good set to keep)."""
        self._fingerprint = _fingerprint(self.paths)
        self._profiles = load_profiles(self.paths, self.settings, inline=self.settings.profiles.inline)
        self._checked_at = self._clock()
        self.generation = 1
        self.loaded_at = time.time()
        METRICS.profile_reload("success")
        log.info("Loaded %d profile(s): %s", len(self._profiles), ", ".join(p.profile.slug for p in self._profiles))
        return self._profiles

    def check_soon(self) -> None:
        """Look for an edit in the background, if the hub's loop runs here (each metrics scrape calls
        this): a refused edit then shows on `/hub/metrics` even while nobody opens the spawn page.
        The check is :meth:`refresh`'s (at most every interval, off the loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._check_task is None or self._check_task.done():
            self._check_task = loop.create_task(self.refresh(), name="datalake-profiles-check")

    def current(self) -> list[LoadedProfile]:
        """The profiles in force (the last good set); never reads files."""
        return self._profiles

    async def refresh(self) -> list[LoadedProfile]:
        """Re-read the files if they changed (at most every interval), off the event loop; the set in force."""
        if self._clock() - self._checked_at >= self.interval and not self._lock.locked():
            await asyncio.to_thread(self.reload_if_changed)
        return self._profiles

    def reload_if_changed(self) -> list[LoadedProfile]:
        """The blocking check-and-load (CLI, tests, and :meth:`refresh`'s worker thread)."""
        if not self._lock.acquire(blocking=False):
            return self._profiles  # a reload is running already
        try:
            return self._reload_if_changed()
        finally:
            self._lock.release()

    def _reload_if_changed(self) -> list[LoadedProfile]:
        now = self._clock()
        if now - self._checked_at < self.interval:
            return self._profiles
        self._checked_at = now
        fingerprint = _fingerprint(self.paths)
        if fingerprint == self._fingerprint:
            return self._profiles
        self._fingerprint = fingerprint
        try:
            loaded = load_profiles(self.paths, self.settings, inline=self.settings.profiles.inline)
        except ConfigError as err:
            self.last_refused = RefusedEdit(time.time(), tuple(str(p) for p in err.problems[:MAX_PROBLEMS]))
            METRICS.profile_reload("refused")
            log.warning(
                "Profile change refused; still serving the last good %d profile(s). Problems:\n%s",
                len(self._profiles),
                err,
            )
            return self._profiles
        except Exception as err:  # noqa: BLE001 - any failure must keep the last good set serving
            self.last_refused = RefusedEdit(time.time(), (f"reload failed: {type(err).__name__}: {redact(err)}",))
            METRICS.profile_reload("error")
            log.error(
                "Profile reload failed (%s: %s); still serving the last good %d profile(s)",
                type(err).__name__,
                redact(err),
                len(self._profiles),
            )
            return self._profiles
        old = {p.profile.slug for p in self._profiles}
        new = {p.profile.slug for p in loaded}
        self._profiles = loaded
        self.generation += 1
        self.loaded_at = time.time()
        METRICS.profile_reload("success")
        log.info(
            "Profiles reloaded (%d): added %s, removed %s",
            len(loaded),
            ", ".join(sorted(new - old)) or "none",
            ", ".join(sorted(old - new)) or "none",
        )
        return self._profiles
