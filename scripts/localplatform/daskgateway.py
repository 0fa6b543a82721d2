"""Dask Gateway on the local platform, run as the dask-gateway chart runs it (test/dev only).

Three processes, each the chart's container command with the chart's arguments:

* **Traefik** (the proxy the chart deploys, built from its Go module by :mod:`localplatform.gotools`)
  with the ``kubernetescrd`` provider watching the platform's apiserver for objects labelled
  ``gateway.dask.org/instance=<instance>``; entrypoints ``web`` (HTTP: the API and dashboards) and
  ``tcp`` (TLS passthrough, SNI-routed to each cluster's scheduler).
* **the gateway API** (``dask-gateway-server``) with the Kubernetes backend and JupyterHub auth:
  it writes DaskCluster objects, never pods.
* **the controller** (``dask-gateway-server kube-controller``): turns DaskCluster objects into
  scheduler/worker pods, a Service, a credentials Secret and Traefik IngressRoute/IngressRouteTCP.

Before them, the CRDs: Traefik's own, from the module the binary was built from (gotools copies them
next to it), and DaskCluster (manifests/dask-gateway/daskclusters.yaml, from the pinned chart).

The chart's objects for the API itself (its IngressRoute and the clusters-prefix Middleware) are
applied as the chart renders them, and so is ours with datalake-hub's configuration: the dashboards'
forwardAuth Middleware, on Traefik's ``web`` entrypoint (:mod:`hub_config.dask.dashboard_auth`).
The one deviation: the API runs as a local process, not a pod, so its Service is ``ExternalName``
127.0.0.1 (the apiserver rejects loopback endpoint IPs).

Inside :mod:`localplatform.netns` (pods on a private range, Services with Endpoints) the API runs in a
private mount namespace whose /etc/hosts is the node agent's cluster-wide Service list: it posts
scale requests to ``http://dask-<id>.<ns>:8788``, a name only cluster DNS would otherwise answer.

``python -m localplatform.daskgateway`` prints the venv and the Traefik binary (a prepare check).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from .base import REPO_ROOT, PlatformError, Proc, free_port, spawn, stop_pidfile, wait_for, wait_http, write_json
from .controlplane import kubectl
from .gotools import TRAEFIK_CRDS, ensure_tool
from .netns import pod_network
from .sessionenv import ensure_pinned_venv

__all__ = [
    "CRD_NAMES",
    "GATEWAY_REQUIREMENTS",
    "INSTANCE",
    "NAME",
    "down",
    "ensure_gateway_venv",
    "install_crds",
    "up",
]

log = logging.getLogger("localplatform.daskgateway")

NAME = "daskgateway"
HERE = Path(__file__).resolve().parent
GATEWAY_REQUIREMENTS = HERE / "gateway-requirements.txt"
"""Full freeze of dask-gateway-server[kubernetes] (its own venv, as the chart has its own image)."""
DASKCLUSTER_CRD = HERE / "manifests" / "dask-gateway" / "daskclusters.yaml"
CONFIG_FILE = HERE / "daskgateway_config.py"
INSTANCE = "dask-gateway"
"""The chart's ``dask-gateway.fullname`` for a release named ``dask-gateway``: the label value Traefik
and the controller select on."""
API_NAME = f"api-{INSTANCE}"
CLUSTERS_PREFIX_MIDDLEWARE = f"clusters-prefix-{INSTANCE}"
DASHBOARD_AUTH_MIDDLEWARE = f"dashboard-auth-{INSTANCE}"
"""Our forwardAuth Middleware for the clusters' dashboards (chart/templates/dask-gateway/dashboard-auth.yaml)."""
DASHBOARD_AUTH_PATH = "/api/datalake/dashboard-auth"
"""``hub_config.dask.dashboard_auth.AUTH_PATH`` (this module does not import hub_config)."""
CRD_NAMES = (
    "daskclusters.gateway.dask.org",
    "ingressroutes.traefik.io",
    "ingressroutetcps.traefik.io",
    "middlewares.traefik.io",
    "tlsoptions.traefik.io",
    "traefikservices.traefik.io",
)
"""CRDs that must be Established before the processes start (the watched ones)."""
UNSHARE_HOSTS = ("unshare", "-m", "--propagation", "private", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"')
"""Prefix that runs a command in a private mount namespace with the next argument as its /etc/hosts."""
PROCESSES = ("dask-gateway-api", "dask-gateway-controller", "traefik")


def ensure_gateway_venv() -> Path:
    """The dask-gateway-server venv (built once, cached under ``~/.cache/datalake-hub/venvs``)."""
    return ensure_pinned_venv("dask-gateway", GATEWAY_REQUIREMENTS)


def install_crds(kubeconfig: str) -> None:
    """Apply Traefik's and the DaskCluster CRDs and wait until the apiserver serves them."""
    traefik_crds = ensure_tool("traefik").parent / TRAEFIK_CRDS
    for manifest in (traefik_crds, DASKCLUSTER_CRD):
        # Server-side: Traefik's CRDs are too large for the last-applied annotation.
        kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(manifest), timeout=120)
    wait_for("CRDs established", lambda: _established(kubeconfig) >= set(CRD_NAMES), 60)


