"""`make dev-down` in one shell ends `make dev` in the other: the dev process exits 0 saying it
was stopped, leaves no child behind (running or zombie), and its hub no longer answers.

`make dev` runs here as the Makefile runs it (``python -m localplatform dev``) in its own session,
on a whole second platform under its own state dir; `make dev-down` is the Makefile's command
(``python -m localplatform down``) from another process on that state. This test process makes
itself a child subreaper, so anything `make dev` leaves behind is re-parented here and visible.
On the way, a settings edit makes the hub exit, and `make dev`, its supervisor, starts it again,
and the Dask Gateway `make dev` starts beside the hub answers where the welcome says (and is gone after).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from localplatform.base import REPO_ROOT, free_port
from localplatform.netns import pod_network

pytestmark = pytest.mark.platform

STARTUP_TIMEOUT = 600.0
"""s: a warm start takes about a minute; the first ever start also builds the session venv."""

DOWN_TIMEOUT = 240.0
"""s: `make dev-down` waits at most 180 s for `make dev`, then stops what is left."""

RESTART_TIMEOUT = 120.0
"""s: the hub notices the edit within 10 s (settings_check_seconds), then starts again."""

PR_SET_CHILD_SUBREAPER = 36


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent PID) of ``pid``, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(") ", 1)[1].split()
    return fields[0], int(fields[1])


def _children(pid: int) -> dict[int, str]:
    """Every process whose parent is ``pid``, with its state letter (Z: zombie)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat and stat[1] == pid:
                out[int(entry.name)] = stat[0]
    return out


@pytest.fixture
def subreaper() -> Iterator[None]:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("cannot become a child subreaper here")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}hub/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _hub_restarts_after_a_settings_edit(state: Path, url: str, out_file: Path) -> None:
    pidfile = state / "pids" / "hub-dev.pid"
    before = pidfile.read_text()
    settings = state / "hubs" / "dev" / "settings.yaml"
    settings.write_text(settings.read_text().replace("datalake-hub (local)", "datalake-hub (edited)", 1))
    deadline = time.monotonic() + RESTART_TIMEOUT
    # `make dev` says "the hub is back" once resume_hub returns, which can be a moment after the new
    # hub already answers: wait for all three, or this races the supervisor's print.
    while not (
        pidfile.exists()
        and pidfile.read_text() != before
        and _answers(url)
        and "the hub is back" in out_file.read_text()
    ):
        assert time.monotonic() < deadline, f"the hub did not come back:\n{out_file.read_text()[-3000:]}"
        time.sleep(1)


def test_make_dev_down_ends_make_dev_with_no_children_left(subreaper: None) -> None:
    state = REPO_ROOT / "tests" / "artifacts" / "dev-down-platform"
    shutil.rmtree(state / "hubs", ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "DATALAKE_PLATFORM_STATE": str(state), "PYTHONPATH": str(REPO_ROOT / "scripts")}
    out_file = state.parent / "dev-down-make-dev.out"
    with open(out_file, "w") as out:
        dev = subprocess.Popen(
            [sys.executable, "-m", "localplatform", "dev", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not (match := re.search(r"Hub:\s+(http://\S+)", out_file.read_text())) or not _answers(match[1]):
            assert dev.poll() is None, f"make dev exited early:\n{out_file.read_text()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"make dev not up in {STARTUP_TIMEOUT}s:\n{out_file.read_text()[-3000:]}"
            )
            time.sleep(1)
        url = match[1]
        assert (state / "pids" / "dev.pid").read_text().strip() == str(dev.pid)
        gateway = _dask_gateway_answers(out_file.read_text())
        _hub_restarts_after_a_settings_edit(state, url, out_file)
        children = _children(dev.pid)
        assert children, "make dev started no processes of its own?"

        started = time.monotonic()
        down = subprocess.run(
            [sys.executable, "-m", "localplatform", "down"],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=DOWN_TIMEOUT,
            check=False,
        )
        print(f"make dev-down took {time.monotonic() - started:.1f}s")
        assert down.returncode == 0, down.stdout + down.stderr
        # dev-down returns once make dev is gone (a zombie until this, its parent, waits for it).
        assert dev.wait(timeout=5) == 0, out_file.read_text()[-3000:]
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
    text = out_file.read_text()
    assert "make dev: stopped (SIGTERM)" in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert f"(PID {dev.pid}) stopped" in down.stderr, down.stderr
    left = {pid: _stat(pid) for pid in children if _stat(pid) is not None}
    assert not left, f"children of make dev left behind (state, parent): {left}"
    assert not _children(dev.pid)
    assert not (state / "pids" / "dev.pid").exists()
    assert not _answers(url)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}hub/login", timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{gateway}/api/health", timeout=5)


def _dask_gateway_answers(text: str) -> str:
    """`make dev` printed the gateway's address and how to use it; the gateway answers there through
    Traefik, asks for credentials, and the hub is told where it is; on loopback pod IPs the welcome
    says Dask clusters need the network namespace (and only there). Its address."""
    match = re.search(r"Dask:\s+gateway (http://\S+)", text)
    assert match, text[-3000:]
    gateway = match[1]
    assert "from dask_gateway import Gateway" in text
    assert requests.get(f"{gateway}/api/health", timeout=10).status_code == 200
    assert requests.get(f"{gateway}/api/v1/clusters/", timeout=10).status_code == 401
    assert ("Dask clusters need the network namespace" in text) == (pod_network() is None), text[-3000:]
    return gateway
