"""The node agent's process: the reconcile loop (helper of :mod:`localplatform.nodeagent`).

Run by :func:`localplatform.nodeagent.up` as
``python -m localplatform.nodeagent_agent --config <state>/nodeagent/config.json``. Every second it
lists the pods it should run, starts and stops their processes (:mod:`localplatform.nodeagent_procs`)
and notices exits; every couple of seconds it re-syncs their Secret/ConfigMap volumes
(:mod:`localplatform.nodeagent_sync`). On TERM it stops every pod it runs, then exits.

Restarts follow ``restartPolicy`` with the kubelet's doubling back-off (capped at 30 s, reset after
a minute of running); the pod's status stays kwok's, so an exit is not reported to the API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .nodeagent_env import IMAGE_HOME, Identity, container_argv, image_paths, pod_env
from .nodeagent_hosts import ServiceHost, hosts_lines, rewrite_in_place, service_hosts
from .nodeagent_mounts import materialise, mount_plan, pod_hosts_text
from .nodeagent_procs import (
    MAX_GRACE,
    kill_group,
    kill_namespace,
    launch,
    namespace_busy,
    note_namespace,
    reap_orphans,
    write_meta,
)
from .nodeagent_sync import AtomicVolume, sync_atomic
from .nodeagent_volumes import VolumeError

if TYPE_CHECKING:
    from .nodeagent_kube import KubeREST, ObjectCache

__all__ = ["LABEL_SELECTORS", "Agent", "main"]

log = logging.getLogger("localplatform.nodeagent")

LABEL_SELECTORS = ("component=singleuser-server", "datalake.test/run-locally=true", "gateway.dask.org/instance")
"""A pod with any of these labels (notebook servers, platform tests, Dask Gateway schedulers and
workers), on a kwok node, is run locally."""
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
POLL_INTERVAL = 1.0
"""Seconds between pod list rounds: deletion is noticed within about this long."""
SYNC_INTERVAL = 2.0
"""Seconds between Secret/ConfigMap re-syncs (the kubelet's is ~60 s; tests want seconds)."""
MAX_PARALLEL_STARTS = 4
START_TIMEOUT = 60.0
API_TIMEOUT = 10.0
"""Seconds any one API call may take."""


@dataclass
class PodRun:
    """What the agent knows about one pod it runs."""

    uid: str
    namespace: str
    name: str
    pod: dict[str, Any]
    pod_dir: Path
    log_path: Path
    fs_group: int | None = None
    atomic: list[AtomicVolume] = field(default_factory=list)
    spec_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    mnt_ns: str | None = None
    restarts: int = 0
    started_at: float = 0.0
    exit_seen: bool = False
    next_restart: float = 0.0
    finished: bool = False
    stopping: bool = False

    @property
    def key(self) -> str:
        """``namespace/name`` for log lines."""
        return f"{self.namespace}/{self.name}"


def _write_spec(path: Path, launch_spec: dict[str, Any]) -> None:
    """The launcher's instructions, 0600: they hold the pod's env, Secret values included."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(launch_spec, fh, indent=1)


class Agent:
    """The reconcile loop: list pods, start/stop processes, re-sync volumes."""

    def __init__(self, cfg: dict[str, Any], api: KubeREST) -> None:
        self.cfg = cfg
        self.api = api
        self.state = Path(cfg["agent_dir"])
        self.pods_dir = Path(cfg["pods_dir"])
        self.logs_dir = Path(cfg["logs_dir"])
        self.venv = Path(cfg["session_venv"])
        self.runs: dict[str, PodRun] = {}
        self.starting: set[str] = set()
        self.failed_until: dict[str, float] = {}
        self.last_error: dict[str, str] = {}
        self.kwok_nodes: set[str] = set(cfg.get("nodes", []))
        self.other_nodes: set[str] = set()
        self.nodes_checked = 0.0
        self.sem = asyncio.Semaphore(MAX_PARALLEL_STARTS)
        self.stop_event = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.services: list[ServiceHost] | None = None

    def _objects(self) -> ObjectCache:
        from .nodeagent_kube import ObjectCache  # aiohttp: the agent process only

        return ObjectCache(self.api)

    # ------------------------------------------------------------------ API

    async def _refresh_nodes(self, names: set[str]) -> None:
        unknown = names - self.kwok_nodes - self.other_nodes
        if not unknown or time.monotonic() - self.nodes_checked < 5:
            return
        self.nodes_checked = time.monotonic()
        for node in await self.api.nodes():
            ann = node["metadata"].get("annotations") or {}
            target = self.kwok_nodes if ann.get(KWOK_NODE_ANNOTATION[0]) == KWOK_NODE_ANNOTATION[1] else None
            (target if target is not None else self.other_nodes).add(node["metadata"]["name"])

    async def list_pods(self) -> dict[str, dict[str, Any]]:
        """Pods carrying either label, by UID."""
        pods: dict[str, dict[str, Any]] = {}
        for selector in LABEL_SELECTORS:
            for pod in await self.api.pods(selector):
                pods[pod["metadata"]["uid"]] = pod
        await self._refresh_nodes({p.get("spec", {}).get("nodeName") or "" for p in pods.values()} - {""})
        return pods

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        """Reconcile until told to stop, then stop every pod process."""
        killed = reap_orphans(self.pods_dir)
        if killed:
            log.info("reaped %d orphaned pod processes", killed)
        ready = self.state / "ready"
        next_sync = 0.0
        while not self.stop_event.is_set():
            try:
                pods = await self.list_pods()
                self.reconcile(pods)
                if not ready.exists():
                    ready.write_text(str(os.getpid()))
                    log.info("node agent ready (pid %d)", os.getpid())
            except Exception:
                log.exception("pod list failed; retrying")
            self.check_exits()
            try:
                await self.refresh_service_hosts()
            except Exception:
                log.exception("service hosts refresh failed")
            if time.monotonic() >= next_sync:
                next_sync = time.monotonic() + SYNC_INTERVAL
                try:
                    await asyncio.wait_for(self.sync_volumes(), timeout=SYNC_INTERVAL * 5)
                except Exception:
                    log.exception("volume sync failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), timeout=POLL_INTERVAL)
        await asyncio.gather(*(self.stop_pod(run) for run in list(self.runs.values())))
        ready.unlink(missing_ok=True)

    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def wanted(self, pod: dict[str, Any]) -> bool:
        """Running, with an IP, on a kwok node, not being deleted."""
        return (
            pod.get("status", {}).get("phase") == "Running"
            and bool(pod.get("status", {}).get("podIP"))
            and pod.get("spec", {}).get("nodeName") in self.kwok_nodes
            and not pod["metadata"].get("deletionTimestamp")
        )

    def reconcile(self, pods: dict[str, dict[str, Any]]) -> None:
        """Start what should run, stop what should not."""
        for uid, run in list(self.runs.items()):
            pod = pods.get(uid)
            if (pod is None or not self.wanted(pod)) and not run.stopping:
                run.stopping = True
                self._spawn_task(self.stop_pod(run, pod))
        now = time.monotonic()
        # kwok hands a deleted pod's IP to the next pod at once; a kubelet never does. A new pod on
        # an IP whose old process is still being stopped waits, or the old server would answer it.
        busy_ips = {r.pod.get("status", {}).get("podIP") for r in self.runs.values()}
        for uid, pod in pods.items():
            if uid in self.runs or uid in self.starting or not self.wanted(pod):
                continue
            if pod["status"]["podIP"] in busy_ips:
                continue
            if self.failed_until.get(uid, 0.0) > now:
                continue
            self.starting.add(uid)
            self._spawn_task(self._start_guarded(pod))
        for uid in list(self.failed_until):
            if uid not in pods:
                del self.failed_until[uid]
                self.last_error.pop(uid, None)

    async def _start_guarded(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        key = f"{pod['metadata'].get('namespace')}/{pod['metadata'].get('name')}"
        try:
            async with self.sem:
                run = await asyncio.wait_for(self.start_pod(pod), timeout=START_TIMEOUT)
            self.runs[uid] = run
            self.failed_until.pop(uid, None)
            self.last_error.pop(uid, None)
        except VolumeError as err:
            if self.last_error.get(uid) != str(err):  # say it once, not every retry
                log.warning("pod %s not started yet (retrying every 2 s): %s", key, err)
                self.last_error[uid] = str(err)
            self.failed_until[uid] = time.monotonic() + 2.0
        except Exception:
            log.exception("pod %s could not be started; retrying in 10 s", key)
            self.failed_until[uid] = time.monotonic() + 10.0
        finally:
            self.starting.discard(uid)

    # ------------------------------------------------------------------ start

    async def _launch_spec(self, run: PodRun, ident: Identity) -> dict[str, Any]:
        """Env, volumes and mounts of the pod; the pod's directory goes if any of it fails."""
        pod = run.pod
        container = pod["spec"]["containers"][0]
        try:
            objects = self._objects()
            env = await pod_env(pod, self.venv, objects)
            volumes, run.atomic = await materialise(
                pod, run.pod_dir, ident.fs_group, Path(self.cfg["shared_dir"]), objects
            )
            mounts = mount_plan(pod, run.pod_dir, volumes, env, ident)
        except BaseException:
            shutil.rmtree(run.pod_dir, ignore_errors=True)
            raise
        return {
            "argv": container_argv(container, env, pod["status"]["podIP"]),
            "env": env,
            "cwd": container.get("workingDir") or IMAGE_HOME,
            "uid": ident.uid,
            "gid": ident.gid,
            "groups": ident.groups,
            "mounts": mounts,
            "image_paths": image_paths(self.venv),
            "pod_dir": str(run.pod_dir),
        }

    async def start_pod(self, pod: dict[str, Any]) -> PodRun:
        """Materialise volumes, build the launch spec, start the launcher under ``unshare -m``."""
        meta = pod["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        pod_ip = pod["status"]["podIP"]
        ident = Identity.of(pod)
        pod_dir = self.pods_dir / f"{ns}_{name}_{uid[:8]}"
        shutil.rmtree(pod_dir, ignore_errors=True)
        pod_dir.mkdir(parents=True)
        os.chmod(pod_dir, 0o711)  # noqa: S103 - the pod user must traverse to its emptyDirs
        run = PodRun(uid, ns, name, pod, pod_dir, self.logs_dir / f"{ns}_{name}.log", fs_group=ident.fs_group)
        spec = await self._launch_spec(run, ident)
        self._write_pod_hosts(run)
        run.spec_path = pod_dir / "launch.json"
        _write_spec(run.spec_path, spec)
        write_meta(pod_dir, ns, name, uid, pod_ip)
        self._launch(run)
        pid = run.proc and run.proc.pid
        log.info("started pod %s on %s as %d:%d (pid %s): %s", run.key, pod_ip, ident.uid, ident.gid, pid, spec["argv"])
        return run

    def _launch(self, run: PodRun) -> None:
        assert run.spec_path is not None
        run.proc = launch(run.spec_path, run.log_path, run.pod_dir, run.key)
        run.started_at = time.monotonic()
        run.exit_seen = False
        run.mnt_ns = None

    # ------------------------------------------------------------------ service names

    async def refresh_service_hosts(self) -> None:
        """Re-read Endpoints; where they changed, rewrite every pod's ``/etc/hosts`` and the
        cluster-wide one (for platform processes that stand in for pods, like the gateway API)."""
        entries = service_hosts(await self.api.get("/api/v1/endpoints"))
        if entries == self.services:
            return
        self.services = entries
        cluster = ["# Service names (node agent).", "127.0.0.1\tlocalhost", "::1\tlocalhost"]
        rewrite_in_place(self.state / "cluster-hosts", "\n".join(cluster + hosts_lines(entries, None)) + "\n")
        for run in list(self.runs.values()):
            if not run.stopping:
                self._write_pod_hosts(run)

    def _write_pod_hosts(self, run: PodRun) -> None:
        hosts = run.pod_dir / "hosts"
        if hosts.exists():
            rewrite_in_place(hosts, pod_hosts_text(run.pod, hosts_lines(self.services or [], run.namespace)))

    # ------------------------------------------------------------------ volume sync

    async def sync_volumes(self) -> None:
        """Re-read every running pod's Secrets/ConfigMaps; write a new generation where they changed."""
        objects = self._objects()
        for run in list(self.runs.values()):
            if run.stopping:
                continue
            for av in run.atomic:
                try:
                    if await sync_atomic(run.pod, av, run.fs_group, objects):
                        log.info("pod %s volume %s updated", run.key, av.name)
                except VolumeError as err:
                    log.warning("pod %s volume %s kept as is: %s", run.key, av.name, err)
                except Exception:
                    log.exception("pod %s volume %s: sync failed, kept as is", run.key, av.name)

    # ------------------------------------------------------------------ exits and stops

    def check_exits(self) -> None:
        """Notice processes that exited; restart them per ``restartPolicy`` with back-off."""
        now = time.monotonic()
        for run in list(self.runs.values()):
            if run.stopping or run.finished or run.proc is None:
                continue
            code = run.proc.poll()
            if code is None:
                self._record_ns(run)
                if run.restarts and now - run.started_at > 60:
                    run.restarts = 0  # ran a minute: reset the back-off, like the kubelet
                continue
            policy = run.pod["spec"].get("restartPolicy", "Always")
            if not run.exit_seen:
                run.exit_seen = True
                kill_namespace(run.mnt_ns)  # e.g. kernels the server left behind
                log.info("pod %s process exited with %s (restartPolicy %s)", run.key, code, policy)
                if policy == "Never" or (policy == "OnFailure" and code == 0):
                    run.finished = True
                    continue
                run.next_restart = now + min(2.0**run.restarts, 30.0)
                run.restarts += 1
            if now >= run.next_restart:
                log.info("pod %s restarting (restart %d)", run.key, run.restarts)
                self._launch(run)

    def _record_ns(self, run: PodRun) -> None:
        """Note the pod's mount namespace once ``unshare`` has made it (for kills and orphan reaping)."""
        if run.proc is None or run.mnt_ns is not None:
            return
        run.mnt_ns = note_namespace(run.pod_dir, run.proc.pid)

    async def stop_pod(self, run: PodRun, pod: dict[str, Any] | None = None) -> None:
        """Kill the process group (grace capped at MAX_GRACE), then remove the pod's directory."""
        run.stopping = True
        grace = float((pod or run.pod)["spec"].get("terminationGracePeriodSeconds", 30))
        grace = max(0.5, min(grace, MAX_GRACE))
        if run.proc is not None and run.proc.poll() is None:
            self._record_ns(run)
            await asyncio.to_thread(kill_group, run.proc.pid, grace, run.mnt_ns)
        elif run.mnt_ns and namespace_busy(run.mnt_ns):
            await asyncio.to_thread(kill_group, 0, grace, run.mnt_ns)  # leftovers, e.g. kernels
        if run.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.proc.wait(timeout=5)  # reap: no zombie left behind
        shutil.rmtree(run.pod_dir, ignore_errors=True)
        self.runs.pop(run.uid, None)
        log.info("stopped pod %s", run.key)


async def _amain(cfg: dict[str, Any]) -> None:
    from .nodeagent_kube import KubeREST  # aiohttp: needed in the agent process only

    async with KubeREST(cfg["kubeconfig"], Path(cfg["agent_dir"]) / "kube", API_TIMEOUT) as api:
        agent = Agent(cfg, api)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop_event.set)
        await agent.run()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the agent process."""
    parser = argparse.ArgumentParser(prog="localplatform.nodeagent_agent")
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cfg = json.loads(args.config.read_text())
    asyncio.run(_amain(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
