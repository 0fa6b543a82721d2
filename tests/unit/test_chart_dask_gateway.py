"""The umbrella with the official dask-gateway 2026.3.0 chart: off by default, on in the site example.

Renders the whole chart (z2jh and dask-gateway archives in `charts/`, neither downloadable here, so
skipped with the reason when absent) and checks what an operator relies on: nothing of Dask unless
enabled; with chart/ci/dask-gateway-values.yaml the gateway signs users in through the hub with a
token that lives only in a Secret, may list the notebook pods and nothing more of ours, loads
hub_config's gateway modules from its own rendered configuration, and the notebooks are pointed at
it and may reach it.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from localplatform.idp_tls import ensure_tls

from tests.support.helm import (
    DASK_GATEWAY_REASON,
    NAMESPACE,
    REPO,
    HelmError,
    by_kind_name,
    chart_copy,
    dask_gateway_chart,
    helm,
    kube_version,
    render,
    validate_manifests,
    z2jh_chart,
)

pytestmark = [
    pytest.mark.skipif(
        z2jh_chart() is None,
        reason="z2jh 4.4.0 chart archive absent: set $Z2JH_CHART or put it at chart/charts/jupyterhub-4.4.0.tgz",
    ),
    pytest.mark.skipif(dask_gateway_chart() is None, reason=DASK_GATEWAY_REASON),
]

EXAMPLE = REPO / "chart" / "ci" / "dask-gateway-values.yaml"
GATEWAY = "api-datalake-dask-gateway"
TRAEFIK = "traefik-datalake-dask-gateway"
TOKEN_SECRET = "datalake-hub-dask-gateway-token"


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chart/ with both dependency archives in charts/."""
    return chart_copy(tmp_path_factory.mktemp("chart"), with_z2jh=True)


@pytest.fixture(scope="module")
def example(chart: Path) -> list[dict[str, Any]]:
    return render(chart, [EXAMPLE])


