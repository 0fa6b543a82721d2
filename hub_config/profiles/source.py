"""Profiles that follow their files while the hub runs, keeping the last good set on a bad edit.

The profiles ConfigMap is mounted as a directory; the kubelet swaps a `..data` symlink when it
changes. We fingerprint the directory (names, sizes, mtimes, symlink targets) at most every
`reload_seconds`; on a change we load and validate everything, and only a fully valid set replaces
the current one. A broken edit is logged once per change with file:line, and users keep the options
they had — no hub restart, no outage.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from ..settings.model import Settings
from ..shared import HubWide
from .loader import LoadedProfile, load_profiles

__all__ = ["ProfileSource"]

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
        self.generation = 0

    def load_initial(self) -> list[LoadedProfile]:
        """Load at hub start; a broken set here is fatal (there is no last good set to keep)."""
        self._fingerprint = _fingerprint(self.paths)
        self._profiles = load_profiles(self.paths, self.settings, inline=self.settings.profiles.inline)
        self._checked_at = self._clock()
        self.generation = 1
        log.info("Loaded %d profile(s): %s", len(self._profiles), ", ".join(p.profile.slug for p in self._profiles))
        return self._profiles

    def current(self) -> list[LoadedProfile]:
        """The profiles in force, re-reading the files when they changed (at most every interval)."""
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
            log.warning(
                "Profile change refused; still serving the last good %d profile(s). Problems:\n%s",
                len(self._profiles),
                err,
            )
            return self._profiles
        old = {p.profile.slug for p in self._profiles}
        new = {p.profile.slug for p in loaded}
        self._profiles = loaded
        self.generation += 1
        log.info(
            "Profiles reloaded (%d): added %s, removed %s",
            len(loaded),
            ", ".join(sorted(new - old)) or "none",
            ", ".join(sorted(old - new)) or "none",
        )
        return self._profiles
