"""The gateway's side of datalake-hub: what a user's cluster gets, decided per request.

Runs inside ``dask-gateway-server`` (the gateway API), wired by its configuration (the chart's
``gateway.extraConfig``, the platform's ``daskgateway_config.py``)::

    from hub_config.dask.gateway import configure_gateway
    configure_gateway(c, limits_file="/etc/datalake/dask-gateway/limits.json", namespace="datalake")

For each new cluster the gateway calls :meth:`ClusterOptions.__call__` with the user the hub
vouched for (name and IAM groups, from ``/hub/api/user``):

1. the user's limits: :func:`~hub_config.dask.limits.limits_for` over their groups;
2. the user's running notebook server (KubeSpawner's pod, found by its ``hub.jupyter.org/username``
   annotation): its **image** (workers run the notebook's image and tag), its **Rucio Secret volume**
   and ``RUCIO_CONFIG``, and its pod security context (the Secret's files are readable by its
   fsGroup only). All come from the pod spec the hub wrote, so a user can neither pick another image
   nor mount another user's Secret. No running server: refused, clusters live within a server;
3. options bounded by those limits, whose handler returns the cluster's configuration: the Secret
   mounted as a directory (never ``subPath``: the kubelet only refreshes directory mounts, so the
   hub's rotations reach every worker), no token anywhere in the DaskCluster object.

``dask_gateway_server`` is imported when the gateway calls in, never at module import: the hub
imports this package without it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .limits import GatewayLimits, check_request, limits_for

__all__ = ["ClusterOptions", "ServerFacts", "configure_gateway", "server_facts"]

VOLUME_NAME = "datalake-rucio"
"""The notebook pod's Rucio Secret volume: ``hub_config.rucio.secret.VOLUME_NAME``, repeated because
the gateway's image has no pydantic and ``hub_config.rucio`` needs it (a unit test keeps them equal)."""
USERNAME_ANNOTATION = "hub.jupyter.org/username"
SERVERNAME_ANNOTATION = "hub.jupyter.org/servername"
SERVER_SELECTOR = "component=singleuser-server"
"""KubeSpawner's label on every notebook pod."""
GIB = 2**30
POD_IP_ENV = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
"""The pod's own IP, from the downward API: workers listen on it and advertise it (``--host``)."""
WORKER_CMD = ["dask", "worker", "--host", "$(POD_IP)"]
"""``dask worker`` bound to its pod IP, which the kubelet substitutes for ``$(POD_IP)`` in args.

Without ``--host`` a worker listens on every interface and advertises whatever address its default
route has (``distributed.utils.get_ip``): right in most clusters, wrong wherever that is not the
pod's (several interfaces, host networking, our platform's shared namespace). The scheduler needs
nothing: the gateway starts it with ``--host ""`` behind a Service, and its address is the pod's."""


@dataclass(frozen=True)
class ServerFacts:
    """What a user's cluster inherits from their running server's pod."""

    image: str
    volume: dict[str, Any] | None
    """The pod's Rucio Secret volume, as the hub built it (None: the server has no Rucio)."""
    mount: dict[str, Any] | None
    env: dict[str, str]
    """``RUCIO_CONFIG`` (and nothing else: tokens are files, never env)."""
    security_context: dict[str, Any]


def server_facts(pod: dict[str, Any]) -> ServerFacts:
    """Read :class:`ServerFacts` from a notebook pod (a dict as the API returns it)."""
    spec = pod.get("spec") or {}
    container = (spec.get("containers") or [{}])[0]
    volume = next((v for v in spec.get("volumes") or [] if v.get("name") == VOLUME_NAME), None)
    mount = next((m for m in container.get("volumeMounts") or [] if m.get("name") == VOLUME_NAME), None)
    env = {
        e["name"]: e["value"] for e in container.get("env") or [] if e.get("name") == "RUCIO_CONFIG" and "value" in e
    }
    return ServerFacts(
        image=str(container.get("image") or ""),
        volume=volume,
        mount=mount,
        env=env,
        security_context=dict(spec.get("securityContext") or {}),
    )