def _settings(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(objects["ConfigMap", "datalake-hub-settings"]["data"]["settings.yaml"])
    return data


def _gateway_container(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = objects["Deployment", GATEWAY]["spec"]["template"]["spec"]["containers"][0]
    return container


def test_off_by_default(chart: Path) -> None:
    """The defaults install no gateway, no token Secret, no gateway Role, and tell notebooks nothing."""
    objects = render(chart)
    dask = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objects
        if "dask" in o["metadata"]["name"] or "traefik" in o["metadata"]["name"]
    ]
    assert dask == []
    settings = _settings(by_kind_name(objects))
    assert "dask_gateway" not in settings


def test_example_lints_and_renders_valid_objects(chart: Path, example: list[dict[str, Any]]) -> None:
    """`helm lint --strict` passes and every built-in object passes strict schema validation."""
    out = helm("lint", "--strict", str(chart), "--values", str(EXAMPLE), "--kube-version", kube_version())
    assert "0 chart(s) failed" in out
    assert validate_manifests(example) == []
    kinds = {(o["kind"], o["metadata"]["name"]) for o in example}
    for name in (GATEWAY, "controller-datalake-dask-gateway", TRAEFIK):
        assert ("Deployment", name) in kinds


def test_gateway_signs_in_through_the_hub_with_the_hubs_secret(example: list[dict[str, Any]]) -> None:
    """JupyterHub auth, the hub's API, our service name; the token from the Secret the hub mounts."""
    objects = by_kind_name(example)
    config = objects["ConfigMap", GATEWAY]["data"]["dask_gateway_config.py"]
    props = json.loads(json.loads(config.split("_PROPERTIES = json.loads(", 1)[1].split(")\n", 1)[0]))
    auth = props["gateway"]["auth"]
    assert auth["type"] == "custom"
    assert auth["custom"]["class"] == "dask_gateway_server.auth.JupyterHubAuthenticator"
    assert auth["custom"]["config"] == {
        "jupyterhub_api_url": "http://hub:8081/hub/api",
        "jupyterhub_service_name": "dask-gateway",
    }
    assert "apiToken" not in auth["jupyterhub"] or not auth["jupyterhub"]["apiToken"]
    # The token is read from its Secret by the bootstrap, never put in the gateway's environment.
    env = _gateway_container(objects).get("env") or []
    assert "JUPYTERHUB_API_TOKEN" not in {e["name"] for e in env}
    assert '"token":{"key":"api-token","secret":"datalake-hub-dask-gateway-token"}' in config.replace("\\", "")
    hub = objects["Deployment", "hub"]["spec"]["template"]["spec"]
    volume = next(v for v in hub["volumes"] if v["name"] == "datalake-dask-gateway-token")
    assert volume["secret"]["secretName"] == TOKEN_SECRET
    assert volume["secret"]["items"] == [{"key": "api-token", "path": "api-token"}]
    mount = next(m for m in hub["containers"][0]["volumeMounts"] if m["name"] == "datalake-dask-gateway-token")
    assert mount["mountPath"] == "/etc/datalake/dask-gateway"


def test_the_token_is_only_in_its_secret(example: list[dict[str, Any]]) -> None:
    """The generated token appears in no rendered object but its Secret (not in values, env, ConfigMaps)."""
    objects = by_kind_name(example)
    token = base64.b64decode(objects["Secret", TOKEN_SECRET]["data"]["api-token"]).decode()
    assert len(token) >= 32
    others = [o for o in example if (o["kind"], o["metadata"]["name"]) != ("Secret", TOKEN_SECRET)]
    text = yaml.safe_dump_all(others)
    assert token not in text
    # z2jh keeps its values in the hub Secret, base64-encoded: decode and look there too.
    hub_values = base64.b64decode(objects["Secret", "hub"]["data"]["values.yaml"]).decode()
    assert token not in hub_values


def test_operator_secret_is_used_and_none_generated(chart: Path) -> None:
    """secrets.daskGatewayApiToken names the operator's Secret: the hub and the gateway both read it."""
    objects = by_kind_name(render(chart, [EXAMPLE], set_json={"secrets.daskGatewayApiToken": {"name": "site-dask"}}))
    assert ("Secret", TOKEN_SECRET) not in objects
    assert not _gateway_container(objects).get("env")
    role = objects["Role", "datalake-hub-dask-gateway"]
    assert {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["site-dask"], "verbs": ["get"]} in role[
        "rules"
    ]
    hub = objects["Deployment", "hub"]["spec"]["template"]["spec"]
    volume = next(v for v in hub["volumes"] if v["name"] == "datalake-dask-gateway-token")
    assert volume["secret"]["secretName"] == "site-dask"


@pytest.mark.parametrize(
    ("set_json", "message"),
    [
        ({"dask-gateway.gateway.auth.jupyterhub.apiToken": "0123abcd"}, "apiToken is a token written in values"),
        ({"dask-gateway.gateway.auth.type": "simple"}, "signs users in through the hub"),
        ({"dask-gateway.gateway.backend.namespace": "elsewhere"}, "clusters must run in the hub's namespace"),
        ({"datalake.dask_gateway.enabled": False}, "datalake.dask_gateway.enabled is not"),
    ],
    ids=["token-literal", "other-auth", "other-namespace", "hub-not-told"],
)
def test_refusals_name_the_key(chart: Path, set_json: dict[str, Any], message: str) -> None:
    """Values the gateway could not work with (or that would put a token in values) are refused."""
    with pytest.raises(HelmError, match=message):
        render(chart, [EXAMPLE], set_json=set_json)


def test_gateway_may_list_notebook_pods_and_nothing_more_of_ours(example: list[dict[str, Any]]) -> None:
    """Our Role for the gateway: `list` on pods in the hub's namespace (its config reads the user's
    running server pod), bound to the ServiceAccount the gateway Deployment runs as."""
    objects = by_kind_name(example)
    role = objects["Role", "datalake-hub-dask-gateway"]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [TOKEN_SECRET], "verbs": ["get"]},
    ]
    binding = objects["RoleBinding", "datalake-hub-dask-gateway"]
    account = objects["Deployment", GATEWAY]["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
    assert binding["roleRef"]["name"] == "datalake-hub-dask-gateway"


def test_the_subcharts_own_rbac_reads_every_secret_as_the_operator_guide_says(example: list[dict[str, Any]]) -> None:
    """The dask-gateway chart's gateway ClusterRole grants `get` on all Secrets cluster-wide (so our
    `resourceNames` rule restricts nothing while it exists) and Traefik's `get/list/watch`:
    docs/operator.md says so and how to replace them. If a new chart version narrows them, this fails
    and the guide must change."""
    objects = by_kind_name(example)
    gateway = objects["ClusterRole", GATEWAY]["rules"]
    assert {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]} in gateway
    traefik = objects["ClusterRole", TRAEFIK]["rules"]
    assert any("secrets" in r["resources"] and "list" in r["verbs"] for r in traefik)
    guide = (REPO / "docs" / "operator.md").read_text()
    assert "`get` on **every Secret in every namespace**" in guide
    assert "dask-gateway.rbac.gateway.serviceAccountName" in guide


