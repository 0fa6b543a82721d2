"""Pod processes of the node agent: start, record, kill, reap (helper of :mod:`localplatform.nodeagent`).

A pod's process runs under ``unshare -m`` in a session of its own. Killing its process group is
not enough (Jupyter starts kernels with ``setsid``), so a kill also reaches every process in the
pod's mount namespace, never the host's.

What a pod's directory holds is this module's record format, written here and read back by
:func:`read_pod_records` (the only supported reader; tests go through
:func:`localplatform.nodeagent.agent_pods`):

* ``meta.json``: ``{"namespace", "name", "uid", "ip"}``, written once the launch spec is ready;
* ``pid``: ``"<pid> <starttime> [<mount namespace>]"``. The start time (``/proc/<pid>/stat``
  field 22) makes sure a recycled PID is never signalled; the namespace is appended once
  ``unshare`` made it, so a new agent can still reach a pod's leftovers when the leader is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .base import _alive

__all__ = [
    "LAUNCHER",
    "MAX_GRACE",
    "PodRecord",
    "kill_group",
    "kill_namespace",
    "launch",
    "mnt_ns",
    "namespace_busy",
    "note_namespace",
    "read_pod_records",
    "reap_orphans",
    "write_meta",
]

log = logging.getLogger("localplatform.nodeagent")

MAX_GRACE = 10.0
"""Cap on ``terminationGracePeriodSeconds`` so tests and ``down`` never wait 30 s per pod."""
LAUNCHER = Path(__file__).with_name("nodeagent_launch.py")


@dataclass(frozen=True)
class PodRecord:
    """One pod whose process the agent runs (or is stopping), as read from its directory."""

    namespace: str
    name: str
    uid: str
    ip: str
    pid: int | None
    """The main process; None for the moment between ``meta.json`` and the launch."""
    directory: Path


def _starttime(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def mnt_ns(pid: int) -> str | None:
    """The mount namespace of ``pid`` (``mnt:[…]``), or None when it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _ns_members(ns: str | None) -> list[int]:
    """PIDs in the pod's mount namespace: its whole process tree, even children that called setsid
    (Jupyter starts kernels in their own session, so the process group alone would miss them)."""
    if not ns or ns == mnt_ns(os.getpid()):
        return []  # never the host's namespace
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and mnt_ns(int(entry)) == ns:
            members.append(int(entry))
    return members


def kill_namespace(ns: str | None, sig: int = signal.SIGKILL) -> None:
    """Signal everything left in a pod's mount namespace (e.g. kernels its server left behind)."""
    for member in _ns_members(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, sig)


def namespace_busy(ns: str | None) -> bool:
    """Whether any process is still in the pod's mount namespace."""
    return bool(_ns_members(ns))


def kill_group(pid: int, grace: float, ns: str | None = None) -> None:
    """TERM the process group and everything in the pod's mount namespace; KILL after ``grace`` s."""
    ns = ns or mnt_ns(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if pid > 0:  # killpg(0) would be our own group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
        kill_namespace(ns, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and ((pid > 0 and _alive(pid)) or _ns_members(ns)):
            time.sleep(0.05)
        if not (pid > 0 and _alive(pid)) and not _ns_members(ns):
            return


def reap_orphans(pods_dir: Path) -> int:
    """Kill processes an earlier agent recorded and drop their directories; return how many ran."""
    killed = 0
    if not pods_dir.is_dir():
        return 0
    for record in sorted(pods_dir.glob("*/pid")):
        try:
            pid_s, start, *rest = record.read_text().split()
            pid = int(pid_s)
        except (OSError, ValueError):
            continue
        ns = rest[0] if rest else None
        leader_ours = _starttime(pid) == start
        if leader_ours or _ns_members(ns):
            log.info("reaping orphaned pod processes of %s (pid %d)", record.parent.name, pid)
            if leader_ours:
                kill_group(pid, 3.0, ns)
            else:
                kill_namespace(ns)
            killed += 1
    for pod_dir in pods_dir.iterdir():
        if pod_dir.is_dir():
            shutil.rmtree(pod_dir, ignore_errors=True)
    return killed


def launch(spec_path: Path, log_path: Path, pod_dir: Path, key: str) -> subprocess.Popen[bytes]:
    """Start the launcher on ``spec_path`` in a new mount namespace and session; record its PID.

    The launcher gets a bare environment: the pod's own env is in the spec, and nothing of the
    agent's (its kubeconfig, its PYTHONPATH) may leak into a notebook.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        out.write(f"--- nodeagent: starting {key} at {time.strftime('%H:%M:%S')}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "--", sys.executable, str(LAUNCHER), str(spec_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"},
        )
    start = None
    for _ in range(50):
        start = _starttime(proc.pid)
        if start:
            break
        time.sleep(0.01)
    _replace(pod_dir / "pid", f"{proc.pid} {start}")
    return proc


def note_namespace(pod_dir: Path, pid: int) -> str | None:
    """The pod's mount namespace once ``unshare`` has made it, appended to its ``pid`` record."""
    ns = mnt_ns(pid)
    if not ns or ns == mnt_ns(os.getpid()):
        return None
    record = pod_dir / "pid"
    with contextlib.suppress(OSError):
        _replace(record, f"{record.read_text().strip()} {ns}")
    return ns


def write_meta(pod_dir: Path, namespace: str, name: str, uid: str, ip: str) -> None:
    """Say which pod a directory belongs to (read back by :func:`read_pod_records`)."""
    _replace(pod_dir / "meta.json", json.dumps({"namespace": namespace, "name": name, "uid": uid, "ip": ip}))


def _replace(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a sibling file renamed over it): tests read these records
    while the agent updates them, and a truncated file would read as "no process" for that moment."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_pod_records(pods_dir: Path) -> list[PodRecord]:
    """The pods whose process the agent has started and not yet cleaned up, by directory name.

    A directory being created or removed while we read it is skipped: the caller polls.
    """
    records: list[PodRecord] = []
    if not pods_dir.is_dir():
        return records
    for pod_dir in sorted(pods_dir.iterdir()):
        try:
            meta = json.loads((pod_dir / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        try:
            pid: int | None = int((pod_dir / "pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        with contextlib.suppress(KeyError):
            records.append(PodRecord(meta["namespace"], meta["name"], meta["uid"], meta["ip"], pid, pod_dir))
    return records
