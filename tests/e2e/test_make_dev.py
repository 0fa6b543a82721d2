"""`make dev` as a newcomer meets it: one command prints a working hub's URL and the test users,
and stopping it (Ctrl-C / SIGTERM, as `make dev-down` or a closed terminal would) leaves nothing running.

It runs a second, whole platform under its own state dir (its own pod IP range), beside the one
the other tests share, exactly as a developer's `make dev` runs beside a `make test`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from localplatform.base import REPO_ROOT, free_port

pytestmark = pytest.mark.platform

STARTUP_TIMEOUT = 600.0
"""s: a warm start takes about a minute; the first ever start also builds the session venv."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def _pids(state: Path) -> dict[str, int]:
    """Every process the platform recorded (components, hub, proxy), by pid file."""
    out: dict[str, int] = {}
    for pidfile in [*state.glob("pids/*.pid"), *state.glob("hubs/*/proxy.pid")]:
        text = pidfile.read_text().split()
        if text and text[0].isdigit():
            out[str(pidfile.relative_to(state))] = int(text[0])
    return out


def test_make_dev_prints_a_working_hub_and_stops_everything_on_sigterm() -> None:
    state = REPO_ROOT / "tests" / "artifacts" / "dev-platform"
    port = free_port()
    env = {**os.environ, "DATALAKE_PLATFORM_STATE": str(state), "PYTHONPATH": str(REPO_ROOT / "scripts")}
    log = state.parent / "make-dev.out"
    state.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "localplatform", "dev", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while "Ctrl-C" not in log.read_text():
            assert proc.poll() is None, f"make dev exited early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"make dev not up after {STARTUP_TIMEOUT}s:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        text = log.read_text()
        match = re.search(r"Hub:\s+(http://\S+)", text)
        assert match, text
        url = match.group(1)
        assert url == f"http://127.0.0.1:{port}/"
        # The users a newcomer signs in with, each with a password and their groups.
        assert re.search(r"alice\s+alice-password\s+escape\b", text), text
        assert re.search(r"carol\s+\S+\s+.*escape/gpu", text), text
        assert re.search(r"oscar\s+oscar-password\s+", text), text

        page = requests.get(f"{url}hub/login", timeout=30)
        assert page.status_code == 200
        assert "Sign in with ESCAPE IAM" in page.text
        pids = _pids(state)
        assert any("hub-dev" in k for k in pids), pids
        assert all(_alive(pid) for pid in pids.values()), pids
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, log.read_text()[-3000:]
    left = {name: pid for name, pid in pids.items() if _alive(pid)}
    assert not left, f"still running after make dev stopped: {left}"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}hub/login", timeout=5)
