"""Read the cluster as an admin would (kubectl with the platform's admin kubeconfig)."""

from __future__ import annotations

import json
import time
from typing import Any

from localplatform.controlplane import kubectl


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
    """Wait until ``username`` has no notebook pod left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not user_pods(info, username):
            return
        time.sleep(0.5)
    raise AssertionError(f"pod of {username} still present after {timeout}s")
