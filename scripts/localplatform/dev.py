"""`make dev`: the whole product on this machine — platform, hub, test users — until stopped.

The hub reads the repository's `profiles/` directly (a symlink), so editing a profile file shows on
the spawn page within seconds, exactly as an admin editing the ConfigMap would see it.

`make dev` records its PID in the platform state (``pids/dev.pid``). It stops on Ctrl-C, on
SIGTERM or SIGHUP (a closed terminal), and when `make dev-down` (``localplatform down``) asks it
to: ``down`` signals it, waits (bounded) until it is gone, then stops whatever is left. Either
way `make dev` stops the hub and the platform, reaps every child it started and exits 0, saying so.

While it runs, `make dev` is the hub's supervisor, as Kubernetes is in a cluster: when the hub exits
(it does when its settings file changes), `make dev` starts it again behind the proxy, which runs
apart and keeps the sessions reachable meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from .base import REPO_ROOT, PlatformError, pid_alive, reap_children, state_dir
from .hub import HubHandle, resume_hub, start_hub, stop_hub
from .orchestrate import platform_down, platform_up

__all__ = ["DEV_PORT", "DEV_STOP_TIMEOUT", "dev_pidfile", "run_dev", "stop_dev"]

log = logging.getLogger("localplatform")

DEV_PORT = 8000

HUB_RETRY_SECONDS = 30.0
"""s between attempts to start the hub again when it did not come back."""

DEV_STOP_TIMEOUT = 180.0
"""s `make dev-down` waits for `make dev` to stop the hub and the platform before it kills it."""


class _Stopped(BaseException):
    """A stop signal arrived (raised from the handler, so start-up is interrupted too; a
    BaseException, like KeyboardInterrupt, so no `except Exception` on the way swallows it)."""


def dev_pidfile(state: Path) -> Path:
    """Where `make dev` records its PID."""
    return state / "pids" / "dev.pid"


def _users(info: dict[str, Any]) -> list[dict[str, Any]]:
    data = json.loads(Path(info["idp"]["users_file"]).read_text())
    users: list[dict[str, Any]] = data["users"] if isinstance(data, dict) else data
    return users


def _running_dev(state: Path) -> int | None:
    """The PID of a `make dev` running on ``state`` (not this process), if any."""
    try:
        pid = int(dev_pidfile(state).read_text().strip())
    except (OSError, ValueError):
        return None
    if pid == os.getpid() or not pid_alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"localplatform" in cmdline else None  # a reused PID is not ours to signal


def stop_dev(state: Path, timeout: float = DEV_STOP_TIMEOUT) -> bool:
    """Ask the `make dev` running on ``state`` to stop (SIGTERM) and wait until it is gone;
    SIGKILL after ``timeout``. True if there was one."""
    pid = _running_dev(state)
    if pid is None:
        dev_pidfile(state).unlink(missing_ok=True)
        return False
    log.info("stopping make dev (PID %d)", pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        log.warning("make dev (PID %d) still running after %.0fs: killing it", pid, timeout)
        os.kill(pid, signal.SIGKILL)
    else:
        log.info("make dev (PID %d) stopped", pid)
    dev_pidfile(state).unlink(missing_ok=True)
    return True


def _hub_exited(state: Path) -> bool:
    try:
        return not pid_alive(int((state / "pids" / "hub-dev.pid").read_text().strip()))
    except (OSError, ValueError):
        return True


def _supervise(state: Path) -> None:
    """Until a stop: reap exited children; start the hub again whenever it exits."""
    next_try = 0.0
    while True:
        time.sleep(1)
        reap_children()
        if not _hub_exited(state) or time.monotonic() < next_try:
            continue
        print("the hub exited (a settings change?); starting it again, sessions stay reachable", flush=True)
        try:
            resume_hub(state, "dev")
            print("the hub is back", flush=True)
        except PlatformError as err:
            print(f"the hub did not come back ({err}); trying again in {HUB_RETRY_SECONDS:.0f}s", flush=True)
            next_try = time.monotonic() + HUB_RETRY_SECONDS


def _print_welcome(hub: HubHandle, info: dict[str, Any], seconds: float) -> None:
    print(f"\ndatalake-hub is up in {seconds:.0f}s\n")
    print(f"  Hub:        {hub.url}")
    print(f"  IdP:        {info['idp']['issuer']}  (CA: {info['idp']['ca']})")
    if "rucio_server" in info:
        print(f"  Rucio:      {info['rucio_server']['url']}")
    if info.get("prometheus"):
        print(f"  Prometheus: {info['prometheus']['url']}  (scrapes the hub's /hub/metrics; alert rules loaded)")
    print(f"  Kubeconfig: {info['controlplane']['kubeconfig']}")
    print(f"  Hub log:    {hub.log}")
    print(f"  Profiles:   {REPO_ROOT / 'profiles'} (edits apply within seconds)\n")
    print("  Test users (username / password: groups):")
    for user in _users(info):
        print(f"    {user['username']:<18} {user['password']:<16} {', '.join(user.get('groups', [])) or '-'}")
    print("\nCtrl-C (or `make dev-down` in another shell) stops everything.")
    sys.stdout.flush()


def run_dev(port: int = DEV_PORT) -> int:
    """Start everything, print how to use it, wait for a stop, stop everything started."""
    state = state_dir()
    other = _running_dev(state)
    if other is not None:
        raise PlatformError(f"make dev is already running (PID {other}); `make dev-down` stops it")
    pidfile = dev_pidfile(state)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(str(os.getpid()))
    why = {"signal": "Ctrl-C"}

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        why["signal"] = signal.Signals(signum).name
        raise _Stopped

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    started = time.monotonic()
    try:
        info = platform_up()
        hub = start_hub(state, info, name="dev", copy_profiles=False, port=port, profiles_src=REPO_ROOT / "profiles")
        _print_welcome(hub, info, time.monotonic() - started)
        _supervise(state)
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # stopping is not interrupted
        print("\nstopping...", flush=True)
        stop_hub(state, "dev")
        platform_down(state)
        reap_children()
        pidfile.unlink(missing_ok=True)
    print(f"make dev: stopped ({why['signal']}); the hub and the platform are down.", flush=True)
    return 0
