"""Dask clusters and workers per profile on `/hub/metrics`, from DaskCluster objects as the gateway writes them.

The objects below have the shape dask-gateway 2026.3.0's Kubernetes backend gives them
(``make_cluster_object``: uuid name, gateway labels, ``spec.username/options/config``; the
controller then adds ``spec.replicas`` when the user scales and ``status.phase`` and friends).
They are served by a loopback stand-in for the API server's custom-objects endpoint (no API server
runs in unit tests), read through our Kubernetes adapter and kubernetes_asyncio as in the hub; the
stand-in counts the lists, which is what "cheap" promises.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, Configuration
from prometheus_client import REGISTRY, generate_latest
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from hub_config.dask.clusters import NO_SERVER, DaskClusters, count_by_profile
from hub_config.metrics import METRICS

same_loop = pytest.mark.asyncio(loop_scope="session")
NAMESPACE = "datalake"


def dask_cluster(
    username: str, *, phase: str | None, replicas: int | None = None, deleting: bool = False
) -> dict[str, Any]:
    """A DaskCluster object as the gateway's backend creates it and its controller updates it."""
    name = uuid.uuid4().hex
    obj: dict[str, Any] = {
        "apiVersion": "gateway.dask.org/v1alpha1",
        "kind": "DaskCluster",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "creationTimestamp": "2026-12-04T18:00:00Z",
            "labels": {
                "app.kubernetes.io/name": "dask-gateway",
                "gateway.dask.org/instance": "datalake-dask-gateway",
                "gateway.dask.org/cluster": name,
            },
            "annotations": {},
        },
        "spec": {
            "username": username,
            "options": {"worker_cores": 1.0, "worker_memory": 2.0},
            "config": {
                "image": "ghcr.io/datalake-hub/notebook-base:2026.12",
                "scheduler_cmd": ["dask", "scheduler"],
                "worker_cmd": ["dask", "worker"],
                "worker_cores": 1.0,
                "worker_memory": 2147483648,
                "cluster_max_workers": 4,
                "idle_timeout": 1800.0,
                "environment": {"RUCIO_CONFIG": "/etc/datalake/rucio/rucio.cfg"},
            },
        },
    }
    if replicas is not None:
        obj["spec"]["replicas"] = replicas
    if phase is not None:
        obj["status"] = {
            "phase": phase,
            "credentials": f"dask-credentials-{name}",
            "schedulerPod": f"dask-scheduler-{name}",
        }
        if phase == "Running":
            obj["status"]["service"] = f"dask-{name}"
        if phase in ("Stopped", "Failed"):
            obj["status"]["completionTime"] = "2026-12-04T18:30:00Z"
    if deleting:
        obj["metadata"]["deletionTimestamp"] = "2026-12-04T18:31:00Z"
    return obj


CLUSTERS = [
    dask_cluster("alice", phase="Running", replicas=3),
    dask_cluster("alice", phase=None),  # just created: no status yet, no scale asked
    dask_cluster("bob", phase="Running", replicas=2),
    dask_cluster("bob", phase="Stopped", replicas=5),
    dask_cluster("bob", phase="Failed", replicas=1),
    dask_cluster("carol", phase="Pending", replicas=1),  # carol's server has stopped
    dask_cluster("dave", phase="Running", replicas=4, deleting=True),
]
SERVERS = {"alice": "hep", "bob": "base"}


def test_counts_active_clusters_and_their_workers_by_the_owners_profile() -> None:
    counts = count_by_profile(CLUSTERS, SERVERS.get)
    assert counts == {"hep": (2, 3), "base": (1, 2), NO_SERVER: (1, 1)}


def test_odd_objects_are_counted_without_failing() -> None:
    odd: list[dict[str, Any]] = [
        {"spec": {"username": "alice", "replicas": "3"}},
        {"spec": {"replicas": True}},
        {},
    ]
    assert count_by_profile(odd, SERVERS.get) == {"hep": (1, 0), NO_SERVER: (2, 0)}


@dataclass
class FakeApi:
    """The API server's list endpoint for DaskCluster objects: what it serves and how often it was asked."""

    items: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    lists: int = 0


