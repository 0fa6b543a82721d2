"""`kubectl exec` for the local platform: run a command inside a notebook pod's session.

The node agent runs each pod's process in its own mount namespace; we enter that namespace as
the pod's user with the pod's environment, so the command sees exactly the files the notebook
sees (the mounted Rucio Secret, the home) and nothing else of the test's environment.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from localplatform.nodeagent import agent_pods


def pod_pid(info: dict[str, Any], pod_name: str, wait: float = 10) -> int:
    """PID of the pod's main process, waiting up to ``wait`` seconds for the agent's record (it is
    rewritten when the agent notes the pod's namespace or restarts its process)."""
    deadline = time.monotonic() + wait
    while True:
        for pod in agent_pods(info):
            if pod.name == pod_name and pod.pid is not None and Path(f"/proc/{pod.pid}").exists():
                return pod.pid
        if time.monotonic() >= deadline:
            names = sorted(p.name for p in agent_pods(info))
            raise AssertionError(f"the node agent runs no process for pod {pod_name} (it runs {names})")
        time.sleep(0.5)


def pod_env(pid: int) -> dict[str, str]:
    """The environment the pod's process runs with."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.decode(errors="replace").split("=", 1) for item in raw.split(b"\0") if b"=" in item)
    return dict(pairs)


def _ids(pid: int) -> tuple[int, int]:
    uid = gid = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
        elif line.startswith("Gid:"):
            gid = int(line.split()[1])
    return uid, gid


def pod_exec(
    info: dict[str, Any], pod_name: str, argv: list[str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the pod's mount namespace, as its user, with its environment."""
    pid = pod_pid(info, pod_name)
    env = pod_env(pid)
    uid, gid = _ids(pid)
    cmd = [
        "nsenter",
        f"--target={pid}",
        "--mount",
        f"--setuid={uid}",
        f"--setgid={gid}",
        "--",
        "env",
        "-i",
        *[f"{k}={v}" for k, v in env.items()],
        *argv,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
