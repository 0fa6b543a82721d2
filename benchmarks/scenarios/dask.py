"""Dask Gateway: time from ``new_cluster()`` to N workers ready, ours against the stock configuration,
and the Kubernetes Secret writes per token lifetime with workers running against without.

What is real: Traefik, the gateway API and its Kubernetes controller (dask-gateway-server 2026.3.0,
as the chart runs them), the API server, kwok, and the node agent running scheduler and worker pods
as processes; the client is ``dask_gateway.Gateway`` in the session venv, as in a notebook.

**Ours** is the gateway with ``hub_config.dask.gateway`` (per-group limits, the notebook pod looked
up per cluster, its image, Rucio Secret volume, security context, workers on ``--host $(POD_IP)``);
**stock** is dask-gateway's ``KubeBackend`` with its defaults, the same image, and the only two
settings it cannot run without here (``dask scheduler``/``dask worker``: distributed 2026.8 no
longer installs ``dask-scheduler``/``dask-worker``). Both use the gateway's SimpleAuthenticator
(no hub on the benchmark platform: auth is the same request for both and not what is compared).
Rounds alternate which configuration goes first. The user's "notebook server" is a pod as
KubeSpawner makes it (annotations, the Rucio Secret volume) running ``sleep``.

Secret writes: the hub's rotation write (``SecretStore.update``, the rotator's path) patches the
notebook's Secret once per (shortened) token lifetime; the API server's ``apiserver_request_total``
counts every Secret write in the window, by anyone, once with a cluster of 2 workers mounting that
Secret and once without. The scenario must run inside :mod:`localplatform.netns` (Services need
Endpoints for a cluster to start).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

from kubernetes_asyncio import config as kconfig
from localplatform import daskgateway
from localplatform.base import PlatformError, wait_for
from localplatform.controlplane import kubectl
from localplatform.netns import pod_network

from hub_config.dask.hub import limits_table
from hub_config.kube import SecretStore
from hub_config.settings import DaskGatewaySettings

from ..stack import Kube
from ..stats import ratio, summary

__all__ = ["dask_clusters"]

USER = "benchdask"
SECRET = "jupyter-benchdask-rucio"
IMAGE = "datalake-base:local"
LIMITS = {"default_limits": {"max_workers": 8, "max_cores_per_worker": 1, "max_memory_per_worker": "2G"}}
STOCK = {"scheduler_cmd": ["dask", "scheduler"], "worker_cmd": ["dask", "worker"]}
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")

CLIENT = """
import json, sys, time
from dask_gateway import BasicAuth, Gateway
address, proxy, password, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
g = Gateway(address, proxy_address=proxy, auth=BasicAuth({user!r}, password))
t0 = time.monotonic()
c = g.new_cluster()
c.scale(n)
client = c.get_client()
client.wait_for_workers(n, timeout=300)
took = time.monotonic() - t0
print("READY", json.dumps({{"n": n, "s": round(took, 3), "name": c.name}}), flush=True)
if len(sys.argv) > 5:  # keep it running this many seconds (the Secret-writes window)
    time.sleep(float(sys.argv[5]))
