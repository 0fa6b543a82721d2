"""Hub resident memory with many users and running servers, read from /proc (VmRSS, VmHWM).

Called once both hubs have 200 servers running (started as a storm): the remaining users up to
the target are created through the REST API (users who have never logged in, as most of a real
hub's users are on any given day), the hub is left to settle, then RSS is sampled a few times.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from typing import Any

from ..client import Api

__all__ = ["hub_memory", "proc_status_kib", "top_up"]


def proc_status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise KeyError(field)


def top_up(api: Api, total_users: int) -> list[dict[str, Any]]:
    """Create users who never logged in (``memNNNN``) until the hub has ``total_users``; all users."""
    existing = {u["name"] for u in api.users()}
    missing = [f"mem{i:04d}" for i in range(1, total_users + 1)]
    missing = [n for n in missing if n not in existing][: max(0, total_users - len(existing))]
    for i in range(0, len(missing), 100):
        resp = api.call("POST", "/users", json={"usernames": missing[i : i + 100]}, timeout=120)
        resp.raise_for_status()
    return api.users()


def hub_memory(api: Api, pid: int, *, total_users: int, settle: float = 10, samples: int = 5) -> dict[str, Any]:
    """Top the hub up to ``total_users`` users, then sample its RSS; returns MB figures."""
    users = top_up(api, total_users)
    running = sum(1 for u in users if u.get("servers"))
    time.sleep(settle)
    rss = []
    for _ in range(samples):
        rss.append(proc_status_kib(pid, "VmRSS") / 1024)
        time.sleep(1)
    if os.environ.get("DATALAKE_BENCH_TRACEMALLOC"):  # profiling run: a snapshot of this moment (hub_config_bench.py)
        os.kill(pid, signal.SIGUSR2)
        time.sleep(5)
    return {
        "users": len(users),
        "running_servers": running,
        "rss_mb": round(statistics.median(rss), 1),
        "peak_rss_mb": round(proc_status_kib(pid, "VmHWM") / 1024, 1),
    }
