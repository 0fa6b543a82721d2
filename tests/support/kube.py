"""Read the cluster as an admin would (kubectl with the platform's admin kubeconfig)."""

from __future__ import annotations

import json
import time
from typing import Any

from localplatform.controlplane import kubectl
from localplatform.nodeagent import agent_pods


def get_json(info: dict[str, Any], *args: str) -> dict[str, Any]:
    """`kubectl get ... -o json` as the cluster admin."""
    out = kubectl(info["controlplane"]["kubeconfig"], "get", *args, "-o", "json")
    data: dict[str, Any] = json.loads(out)
    return data


def user_pods(info: dict[str, Any], username: str | None = None) -> list[dict[str, Any]]:
    """Notebook pods in the hub's namespace (optionally of one hub user)."""
    selector = "component=singleuser-server"
    pods = get_json(info, "pods", "-n", info["controlplane"]["namespace"], "-l", selector)["items"]
    if username is None:
        return list(pods)
    return [p for p in pods if p["metadata"].get("annotations", {}).get("hub.jupyter.org/username") == username]


def wait_no_pods(info: dict[str, Any], username: str, timeout: float = 60) -> None:
    """Wait until ``username`` has no notebook pod left, and no process of one on the node agent.

    The node agent kills a deleted pod's processes after the API object is gone (a kubelet does
    it before), and kwok hands the IP to the next pod at once: until they are gone, the old server
    would answer whatever the hub next routes to that IP.
    """
    # The hub may have seen the pod go already: name it as KubeSpawner does (`jupyter-<name>`).
    names = {p["metadata"]["name"] for p in user_pods(info, username)} | {f"jupyter-{username}"}
    deadline = time.monotonic() + timeout
    while user_pods(info, username):
        if time.monotonic() > deadline:
            raise AssertionError(f"pod of {username} still present after {timeout}s")
        time.sleep(0.5)
    while names & {pod.name for pod in agent_pods(info)}:
        if time.monotonic() > deadline:
            raise AssertionError(f"processes of {sorted(names)} still running after {timeout}s")
        time.sleep(0.5)
