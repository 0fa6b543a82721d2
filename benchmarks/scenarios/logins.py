"""Logins per second through proxy + hub + IdP, with a fixed number of concurrent browser-like clients.

Each client is its own process (the GIL would otherwise make the client the bottleneck) running
full OIDC logins back to back for a fixed time. Hubs are measured in alternating slices (ours,
baseline, ..., then reversed) so background noise on the shared machine hits all alike.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

from ..client import login
from ..stats import summary

__all__ = ["cpu_seconds", "login_rate", "login_users"]


def _worker(args: tuple[str, str, list[tuple[str, str]], float]) -> list[tuple[bool, float, str | None]]:
    hub_url, ca, users, duration = args
    out: list[tuple[bool, float, str | None]] = []
    deadline = time.monotonic() + duration
    i = 0
    while time.monotonic() < deadline:
        name, password = users[i % len(users)]
        i += 1
        r = login(hub_url, ca, name, password)
        out.append((r.ok, r.seconds, r.error))
    return out


def login_users(hub_url: str, ca: str, users: list[tuple[str, str]], clients: int = 8) -> int:
    """Log each user in once (set-up for storms: our hub needs their tokens); returns failures."""
    chunks = [users[i::clients] for i in range(clients)]
    failed = 0
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        for results in pool.map(_once, [(hub_url, ca, chunk) for chunk in chunks]):
            failed += results
    return failed


def _once(args: tuple[str, str, list[tuple[str, str]]]) -> int:
    hub_url, ca, users = args
    return sum(0 if login(hub_url, ca, n, p).ok else 1 for n, p in users)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def login_rate(
    hubs: dict[str, str],
    ca: str,
    users: list[tuple[str, str]],
    *,
    clients: int,
    seconds: float,
    slices: int,
    pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """logins/s per hub (``{kind: url}``), from ``slices`` alternating slices of ``seconds`` each;
    with ``pids`` ({kind: hub pid}) also the hub's CPU time per login, which the load on a shared
    machine moves much less than the rate."""
    chunks = [users[i::clients] for i in range(clients)]
    results: dict[str, list[tuple[bool, float, str | None]]] = {k: [] for k in hubs}
    elapsed: dict[str, float] = dict.fromkeys(hubs, 0.0)
    cpu: dict[str, float] = dict.fromkeys(hubs, 0.0)
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        # Every user signs in once at every hub first: the slices then measure returning users on
        # warm hubs, not which hub happened to create its users (and warm its caches) first.
        for url in hubs.values():
            pool.map(_once, [(url, ca, c) for c in chunks])
        for s in range(slices):
            order = list(hubs) if s % 2 == 0 else list(reversed(hubs))
            for kind in order:
                before = cpu_seconds(pids[kind]) if pids else 0.0
                for part in pool.map(_worker, [(hubs[kind], ca, c, seconds) for c in chunks]):
                    results[kind].extend(part)
                elapsed[kind] += seconds
                cpu[kind] += (cpu_seconds(pids[kind]) - before) if pids else 0.0
    out: dict[str, Any] = {}
    for kind, rows in results.items():
        ok = [sec for good, sec, _ in rows if good]
        errors: dict[str, int] = {}
        for good, _, err in rows:
            if not good:
                errors[err or "?"] = errors.get(err or "?", 0) + 1
        out[kind] = {
            "logins": len(ok),
            "seconds": elapsed[kind],
            "logins_per_s": round(len(ok) / elapsed[kind], 2),
            "latency_s": summary(ok, 3),
            "failures": errors,
        }
        if pids:
            out[kind]["hub_cpu_ms_per_login"] = round(1000 * cpu[kind] / len(ok), 1) if ok else None
    return out
