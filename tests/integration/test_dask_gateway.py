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
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from localplatform import daskgateway
from localplatform.base import free_port, state_dir
from localplatform.hub import HubHandle, hub_log_text
from localplatform.netns import pod_network

from hub_config.dask.hub import limits_table
from hub_config.settings import DaskGatewaySettings
from tests.support.hubclient import api, login, running_hub, spawn, stop
from tests.support.kube import get_json, user_pods
from tests.support.podexec import pod_env, pod_exec, pod_pid

pytestmark = pytest.mark.platform


def pod_network_available() -> bool:
    """True inside a network namespace of our own (``python -m localplatform.netns``)."""
    try:
        return pod_network() is not None
    except Exception:  # noqa: BLE001 - asked for but unusable: the platform will say why
        return False


LIMITS = {
    "default_limits": {"max_workers": 2, "max_cores_per_worker": 1, "max_memory_per_worker": "2G"},
    "group_limits": {"escape/gpu": {"max_workers": 8, "max_cores_per_worker": 4, "max_memory_per_worker": "8G"}},
}
RUCIO_DIR = "/etc/datalake/rucio"


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


@pytest.fixture(scope="module")
def gateway(info: dict[str, Any]) -> Iterator[tuple[HubHandle, dict[str, Any]]]:
    """Traefik + gateway API + controller, and a hub that knows the gateway as a service."""
    state = state_dir()
    token_file = state / "daskgateway-api-token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    hub_port = free_port()
    section = daskgateway.up(
        state,
        info,
        jupyterhub_api_url=f"http://127.0.0.1:{hub_port}/hub/api",
        api_token_file=token_file,
        limits=limits_table(DaskGatewaySettings.model_validate(LIMITS)),
    )
    patch = {
        "dask_gateway": {
            "enabled": True,
            "address": section["address"],
            "proxy_address": section["proxy_address"],
            "api_token_file": str(token_file),
            **LIMITS,
        }
    }
    try:
        with running_hub(state, info, "dask", settings_patch=patch, port=hub_port) as hub:
            yield hub, section
    finally:
        daskgateway.down(state)


@pytest.fixture(scope="module")
def alice(gateway: tuple[HubHandle, dict[str, Any]], info: dict[str, Any]) -> Iterator[dict[str, Any]]:
    hub, _ = gateway
    assert login(hub, info, "alice", "alice-password")[1].status_code == 200
    assert spawn(hub, "alice", {"profile": "base"}).status_code in (201, 202)
    (pod,) = user_pods(info, "alice")
    yield pod
    if api(hub, "GET", "/users/alice").json().get("servers"):
        stop(hub, "alice")


def in_session(info: dict[str, Any], pod: dict[str, Any], code: str) -> str:
    """Run Python in the user's session (their env, their files), like a notebook cell."""
    result = pod_exec(info, pod["metadata"]["name"], ["python", "-c", code], timeout=120)
    return result.stdout + result.stderr


SUBMIT = "from dask_gateway import Gateway\ng = Gateway()\n"


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


def user_token(hub: HubHandle, info: dict[str, Any], username: str, password: str) -> str:
    """A token ``username`` makes for themselves after signing in (as on the hub's token page), with
    what a server's token has for the gateway."""
    session, page = login(hub, info, username, password)
    assert page.status_code == 200
    scopes = ["access:services!service=dask-gateway", "read:users:groups!user"]
    resp = session.post(
        f"{hub.api_url}/users/{username}/tokens",
        json={"scopes": scopes, "expires_in": 600},
        headers={"X-XSRFToken": session.cookies.get("_xsrf", "")},
        timeout=30,
    )
    assert resp.status_code in (200, 201), resp.text
    token: str = resp.json()["token"]
    return token


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
    """alice's Rucio token and hub API token appear in no DaskCluster, pod, event, gateway or hub log."""
    hub, section = gateway
    name = alice["metadata"]["name"]
    rucio_token = pod_exec(info, name, ["cat", f"{RUCIO_DIR}/token-local"]).stdout
    hub_token = pod_env(pod_pid(info, name))["JUPYTERHUB_API_TOKEN"]
    assert len(rucio_token) > 100 and len(hub_token) > 20
    namespace = info["controlplane"]["namespace"]
    haystacks = {
        "daskclusters": json.dumps(get_json(info, "daskclusters", "-n", namespace)),
        "dask pods": json.dumps(get_json(info, "pods", "-n", namespace, "-l", "gateway.dask.org/instance")),
        "events": json.dumps(get_json(info, "events", "-n", namespace)),
        "hub log": hub_log_text(hub),
        **{f"{proc} log": open(path).read() for proc, path in section["logs"].items()},  # noqa: SIM115
    }
    for where, text in haystacks.items():
        assert rucio_token[:60] not in text, f"Rucio token in {where}"
        assert hub_token not in text, f"hub API token in {where}"


WORKERS_ACT_AS_THE_USER = """
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
client.close()
"""


@pytest.mark.skipif(
    not pod_network_available(), reason="pods are on loopback here: Services get no Endpoints (localplatform.netns)"
)
def test_the_cluster_runs_scales_to_two_workers_that_act_as_the_user(
    info: dict[str, Any], alice: dict[str, Any], cluster: dict[str, Any]
) -> None:
    """alice's cluster reaches RUNNING, scales to her limit of 2 workers, and a task pinned to each
    worker gets her Rucio account from the real server, through the Secret the hub rotates."""
    name = f"{cluster['metadata']['namespace']}.{cluster['metadata']['name']}"
    result = pod_exec(
        info, alice["metadata"]["name"], ["python", "-c", WORKERS_ACT_AS_THE_USER.format(name=name)], timeout=420
    )
    out = result.stdout + result.stderr
    assert "STATUS RUNNING" in out, out
    assert "WORKERS 2" in out, out
    assert "ACCOUNTS ['alice', 'alice']" in out, out


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