def pick_server(pods: list[dict[str, Any]], username: str, servername: str = "") -> dict[str, Any] | None:
    """The user's running server pod named ``servername`` ("" = the default server), if any."""
    for pod in pods:
        meta = pod.get("metadata") or {}
        notes = meta.get("annotations") or {}
        if (
            notes.get(USERNAME_ANNOTATION) == username
            and notes.get(SERVERNAME_ANNOTATION, "") == servername
            and (pod.get("status") or {}).get("phase") == "Running"
            and not meta.get("deletionTimestamp")
        ):
            return pod
    return None


def cluster_config(
    facts: ServerFacts, limits: GatewayLimits, *, worker_cores: float, worker_memory: int
) -> dict[str, Any]:
    """KubeClusterConfig overrides for one cluster (what the DaskCluster object records)."""
    check_request(limits, worker_cores=worker_cores, worker_memory=worker_memory)
    pod_config: dict[str, Any] = {"securityContext": facts.security_context} if facts.security_context else {}
    # Appended to the gateway's env list (its merge appends lists): `environment` takes values only.
    container_config: dict[str, Any] = {"env": [POD_IP_ENV]}
    if facts.volume is not None and facts.mount is not None:
        pod_config["volumes"] = [facts.volume]
        container_config["volumeMounts"] = [facts.mount]
    return {
        "image": facts.image,
        # distributed 2026.8 (our images) ships `dask scheduler`/`dask worker` only; the gateway's
        # defaults (`dask-scheduler`, `dask-worker`) are console scripts it no longer installs.
        "scheduler_cmd": ["dask", "scheduler"],
        "worker_cmd": list(WORKER_CMD),
        "worker_cores": worker_cores,
        "worker_memory": worker_memory,
        "cluster_max_workers": limits.max_workers,
        "idle_timeout": limits.idle_timeout_seconds,
        "environment": dict(facts.env),
        "scheduler_extra_pod_config": pod_config,
        "worker_extra_pod_config": pod_config,
        "scheduler_extra_container_config": container_config,
        "worker_extra_container_config": container_config,
    }


class ClusterOptions:
    """``c.Backend.cluster_options``: a per-user Options form bounded by the user's limits."""

    def __init__(self, table: dict[str, Any], list_servers: Callable[[], Any]) -> None:
        self._table = table
        self._list_servers = list_servers

    async def __call__(self, user: Any) -> Any:
        from dask_gateway_server.options import Float, Options

        limits = limits_for(self._table, user.groups)
        pod = pick_server(await self._list_servers(), user.name)
        if pod is None:
            raise ValueError("start your notebook server first: a Dask cluster runs alongside it")
        facts = server_facts(pod)

        def handler(options: Any, user: Any) -> dict[str, Any]:
            del user  # the one the limits were computed for
            memory = int(options.worker_memory * GIB)
            return cluster_config(facts, limits, worker_cores=options.worker_cores, worker_memory=memory)

        return Options(
            Float("worker_cores", default=min(1.0, limits.max_cores_per_worker), min=0.1, label="Worker cores"),
            Float("worker_memory", default=min(2.0, limits.max_memory_per_worker / GIB), min=0.5, label="Memory (GiB)"),
            handler=handler,
        )


def configure_gateway(
    c: Any, *, limits_file: str | Path, namespace: str, prefix: str = "/", authenticator: type | None = None
) -> None:
    """Set the gateway's cluster options from the limits file the chart renders from our settings, and
    its authenticator: ``authenticator`` (JupyterHub's unless given) plus the dashboards' forwardAuth
    endpoint (``prefix``: the chart's ``gateway.prefix``, under which Traefik serves
    ``clusters/<name>/``; see :mod:`hub_config.dask.dashboard_auth`)."""
    from ..kube import list_pods
    from .dashboard_auth import dashboard_authenticator_class

    table = json.loads(Path(limits_file).read_text())

    async def servers() -> list[dict[str, Any]]:
        return await list_pods(namespace, SERVER_SELECTOR)

    c.Backend.cluster_options = ClusterOptions(table, servers)
    c.DaskGateway.authenticator_class = dashboard_authenticator_class(prefix, authenticator)
