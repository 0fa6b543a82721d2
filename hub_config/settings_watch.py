"""The hub restarts itself when its mounted settings file changes to settings the model accepts.

Why the hub does this itself: it reads its settings once, at start — they configure sign-in, the
spawner and the Rucio provisioner, which cannot be swapped under running servers — and Helm has no
documented way for an umbrella chart to put a checksum of its own values on z2jh's hub pod template
(z2jh copies `hub.annotations` verbatim). A `kubectl edit` of the ConfigMap would bypass a checksum
anyway. So the chart mounts the settings ConfigMap as a directory (the kubelet swaps updated files
in place; a subPath mount never updates) and this watcher compares the file's bytes every
`settings_check_seconds`:

* changed, and the settings model accepts it: the hub is sent SIGTERM, shuts down cleanly and
  Kubernetes restarts its container, which reads the new file. Users' servers keep running (z2jh
  sets `cleanup_servers = False`) and the proxy keeps routing to them.
* changed, and the model refuses it: every problem is logged once (file:line: key), and the hub
  keeps serving with the settings it has — a bad edit never takes a working hub down.

Profiles are not settings: their directory hot-reloads without a restart (profiles/source.py).
The check runs on a daemon thread, not the event loop, so a slow volume never stalls requests.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from .errors import ConfigError
from .settings.model import Settings

__all__ = ["SettingsWatch", "restart_hub"]

log = logging.getLogger(__name__)

# Settings files are small; a file beyond this is refused by the reader anyway, so hash only a prefix.
_MAX_BYTES = 4 * 1024 * 1024


def restart_hub() -> None:
    """Ask this hub process to stop (SIGTERM: JupyterHub's clean shutdown); its supervisor restarts it."""
    os.kill(os.getpid(), signal.SIGTERM)


def _fingerprint(path: Path) -> str | None:
    """sha256 of the file's bytes, or None while it cannot be read (the kubelet mid-swap)."""
    try:
        with path.open("rb") as fh:
            return hashlib.sha256(fh.read(_MAX_BYTES + 1)).hexdigest()
    except OSError:
        return None


class SettingsWatch:
    """Watches one settings file; see the module docstring for what a change does."""

    def __init__(self, path: Path, *, on_change: Callable[[], None] = restart_hub) -> None:
        self.path = path
        self._on_change = on_change
        # Taken before the hub reads the file, so an edit made while it starts is not missed.
        self._applied = _fingerprint(path)
        self._refused: str | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """One comparison; True when the file changed to valid settings and the restart was asked for."""
        current = _fingerprint(self.path)
        if current is None or current in (self._applied, self._refused):
            return False
        try:
            Settings.from_file(self.path)
        except ConfigError as err:
            self._refused = current
            log.error(
                "settings file %s changed but is invalid (%d problem(s)); the hub keeps its current settings:\n%s",
                self.path,
                len(err.problems),
                err,
            )
            return False
        log.warning("settings file %s changed: restarting the hub to apply it (users' servers keep running)", self.path)
        self._applied = current
        self._on_change()
        return True

    def start(self, interval: float) -> None:
        """Check every ``interval`` seconds on a daemon thread until a restart is asked for or :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, args=(interval,), name="datalake-settings-watch", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            if self.check():
                return