def test_notebooks_are_pointed_at_the_gateway_and_may_reach_it(example: list[dict[str, Any]]) -> None:
    """The hub's settings carry the Traefik Service's address and scheduler port (the notebook env
    DASK_GATEWAY__ADDRESS / __PROXY_ADDRESS comes from them); the notebooks' NetworkPolicy lets them
    reach the Traefik pods on those ports."""
    objects = by_kind_name(example)
    gateway = _settings(objects)["dask_gateway"]
    service = objects["Service", TRAEFIK]
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert gateway["address"] == f"http://{TRAEFIK}.{NAMESPACE}:{ports['web']['port']}"
    assert gateway["proxy_address"] == f"tls://{TRAEFIK}.{NAMESPACE}:{ports['tcp']['port']}"
    assert service["spec"]["type"] == "ClusterIP"

    pod_labels = objects["Deployment", TRAEFIK]["spec"]["template"]["metadata"]["labels"]
    egress = objects["NetworkPolicy", "singleuser"]["spec"]["egress"]
    to_traefik = [
        rule
        for rule in egress
        if any(
            peer.get("podSelector", {}).get("matchLabels", {}).items() <= pod_labels.items()
            and peer.get("podSelector", {}).get("matchLabels")
            for peer in rule.get("to", [])
        )
        and rule.get("ports")
        and {p["port"] for p in rule["ports"]} >= {ports["web"]["targetPort"], ports["tcp"]["targetPort"]}
    ]
    assert to_traefik, egress


SERVICEACCOUNT_TOKEN = "serviceaccount-bearer-of-the-gateway"
GATEWAY_HUB_TOKEN = "the-gateways-hub-api-token-0123456789abcdef"
SECRET_PATH = f"/api/v1/namespaces/{NAMESPACE}/secrets/{TOKEN_SECRET}"
IN_POD_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
LOAD_CONFIG = """
import json, sys
from traitlets.config.loader import PyFileConfigLoader
c = PyFileConfigLoader("dask_gateway_config.py", path=sys.argv[1]).load_config()
import hub_config
from hub_config.dask.limits import limits_for
options = c.Backend.cluster_options
print(json.dumps({
    "package": hub_config.__file__,
    "class": type(options).__name__,
    "analysis": limits_for(options._table, ["escape", "escape/analysis"]).as_dict(),
    "default": limits_for(options._table, ["escape"]).as_dict(),
    "authenticator": [k.__module__ + "." + k.__name__ for k in c.DaskGateway.authenticator_class.__mro__[:2]],
    "hub_token": c.JupyterHubAuthenticator.jupyterhub_api_token,
}))
"""


