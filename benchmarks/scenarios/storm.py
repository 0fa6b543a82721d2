"""Spawn storm: N users ask for a server at the same moment; how long until each pod runs and each server is ready.

Every user's request goes out at once from its own thread (a user retries a 429 from JupyterHub's
``concurrent_spawn_limit`` every 2 s; those 429s are counted apart, not as failures). Latency is
measured from sending the request that was accepted (201/202) to the pod being Running in the API server and to the
hub reporting the server ready. One poller lists the hub's active users and one the notebook pods,
every 0.5 s, so the measurement adds the same small, constant load to both hubs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests

from ..client import Api
from ..stack import Kube
from ..stats import summary

__all__ = ["Spawned", "before_start", "cleanup", "storm"]

POLL = 0.5
RETRY_429 = 2.0


@dataclass
class Spawned:
    """One user's spawn as observed from outside."""

    accepted_at: float | None = None
    running_at: float | None = None
    ready_at: float | None = None
    rejected_429: int = 0
    error: str | None = None
    seen_active: bool = False
    missing_polls: int = 0


def _request(api: Api, name: str, options: dict[str, Any], rec: Spawned, deadline: float) -> None:
    headers = {"Authorization": api.session.headers["Authorization"]}
    while time.monotonic() < deadline:
        sent = time.monotonic()
        try:
            resp = requests.post(f"{api.base}/users/{name}/server", json=options, headers=headers, timeout=120)
        except requests.RequestException as err:
            rec.error = f"request:{type(err).__name__}"
            return
        if resp.status_code in (201, 202):
            # From when the accepted request was sent: the hub answers only once the spawn is done or
            # slow_spawn_timeout (10 s) passed, so the answer's time would hide fast spawns.
            rec.accepted_at = sent
            if resp.status_code == 201:
                rec.ready_at = time.monotonic()
            return
        if resp.status_code == 429:
            rec.rejected_429 += 1
            time.sleep(RETRY_429)
            continue
        rec.error = f"http:{resp.status_code}"
        return
    rec.error = "timeout:request"


def _watch_hub(api: Api, recs: dict[str, Spawned], stop: threading.Event) -> None:
    while not stop.is_set():
        now = time.monotonic()
        try:
            active = {u["name"]: u for u in api.users("active")}
        except requests.RequestException:
            time.sleep(POLL)
            continue
        for name, rec in recs.items():
            user = active.get(name)
            server = (user or {}).get("servers", {}).get("")
            if server:
                rec.seen_active = True
                rec.missing_polls = 0
                if server.get("ready") and rec.ready_at is None and rec.accepted_at is not None:
                    rec.ready_at = now
            elif rec.accepted_at is not None and rec.ready_at is None and rec.error is None:
                rec.missing_polls += 1
                if rec.missing_polls >= 4:  # accepted, then gone for 2 s: the spawn failed
                    rec.error = "spawn-failed"
        stop.wait(POLL)


def _watch_pods(kube: Kube, prefix: str, recs: dict[str, Spawned], stop: threading.Event) -> None:
    while not stop.is_set():
        now = time.monotonic()
        try:
            pods = kube.notebook_pods()
        except requests.RequestException:
            pods = []
        for pod in pods:
            meta = pod["metadata"]
            name = (meta.get("annotations") or {}).get("hub.jupyter.org/username")
            rec = recs.get(name or "")
            if rec is None or not meta["name"].startswith(prefix) or meta.get("deletionTimestamp"):
                continue
            if pod.get("status", {}).get("phase") == "Running" and rec.running_at is None:
                rec.running_at = now
        stop.wait(POLL)


def before_start(
    view: Callable[[str], str | None], users: list[str], think: float, workers: int = 16
) -> dict[str, Any]:
    """Each user opens a hub page first (``view``: ours shows the spawn page, where our hub exchanges
    Rucio tokens ahead), then all wait ``think`` s (choosing options) before the storm's Start.
    Bounded concurrency: this is set-up, not a login storm. Returns the page errors by kind."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        errors = Counter(e for e in pool.map(view, users) if e)
    took = time.monotonic() - started
    time.sleep(think)
    return {"seconds": round(took, 1), "think_s": think, "errors": dict(errors)}


def storm(
    api: Api, kube: Kube, *, users: list[str], options: dict[str, Any], pod_prefix: str, timeout: float
) -> dict[str, Any]:
    """Start every user's server at once; return latencies, failures by kind and 429s."""
    recs = {name: Spawned() for name in users}
    stop = threading.Event()
    watchers = [
        threading.Thread(target=_watch_hub, args=(api, recs, stop), daemon=True),
        threading.Thread(target=_watch_pods, args=(kube, pod_prefix, recs, stop), daemon=True),
    ]
    for w in watchers:
        w.start()
    started = time.monotonic()
    deadline = started + timeout
    with ThreadPoolExecutor(max_workers=len(users)) as pool:
        for name in users:
            pool.submit(_request, api, name, options, recs[name], deadline)
        while time.monotonic() < deadline and not all(r.error or r.ready_at for r in recs.values()):
            time.sleep(POLL)
    wall = time.monotonic() - started
    stop.set()
    for w in watchers:
        w.join(timeout=10)
    for rec in recs.values():
        if rec.error is None and rec.ready_at is None:
            rec.error = "timeout:ready"
    to_running = [r.running_at - r.accepted_at for r in recs.values() if r.running_at and r.accepted_at]
    to_ready = [r.ready_at - r.accepted_at for r in recs.values() if r.ready_at and r.accepted_at]
    failures = Counter(r.error for r in recs.values() if r.error)
    return {
        "users": len(users),
        "ready": len(to_ready),
        "wall_seconds": round(wall, 2),
        "accepted_to_running_s": summary(to_running, 3),
        "accepted_to_ready_s": summary(to_ready, 3),
        "rejected_429": sum(r.rejected_429 for r in recs.values()),
        "users_rejected_429": sum(1 for r in recs.values() if r.rejected_429),
        "failures": dict(failures),
    }


def cleanup(api: Api, kube: Kube, users: list[str], timeout: float = 300) -> int:
    """Stop every server; return how many pods outlived their server in the hub (orphans), deleted here.

    A spawn whose pod creation timed out on the client side (KubeSpawner's 3 s API timeout under a
    lagging control plane) can leave a pod the hub no longer knows about.
    """

    def stop_one(name: str) -> None:
        with contextlib.suppress(requests.RequestException):
            api.call("DELETE", f"/users/{name}/server", timeout=120)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(stop_one, users))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and api.users("active"):
        time.sleep(1)
    settle = time.monotonic() + 30  # the hub deletes its pods as it stops servers; give the last ones time
    while time.monotonic() < settle and kube.notebook_pods():
        time.sleep(1)
    orphans = len(kube.notebook_pods())
    if orphans:
        kube.delete_notebook_pods()
        end = time.monotonic() + 60
        while time.monotonic() < end and kube.notebook_pods():
            time.sleep(1)
    return orphans
