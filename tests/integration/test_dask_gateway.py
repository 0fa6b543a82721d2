"""Dask Gateway on the real platform (issue 18): what works up to the scheduler's Service.

Real components: Traefik v3.3.5 built from its Go module, with the kubernetescrd provider on the
platform's apiserver; dask-gateway-server 2026.3.0's API (JupyterHub auth against our hub) and its
Kubernetes controller; our hub with ``datalake.dask_gateway`` on; a user's real notebook session,
whose ``dask_gateway`` client finds the gateway from its environment alone.

On loopback pod IPs a cluster never becomes RUNNING: the controller adds the routes and declares
the scheduler up only once the scheduler Service has Endpoints, and kube-apiserver refuses every
loopback endpoint address (``may not be in the loopback range``). Inside a network namespace of our
own (``python -m localplatform.netns -- pytest ...``) pods get 10.x addresses, Services get
Endpoints, the node agent lists them in each pod's /etc/hosts (workers dial the scheduler by its
Service name), and the cluster runs, scales and runs tasks: that test runs only there.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from localplatform.hub import HubHandle, hub_log_text

from tests.support.dask import (
    RUCIO_DIR,
    SUBMIT,
    gateway_and_hub,
    gateway_cookie,
    in_session,
    pod_network_available,
    user_token,
)
from tests.support.hubclient import api, login, spawn, stop
from tests.support.kube import get_json, user_pods
from tests.support.podexec import pod_env, pod_exec, pod_pid

pytestmark = pytest.mark.platform


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


@pytest.fixture(scope="module")
def gateway(info: dict[str, Any]) -> Iterator[tuple[HubHandle, dict[str, Any]]]:
    """Traefik + gateway API + controller, and a hub that knows the gateway as a service."""
    with gateway_and_hub(info, "dask") as both:
        yield both


@pytest.fixture(scope="module")
def alice(gateway: tuple[HubHandle, dict[str, Any]], info: dict[str, Any]) -> Iterator[dict[str, Any]]:
    hub, _ = gateway
    assert login(hub, info, "alice", "alice-password")[1].status_code == 200
    assert spawn(hub, "alice", {"profile": "base"}).status_code in (201, 202)
    (pod,) = user_pods(info, "alice")
    yield pod
    if api(hub, "GET", "/users/alice").json().get("servers"):
        stop(hub, "alice")


def test_the_session_reaches_the_gateway_through_traefik_with_no_arguments(
    info: dict[str, Any], alice: dict[str, Any], gateway: tuple[HubHandle, dict[str, Any]]
) -> None:
    """`Gateway()` finds address and auth in the env; Traefik routes to the API; the hub vouches for alice."""
    out = in_session(info, alice, SUBMIT + "print('CLUSTERS', g.list_clusters())")
    assert "CLUSTERS []" in out, out
    anonymous = requests.get(f"{gateway[1]['address']}/api/v1/clusters/", timeout=10)
    assert anonymous.status_code == 401


def test_an_oversized_worker_is_refused_by_the_gateway(info: dict[str, Any], alice: dict[str, Any]) -> None:
    """alice (group `escape`) may have 1 core per worker: 4 is refused, with the limit named."""
    out = in_session(info, alice, SUBMIT + "g.submit(worker_cores=4)")
    assert "worker_cores=4 is more than your groups allow (1 per worker)" in out, out


@pytest.fixture(scope="module")
def cluster(info: dict[str, Any], alice: dict[str, Any]) -> dict[str, Any]:
    """alice submits a cluster from her session; the DaskCluster object the gateway wrote."""
    out = in_session(info, alice, SUBMIT + "print('NAME', g.submit())")
    name = next((line.split()[1] for line in out.splitlines() if line.startswith("NAME ")), None)
    assert name, out
    return get_json(info, "daskclusters", "-n", info["controlplane"]["namespace"], name.split(".", 1)[1])


def test_the_cluster_runs_the_notebooks_image_and_mounts_its_rucio_secret(
    alice: dict[str, Any], cluster: dict[str, Any], info: dict[str, Any]
) -> None:
    config = cluster["spec"]["config"]
    assert cluster["spec"]["username"] == "alice"
    assert config["image"] == alice["spec"]["containers"][0]["image"]
    rucio = next(v for v in alice["spec"]["volumes"] if v["name"] == "datalake-rucio")
    assert config["worker_extra_pod_config"]["volumes"] == [rucio]
    assert config["worker_extra_container_config"]["volumeMounts"][0]["mountPath"] == RUCIO_DIR
    assert config["environment"] == {"RUCIO_CONFIG": f"{RUCIO_DIR}/rucio.cfg"}
    # The controller made the scheduler pod from it: the same Secret, as a directory.
    name = cluster["metadata"]["name"]
    deadline = time.monotonic() + 60
    pods: list[dict[str, Any]] = []
    while not pods and time.monotonic() < deadline:
        pods = get_json(
            info, "pods", "-n", info["controlplane"]["namespace"], "-l", f"gateway.dask.org/cluster={name}"
        )["items"]
        time.sleep(1)
    assert pods, "the controller made no scheduler pod"
    volumes = {v["name"]: v for v in pods[0]["spec"]["volumes"]}
    assert volumes["datalake-rucio"]["secret"]["secretName"] == rucio["secret"]["secretName"]


def test_the_scheduler_pod_acts_as_the_user_at_the_real_rucio_server(
    cluster: dict[str, Any], info: dict[str, Any]
) -> None:
    """The node agent runs the scheduler pod; in it, a new Rucio `Client()` reads the mounted files
    (the Secret the hub rotates) and the real Rucio server answers with alice's account."""
    name = f"dask-scheduler-{cluster['metadata']['name']}"
    code = "from rucio.client import Client; print('ACCOUNT', Client().whoami()['account'])"
    deadline = time.monotonic() + 90
    out = ""
    while time.monotonic() < deadline:
        try:
            out = pod_exec(info, name, ["python", "-c", code], timeout=60).stdout
        except AssertionError as err:  # the agent has not started it yet
            out = str(err)
        if "ACCOUNT" in out:
            break
        time.sleep(2)
    assert "ACCOUNT alice" in out, out


