"""`make dev`: the whole product on this machine — platform, hub, test users — until Ctrl-C.

The hub reads the repository's `profiles/` directly (a symlink), so editing a profile file shows on
the spawn page within seconds, exactly as an admin editing the ConfigMap would see it.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .base import REPO_ROOT, state_dir
from .hub import start_hub, stop_hub
from .orchestrate import platform_down, platform_up

__all__ = ["run_dev"]

DEV_PORT = 8000


def _users(info: dict[str, Any]) -> list[dict[str, Any]]:
    data = json.loads(Path(info["idp"]["users_file"]).read_text())
    users: list[dict[str, Any]] = data["users"] if isinstance(data, dict) else data
    return users


def run_dev(port: int = DEV_PORT) -> int:
    """Start everything, print how to use it, wait for Ctrl-C, stop everything started."""
    state = state_dir()
    started = time.monotonic()
    info = platform_up()
    try:
        hub = start_hub(state, info, name="dev", copy_profiles=False, port=port, profiles_src=REPO_ROOT / "profiles")
    except Exception:
        platform_down()
        raise
    print(f"\ndatalake-hub is up in {time.monotonic() - started:.0f}s\n")
    print(f"  Hub:        {hub.url}")
    print(f"  IdP:        {info['idp']['issuer']}  (CA: {info['idp']['ca']})")
    if "rucio_server" in info:
        print(f"  Rucio:      {info['rucio_server']['url']}")
    print(f"  Kubeconfig: {info['controlplane']['kubeconfig']}")
    print(f"  Hub log:    {hub.log}")
    print(f"  Profiles:   {REPO_ROOT / 'profiles'} (edits apply within seconds)\n")
    print("  Test users (username / password: groups):")
    for user in _users(info):
        print(f"    {user['username']:<18} {user['password']:<16} {', '.join(user.get('groups', [])) or '-'}")
    print("\nCtrl-C (or `make dev-down` in another shell) stops everything.")
    sys.stdout.flush()
    stopping = {"now": False}

    def _stop(*_: object) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping["now"]:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    print("\nstopping...")
    stop_hub(state, "dev")
    platform_down()
    return 0
