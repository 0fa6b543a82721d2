"""The local platform's Kubernetes: real apiserver, RBAC, scheduler, garbage collector, kwok nodes.

These tests guard the foundation the hub's integration tests stand on: if a user's server
pod would not be scheduled, get an IP, land on the right kind of node or go away when
stopped here, the hub tests would fail for reasons that have nothing to do with the hub.
They talk to the apiserver with plain ``requests``, as the admin (client certificate) or
as the hub's ServiceAccount (its token), exactly like KubeSpawner does.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.platform

WAIT = 60.0
"""Seconds any single platform reaction may take (scheduling, kwok status, GC)."""


class Api:
    """A minimal Kubernetes REST client bound to one kubeconfig user."""

    def __init__(self, kubeconfig: str | Path) -> None:
        config = json.loads(Path(kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self.server: str = cluster["server"]
        self.session = requests.Session()
        # Ignore REQUESTS_CA_BUNDLE and proxy variables: they would override our CA and route.
        self.session.trust_env = False
        self.session.verify = cluster["certificate-authority"]
        if "token" in user:
            self.session.headers["Authorization"] = f"Bearer {user['token']}"
        else:
            self.session.cert = (user["client-certificate"], user["client-key"])

    def request(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> requests.Response:
        """Send ``body`` as JSON (or as ``content_type``, for patches)."""
        headers = {"Content-Type": content_type} if content_type else {}
        data = json.dumps(body) if body is not None else None
        if data is not None and not content_type:
            headers["Content-Type"] = "application/json"
        return self.session.request(method, self.server + path, data=data, headers=headers, timeout=15)

    def get_json(self, path: str) -> dict[str, Any]:
        resp = self.request("GET", path)
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data


def wait_until(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``check`` for up to ``timeout`` seconds; fail the test naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def pod_manifest(name: str, *, gpu: bool = False, tolerate_gpu: bool = False) -> dict[str, Any]:
    """A small user-server-like pod; optionally asking for a GPU and/or tolerating GPU nodes."""
    container: dict[str, Any] = {
        "name": "notebook",
        "image": "quay.io/jupyter/base-notebook:latest",
        "command": ["sleep", "3600"],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
    }
    if gpu:
        container["resources"]["limits"] = {"nvidia.com/gpu": "1"}
    spec: dict[str, Any] = {"containers": [container], "terminationGracePeriodSeconds": 1}
    if tolerate_gpu:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "platform-controlplane-test"}},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def platform(platform_factory: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The platform up to kwok: control plane plus fake nodes."""
    return platform_factory("kwok")


@pytest.fixture(scope="module")
def admin(platform: dict[str, Any]) -> Api:
    return Api(platform["controlplane"]["kubeconfig"])


@pytest.fixture(scope="module")
def hub(platform: dict[str, Any]) -> Api:
    return Api(platform["controlplane"]["hub_kubeconfig"])


@pytest.fixture
def pods(admin: Api, platform: dict[str, Any]) -> Iterator[Callable[..., str]]:
    """Create pods in the hub namespace (by the admin); every one is deleted after the test."""
    namespace = platform["controlplane"]["namespace"]
    created: list[str] = []

    def create(**kwargs: Any) -> str:
        name = f"cp-test-{uuid.uuid4().hex[:8]}"
        resp = admin.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod_manifest(name, **kwargs))
        assert resp.status_code == 201, resp.text
        created.append(name)
        return name

    yield create
    for name in created:
        admin.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}")


def _pod(admin: Api, namespace: str, name: str) -> dict[str, Any]:
    return admin.get_json(f"/api/v1/namespaces/{namespace}/pods/{name}")


def test_version_is_the_pinned_kubernetes(platform: dict[str, Any], admin: Api) -> None:
    """The cluster says which Kubernetes it is; helm's kubeVersion checks and KubeSpawner rely on that
    (a build without version ldflags would claim v0.0.0 and the chart would refuse to install)."""
    from localplatform.gotools import kubernetes_version

    version = admin.get_json("/version")
    assert version["gitVersion"] == platform["controlplane"]["version"] == kubernetes_version()
    assert version["gitVersion"].startswith("v1.34.")
    assert (version["major"], version["minor"]) == ("1", "34")


def test_pod_is_scheduled_runs_and_gets_a_local_ip(
    platform: dict[str, Any], admin: Api, pods: Callable[..., str]
) -> None:
    """A user's server pod is placed on a node and becomes Running with an IP the hub can reach
    on this machine (a 127.x address, or inside localplatform.netns a private one routed locally),
    as it would get a pod IP in a real cluster."""
    namespace = platform["controlplane"]["namespace"]
    name = pods()
    wait_until("pod Running", lambda: _pod(admin, namespace, name)["status"].get("phase") == "Running")
    pod = _pod(admin, namespace, name)
    assert pod["spec"]["nodeName"] in platform["kwok"]["nodes"]
    ip = ipaddress.ip_address(pod["status"]["podIP"])
    assert ip in ipaddress.ip_network(platform["kwok"]["pod_cidr"])
    with socket.socket() as sock:  # it binds here: the node agent can serve it, the hub reach it
        sock.bind((str(ip), 0))
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready.get("Ready") == "True"


