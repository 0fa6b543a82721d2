"""Shared plumbing for the local platform: paths, ports, processes started and stopped by PID.

Every component (control plane, kwok, node agent, IdP, Rucio, proxy) starts its processes
through :func:`spawn`, which records the PID under the state directory, so ``down`` can stop
exactly what ``up`` started and nothing else (never ``pkill``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CACHE_DIR",
    "REPO_ROOT",
    "PlatformError",
    "Proc",
    "free_port",
    "pid_alive",
    "reap_children",
    "spawn",
    "state_dir",
    "stop_pidfile",
    "wait_for",
    "wait_http",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout this module lives in."""

CACHE_DIR = Path(os.environ.get("DATALAKE_CACHE", Path.home() / ".cache" / "datalake-hub"))
"""Where slow-to-build things live across runs (Go binaries, venvs, npm trees)."""


class PlatformError(RuntimeError):
    """A platform component could not be installed, started or reached; the message says which."""


def state_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The run's state directory: ``$DATALAKE_PLATFORM_STATE`` or ``<repo>/.platform``."""
    path = Path(override or os.environ.get("DATALAKE_PLATFORM_STATE", REPO_ROOT / ".platform"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Proc:
    """A process this platform started: its name, PID, pidfile and log file."""

    name: str
    pid: int
    pidfile: Path
    log: Path

    def alive(self) -> bool:
        """True while the process exists and is not a zombie."""
        return _alive(self.pid)


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    return _alive(pid)


def reap_children() -> list[int]:
    """Collect every child of this process that has exited (no zombies left behind); their PIDs.

    Processes started by :func:`spawn` and stopped by another process (``make dev-down``) exit as
    this process's children: only this process can reap them.
    """
    reaped = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        reaped.append(pid)
    return reaped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def spawn(
    name: str,
    argv: Sequence[str | os.PathLike[str]],
    state: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Proc:
    """Start ``argv`` in its own session, log to ``state/logs/<name>.log``, record its PID.

    A new session means ``stop_pidfile`` can signal the whole process group, so children
    (for example a shell wrapper's) go too.
    """
    logs = state / "logs"
    pids = state / "pids"
    logs.mkdir(parents=True, exist_ok=True)
    pids.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    pidfile = pids / f"{name}.pid"
    if pidfile.exists():
        stop_pidfile(pidfile)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [os.fspath(a) for a in argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    pidfile.write_text(str(proc.pid))
    return Proc(name=name, pid=proc.pid, pidfile=pidfile, log=log)


def stop_pidfile(pidfile: Path, timeout: float = 10.0, *, children: bool = False) -> None:
    """Stop the process group recorded in ``pidfile`` (TERM, then KILL after ``timeout``).

    With ``children``, also the process's children that live in sessions of their own, which the
    group signal misses: a hub's managed services (JupyterHub starts them with
    ``start_new_session``). The hub stops them itself on TERM, but slowly (SIGINT, then 10 s,
    then TERM): a hub killed before that left its idle culler running for good.
    """
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        pidfile.unlink(missing_ok=True)
        return
    orphans = child_pids(pid) if children else []
    _stop_group(pid, timeout)
    for child in orphans:
        if _alive(child):
            _stop_group(child, timeout)
    pidfile.unlink(missing_ok=True)


def _stop_group(pid: int, timeout: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            break


def child_pids(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (Linux ``/proc``), each a session leader of its own or not."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(") ", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float = 60.0,
    interval: float = 0.25,
    proc: Proc | None = None,
) -> None:
    """Poll ``check`` until true; raise :class:`PlatformError` naming ``what`` (and the log tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001, S110 - any failure means "not yet"
            pass
        if proc is not None and not proc.alive():
            raise PlatformError(f"{what}: process exited; log tail:\n{_tail(proc.log)}")
        time.sleep(interval)
    tail = f"; log tail:\n{_tail(proc.log)}" if proc is not None else ""
    raise PlatformError(f"{what}: not ready after {timeout:.0f}s{tail}")


def wait_http(
    what: str,
    url: str,
    timeout: float = 60.0,
    proc: Proc | None = None,
    cafile: Path | None = None,
    ok_status: Callable[[int], bool] = lambda s: s < 500,
) -> None:
    """Wait until ``url`` answers with a status ``ok_status`` accepts."""
    ctx = ssl.create_default_context(cafile=str(cafile)) if cafile else None

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:  # noqa: S310
                return ok_status(resp.status)
        except urllib.error.HTTPError as err:
            return ok_status(err.code)

    wait_for(what, check, timeout=timeout, proc=proc)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def write_json(path: Path, data: object) -> None:
    """Write ``data`` as JSON atomically (write then rename) so readers never see half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)
