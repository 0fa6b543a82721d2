"""Fake nodes for the local platform: kwok against the control plane's apiserver.

Why: KubeSpawner needs nodes for its pods to be scheduled on, become Running and get an IP,
and the GPU profiles need a node with ``nvidia.com/gpu`` that only tolerating pods may use.
There is no kubelet or container runtime here; kwok plays the kubelet's part through the
stages in ``manifests/kwok/stages.yaml`` (nodes Ready with heartbeats, pods Running with an
IP, Job pods completing, deleted pods really removed). The node agent then runs each
notebook pod's command as a local process listening on the pod IP, which is why pod IPs
come from loopback (each node's podCIDR in ``manifests/kwok/nodes.yaml`` is a 127.80.x.0/24).

Two platforms on one machine (say ``make dev`` and a test run, each with its own state dir) must
not hand out the same pod IPs, or one's notebook servers would answer the other's hub: each state
dir gets its own ``127.N.0.0/16`` (N from a hash of its path), and the manifest's ``127.80.`` is
rewritten to it. Inside a network namespace of our own (``python -m localplatform.netns``) the
pods get a private /16 instead, which the apiserver accepts in Endpoints (see that module).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
from pathlib import Path
from typing import Any

import yaml

from .base import PlatformError, Proc, free_port, spawn, stop_pidfile, wait_for, write_json
from .controlplane import SERVICE_CIDR, kubectl
from .gotools import KWOK_VERSION, ensure_tool
from .netns import pod_network

__all__ = ["GPU_RESOURCE", "GPU_TAINT", "NAME", "POD_CIDR", "down", "pod_cidr", "up"]

log = logging.getLogger("localplatform.kwok")

NAME = "kwok"
MANIFESTS = Path(__file__).resolve().parent / "manifests" / "kwok"
POD_CIDR = "127.80.0.0/16"
"""Pod IPs as the manifest writes them: nodes' podCIDRs are /24s inside it; see :func:`pod_cidr`."""
_POD_OCTETS = range(80, 200)
"""Second octets pod ranges are drawn from (127.0.0.0/16 stays free for the services)."""
NODE_IP = "127.0.0.1"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
MANAGED_ANNOTATION = "kwok.x-k8s.io/node=fake"
"""kwok manages only nodes carrying this annotation, never anything else in the cluster."""


def pod_cidr(state: Path) -> str:
    """This state dir's pod range: ``127.N.0.0/16``, N fixed by the dir's path; inside a network
    namespace of our own (:mod:`localplatform.netns`), its private range (Services get endpoints)."""
    digest = int.from_bytes(hashlib.sha256(str(state.resolve()).encode()).digest()[:4], "big")
    private = pod_network()
    if private is not None:
        # Two platforms in one namespace (a test's `make dev`) must not share pod IPs either.
        services = ipaddress.ip_network(SERVICE_CIDR)
        subnets = [n for n in ipaddress.ip_network(private).subnets(new_prefix=16) if not n.overlaps(services)]
        return str(subnets[digest % len(subnets)])
    return f"127.{_POD_OCTETS[digest % len(_POD_OCTETS)]}.0.0/16"


def _nodes_yaml(state: Path) -> str:
    prefix = pod_cidr(state).split("/")[0].rsplit(".", 2)[0] + "."
    return (MANIFESTS / "nodes.yaml").read_text().replace("127.80.", prefix)


def _nodes(state: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(_nodes_yaml(state)) if doc]


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
    nodes = _nodes(state)
    cidr = pod_cidr(state)
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
            f"--cidr={cidr}",
            f"--node-ip={NODE_IP}",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{port}",
        ],
        state,
    )
    applied = kubectl(kubeconfig, "apply", "-f", "-", input_text=_nodes_yaml(state))
    created = {line.split()[0].removeprefix("node/") for line in applied.splitlines() if line.endswith(" created")}
    # apply leaves an existing Node's status (an older manifest's capacity) as it was: patch only those
    for node in (n for n in nodes if n["metadata"]["name"] not in created):
        status = {k: node["status"][k] for k in ("capacity", "allocatable") if k in node.get("status", {})}
        kubectl(
            kubeconfig,
            "patch",
            "node",
            node["metadata"]["name"],
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )
    wait_for("kwok nodes Ready", lambda: set(names) <= _ready_nodes(kubeconfig), 90, interval=0.5, proc=proc)

    gpu_nodes = [n["metadata"]["name"] for n in nodes if GPU_RESOURCE in n.get("status", {}).get("capacity", {})]
    section = {
        "nodes": names,
        "cpu_nodes": [n for n in names if n not in gpu_nodes],
        "gpu_nodes": gpu_nodes,
        "pod_cidr": cidr,
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