def test_another_user_can_neither_see_nor_stop_the_cluster(
    gateway: tuple[HubHandle, dict[str, Any]], cluster: dict[str, Any], info: dict[str, Any]
) -> None:
    hub, section = gateway
    headers = {"Authorization": f"jupyterhub {user_token(hub, info, 'bob', 'bob-password')}"}
    name = f"{cluster['metadata']['namespace']}.{cluster['metadata']['name']}"
    base = f"{section['address']}/api/v1/clusters"
    assert requests.get(f"{base}/", headers=headers, timeout=10).json() == {}
    assert requests.get(f"{base}/{name}", headers=headers, timeout=10).status_code == 403
    assert requests.delete(f"{base}/{name}", headers=headers, timeout=10).status_code == 403
    still = get_json(info, "daskclusters", "-n", cluster["metadata"]["namespace"], cluster["metadata"]["name"])
    assert not still["metadata"].get("deletionTimestamp")
    assert still["spec"].get("status", "") != "STOPPED" and still.get("status", {}).get("phase") != "STOPPED"


def test_no_token_in_cluster_objects_pods_events_or_logs(
    gateway: tuple[HubHandle, dict[str, Any]], alice: dict[str, Any], cluster: dict[str, Any], info: dict[str, Any]
) -> None:
    """alice's Rucio token, her hub API token and the gateway's own hub API token appear in no
    DaskCluster, pod, event, gateway or hub log, nor in the gateway processes' environments
    (/proc/<pid>/environ: the gateway reads its token from a file, as the chart's reads its Secret)."""
    hub, section = gateway
    name = alice["metadata"]["name"]
    rucio_token = pod_exec(info, name, ["cat", f"{RUCIO_DIR}/token-local"]).stdout
    hub_token = pod_env(pod_pid(info, name))["JUPYTERHUB_API_TOKEN"]
    gateway_token = Path(section["api_token_file"]).read_text().strip()
    assert len(rucio_token) > 100 and len(hub_token) > 20 and len(gateway_token) > 20
    environments = {proc: pod_env(pid) for proc, pid in section["pids"].items()}
    assert set(environments) == {"traefik", "dask-gateway-controller", "dask-gateway-api"}
    assert "JUPYTERHUB_API_TOKEN" not in environments["dask-gateway-api"]
    namespace = info["controlplane"]["namespace"]
    haystacks = {
        "daskclusters": json.dumps(get_json(info, "daskclusters", "-n", namespace)),
        "dask pods": json.dumps(get_json(info, "pods", "-n", namespace, "-l", "gateway.dask.org/instance")),
        "events": json.dumps(get_json(info, "events", "-n", namespace)),
        "hub log": hub_log_text(hub),
        **{f"{proc} log": open(path).read() for proc, path in section["logs"].items()},  # noqa: SIM115
        **{f"{proc} environment": json.dumps(env) for proc, env in environments.items()},
    }
    for where, text in haystacks.items():
        assert rucio_token[:60] not in text, f"Rucio token in {where}"
        assert hub_token not in text, f"hub API token in {where}"
        assert gateway_token not in text, f"the gateway's hub API token in {where}"


