"""The node agent makes pods on kwok nodes really run, the way the hub's notebook pods will.

Every pod here is created through the real API server, scheduled by the real scheduler onto a
kwok node, marked Running by kwok, and then run by the node agent as a local process in its own
mount namespace. The process serves its own view of the filesystem over HTTP on its pod IP, so
what a test reads is what the pod sees.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

pytestmark = [pytest.mark.platform, pytest.mark.timeout(300)]

SERVE = (
    # Record who we are and what env we got, then serve /srv/www (an emptyDir with the Secret
    # mounted inside it) on the pod IP, exactly as the pod sees it.
    "set -e; id -u > /srv/www/uid; id -G > /srv/www/groups; "
    'printf %s "$GREETING" > /srv/www/greeting; printf %s "$HOME" > /srv/www/home; '
    "exec python -m http.server 8888 --bind $(POD_IP) --directory /srv/www"
)


class Kube:
    """A minimal REST client for the admin kubeconfig (client certificate auth)."""

    def __init__(self, kubeconfig: str) -> None:
        cfg = yaml.safe_load(Path(kubeconfig).read_text())
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        self.server = cluster["server"].rstrip("/")
        self.session = requests.Session()
        self.verify = cluster["certificate-authority"]
        if "client-certificate" in user:
            self.session.cert = (user["client-certificate"], user["client-key"])
        if "token" in user:
            self.session.headers["Authorization"] = f"Bearer {user['token']}"

    def request(self, method: str, path: str, body: Any = None, ctype: str = "application/json") -> Any:
        """Call the API; raise on errors other than 404 (which gives None)."""
        data = json.dumps(body) if body is not None else None
        resp = self.session.request(
            method,
            self.server + path,
            data=data,
            headers={"Content-Type": ctype},
            timeout=15,
            verify=self.verify,  # per request: REQUESTS_CA_BUNDLE would override a session's verify
        )
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()


@pytest.fixture(scope="module")
def platform(platform_factory: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The platform up to and including the node agent."""
    return platform_factory("nodeagent")


@pytest.fixture(scope="module")
def kube(platform: dict[str, Any]) -> Kube:
    """Admin access to the platform's API server."""
    return Kube(platform["controlplane"]["kubeconfig"])


@pytest.fixture(scope="module")
def ns(platform: dict[str, Any]) -> str:
    """The namespace the hub uses."""
    return str(platform["controlplane"].get("namespace", "datalake"))


def _wait(what: str, check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, requests.RequestException) as err:
            last = err
        time.sleep(interval)
    raise AssertionError(f"{what}: not true after {timeout}s (last: {last!r})")


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return str(resp.read().decode())


def _port_open(ip: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((ip, port)) == 0


def _pod(name: str, secret: str, configmap: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"datalake.test/run-locally": "true"}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 2,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 100},
            "containers": [
                {
                    "name": "notebook",
                    "image": "datalake/notebook:test",
                    "command": ["sh", "-c", SERVE],
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {
                            "name": "GREETING",
                            "valueFrom": {"configMapKeyRef": {"name": configmap, "key": "greeting"}},
                        },
                    ],
                    "volumeMounts": [
                        {"name": "www", "mountPath": "/srv/www"},
                        {"name": "token", "mountPath": "/srv/www/secret", "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {"name": "www", "emptyDir": {}},
                {"name": "token", "secret": {"secretName": secret, "defaultMode": 0o440}},
            ],
        },
    }


class RunningPod:
    """A pod created for a test, with its IP once the agent serves it."""

    def __init__(self, kube: Kube, ns: str, name: str, secret: str, configmap: str) -> None:
        self.kube, self.ns, self.name = kube, ns, name
        self.secret, self.configmap = secret, configmap
        self.ip = ""

    @property
    def url(self) -> str:
        """Where the pod's HTTP server answers."""
        return f"http://{self.ip}:8888"

    def wait_serving(self, timeout: float = 120.0) -> None:
        """Wait for Running with an IP, then for the process to answer on it."""

        def ip() -> str:
            pod = self.kube.request("GET", f"/api/v1/namespaces/{self.ns}/pods/{self.name}")
            status = (pod or {}).get("status", {})
            return str(status.get("podIP") or "") if status.get("phase") == "Running" else ""

        self.ip = _wait(f"pod {self.name} Running with an IP", ip, timeout)
        _wait(f"pod {self.name} serving on {self.ip}", lambda: _get(self.url + "/uid"), timeout)

    def delete(self) -> None:
        """Delete the pod and its Secret/ConfigMap (ignores what is already gone)."""
        base = f"/api/v1/namespaces/{self.ns}"
        for path in (f"pods/{self.name}", f"secrets/{self.secret}", f"configmaps/{self.configmap}"):
            self.kube.request("DELETE", f"{base}/{path}")


