"""Fake nodes for the local platform: kwok against the control plane's apiserver.

Why: KubeSpawner needs nodes for its pods to be scheduled on, become Running and get an IP,
and the GPU profiles need a node with ``nvidia.com/gpu`` that only tolerating pods may use.
There is no kubelet or container runtime here; kwok plays the kubelet's part through the
stages in ``manifests/kwok/stages.yaml`` (nodes Ready with heartbeats, pods Running with an
IP, Job pods completing, deleted pods really removed). The node agent then runs each
notebook pod's command as a local process listening on the pod IP, which is why pod IPs
come from loopback (each node's podCIDR in ``manifests/kwok/nodes.yaml`` is a 127.80.x.0/24).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from .base import PlatformError, Proc, free_port, spawn, stop_pidfile, wait_for, write_json
from .controlplane import kubectl
from .gotools import KWOK_VERSION, ensure_tool

__all__ = ["GPU_RESOURCE", "GPU_TAINT", "NAME", "POD_CIDR", "down", "up"]

log = logging.getLogger("localplatform.kwok")

NAME = "kwok"
MANIFESTS = Path(__file__).resolve().parent / "manifests" / "kwok"
POD_CIDR = "127.80.0.0/16"
"""Pod IPs: nodes' podCIDRs are /24s inside it; kwok's ``--cidr`` fallback is the whole range."""
NODE_IP = "127.0.0.1"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
MANAGED_ANNOTATION = "kwok.x-k8s.io/node=fake"
"""kwok manages only nodes carrying this annotation, never anything else in the cluster."""


def _nodes() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((MANIFESTS / "nodes.yaml").read_text()) if doc]


def _ready_nodes(kubeconfig: str) -> set[str]:
    """Names of nodes whose Ready condition is True."""
    data = json.loads(kubectl(kubeconfig, "get", "nodes", "-o", "json"))
    ready = set()
    for node in data.get("items", []):
        conditions = node.get("status", {}).get("conditions", [])
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            ready.add(node["metadata"]["name"])
    return ready


def _alive(state: Path) -> bool:
    pidfile = state / "pids" / "kwok.pid"
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return False
    return Proc("kwok", pid, pidfile, state / "logs" / "kwok.log").alive()


def up(state: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Start kwok (or keep the running one), register the nodes and wait until they are Ready."""
    try:
        controlplane = info["controlplane"]
    except KeyError:
        raise PlatformError("kwok needs the controlplane section (start controlplane first)") from None
    kubeconfig = controlplane["kubeconfig"]
    nodes = _nodes()
    names = [n["metadata"]["name"] for n in nodes]
    saved = state / NAME / "section.json"
    if saved.exists() and _alive(state):
        section: dict[str, Any] = json.loads(saved.read_text())
        try:
            if section.get("server") == controlplane["server"] and set(names) <= _ready_nodes(kubeconfig):
                log.info("kwok already running with %d Ready nodes", len(names))
                return section
        except PlatformError:
            pass
        log.info("kwok state stale (control plane restarted?); restarting kwok")
    down(state)
    (state / NAME).mkdir(parents=True, exist_ok=True)

    binary = ensure_tool("kwok")
    port = free_port()
    proc = spawn(
        "kwok",
        [
            binary,
            f"--kubeconfig={kubeconfig}",
            f"--config={MANIFESTS / 'stages.yaml'}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={MANAGED_ANNOTATION}",
            f"--cidr={POD_CIDR}",
            f"--node-ip={NODE_IP}",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{port}",
        ],
        state,
    )
    kubectl(kubeconfig, "apply", "-f", str(MANIFESTS / "nodes.yaml"))
    wait_for("kwok nodes Ready", lambda: set(names) <= _ready_nodes(kubeconfig), 90, interval=0.5, proc=proc)

    gpu_nodes = [n["metadata"]["name"] for n in nodes if GPU_RESOURCE in n.get("status", {}).get("capacity", {})]
    section = {
        "nodes": names,
        "cpu_nodes": [n for n in names if n not in gpu_nodes],
        "gpu_nodes": gpu_nodes,
        "pod_cidr": POD_CIDR,
        "node_pod_cidrs": {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in nodes},
        "node_ip": NODE_IP,
        "gpu_resource": GPU_RESOURCE,
        "gpu_taint": GPU_TAINT,
        "gpu_label": {"nvidia.com/gpu.present": "true"},
        "server": controlplane["server"],
        "port": port,
        "version": KWOK_VERSION,
    }
    write_json(saved, section)
    return section


def down(state: Path) -> None:
    """Stop kwok (by PID). Its Node objects die with the control plane's etcd."""
    stop_pidfile(state / "pids" / "kwok.pid")
    (state / NAME / "section.json").unlink(missing_ok=True)