def _established(kubeconfig: str) -> set[str]:
    """Names of the CRDs the apiserver serves (condition Established; a fresh object has none yet)."""
    listed = json.loads(kubectl(kubeconfig, "get", "crd", "-o", "json"))
    return {
        item["metadata"]["name"]
        for item in listed.get("items") or []
        if any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in (item.get("status") or {}).get("conditions") or []
        )
    }


def _api_objects(namespace: str, api_port: int, *, dashboard_auth: bool) -> list[dict[str, Any]]:
    """The chart's objects for the API (templates/gateway/{service,ingressroute,middleware}.yaml), and
    with ``dashboard_auth`` ours (chart/templates/dask-gateway/dashboard-auth.yaml)."""
    labels = {"gateway.dask.org/instance": INSTANCE, "app.kubernetes.io/name": "dask-gateway"}
    meta = {"namespace": namespace, "labels": labels}
    ours = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "Middleware",
        "metadata": {"name": DASHBOARD_AUTH_MIDDLEWARE, **meta},
        "spec": {"forwardAuth": {"address": f"http://127.0.0.1:{api_port}{DASHBOARD_AUTH_PATH}"}},
    }
    return [
        *([ours] if dashboard_auth else []),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": API_NAME, **meta},
            # The chart's is a ClusterIP Service over the API pod; here the API is a local process.
            "spec": {"type": "ExternalName", "externalName": "127.0.0.1", "ports": [{"name": "api", "port": api_port}]},
        },
        {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "IngressRoute",
            "metadata": {"name": API_NAME, **meta},
            "spec": {
                "entryPoints": ["web"],
                "routes": [
                    {
                        "match": "PathPrefix(`/`)",
                        "kind": "Rule",
                        "services": [{"name": API_NAME, "port": api_port}],
                    }
                ],
            },
        },
        {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "Middleware",
            "metadata": {"name": CLUSTERS_PREFIX_MIDDLEWARE, **meta},
            "spec": {"stripPrefixRegex": {"regex": ["/clusters/[a-zA-Z0-9.-]+"]}},
        },
    ]


def _start_traefik(state: Path, kubeconfig: str, ports: dict[str, int], web_middlewares: list[str]) -> Proc:
    """Traefik with the chart's arguments (templates/traefik/deployment.yaml), on loopback ports, and the
    ``web`` entrypoint's middlewares our chart adds (its traefik.additionalArguments)."""
    traefik = ensure_tool("traefik")
    extra = [f"--entrypoints.web.http.middlewares={','.join(web_middlewares)}"] if web_middlewares else []
    proc = spawn(
        "traefik",
        [
            traefik,
            "--global.checknewversion=false",
            "--global.sendanonymoususage=false",
            "--ping=true",
            "--providers.kubernetescrd",
            "--providers.kubernetescrd.allowcrossnamespace=true",
            f"--providers.kubernetescrd.labelselector=gateway.dask.org/instance={INSTANCE}",
            "--providers.kubernetescrd.throttleduration=2",
            # Not in the chart: lets the API's ExternalName Service (see the module doc) resolve.
            "--providers.kubernetescrd.allowexternalnameservices=true",
            "--log.level=INFO",
            f"--entrypoints.traefik.address=127.0.0.1:{ports['traefik']}",
            f"--entrypoints.web.address=127.0.0.1:{ports['web']}",
            f"--entrypoints.tcp.address=127.0.0.1:{ports['tcp']}",
            *extra,
        ],
        state,
        env={"KUBECONFIG": kubeconfig},
    )
    wait_http("traefik /ping", f"http://127.0.0.1:{ports['traefik']}/ping", 60, proc=proc, ok_status=lambda s: s == 200)
    return proc