client.close()
c.shutdown()
"""


def _notebook_objects(namespace: str) -> dict[str, Any]:
    """The user's Rucio Secret and notebook pod, as the hub and KubeSpawner make them (no token:
    nothing here talks to Rucio)."""
    volume = {"name": "datalake-rucio", "secret": {"secretName": SECRET, "defaultMode": 0o440, "optional": True}}
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": SECRET, "namespace": namespace},
                "stringData": {"rucio.cfg": "[client]\n", "token-bench": "not-a-token"},
            },
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"jupyter-{USER}",
                    "namespace": namespace,
                    "labels": {"component": "singleuser-server"},
                    "annotations": {"hub.jupyter.org/username": USER, "hub.jupyter.org/servername": ""},
                },
                "spec": {
                    "securityContext": {"fsGroup": 100},
                    "volumes": [volume],
                    "containers": [
                        {
                            "name": "notebook",
                            "image": IMAGE,
                            "command": ["sleep", "100000"],
                            "env": [{"name": "RUCIO_CONFIG", "value": "/etc/datalake/rucio/rucio.cfg"}],
                            "volumeMounts": [
                                {"name": "datalake-rucio", "mountPath": "/etc/datalake/rucio", "readOnly": True}
                            ],
                        }
                    ],
                },
            },
        ],
    }


def _dask_pods(kube: Kube) -> list[dict[str, Any]]:
    url = f"/api/v1/namespaces/{kube.namespace}/pods"
    resp = kube.request("GET", url, params={"labelSelector": "gateway.dask.org/instance"})
    resp.raise_for_status()
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


class _Gateway:
    """One configuration's gateway, started for a round and stopped after it."""

    def __init__(self, root: Path, info: dict[str, Any], kind: str, password_file: Path, token_file: Path) -> None:
        self.root, self.info, self.kind = root, info, kind
        self.password_file, self.token_file = password_file, token_file
        self.section: dict[str, Any] = {}

    def __enter__(self) -> _Gateway:
        ours = self.kind == "ours"
        self.section = daskgateway.up(
            self.root,
            self.info,
            jupyterhub_api_url="http://127.0.0.1:9/hub/api",  # unused: SimpleAuthenticator
            api_token_file=self.token_file,
            limits=limits_table(DaskGatewaySettings.model_validate(LIMITS)) if ours else None,
            simple_auth_password_file=self.password_file,
            cluster_config=None if ours else STOCK,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        daskgateway.down(self.root)

    def client_argv(self, python: str, n: int, hold: float = 0.0) -> list[str]:
        """The client (a notebook's code) asking for ``n`` workers; ``hold``: seconds to keep them."""
        password = self.password_file.read_text().strip()
        address, proxy = self.section["address"], self.section["proxy_address"]
        return [
            python,
            "-c",
            CLIENT.format(user=USER),
            address,
            proxy,
            password,
            str(n),
            *([str(hold)] if hold else []),
        ]

    def run_client(self, python: str, n: int) -> dict[str, Any]:
        argv = self.client_argv(python, n)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("READY ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"{self.kind}, {n} workers: the client failed: {proc.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(line[6:])
        return result


def _wait_no_dask_pods(kube: Kube) -> None:
    wait_for("the last cluster's pods gone", lambda: not _dask_pods(kube), 120)


async def _rotate(kubeconfig: str, namespace: str, period: float, window: float) -> int:
    """Patch the Secret's token once per ``period`` for ``window`` seconds, as the rotator does."""
    api = await kconfig.new_client_from_config(config_file=kubeconfig)
    try:
        store = SecretStore(api, request_timeout=30)
        writes, started = 0, time.monotonic()
        while time.monotonic() - started < window:
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": SECRET, "namespace": namespace, "labels": {}},
                "data": {"token-bench": base64.b64encode(secrets.token_urlsafe(600).encode()).decode()},
            }
            await store.update(secret)
            writes += 1
            await asyncio.sleep(period)
        return writes
    finally:
        await api.close()


def _secret_writes(kube: Kube) -> float:
    counts = kube.request_counts("secrets")
    return sum(v for k, v in counts.items() if k.split()[0] in WRITE_VERBS)


def dask_clusters(
    root: Path, info: dict[str, Any], *, sizes: tuple[int, ...], rounds: int, lifetime: float, lifetimes: int
) -> dict[str, Any]:
    """Alternating rounds of both configurations; then the Secret-writes windows. Returns the figures."""
    if pod_network() is None:
        raise PlatformError(
            "the dask scenario needs Services with Endpoints: run it inside localplatform.netns "
            "(PYTHONPATH=scripts:. .venv/bin/python -m localplatform.netns -- .venv/bin/python -m benchmarks)"
        )
    kube = Kube(info)
    namespace = info["controlplane"]["namespace"]
    kubeconfig = info["controlplane"]["kubeconfig"]
    python = str(Path(info["nodeagent"]["session_bin"]) / "python")
    kubectl(kubeconfig, "apply", "-f", "-", input_text=json.dumps(_notebook_objects(namespace)))
    wait_for(
        "the user's notebook pod running",
        lambda: any(
            p["metadata"]["name"] == f"jupyter-{USER}" and (p.get("status") or {}).get("phase") == "Running"
            for p in kube.notebook_pods()
        ),
        60,
    )
    password_file, token_file = root / "bench-dask-password", root / "bench-dask-token"
    password_file.write_text(secrets.token_hex(16))
    token_file.write_text(secrets.token_hex(32))
    times: dict[str, dict[int, list[float]]] = {k: {n: [] for n in sizes} for k in ("ours", "stock")}
    for i in range(rounds):
        for kind in ("ours", "stock") if i % 2 == 0 else ("stock", "ours"):
            with _Gateway(root, info, kind, password_file, token_file) as gw:
                for n in sizes:
                    times[kind][n].append(gw.run_client(python, n)["s"])
                    _wait_no_dask_pods(kube)
    clusters = {}
    for n in sizes:
        ours, stock = summary(times["ours"][n], 3), summary(times["stock"][n], 3)
        clusters[str(n)] = {
            "ours_s": ours,
            "stock_s": stock,
            "ratio_median": ratio(ours["median"], stock["median"]),
            "raw_s": {kind: times[kind][n] for kind in times},
        }
    writes = _writes_windows(
        root, info, kube, python, password_file, token_file, lifetime=lifetime, lifetimes=lifetimes
    )
    return {
        "rounds": rounds,
        "sizes": list(sizes),
        "time_to_workers": clusters,
        "secret_writes": {**writes, "lifetime_s": lifetime, "lifetimes": lifetimes},
    }


def _writes_windows(
    root: Path,
    info: dict[str, Any],
    kube: Kube,
    python: str,
    password_file: Path,
    token_file: Path,
    *,
    lifetime: float,
    lifetimes: int,
) -> dict[str, Any]:
    """Secret writes per token lifetime: without a cluster, then with ours running 2 workers."""
    namespace, kubeconfig = info["controlplane"]["namespace"], info["controlplane"]["kubeconfig"]
    window = lifetime * lifetimes
    out: dict[str, Any] = {}
    before = _secret_writes(kube)
    rotations = asyncio.run(_rotate(kubeconfig, namespace, lifetime, window))
    out["without_workers"] = {"writes": _secret_writes(kube) - before, "rotations": rotations}
    with _Gateway(root, info, "ours", password_file, token_file) as gw:
        holder = subprocess.Popen(  # a cluster of 2 workers, kept up for the window
            gw.client_argv(python, 2, hold=window + 30),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        ready = holder.stdout.readline()
        if not ready.startswith("READY "):
            holder.kill()
            raise RuntimeError(f"the cluster for the writes window did not start: {holder.stderr.read()[-2000:]}")
        workers = [p for p in _dask_pods(kube) if "worker" in p["metadata"]["name"]]
        before = _secret_writes(kube)
        rotations = asyncio.run(_rotate(kubeconfig, namespace, lifetime, window))
        out["with_workers"] = {
            "writes": _secret_writes(kube) - before,
            "rotations": rotations,
            "worker_pods": len(workers),
        }
        holder.wait(timeout=window + 120)
    _wait_no_dask_pods(kube)
    for key in ("without_workers", "with_workers"):
        out[key]["per_lifetime"] = round(out[key]["writes"] / lifetimes, 3)
    out["ratio"] = ratio(out["with_workers"]["per_lifetime"], out["without_workers"]["per_lifetime"])
    return out
