"""Hub restart with many running servers: how long until the hub serves, and until it has every server back.

A hub restart is how Kubernetes upgrades or reschedules the hub pod; the proxy and the notebook
pods keep running (``cleanup_servers = False``, the proxy in its own process as z2jh runs it). Each
round stops one hub (TERM, as the kubelet does) and starts it again with the same database, then
measures from the new process's start:

* ``health_s``: ``/hub/health`` answers 200 (what the chart's readiness probe asks);
* ``spawners_checked_s``: JupyterHub's ``init_spawners`` has finished, i.e. ``poll()`` returned for
  every running server (``jupyterhub_init_spawners_duration_seconds_count`` on ``/hub/metrics``
  turns 1; JupyterHub lets it run past the health check in the background when it takes more than
  ``init_spawners_timeout``). For our hub this is also when every running server's rotation is
  scheduled again: ``DatalakeSpawner.poll`` hands the server to the rotator (``ServerRucio.resume``
  → ``Rotator.track``) before it returns. That it really did is checked from outside: every
  server's Secret must then be patched by a rotation (``rotated_all_s``: resourceVersions in the
  API server; the rotator's first pass comes ``check_interval_seconds`` after the first track).

After each round: no server lost (the hub reports every server ready again; the same pods, by uid,
still run) and, for ours, exactly one Secret per server (``<pod>-rucio``, label
``datalake-hub.io/server``), none left over.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests
from localplatform.base import spawn, stop_pidfile

from ..client import Api
from ..stack import Kube
from ..stats import ratio, summary

__all__ = ["check_servers", "restart", "restart_round"]

SERVER_LABEL = "datalake-hub.io/server"
"""Label our hub puts on each server's Rucio Secret (``hub_config.rucio_service.server.SERVER_LABEL``)."""
POLL = 0.1
INIT_METRIC = "jupyterhub_init_spawners_duration_seconds"


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rpartition(" ")[2])
    return None


def _metric_sum(text: str, name: str) -> dict[str, float]:
    """``name``'s samples by their label set (as written), e.g. rotations by outcome."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, _, value = line.rpartition(" ")
            out[labels[len(name) :]] = float(value)
    return out


def _secrets(kube: Kube) -> list[dict[str, Any]]:
    resp = kube.request("GET", f"/api/v1/namespaces/{kube.namespace}/secrets", params={"labelSelector": SERVER_LABEL})
    resp.raise_for_status()
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


def _pods(kube: Kube, prefix: str) -> dict[str, str]:
    """Running notebook pods of one hub: name → uid."""
    return {
        p["metadata"]["name"]: p["metadata"]["uid"]
        for p in kube.notebook_pods()
        if p["metadata"]["name"].startswith(prefix)
        and not p["metadata"].get("deletionTimestamp")
        and p.get("status", {}).get("phase") == "Running"
    }


def check_servers(api: Api, kube: Kube, *, prefix: str, pods_before: dict[str, str], secrets: bool) -> list[str]:
    """What a restart broke: servers the hub no longer reports ready, pods gone or replaced, Secrets
    missing, duplicated or left over (``secrets``: our hub only)."""
    problems: list[str] = []
    ready = {u["name"] for u in api.users("ready")}
    pods_now = _pods(kube, prefix)
    lost = sorted(n for n in pods_before if pods_now.get(n) != pods_before[n])
    if lost:
        problems.append(f"{len(lost)} pod(s) gone or replaced, e.g. {lost[:3]}")
    if len(ready) < len(pods_before):
        problems.append(f"hub reports {len(ready)} servers ready, {len(pods_before)} were running")
    if secrets:
        items = _secrets(kube)
        per_server = Counter((s["metadata"].get("labels") or {}).get(SERVER_LABEL, "") for s in items)
        dupes = sorted(k for k, n in per_server.items() if n > 1)
        if dupes:
            problems.append(f"duplicate Rucio Secrets for {len(dupes)} server(s), e.g. {dupes[:3]}")
        names = {s["metadata"]["name"] for s in items}
        wanted = {f"{pod}-rucio" for pod in pods_before}
        if wanted - names:
            problems.append(f"{len(wanted - names)} server(s) without their Rucio Secret")
        if names - wanted:
            problems.append(f"{len(names - wanted)} Rucio Secret(s) of no running server")
    return problems


def _wait(check: Any, timeout: float, interval: float = POLL) -> float | None:
    """Poll ``check`` every ``interval`` s; when (monotonic) it first held, None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return time.monotonic()
        except requests.RequestException:
            pass
        time.sleep(interval)
    return None