class ListHandler(RequestHandler):
    def initialize(self, api: FakeApi) -> None:
        self.api = api

    def get(self) -> None:
        self.api.lists += 1
        self.set_status(self.api.status)
        self.set_header("Content-Type", "application/json")
        if self.api.status == 200:
            self.finish(
                json.dumps(
                    {"apiVersion": "gateway.dask.org/v1alpha1", "kind": "DaskClusterList", "items": self.api.items}
                )
            )
        else:
            self.finish(
                json.dumps({"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": self.api.status})
            )


@pytest.fixture
async def api_server() -> AsyncIterator[tuple[ApiClient, FakeApi]]:
    api = FakeApi(items=CLUSTERS)
    path = f"/apis/gateway.dask.org/v1alpha1/namespaces/{NAMESPACE}/daskclusters"
    server = HTTPServer(Application([(path, ListHandler, {"api": api})]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server.add_sockets([sock])
    client = ApiClient(Configuration(host=f"http://127.0.0.1:{sock.getsockname()[1]}"))
    yield client, api
    await client.close()
    server.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _samples() -> dict[tuple[str, str], float]:
    text = generate_latest(REGISTRY).decode()
    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        for family in ("datalake_hub_dask_clusters", "datalake_hub_dask_workers"):
            prefix = family + '{profile="'
            if line.startswith(prefix):
                profile, value = line[len(prefix) :].split('"} ')
                found[(family, profile)] = float(value)
    return found


async def _settle(clusters: DaskClusters) -> None:
    for _ in range(100):
        task = clusters._task
        if task is None or task.done():
            return
        await asyncio.sleep(0.01)


@same_loop
async def test_scrapes_report_per_profile_and_list_at_most_once_per_interval(
    api_server: tuple[ApiClient, FakeApi],
) -> None:
    client, api = api_server
    clock = Clock()
    clusters = DaskClusters(min_interval=15, clock=clock)
    METRICS.server_running(f"{NAMESPACE}/jupyter-alice", "hep", default_of="alice")
    METRICS.server_running(f"{NAMESPACE}/jupyter-bob", "base", default_of="bob")
    try:
        clusters.attach(client, NAMESPACE)
        clusters.attach(client, "another")  # every spawner calls it; the first wins
        _samples()  # first scrape: asks for a list
        await _settle(clusters)
        assert api.lists == 1
        for _ in range(5):  # scrapes within the interval: no list
            clock.now += 2
            samples = _samples()
            await _settle(clusters)
        assert api.lists == 1
        assert samples[("datalake_hub_dask_clusters", "hep")] == 2
        assert samples[("datalake_hub_dask_workers", "hep")] == 3
        assert samples[("datalake_hub_dask_clusters", "base")] == 1
        assert samples[("datalake_hub_dask_workers", "base")] == 2
        assert samples[("datalake_hub_dask_clusters", NO_SERVER)] == 1
        text = generate_latest(REGISTRY).decode()
        dask_lines = [line for line in text.splitlines() if line.startswith("datalake_hub_dask_")]
        assert dask_lines and not [line for line in dask_lines if any(u in line for u in ("alice", "bob", "carol"))]

        api.items = [dask_cluster("alice", phase="Running", replicas=1)]
        clock.now += 15
        _samples()  # past the interval: one new list, shown from the next scrape
        await _settle(clusters)
        assert api.lists == 2
        samples = _samples()
        assert samples[("datalake_hub_dask_clusters", "hep")] == 1
        assert samples[("datalake_hub_dask_workers", "hep")] == 1
        assert ("datalake_hub_dask_clusters", "base") not in samples  # no profile set watched here: no zeros

        api.status = 403  # the API server refuses: the last values stay, listed again only after the interval
        clock.now += 15
        _samples()
        await _settle(clusters)
        assert api.lists == 3
        assert _samples()[("datalake_hub_dask_workers", "hep")] == 1
        await _settle(clusters)
        assert api.lists == 3
    finally:
        METRICS.server_stopped(f"{NAMESPACE}/jupyter-alice")
        METRICS.server_stopped(f"{NAMESPACE}/jupyter-bob")
        METRICS._dask = lambda: None
    assert METRICS.default_profile("alice") is None
