"""Hub resident memory with many users and running servers, read from /proc (VmRSS, VmHWM).

Called right after the 200-user storm, while those servers still run: the remaining users up to
the target are created through the REST API (users who have never logged in, as most of a real
hub's users are on any given day), the hub is left to settle, then RSS is sampled a few times.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from ..client import Api

__all__ = ["hub_memory", "proc_status_kib"]


def proc_status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise KeyError(field)


def hub_memory(api: Api, pid: int, *, total_users: int, settle: float = 10, samples: int = 5) -> dict[str, Any]:
    """Top the hub up to ``total_users`` users, then sample its RSS; returns MB figures."""
    existing = {u["name"] for u in api.users()}
    missing = [f"mem{i:04d}" for i in range(1, total_users + 1)]
    missing = [n for n in missing if n not in existing][: max(0, total_users - len(existing))]
    for i in range(0, len(missing), 100):
        resp = api.call("POST", "/users", json={"usernames": missing[i : i + 100]}, timeout=120)
        resp.raise_for_status()
    users = api.users()
    running = sum(1 for u in users if u.get("servers"))
    time.sleep(settle)
    rss = []
    for _ in range(samples):
        rss.append(proc_status_kib(pid, "VmRSS") / 1024)
        time.sleep(1)
    return {
        "users": len(users),
        "running_servers": running,
        "rss_mb": round(statistics.median(rss), 1),
        "peak_rss_mb": round(proc_status_kib(pid, "VmHWM") / 1024, 1),
    }