def restart_round(
    root: Path, kind: str, api: Api, kube: Kube, *, prefix: str, rucio: bool, timeout: float
) -> dict[str, Any]:
    """Restart hub ``kind`` once (keeping its proxy); the round's timings and problems."""
    hub_dir = root / "hubs" / kind
    launch = json.loads((hub_dir / "launch.json").read_text())
    run = json.loads((hub_dir / "run.json").read_text())
    pods_before = _pods(kube, prefix)
    secrets_before = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in _secrets(kube)} if rucio else {}
    headers = {"Authorization": f"token {run['service_token']}"}
    health_url = f"{run['hub_bind_url']}/hub/health"
    metrics_url = f"{run['hub_bind_url']}/hub/metrics"

    stop_at = time.monotonic()
    stop_pidfile(root / "pids" / f"hub-{kind}.pid", timeout=30)
    stopped = time.monotonic() - stop_at
    t0 = time.monotonic()
    # The kind travels in the environment (``hub_config_bench.py``); this process's holds the last hub started.
    spawn(f"hub-{kind}", launch["argv"], root, env={**launch["env"], "DATALAKE_BENCH_KIND": kind}, cwd=hub_dir)
    t_health = _wait(lambda: requests.get(health_url, timeout=2).status_code == 200, timeout)
    init: dict[str, float | None] = {"count": None}

    def spawners_checked() -> bool:
        text = requests.get(metrics_url, headers=headers, timeout=5).text
        init["count"] = _metric(text, f"{INIT_METRIC}_count")
        init["sum"] = _metric(text, f"{INIT_METRIC}_sum")
        init["ours"] = 1.0 if "datalake_hub_token_rotations_total" in text else 0.0
        return bool(init["count"])

    t_init = _wait(spawners_checked, timeout) if t_health is not None else None
    out: dict[str, Any] = {
        "kind": kind,
        "running_before": len(pods_before),
        "stop_s": round(stopped, 2),
        "health_s": None if t_health is None else round(t_health - t0, 2),
        "spawners_checked_s": None if t_init is None else round(t_init - t0, 2),
        "init_spawners_in_process_s": None if init.get("sum") is None else round(init["sum"] or 0.0, 2),
        "problems": [],
    }
    if t_health is None or t_init is None:
        out["problems"].append(f"hub not ready within {timeout:.0f}s (health {t_health is not None})")
        return out
    if rucio and not init.get("ours"):
        out["problems"].append("the restarted hub exports none of our metrics: it is not our hub")
        return out
    if rucio:
        # Every Secret patched since the restart: every server was tracked (and rotated) again.
        def all_rotated() -> bool:
            now = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in _secrets(kube)}
            return all(now.get(n, v) != v for n, v in secrets_before.items())

        t_rot = _wait(all_rotated, timeout, interval=0.5)  # 200 Secrets a list: not at 10 Hz
        out["rotated_all_s"] = None if t_rot is None else round(t_rot - t0, 2)
        if t_rot is None:
            now = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in _secrets(kube)}
            missing = [n for n, v in secrets_before.items() if now.get(n) == v]
            out["problems"].append(f"{len(missing)} server(s) not rotated within {timeout:.0f}s of the restart")
        text = requests.get(metrics_url, headers=headers, timeout=10).text
        out["rotations_since_restart"] = _metric_sum(text, "datalake_hub_token_rotations_total")
        out["servers_without_fresh_token"] = _metric_sum(text, "datalake_hub_servers_without_fresh_token")
    out["problems"] += check_servers(api, kube, prefix=prefix, pods_before=pods_before, secrets=rucio)
    return out


def restart(
    root: Path,
    apis: dict[str, Api],
    kube: Kube,
    *,
    prefixes: dict[str, str],
    rounds: int,
    timeout: float,
    settle: float = 5.0,
) -> dict[str, Any]:
    """``rounds`` restarts per hub, alternating ours/baseline (ABBA...); medians and ratios."""
    runs: list[dict[str, Any]] = []
    for i in range(rounds):
        order = ["ours", "baseline"] if i % 2 == 0 else ["baseline", "ours"]
        for kind in order:
            runs.append(
                restart_round(
                    root, kind, apis[kind], kube, prefix=prefixes[kind], rucio=kind == "ours", timeout=timeout
                )
            )
            time.sleep(settle)
    out: dict[str, Any] = {"rounds": runs}
    for kind in ("ours", "baseline"):
        mine = [r for r in runs if r["kind"] == kind]
        out[kind] = {
            "running_servers": max((r["running_before"] for r in mine), default=0),
            "health_s": summary([r["health_s"] for r in mine if r["health_s"] is not None], 2),
            "spawners_checked_s": summary([r["spawners_checked_s"] for r in mine if r["spawners_checked_s"]], 2),
        }
        if kind == "ours":
            out[kind]["rotated_all_s"] = summary([r["rotated_all_s"] for r in mine if r.get("rotated_all_s")], 2)
    for what in ("health_s", "spawners_checked_s"):
        out[f"ratio_{what}"] = ratio(out["ours"][what]["median"], out["baseline"][what]["median"])
    return out
