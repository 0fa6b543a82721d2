"""Stopping a local-platform hub stops what it started in sessions of its own (its idle culler).

Real processes: a stand-in "hub" that, like JupyterHub, starts a managed service with
``start_new_session`` and takes longer to shut down than the platform waits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from localplatform.base import _alive, child_pids, spawn, stop_pidfile

_HUB = """
import signal, subprocess, sys, time
service = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
open(sys.argv[1], "w").write(str(service.pid))
signal.signal(signal.SIGTERM, lambda *_: time.sleep(60))  # a slow shutdown: the service is stopped last
time.sleep(120)
"""


def _start(tmp_path: Path) -> tuple[Path, int]:
    service_file = tmp_path / "service.pid"
    proc = spawn("fake-hub", [sys.executable, "-c", _HUB, str(service_file)], tmp_path)
    deadline = time.monotonic() + 30
    while not (service_file.exists() and service_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    service = int(service_file.read_text())
    assert child_pids(proc.pid) == [service]
    return proc.pidfile, service


def test_a_hub_killed_mid_shutdown_takes_its_services_along(tmp_path: Path) -> None:
    pidfile, service = _start(tmp_path)
    stop_pidfile(pidfile, timeout=0.5, children=True)
    assert not _alive(service)


def test_without_it_the_service_outlives_the_hub(tmp_path: Path) -> None:
    pidfile, service = _start(tmp_path)
    try:
        stop_pidfile(pidfile, timeout=0.5)
        assert _alive(service), "the failure mode this option exists for"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(service, signal.SIGKILL)