WORKERS_ACT_AS_THE_USER = """
import json
import time
from dask_gateway import Gateway
def account():
    from rucio.client import Client
    return Client().whoami()["account"]
g = Gateway()
c = g.connect({name!r})
print("STATUS", g.list_clusters()[0].status.name, flush=True)
c.scale(2)
client = c.get_client()
t0 = time.monotonic()
client.wait_for_workers(2, timeout=240)
print("WORKERS_UP", round(time.monotonic() - t0, 1), flush=True)
workers = sorted(client.scheduler_info()["workers"])
futures = {{w: client.submit(account, workers=[w], allow_other_workers=False, pure=False) for w in workers}}
ran = {{w: f.result(timeout=120) for w, f in futures.items()}}
print("WORKERS", len(workers), flush=True)
print("ACCOUNTS", sorted(ran.values()), flush=True)
print("ADDRESSES", json.dumps({{"scheduler": client.scheduler_info()["address"], "workers": workers}}), flush=True)
client.close()
"""


@pytest.mark.skipif(
    not pod_network_available(), reason="pods are on loopback here: Services get no Endpoints (localplatform.netns)"
)
def test_the_cluster_runs_scales_to_two_workers_that_act_as_the_user(
    info: dict[str, Any], alice: dict[str, Any], cluster: dict[str, Any]
) -> None:
    """alice's cluster reaches RUNNING, scales to her limit of 2 workers, and a task pinned to each
    worker gets her Rucio account from the real server, through the Secret the hub rotates. The
    scheduler and each worker are known by their own pod's IP, as in a cluster."""
    name = f"{cluster['metadata']['namespace']}.{cluster['metadata']['name']}"
    result = pod_exec(
        info, alice["metadata"]["name"], ["python", "-c", WORKERS_ACT_AS_THE_USER.format(name=name)], timeout=420
    )
    out = result.stdout + result.stderr
    assert "STATUS RUNNING" in out, out
    assert "WORKERS 2" in out, out
    assert "ACCOUNTS ['alice', 'alice']" in out, out
    addresses = json.loads(next(line for line in out.splitlines() if line.startswith("ADDRESSES "))[10:])
    pods = get_json(
        info,
        "pods",
        "-n",
        info["controlplane"]["namespace"],
        "-l",
        f"gateway.dask.org/cluster={cluster['metadata']['name']}",
    )["items"]
    ips: dict[str, set[str]] = {}
    for pod in pods:
        ips.setdefault(pod["metadata"]["labels"]["app.kubernetes.io/component"], set()).add(pod["status"]["podIP"])
    assert host_of(addresses["scheduler"]) in ips["dask-scheduler"], (addresses, ips)
    assert {host_of(a) for a in addresses["workers"]} == ips["dask-worker"], (addresses, ips)


def host_of(address: str) -> str:
    """``tls://10.1.0.7:36001`` -> ``10.1.0.7``."""
    return address.split("://", 1)[-1].rsplit(":", 1)[0]


@pytest.fixture(scope="module")
def dashboard_link(info: dict[str, Any], alice: dict[str, Any], cluster: dict[str, Any]) -> str:
    """``cluster.dashboard_link`` as alice's session gets it from the gateway."""
    name = f"{cluster['metadata']['namespace']}.{cluster['metadata']['name']}"
    out = in_session(info, alice, SUBMIT + f"print('LINK', g.connect({name!r}).dashboard_link)")
    link = next((line.split()[1] for line in out.splitlines() if line.startswith("LINK ")), None)
    assert link, out
    return link


@pytest.mark.skipif(
    not pod_network_available(), reason="pods are on loopback here: Services get no Endpoints (localplatform.netns)"
)
def test_the_dashboard_opens_through_the_gateways_proxy(
    gateway: tuple[HubHandle, dict[str, Any]], dashboard_link: str, cluster: dict[str, Any], info: dict[str, Any]
) -> None:
    """The link points at Traefik (not at a pod), which routes it to the scheduler's Bokeh dashboard for
    its owner: with her hub token, or with the gateway's session cookie her API calls got (a browser's way)."""
    hub, section = gateway
    name = f"{cluster['metadata']['namespace']}.{cluster['metadata']['name']}"
    assert dashboard_link == f"{section['address']}/clusters/{name}/status"
    token = user_token(hub, info, "alice", "alice-password")
    by_token = requests.get(dashboard_link, headers={"Authorization": f"jupyterhub {token}"}, timeout=30)
    cookie_name, cookie = gateway_cookie(section["address"], token)
    by_cookie = requests.get(dashboard_link, cookies={cookie_name: cookie}, timeout=30)
    for page in (by_token, by_cookie):
        assert page.status_code == 200, page.text[:500]
        assert "<title>Dask Diagnostic UI</title>" in page.text and "bokeh.min.js" in page.text, page.text[:500]