def _start_processes(
    state: Path,
    info: dict[str, Any],
    kubeconfig: str,
    ports: dict[str, int],
    venv: Path,
    run: dict[str, Any],
    run_file: Path,
) -> tuple[list[Any], str]:
    """Start Traefik, the controller and the API as the chart runs them; wait until each answers.
    Returns the processes and Traefik's web address."""
    middlewares = [f"{run['namespace']}-{DASHBOARD_AUTH_MIDDLEWARE}@kubernetescrd"] if "limits_file" in run else []
    traefik = _start_traefik(state, kubeconfig, ports, middlewares)
    server = str(venv / "bin" / "dask-gateway-server")
    env = {
        "DATALAKE_DASK_GATEWAY": str(run_file),
        "KUBECONFIG": kubeconfig,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(REPO_ROOT),  # hub_config, as the chart mounts it into the gateway
    }
    controller = spawn("dask-gateway-controller", [server, "kube-controller", "--config", CONFIG_FILE], state, env=env)
    api_argv: list[str | Path] = [server, "--config", CONFIG_FILE]
    hosts = (info.get("nodeagent") or {}).get("cluster_hosts")
    if hosts and pod_network() is not None:
        # Pods have real IPs and Services have endpoints: the API posts scale requests to
        # http://dask-<id>.<ns>:8788, a name only the node agent's hosts file knows (no cluster DNS).
        Path(hosts).touch(exist_ok=True)
        api_argv = [*UNSHARE_HOSTS, hosts, *api_argv]
    api = spawn("dask-gateway-api", api_argv, state, env=env)
    wait_http("dask-gateway API /api/health", f"{run['api_url']}/health", 60, proc=api)
    wait_for("dask-gateway controller", controller.alive, 5, proc=controller)
    proxy = f"http://127.0.0.1:{ports['web']}"
    wait_http("the API through Traefik", f"{proxy}/api/health", 60, proc=traefik, ok_status=lambda s: s == 200)
    return [traefik, controller, api], proxy


def up(
    state: Path,
    info: dict[str, Any],
    *,
    jupyterhub_api_url: str,
    api_token_file: Path,
    limits: dict[str, Any] | None = None,
    service_name: str = "dask-gateway",
    simple_auth_password_file: Path | None = None,
    cluster_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Install the CRDs and start Traefik, the controller and the API; return this run's section.

    ``api_token_file`` holds the gateway's hub service token: its path goes in the run file and
    daskgateway_config.py reads it (the chart's gateway reads it from its Secret at start-up); no
    environment variable carries it. ``limits`` is
    the hub's limits table (``hub_config.dask.hub.limits_table``); None runs the stock gateway.
    Benchmarks only: ``simple_auth_password_file`` replaces JupyterHub auth by the gateway's
    SimpleAuthenticator (one password, no hub), ``cluster_config`` sets ``KubeClusterConfig`` traits.
    """
    controlplane = info.get("controlplane") or {}
    kubeconfig = controlplane.get("kubeconfig")
    if not kubeconfig:
        raise PlatformError("daskgateway needs the controlplane section (kubeconfig)")
    namespace = controlplane.get("namespace", "datalake")
    venv = ensure_gateway_venv()
    down(state)
    install_crds(kubeconfig)
    ports = {name: free_port() for name in ("traefik", "web", "tcp", "api", "controller")}
    root = state / NAME
    root.mkdir(parents=True, exist_ok=True)
    run = {
        "api_address": f"127.0.0.1:{ports['api']}",
        "api_url": f"http://127.0.0.1:{ports['api']}/api",
        "controller_address": f"127.0.0.1:{ports['controller']}",
        "instance": INSTANCE,
        "namespace": namespace,
        "image": "datalake-base:local",
        "jupyterhub_api_url": jupyterhub_api_url,
        "clusters_prefix_middleware": CLUSTERS_PREFIX_MIDDLEWARE,
        "service_name": service_name,
        "api_token_file": str(api_token_file),
    }
    if limits is not None:
        write_json(root / "limits.json", limits)
        run["limits_file"] = str(root / "limits.json")
    if simple_auth_password_file is not None:
        run["simple_auth_password_file"] = str(simple_auth_password_file)
    if cluster_config:
        run["cluster_config"] = cluster_config
    run_file = root / "run.json"
    write_json(run_file, run)
    objects = {
        "apiVersion": "v1",
        "kind": "List",
        "items": _api_objects(namespace, ports["api"], dashboard_auth=limits is not None),
    }
    kubectl(kubeconfig, "apply", "-f", "-", input_text=json.dumps(objects))

    try:  # a start that fails half-way stops what it started: nothing outlives a failed `up`
        procs, proxy = _start_processes(state, info, kubeconfig, ports, venv, run, run_file)
    except BaseException:
        down(state)
        raise
    section = {
        **run,
        "address": proxy,
        "proxy_address": f"tls://127.0.0.1:{ports['tcp']}",
        "ports": ports,
        "venv": str(venv),
        "traefik": str(ensure_tool("traefik")),
        "logs": {p.name: str(p.log) for p in procs},
        "pids": {p.name: p.pid for p in procs},
    }
    write_json(root / "section.json", section)
    return section


def down(state: Path) -> None:
    """Stop the API, the controller and Traefik (by PID); their objects go with the platform."""
    for name in PROCESSES:
        stop_pidfile(state / "pids" / f"{name}.pid")
    (state / NAME / "section.json").unlink(missing_ok=True)


def main() -> int:
    """Build (or find) the gateway venv and Traefik; print their paths."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        sys.stdout.write(f"venv\t{ensure_gateway_venv()}\ntraefik\t{ensure_tool('traefik')}\n")
    except PlatformError as err:
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
