"""`make dev`: the whole product on this machine — platform, hub, test users — until stopped.

The hub reads the repository's `profiles/` directly (a symlink), so editing a profile file shows on
the spawn page within seconds, exactly as an admin editing the ConfigMap would see it.

Beside the hub, `make dev` runs Dask Gateway as `make test` does (:mod:`localplatform.daskgateway`)
and prints how to use it. Dask clusters only run inside a network namespace of the platform's own
(:mod:`localplatform.netns`); the Makefile's `make dev` (``--netns auto``) re-runs itself in one when
it may (root), and otherwise runs on loopback, saying so.

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
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from .base import REPO_ROOT, PlatformError, pid_alive, reap_children, state_dir, write_json
from .hub import HubHandle, resume_hub, start_hub, stop_hub
from .netns import in_private_netns, pod_network
from .orchestrate import platform_down, platform_up

__all__ = ["DEV_PORT", "DEV_STOP_TIMEOUT", "dev_pidfile", "enter_netns_if_possible", "run_dev", "stop_dev"]

log = logging.getLogger("localplatform")

DEV_PORT = 8000

HUB_RETRY_SECONDS = 30.0
"""s between attempts to start the hub again when it did not come back."""

DEV_STOP_TIMEOUT = 180.0
"""s `make dev-down` waits for `make dev` to stop the hub and the platform before it kills it."""

DEV_DASK_LIMITS: dict[str, Any] = {
    "default_limits": {"max_workers": 2, "max_cores_per_worker": 1, "max_memory_per_worker": "2G"},
    "group_limits": {"escape/gpu": {"max_workers": 4, "max_cores_per_worker": 2, "max_memory_per_worker": "4G"}},
}
"""`datalake.dask_gateway` limits of `make dev` (a workstation: small clusters; escape/gpu gets more)."""


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


def _start_dask_gateway(state: Path, info: dict[str, Any], port: int) -> dict[str, Any] | None:
    """Dask Gateway as `make test` runs it (Traefik, API, controller), with a fresh hub service token
    in a 0600 file; the hub's `datalake.dask_gateway` settings patch, or None if it did not start
    (the hub then runs without it, and the welcome says why)."""
    import secrets

    from hub_config.dask.hub import limits_table
    from hub_config.settings import DaskGatewaySettings

    from . import daskgateway

    token_file = state / "daskgateway-api-token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    try:
        section = daskgateway.up(
            state,
            info,
            jupyterhub_api_url=f"http://127.0.0.1:{port}/hub/api",
            api_token_file=token_file,
            limits=limits_table(DaskGatewaySettings.model_validate(DEV_DASK_LIMITS)),
        )
    except PlatformError as err:
        print(f"Dask Gateway did not start ({err}); the hub runs without it", flush=True)
        return None
    # `url`: the browser's way to the dashboards (the netns forwarder follows *url keys of platform.json).
    info["daskgateway"] = {**section, "url": section["address"]}
    write_json(state / "platform.json", info)
    return {
        "dask_gateway": {
            "enabled": True,
            "address": section["address"],
            "proxy_address": section["proxy_address"],
            "api_token_file": str(token_file),
            **DEV_DASK_LIMITS,
        }
    }


def _limits_text() -> str:
    """DEV_DASK_LIMITS in a line: `2 workers of 1 core / 2G; escape/gpu: 4 of 2 cores / 4G`."""

    def one(limits: dict[str, Any]) -> str:
        cores = limits["max_cores_per_worker"]
        return f"{limits['max_workers']} of {cores} core{'s' if cores != 1 else ''} / {limits['max_memory_per_worker']}"

    groups = "; ".join(f"{g}: {one(v)}" for g, v in DEV_DASK_LIMITS["group_limits"].items())
    return f"workers: {one(DEV_DASK_LIMITS['default_limits'])}; {groups}"


def _print_dask(info: dict[str, Any]) -> None:
    gateway = info.get("daskgateway")
    if not gateway:
        return
    print(f"  Dask:       gateway {gateway['address']} (Traefik; API log {gateway['logs']['dask-gateway-api']})")
    if pod_network() is None:
        print("              Dask clusters need the network namespace (pods here are on loopback, so a cluster")
        print("              never starts): run `make dev` as root, or `make dev-netns`")
    print(f"              in a notebook (limits: {_limits_text()}):")
    print("                from dask_gateway import Gateway")
    print("                cluster = Gateway().new_cluster(); cluster.scale(2); client = cluster.get_client()")
    print("              the dashboard: cluster.dashboard_link (through the gateway's Traefik)")


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
    print(f"  Profiles:   {REPO_ROOT / 'profiles'} (edits apply within seconds)")
    _print_dask(info)
    print()
    print("  Test users (username / password: groups):")
    for user in _users(info):
        print(f"    {user['username']:<18} {user['password']:<16} {', '.join(user.get('groups', [])) or '-'}")
    print("\nCtrl-C (or `make dev-down` in another shell) stops everything.")
    sys.stdout.flush()


def _can_unshare_net() -> bool:
    """True when this process may make a network namespace (root with CAP_SYS_ADMIN: tried, not guessed)."""
    if os.geteuid() != 0:
        return False
    try:
        probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def enter_netns_if_possible(port: int) -> None:
    """`make dev` in a network namespace of its own when it can (as `make dev-netns` does): pods get
    private addresses, so Dask clusters run. Replaces this process (the forwarder stays in the
    host's namespace and forwards the hub's port and the platform's URLs). Returns only when it
    cannot (not root, or no namespace allowed), having said so; already inside one: nothing to do."""
    if in_private_netns() or pod_network() is not None:
        return
    if not _can_unshare_net():
        print(
            "make dev: not root (or no network namespace allowed here): running on loopback pod IPs; "
            "the hub and Dask Gateway work, Dask clusters need the network namespace (run as root)",
            flush=True,
        )
        return
    print("make dev: running in a network namespace of its own (Dask clusters need it)", flush=True)
    argv = [sys.executable, "-m", "localplatform.netns", "--forward", str(port), "--"]
    argv += [sys.executable, "-m", "localplatform", "dev", "--port", str(port), "--netns", "no"]
    os.execv(sys.executable, argv)  # noqa: S606 - our own module, by design


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
        dask = _start_dask_gateway(state, info, port)
        hub = start_hub(
            state,
            info,
            name="dev",
            copy_profiles=False,
            port=port,
            profiles_src=REPO_ROOT / "profiles",
            settings_patch=dask,
        )
        _print_welcome(hub, info, time.monotonic() - started)
        _supervise(state)
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # stopping is not interrupted
        print("\nstopping...", flush=True)
        stop_hub(state, "dev")
        from . import daskgateway

        daskgateway.down(state)
        platform_down(state)
        reap_children()
        pidfile.unlink(missing_ok=True)
    print(f"make dev: stopped ({why['signal']}); the hub and the platform are down.", flush=True)
    return 0