@pytest.mark.skipif(
    not pod_network_available(), reason="pods are on loopback here: Services get no Endpoints (localplatform.netns)"
)
def test_the_dashboard_is_refused_to_another_user_and_anonymously(
    gateway: tuple[HubHandle, dict[str, Any]], dashboard_link: str, info: dict[str, Any]
) -> None:
    """dask-gateway itself routes dashboards with no authentication (dask/dask-gateway#570); our
    forwardAuth Middleware (hub_config.dask.dashboard_auth) refuses alice's to carol, with her token or
    her gateway cookie, and to anyone without credentials, including its JSON and websocket paths;
    bob, a hub admin, may look."""
    hub, section = gateway
    token = user_token(hub, info, "carol", "carol-password")
    carol = {"Authorization": f"jupyterhub {token}"}
    cookie_name, cookie = gateway_cookie(section["address"], token)
    base = dashboard_link.rsplit("/", 1)[0]
    for url in (dashboard_link, f"{base}/json/identity.json", f"{base}/status/ws"):
        assert requests.get(url, headers=carol, timeout=30).status_code == 403, url
        assert requests.get(url, cookies={cookie_name: cookie}, timeout=30).status_code == 403, url
        anonymous = requests.get(url, timeout=30)
        assert anonymous.status_code == 401 and "Dask" not in anonymous.text, url
    forged = {"Authorization": "jupyterhub not-a-token"}
    assert requests.get(dashboard_link, headers=forged, timeout=30).status_code == 401
    admin = {"Authorization": f"jupyterhub {user_token(hub, info, 'bob', 'bob-password')}"}
    assert requests.get(dashboard_link, headers=admin, timeout=30).status_code == 200


def _dask_samples(hub: HubHandle, info: dict[str, Any]) -> dict[tuple[str, str], float]:
    """Our Dask gauges on the hub's `/hub/metrics` (with the platform Prometheus's token), by (name, profile)."""
    token = Path(info["prometheus"]["token_file"]).read_text().strip()
    text = requests.get(f"{hub.url}hub/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10).text
    found = re.findall(r'^(datalake_hub_dask_(?:clusters|workers))\{profile="([^"]*)"\} (\S+)$', text, re.MULTILINE)
    return {(name, profile): float(value) for name, profile, value in found}


def test_the_hub_reports_the_cluster_under_the_servers_profile(
    gateway: tuple[HubHandle, dict[str, Any]], cluster: dict[str, Any], info: dict[str, Any]
) -> None:
    """`/hub/metrics` counts alice's cluster under her server's profile (`base`), with the workers it is
    scaled to, and names no user; the figures come from the hub's own list of DaskCluster objects."""
    hub, _ = gateway
    namespace = info["controlplane"]["namespace"]
    obj = get_json(info, "daskclusters", "-n", namespace, cluster["metadata"]["name"])
    deadline = time.monotonic() + 60
    while (samples := _dask_samples(hub, info)).get(("datalake_hub_dask_clusters", "base")) != 1:
        assert time.monotonic() < deadline, samples
        time.sleep(2)
    assert samples[("datalake_hub_dask_workers", "base")] == obj["spec"].get("replicas", 0)
    assert samples.get(("datalake_hub_dask_clusters", "hep")) == 0, "every profile in force has a series"
    token = Path(info["prometheus"]["token_file"]).read_text().strip()
    text = requests.get(f"{hub.url}hub/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10).text
    assert not [line for line in text.splitlines() if line.startswith("datalake_hub_") and "alice" in line]


def test_stopping_the_server_ends_the_users_clusters(
    gateway: tuple[HubHandle, dict[str, Any]], cluster: dict[str, Any], info: dict[str, Any]
) -> None:
    hub, _ = gateway
    stop(hub, "alice")
    namespace = info["controlplane"]["namespace"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = [c for c in get_json(info, "daskclusters", "-n", namespace)["items"] if c["spec"]["username"] == "alice"]
        if not left:
            break
        time.sleep(1)
    assert not left, "alice's DaskCluster objects outlived her server"
    # Its pods go with it (owner references: the garbage collector, then the kubelet's grace period).
    selector = f"gateway.dask.org/cluster={cluster['metadata']['name']}"
    while time.monotonic() < deadline + 30:
        pods = get_json(info, "pods", "-n", namespace, "-l", selector)["items"]
        if not pods:
            break
        time.sleep(1)
    assert not pods, f"{len(pods)} pods of the cluster outlived it: {[p['metadata']['name'] for p in pods]}"
