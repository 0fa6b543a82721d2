"""Node agent: makes notebook pods on kwok's fake nodes really run (test/dev infrastructure, never shipped).

kwok marks pods Running and gives them a loopback IP, but nothing runs. This agent plays the part
of the kubelet for the pods that matter to us, those labelled ``component=singleuser-server``
(KubeSpawner's notebook servers), ``gateway.dask.org/instance`` (Dask Gateway's schedulers and
workers) or ``datalake.test/run-locally=true`` (platform tests), on nodes
kwok manages. For each such pod that is Running with an IP it

* materialises its volumes as files (Secret/ConfigMap/downward API/projected with the kubelet's
  atomic-writer layout and fsGroup ownership, emptyDir per pod, hostPath as is, PVCs as a directory
  per claim, or per NFS export / hostPath PV so two pods share it);
* runs the first container's ``command`` + ``args`` with the pod's env (``$(VAR)`` expanded,
  ``valueFrom`` resolved), ``workingDir`` and user/groups, inside a private mount namespace where
  the volumes sit at their ``mountPath``;
* re-syncs Secret/ConfigMap volumes every couple of seconds (so a rotated token reaches the files);
* lists every Service's ready endpoints in each pod's ``/etc/hosts`` under cluster-DNS names, kept
  current within a second (only non-empty inside :mod:`localplatform.netns`, where Endpoints exist);
* kills the pod's processes when the pod is deleted or gets a deletionTimestamp (its process group
  *and* everything in its mount namespace: Jupyter starts kernels in sessions of their own), and
  restarts the process per ``restartPolicy`` with back-off if it exits.

One module per job:

=================================== ===========================================================
:mod:`localplatform.nodeagent`       this component's ``up``/``down`` and :func:`agent_pods`
:mod:`localplatform.nodeagent_agent` the agent process: the reconcile loop
:mod:`localplatform.nodeagent_procs` start, record, kill and reap pod processes
:mod:`localplatform.nodeagent_env`   the "image" (user, home, CMD), env and argv
:mod:`localplatform.nodeagent_mounts` volumes on disk and the bind mounts that show them
:mod:`localplatform.nodeagent_sync`  Secret/ConfigMap volumes kept in step with the API
:mod:`localplatform.nodeagent_hosts` Service names in /etc/hosts (no cluster DNS here)
:mod:`localplatform.nodeagent_volumes` the kubelet's atomic-writer file layout
:mod:`localplatform.nodeagent_launch` inside the mount namespace: mount, switch user, exec
:mod:`localplatform.nodeagent_kube`  the few API calls, over aiohttp
=================================== ===========================================================

Not done (kubelet features the notebook pods do not need here): initContainers, sidecars,
lifecycle hooks, probes, resource limits (noted only), service-link env vars, cluster DNS and
ClusterIPs (Service names resolve to endpoint pod IPs, headless-style, and only inside
:mod:`localplatform.netns`; the hub hands pods an IP-based ``JUPYTERHUB_API_URL``). The one
deviation from a kubelet (``0.0.0.0`` becomes the pod IP) is explained in :mod:`localplatform.nodeagent_env`.

:func:`up` starts the agent process; a new agent and :func:`down` reap whatever an old one left.
Pod output goes to ``<state>/logs/pods/<namespace>_<name>.log``. Tests read which pods the agent
runs through :func:`agent_pods`, never from its files.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from .base import PlatformError, _alive, spawn, stop_pidfile, wait_for
from .nodeagent_agent import LABEL_SELECTORS
from .nodeagent_env import IMAGE_GID, IMAGE_HOME, IMAGE_UID
from .nodeagent_procs import MAX_GRACE, PodRecord, read_pod_records, reap_orphans
from .sessionenv import ensure_session_venv

__all__ = ["LABEL_SELECTORS", "NAME", "PodRecord", "agent_pods", "down", "up"]

NAME = "nodeagent"


def agent_pods(info: dict[str, Any]) -> list[PodRecord]:
    """The pods whose processes the node agent runs or is still stopping (none if it is not up).

    A pod is listed from the moment its launch spec is ready until its processes are gone and its
    directory removed: after the API object has been deleted, so a test that must not reuse a pod
    IP too early waits for this list, not for the API.
    """
    section = info.get(NAME) or {}
    if not section.get("pods_dir"):
        return []
    return read_pod_records(Path(section["pods_dir"]))


# --------------------------------------------------------------------------- component contract


def _paths(state: Path) -> dict[str, Path]:
    agent = state / NAME
    return {
        "agent_dir": agent,
        "pods_dir": agent / "pods",
        "shared_dir": agent / "volumes",
        "logs_dir": state / "logs" / "pods",
        "pidfile": state / "pids" / f"{NAME}.pid",
    }


def up(state: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Start the agent (or keep the running one) and return its ``platform.json`` section."""
    if shutil.which("unshare") is None:
        raise PlatformError("nodeagent needs unshare(1) (util-linux)")
    if os.geteuid() != 0:
        raise PlatformError("nodeagent needs root: it makes mount namespaces and switches users")
    controlplane, kwok = info.get("controlplane") or {}, info.get("kwok") or {}
    if not controlplane.get("kubeconfig"):
        raise PlatformError("nodeagent needs the controlplane section (kubeconfig)")
    paths = _paths(state)
    existing = info.get(NAME) or {}
    pid = existing.get("pid")
    if (
        pid
        and existing.get("server") == controlplane.get("server")
        and paths["pidfile"].exists()
        and paths["pidfile"].read_text().strip() == str(pid)
        and _alive(int(pid))
        and (paths["agent_dir"] / "ready").exists()
    ):
        return existing
    venv = ensure_session_venv()
    if paths["pidfile"].exists():
        stop_pidfile(paths["pidfile"], timeout=MAX_GRACE + 5)
    reap_orphans(paths["pods_dir"])
    for key in ("pods_dir", "shared_dir", "logs_dir"):
        paths[key].mkdir(parents=True, exist_ok=True)
    (paths["agent_dir"] / "ready").unlink(missing_ok=True)
    cfg = {
        "kubeconfig": controlplane["kubeconfig"],
        "server": controlplane.get("server"),
        "nodes": list(kwok.get("nodes") or []),
        "session_venv": str(venv),
        **{k: str(v) for k, v in paths.items() if k != "pidfile"},
    }
    cfg_path = paths["agent_dir"] / "config.json"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    scripts = str(Path(__file__).resolve().parents[1])
    pythonpath = os.pathsep.join(p for p in (scripts, os.environ.get("PYTHONPATH", "")) if p)
    proc = spawn(
        NAME,
        [sys.executable, "-m", "localplatform.nodeagent_agent", "--config", cfg_path],
        state,
        env={"PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"},
    )
    ready = paths["agent_dir"] / "ready"
    wait_for("node agent", lambda: ready.exists() and ready.read_text() == str(proc.pid), 60, proc=proc)
    return {
        "pid": proc.pid,
        "server": controlplane.get("server"),
        "session_venv": str(venv),
        "session_bin": str(venv / "bin"),
        "pods_dir": str(paths["pods_dir"]),
        "shared_volumes_dir": str(paths["shared_dir"]),
        "logs_dir": str(paths["logs_dir"]),
        "log": str(proc.log),
        "cluster_hosts": str(paths["agent_dir"] / "cluster-hosts"),
        "label_selectors": list(LABEL_SELECTORS),
        "image_user": {"uid": IMAGE_UID, "gid": IMAGE_GID, "home": IMAGE_HOME},
        "rewrites": {
            "0.0.0.0": "podIP in JUPYTERHUB_SERVICE_URL and container args",  # noqa: S104
            ":PORT": "podIP:PORT in container args",
            '--host ""': "--host podIP in container args",
        },
    }


def down(state: Path) -> None:
    """Stop the agent (it stops its pods on TERM), then reap anything left and remove pod dirs."""
    paths = _paths(state)
    if paths["pidfile"].exists():
        stop_pidfile(paths["pidfile"], timeout=MAX_GRACE + 10)
    reap_orphans(paths["pods_dir"])
    (paths["agent_dir"] / "ready").unlink(missing_ok=True)