class PodMaker:
    """Creates a Secret, a ConfigMap and a run-locally pod using both; deletes them at the end."""

    def __init__(self, kube: Kube, ns: str) -> None:
        self.kube, self.ns = kube, ns
        self.made: list[RunningPod] = []

    def create(self, token: str | None = None, greeting: str = "hello from a configmap") -> RunningPod:
        """Create the objects; do not wait (so several pods can come up together)."""
        token = token or "token-v1"
        suffix = uuid.uuid4().hex[:6]
        name, secret, cm = f"na-{suffix}", f"na-token-{suffix}", f"na-cm-{suffix}"
        base = f"/api/v1/namespaces/{self.ns}"
        token_b64 = base64.b64encode(token.encode()).decode()
        self.kube.request("POST", f"{base}/secrets", {"metadata": {"name": secret}, "data": {"token": token_b64}})
        self.kube.request("POST", f"{base}/configmaps", {"metadata": {"name": cm}, "data": {"greeting": greeting}})
        self.kube.request("POST", f"{base}/pods", _pod(name, secret, cm))
        pod = RunningPod(self.kube, self.ns, name, secret, cm)
        self.made.append(pod)
        return pod

    def __call__(self, token: str | None = None, greeting: str = "hello from a configmap") -> RunningPod:
        """Create a pod and wait until it serves."""
        pod = self.create(token, greeting)
        pod.wait_serving()
        return pod

    def cleanup(self) -> None:
        """Delete everything this maker created."""
        for pod in self.made:
            pod.delete()


@pytest.fixture(scope="module")
def make_pod(kube: Kube, ns: str) -> Iterator[PodMaker]:
    """A :class:`PodMaker` for the module; kwok takes seconds to mark pods Running, so pods are shared."""
    maker = PodMaker(kube, ns)
    yield maker
    maker.cleanup()


@pytest.fixture(scope="module")
def alice(make_pod: PodMaker) -> RunningPod:
    """One long-lived pod for the read-only checks."""
    return make_pod(token="secret-token-abc", greeting="greetings, data lake")


def test_pod_answers_on_its_pod_ip(alice: RunningPod, platform: dict[str, Any]) -> None:
    """A user's server is reachable at its pod IP, as the hub's proxy would reach it in a cluster."""
    assert ipaddress.ip_address(alice.ip) in ipaddress.ip_network(platform["kwok"]["pod_cidr"]), alice.ip
    assert _get(alice.url + "/uid").strip() == "1000"
    log = Path(platform["nodeagent"]["logs_dir"]) / f"{alice.ns}_{alice.name}.log"
    assert log.exists(), "the pod's output goes to its own log file"


def test_runs_as_pod_user_and_reads_secret(alice: RunningPod) -> None:
    """The notebook runs as uid 1000, not root, and can still read its mounted token (via fsGroup)."""
    assert _get(alice.url + "/uid").strip() == "1000"
    assert "100" in _get(alice.url + "/groups").split(), "fsGroup is a supplementary group"
    assert _get(alice.url + "/secret/token") == "secret-token-abc"
    assert _get(alice.url + "/home") == "/home/jovyan"


def test_configmap_value_reaches_env(alice: RunningPod) -> None:
    """A setting the hub puts in a ConfigMap shows up in the notebook's environment."""
    assert _get(alice.url + "/greeting") == "greetings, data lake"


def test_secret_update_reaches_mounted_file(make_pod: PodMaker, kube: Kube) -> None:
    """A rotated Rucio token reaches the file inside the running notebook within seconds."""
    pod = make_pod(token="old-token")
    assert _get(pod.url + "/secret/token") == "old-token"
    patch = {"data": {"token": base64.b64encode(b"new-token").decode()}}
    kube.request(
        "PATCH",
        f"/api/v1/namespaces/{pod.ns}/secrets/{pod.secret}",
        patch,
        ctype="application/strategic-merge-patch+json",
    )
    started = time.monotonic()
    _wait("rotated token visible in the pod", lambda: _get(pod.url + "/secret/token") == "new-token", 5.0)
    assert time.monotonic() - started < 5.0


def test_two_pods_get_distinct_ips_and_both_serve(alice: RunningPod, make_pod: PodMaker) -> None:
    """Two users' servers run side by side on the same port, each on its own IP, each its own files."""
    bob = make_pod(token="bob-token")
    assert alice.ip != bob.ip
    assert _get(alice.url + "/secret/token") == "secret-token-abc"
    assert _get(bob.url + "/secret/token") == "bob-token"


def test_deleting_pod_stops_process(make_pod: PodMaker, kube: Kube) -> None:
    """Stopping a server (the hub deletes the pod) really stops it: the port closes within seconds."""
    pod = make_pod()
    assert _port_open(pod.ip, 8888)
    kube.request("DELETE", f"/api/v1/namespaces/{pod.ns}/pods/{pod.name}")
    _wait("port closed after pod deletion", lambda: not _port_open(pod.ip, 8888), 10.0)
    with pytest.raises(urllib.error.URLError):
        _get(pod.url + "/uid")