def test_gpu_pod_lands_on_the_gpu_node_only_with_the_toleration(
    platform: dict[str, Any], admin: Api, pods: Callable[..., str]
) -> None:
    """Choosing a GPU profile puts the server on the GPU node; without the GPU toleration a server is
    never placed there (it waits as unschedulable instead of silently taking a GPU machine)."""
    namespace = platform["controlplane"]["namespace"]
    gpu_nodes = set(platform["kwok"]["gpu_nodes"])
    assert gpu_nodes

    with_toleration = pods(gpu=True, tolerate_gpu=True)
    without_toleration = pods(gpu=True)
    plain = [pods() for _ in range(6)]

    wait_until("GPU pod Running", lambda: _pod(admin, namespace, with_toleration)["status"].get("phase") == "Running")
    assert _pod(admin, namespace, with_toleration)["spec"]["nodeName"] in gpu_nodes

    def unschedulable() -> bool:
        conditions = _pod(admin, namespace, without_toleration)["status"].get("conditions", [])
        return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions)

    wait_until("the untolerating GPU pod to be reported Unschedulable", unschedulable)
    assert not _pod(admin, namespace, without_toleration)["spec"].get("nodeName")

    for name in plain:
        wait_until(f"{name} Running", lambda n=name: _pod(admin, namespace, n)["status"].get("phase") == "Running")
        assert _pod(admin, namespace, name)["spec"]["nodeName"] not in gpu_nodes


def test_deleted_pod_disappears(platform: dict[str, Any], admin: Api, pods: Callable[..., str]) -> None:
    """Stopping a server really removes its pod (no kubelet exists; kwok finalises the deletion),
    so the hub does not wait forever for it to go and can start it again under the same name."""
    namespace = platform["controlplane"]["namespace"]
    name = pods()
    wait_until("pod Running", lambda: _pod(admin, namespace, name)["status"].get("phase") == "Running")
    resp = admin.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}")
    assert resp.status_code == 200, resp.text
    wait_until(
        "pod gone",
        lambda: admin.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}").status_code == 404,
    )


def test_hub_serviceaccount_has_exactly_the_chart_permissions(platform: dict[str, Any], hub: Api) -> None:
    """The hub can do its job (start, inspect and stop servers, refresh token Secrets) in its own
    namespace, and nothing beyond it: a hub bug or compromise cannot read other namespaces' Secrets,
    create workloads or touch nodes."""
    namespace = platform["controlplane"]["namespace"]
    name = f"cp-hub-{uuid.uuid4().hex[:8]}"
    base = f"/api/v1/namespaces/{namespace}"

    resp = hub.request("POST", f"{base}/pods", pod_manifest(name))
    assert resp.status_code == 201, resp.text
    assert hub.request("GET", f"{base}/pods/{name}").status_code == 200
    assert hub.request("GET", f"{base}/pods").status_code == 200

    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"token": "a"}}
    assert hub.request("POST", f"{base}/secrets", secret).status_code == 201
    patch = {"stringData": {"token": "b"}}
    resp = hub.request("PATCH", f"{base}/secrets/{name}", patch, "application/merge-patch+json")
    assert resp.status_code == 200, resp.text
    assert hub.request("DELETE", f"{base}/secrets/{name}").status_code == 200
    assert hub.request("DELETE", f"{base}/pods/{name}").status_code == 200

    assert hub.request("GET", "/api/v1/namespaces/kube-system/secrets").status_code == 403
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_manifest(name)["spec"]},
        },
    }
    assert hub.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment).status_code == 403
    node = platform["kwok"]["nodes"][0]
    resp = hub.request(
        "PATCH", f"/api/v1/nodes/{node}", {"metadata": {"labels": {"x": "y"}}}, "application/merge-patch+json"
    )
    assert resp.status_code == 403


def test_secret_owned_by_a_pod_is_garbage_collected(platform: dict[str, Any], admin: Api, hub: Api) -> None:
    """A user's token Secret goes away with their server pod (ownerReference), so stopped servers
    do not leave credentials behind in the namespace."""
    namespace = platform["controlplane"]["namespace"]
    base = f"/api/v1/namespaces/{namespace}"
    name = f"cp-gc-{uuid.uuid4().hex[:8]}"
    resp = hub.request("POST", f"{base}/pods", pod_manifest(name))
    assert resp.status_code == 201, resp.text
    uid = resp.json()["metadata"]["uid"]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}],
        },
        "stringData": {"token": "t"},
    }
    try:
        assert hub.request("POST", f"{base}/secrets", secret).status_code == 201
        assert hub.request("DELETE", f"{base}/pods/{name}").status_code == 200
        wait_until(
            "owned Secret garbage-collected",
            lambda: hub.request("GET", f"{base}/secrets/{name}").status_code == 404,
        )
    finally:
        admin.request("DELETE", f"{base}/secrets/{name}")
        admin.request("DELETE", f"{base}/pods/{name}")


def test_deployments_and_jobs_are_driven_by_the_controller_manager(platform: dict[str, Any], admin: Api) -> None:
    """Workloads the chart installs next to the hub (the proxy Deployment, pre-pull or cleanup Jobs)
    come up: a Deployment gets a Running pod through its ReplicaSet and a Job runs to completion."""
    namespace = platform["controlplane"]["namespace"]
    name = f"cp-wl-{uuid.uuid4().hex[:8]}"
    template = {"metadata": {"labels": {"app": name}}, "spec": pod_manifest(name)["spec"]}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template},
    }
    job_template = {"spec": {**pod_manifest(name)["spec"], "restartPolicy": "Never"}}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": {"template": job_template}}
    apps = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    jobs = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    try:
        assert admin.request("POST", apps, deployment).status_code == 201
        assert admin.request("POST", jobs, job).status_code == 201
        wait_until(
            "Deployment available",
            lambda: admin.get_json(f"{apps}/{name}").get("status", {}).get("availableReplicas") == 1,
        )
        wait_until("Job succeeded", lambda: admin.get_json(f"{jobs}/{name}").get("status", {}).get("succeeded") == 1)
    finally:
        background = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        admin.request("DELETE", f"{apps}/{name}", background)
        admin.request("DELETE", f"{jobs}/{name}", background)