class _SecretAnswer(BaseHTTPRequestHandler):
    """GET on the gateway's token Secret, as kube-apiserver answers it: 401 without the
    ServiceAccount's bearer, the Secret object (base64 data) when ``server.status`` is 200, else
    that status with a Kubernetes Status body (403 Forbidden, 404 NotFound)."""

    server: _StandIn

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        status = self.server.status
        if self.headers.get("Authorization") != f"Bearer {SERVICEACCOUNT_TOKEN}":
            status = 401
        elif self.path != SECRET_PATH:
            status = 404
        if status == 200:
            data = {"api-token": base64.b64encode(GATEWAY_HUB_TOKEN.encode()).decode()}
            body: dict[str, Any] = {"kind": "Secret", "apiVersion": "v1", "data": data}
        else:
            body = {"kind": "Status", "status": "Failure", "code": status, "message": f"secrets {TOKEN_SECRET!r}"}
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads ``requests``."""


class _StandIn(ThreadingHTTPServer):
    status = 200
    requests: list[str]


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[tuple[_StandIn, Path]]:
    """A STAND-IN for kube-apiserver (not the real one: this unit test loads the rendered config in
    a bare interpreter, and the platform's apiserver is the integration tests' business): a loopback
    HTTPS server with its own CA answering only GET on the gateway's token Secret. Also the
    ServiceAccount directory the kubelet would mount (token, ca.crt, namespace)."""
    (tmp_path / "tls").mkdir()
    ca, cert, key = ensure_tls(tmp_path / "tls", "127.0.0.1")
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(SERVICEACCOUNT_TOKEN)
    (account / "namespace").write_text(NAMESPACE)
    shutil.copy(ca, account / "ca.crt")
    server = _StandIn(("127.0.0.1", 0), _SecretAnswer)
    server.requests = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, account
    finally:
        server.shutdown()
        server.server_close()


def _load_in_pod(config: str, tmp_path: Path, server: _StandIn, account: Path) -> subprocess.CompletedProcess[str]:
    """Load the rendered config as dask-gateway-server does (traitlets' Python config loader) in a
    fresh interpreter that sees the pod's view: ``account`` mounted at the kubelet's fixed path (a
    private mount namespace, ``unshare -rm``, so the bootstrap's in-cluster default is what runs)
    and ``KUBERNETES_SERVICE_HOST/PORT`` pointing at the stand-in."""
    (tmp_path / "dask_gateway_config.py").write_text(config)
    mount = 'mount -t tmpfs datalake-test /run && mkdir -p "$0" && cp "$1"/* "$0"/ && shift && exec "$@"'  # /var/run is /run; the tmpfs exists only in this namespace
    port = server.server_address[1]
    return subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            mount,
            IN_POD_ACCOUNT_DIR,
            str(account),
            sys.executable,
            "-c",
            LOAD_CONFIG,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(port)},
    )


def test_gateway_configuration_loads_our_package(
    example: list[dict[str, Any]], tmp_path: Path, apiserver: tuple[_StandIn, Path]
) -> None:
    """The gateway's rendered dask_gateway_config.py, loaded in a fresh interpreter: hub_config comes
    from the files the chart shipped in it (not this checkout), the cluster options hold the
    example's per-group limits, and the gateway's hub token is the one in its Secret, read with the
    ServiceAccount through the (stand-in) API server, from nowhere in the environment."""
    server, account = apiserver
    config = by_kind_name(example)["ConfigMap", GATEWAY]["data"]["dask_gateway_config.py"]
    proc = _load_in_pod(config, tmp_path, server, account)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert server.requests == [SECRET_PATH]
    assert got["hub_token"] == GATEWAY_HUB_TOKEN
    assert "datalake-hub-gateway-" in got["package"] and not got["package"].startswith(str(REPO))
    assert got["class"] == "ClusterOptions"
    # JupyterHub's, plus the dashboards' forwardAuth endpoint (hub_config.dask.dashboard_auth)
    assert got["authenticator"] == [
        "hub_config.dask.dashboard_auth.DashboardAuthenticator",
        "dask_gateway_server.auth.JupyterHubAuthenticator",
    ]
    assert got["analysis"]["max_workers"] == 20
    assert got["analysis"]["max_memory_per_worker"] == 16 * 2**30
    assert got["default"] == {
        "max_workers": 4,
        "max_cores_per_worker": 1.0,
        "max_memory_per_worker": 2 * 2**30,
        "idle_timeout_seconds": 1800.0,
    }


@pytest.mark.parametrize(("status", "reason"), [(404, "404 Not Found"), (403, "403 Forbidden")])
def test_a_missing_or_forbidden_token_secret_stops_the_gateway_in_one_line(
    example: list[dict[str, Any]], tmp_path: Path, apiserver: tuple[_StandIn, Path], status: int, reason: str
) -> None:
    """No Secret (or no `get` on it): the gateway's config stops with one line naming the Secret and
    the key and the API's answer; no traceback, and no token (neither the ServiceAccount's nor a hub
    token) in what it prints."""
    server, account = apiserver
    server.status = status
    config = by_kind_name(example)["ConfigMap", GATEWAY]["data"]["dask_gateway_config.py"]
    proc = _load_in_pod(config, tmp_path, server, account)
    assert proc.returncode == 1
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert f"key 'api-token' of Secret {NAMESPACE}/{TOKEN_SECRET}" in line
    assert reason in line
    assert "Traceback" not in proc.stderr
    assert SERVICEACCOUNT_TOKEN not in proc.stderr and GATEWAY_HUB_TOKEN not in proc.stderr


def test_dashboards_are_behind_the_gateways_forward_auth(example: list[dict[str, Any]]) -> None:
    """Traefik's `web` entrypoint (the API and every cluster's dashboard) carries our forwardAuth
    Middleware, which Traefik sees (the instance label it selects on) and which asks the gateway API."""
    objects = by_kind_name(example)
    middleware = objects["Middleware", "dashboard-auth-datalake-dask-gateway"]
    assert middleware["metadata"]["labels"]["gateway.dask.org/instance"] == "datalake-dask-gateway"
    address = middleware["spec"]["forwardAuth"]["address"]
    assert address == f"http://{GATEWAY}.{NAMESPACE}:8000/api/datalake/dashboard-auth"
    args = objects["Deployment", TRAEFIK]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--entrypoints.web.http.middlewares={NAMESPACE}-dashboard-auth-datalake-dask-gateway@kubernetescrd" in args
    traefik_args = "|".join(args)
    assert "--providers.kubernetescrd.labelselector=gateway.dask.org/instance=datalake-dask-gateway" in traefik_args
