"""Node agent: makes notebook pods on kwok's fake nodes really run (test/dev infrastructure, never shipped).

kwok marks pods Running and gives them a loopback IP, but nothing runs. This agent plays the part
of the kubelet for the pods that matter to us, those labelled ``component=singleuser-server``
(KubeSpawner's notebook servers) or ``datalake.test/run-locally=true`` (platform tests), on nodes
kwok manages. For each such pod that is Running with an IP it

* materialises its volumes as files (Secret/ConfigMap/downward API/projected with the kubelet's
  atomic-writer layout and fsGroup ownership, emptyDir per pod, hostPath as is, PVCs as a directory
  per claim, or per NFS export / hostPath PV so two pods share it), see
  :mod:`localplatform.nodeagent_volumes`;
* runs the first container's ``command`` + ``args`` (the image is not pulled: bare names resolve on a
  PATH starting with the session venv's ``bin``, see :mod:`localplatform.sessionenv`) with the pod's
  env (``$(VAR)`` expanded, ``valueFrom`` resolved), ``workingDir`` and user/groups, inside a private
  mount namespace where the volumes sit at their ``mountPath``, see :mod:`localplatform.nodeagent_launch`;
* re-syncs Secret/ConfigMap volumes every couple of seconds (so a rotated token reaches the files);
* kills the pod's processes when the pod is deleted or gets a deletionTimestamp (its process group
  *and* everything in its mount namespace: Jupyter starts kernels in sessions of their own), and
  restarts the process per ``restartPolicy`` with back-off if it exits. The pod's status is kwok's:
  an exit is not reported to the API.

Not done (kubelet features the notebook pods do not need here): initContainers, sidecars,
lifecycle hooks, probes, resource limits (noted only), service-link env vars, cluster DNS (so the
hub must hand pods an IP-based ``JUPYTERHUB_API_URL``).

**The one deviation from a kubelet:** every pod would otherwise bind ``0.0.0.0:8888`` on the one
host network, so ``0.0.0.0`` is rewritten to the pod's IP in ``JUPYTERHUB_SERVICE_URL`` and in the
container's args (``--ip=0.0.0.0``). The process therefore listens on its pod IP, as it would in a
cluster, and the hub reaches it there.

The "image" is taken to be a docker-stacks style notebook image: user 1000 with primary group 100
when the pod sets no ``runAsUser``/``runAsGroup``, ``HOME=/home/jovyan`` (a per-pod directory, like
the image's writable layer) unless the pod's env sets it, WORKDIR ``/home/jovyan``, a private
``/tmp``, and a kubelet-style ``/etc/hosts`` (with ``hostAliases``).

Smaller liberties, both for shared home directories: a missing ``subPath`` directory is created
owned by the pod's user (and fsGroup), as the usual NFS-home init step would leave it; the directory
standing for an NFS export or hostPath PV is world-writable, like a test export.

Started by :func:`up` as ``python -m localplatform.nodeagent --config <state>/nodeagent/config.json``.
Child PIDs (with their start times, so a recycled PID is never signalled, and their mount
namespace) are recorded under ``<state>/nodeagent/pods/*/pid``; a new agent and :func:`down` reap
whatever an old one left. Pod output goes to ``<state>/logs/pods/<namespace>_<name>.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import PlatformError, _alive, spawn, stop_pidfile, wait_for
from .nodeagent_volumes import (
    Payload,
    VolumeError,
    add_keyed,
    apply_ownership,
    atomic_write,
    decode_configmap,
    decode_secret,
    downward_value,
    expand_vars,
    payload_digest,
)
from .sessionenv import ensure_session_venv

if TYPE_CHECKING:
    from .nodeagent_kube import KubeREST

__all__ = ["LABEL_SELECTORS", "NAME", "down", "up"]

log = logging.getLogger("localplatform.nodeagent")

NAME = "nodeagent"
LABEL_SELECTORS = ("component=singleuser-server", "datalake.test/run-locally=true")
"""A pod with either label, on a kwok node, is run locally."""
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
IMAGE_UID, IMAGE_GID, IMAGE_HOME = 1000, 100, "/home/jovyan"
"""The notebook image's user (jovyan:users) and home, used when the pod does not say otherwise."""
IMAGE_CMD = ["jupyterhub-singleuser"]
"""The image's CMD, used when the container has neither ``command`` nor ``args``."""
POLL_INTERVAL = 1.0
"""Seconds between pod list rounds: deletion is noticed within about this long."""
SYNC_INTERVAL = 2.0
"""Seconds between Secret/ConfigMap re-syncs (the kubelet's is ~60 s; tests want seconds)."""
MAX_PARALLEL_STARTS = 4
START_TIMEOUT = 60.0
API_TIMEOUT = 10.0
"""Seconds any one API call may take."""
MAX_GRACE = 10.0
"""Cap on ``terminationGracePeriodSeconds`` so tests and ``down`` never wait 30 s per pod."""
LAUNCHER = Path(__file__).with_name("nodeagent_launch.py")


# --------------------------------------------------------------------------- process records


def _starttime(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _ns_members(mnt_ns: str | None) -> list[int]:
    """PIDs in the pod's mount namespace: its whole process tree, even children that called setsid
    (Jupyter starts kernels in their own session, so the process group alone would miss them)."""
    if not mnt_ns or mnt_ns == _mnt_ns(os.getpid()):
        return []  # never the host's namespace
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _mnt_ns(int(entry)) == mnt_ns:
            members.append(int(entry))
    return members


def _kill_group(pid: int, grace: float, mnt_ns: str | None = None) -> None:
    """TERM the process group and everything in the pod's mount namespace; KILL after ``grace`` s."""
    mnt_ns = mnt_ns or _mnt_ns(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if pid > 0:  # killpg(0) would be our own group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
        for member in _ns_members(mnt_ns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and ((pid > 0 and _alive(pid)) or _ns_members(mnt_ns)):
            time.sleep(0.05)
        if not (pid > 0 and _alive(pid)) and not _ns_members(mnt_ns):
            return


def reap_orphans(pods_dir: Path) -> int:
    """Kill processes an earlier agent recorded and drop their directories; return how many ran."""
    killed = 0
    if not pods_dir.is_dir():
        return 0
    for record in sorted(pods_dir.glob("*/pid")):
        try:
            pid_s, start, *rest = record.read_text().split()
            pid = int(pid_s)
        except (OSError, ValueError):
            continue
        mnt_ns = rest[0] if rest else None
        leader_ours = _starttime(pid) == start
        if leader_ours or _ns_members(mnt_ns):
            log.info("reaping orphaned pod processes of %s (pid %d)", record.parent.name, pid)
            if leader_ours:
                _kill_group(pid, 3.0, mnt_ns)
            else:
                for member in _ns_members(mnt_ns):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(member, signal.SIGKILL)
            killed += 1
    for pod_dir in pods_dir.iterdir():
        if pod_dir.is_dir():
            shutil.rmtree(pod_dir, ignore_errors=True)
    return killed


# --------------------------------------------------------------------------- helpers

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


def _quantity(text: str | int | float) -> float:
    match = _QUANTITY.match(str(text))
    if not match or match.group(2) not in _SUFFIX:
        raise VolumeError(f"bad quantity {text!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def _resource_value(container: dict[str, Any], ref: dict[str, Any]) -> str:
    """``resourceFieldRef``: the container's request/limit, or the node's capacity (this machine)."""
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name) or (resources.get("limits") or {}).get(name)
    if value is not None:
        amount = _quantity(value)
    elif name == "cpu":
        amount = float(os.cpu_count() or 1)
    elif name == "memory":
        amount = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    else:
        amount = 0.0
    divisor = _quantity(ref.get("divisor") or "1") or 1.0
    return str(math.ceil(amount / divisor))


def _rewrite_wildcard(text: str, pod_ip: str) -> str:
    return text.replace("0.0.0.0", pod_ip)  # noqa: S104 - the point is to replace it


# --------------------------------------------------------------------------- per-pod state


@dataclass
class AtomicVolume:
    """A Secret/ConfigMap/downward API/projected volume, re-synced while the pod runs."""

    name: str
    source: dict[str, Any]
    kind: str
    path: Path
    digest: str = ""
    token_cache: dict[str, tuple[float, bytes]] = field(default_factory=dict)


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

    # ------------------------------------------------------------------ API

    async def _object(self, cache: dict[tuple[str, str, str], Any], kind: str, ns: str, name: str) -> Any:
        """A Secret or ConfigMap (None if absent), fetched once per sync round."""
        key = (kind, ns, name)
        if key not in cache:
            cache[key] = await (self.api.secret(ns, name) if kind == "secret" else self.api.configmap(ns, name))
        return cache[key]

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

    def _spawn_task(self, coro: Any) -> None:
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

    async def start_pod(self, pod: dict[str, Any]) -> PodRun:
        """Materialise volumes, build the launch spec, start the launcher under ``unshare -m``."""
        meta, spec, status = pod["metadata"], pod["spec"], pod["status"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        container = spec["containers"][0]
        pod_ip = status["podIP"]
        psc = spec.get("securityContext") or {}
        csc = container.get("securityContext") or {}
        run_uid = int(csc.get("runAsUser", psc.get("runAsUser", IMAGE_UID)))
        default_gid = IMAGE_GID if run_uid == IMAGE_UID else 0
        run_gid = int(csc.get("runAsGroup", psc.get("runAsGroup", default_gid)))
        fs_group = psc.get("fsGroup")
        groups = [int(g) for g in psc.get("supplementalGroups") or []]
        if run_uid == IMAGE_UID:
            groups.append(IMAGE_GID)  # jovyan is in "users" in the image's /etc/group
        if fs_group is not None:
            fs_group = int(fs_group)
            groups.append(fs_group)

        pod_dir = self.pods_dir / f"{ns}_{name}_{uid[:8]}"
        shutil.rmtree(pod_dir, ignore_errors=True)
        pod_dir.mkdir(parents=True)
        os.chmod(pod_dir, 0o711)  # noqa: S103 - the pod user must traverse to its emptyDirs
        run = PodRun(uid, ns, name, pod, pod_dir, self.logs_dir / f"{ns}_{name}.log", fs_group=fs_group)
        try:
            env = await self._env(pod, container)
            volumes = await self._volumes(run, pod, run_uid, run_gid)
            mounts = self._mounts(run, container, volumes, env, run_uid, run_gid)
        except BaseException:
            shutil.rmtree(pod_dir, ignore_errors=True)
            raise

        argv = [expand_vars(a, env) for a in (container.get("command") or []) + (container.get("args") or [])]
        argv = [_rewrite_wildcard(a, pod_ip) for a in argv] or list(IMAGE_CMD)
        if "JUPYTERHUB_SERVICE_URL" in env:
            env["JUPYTERHUB_SERVICE_URL"] = _rewrite_wildcard(env["JUPYTERHUB_SERVICE_URL"], pod_ip)
        launch = {
            "argv": argv,
            "env": env,
            "cwd": container.get("workingDir") or IMAGE_HOME,
            "uid": run_uid,
            "gid": run_gid,
            "groups": sorted(set(groups)),
            "mounts": mounts,
            "image_paths": self._image_paths(),
            "pod_dir": str(pod_dir),
        }
        run.spec_path = pod_dir / "launch.json"
        fd = os.open(run.spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(launch, fh, indent=1)
        (pod_dir / "meta.json").write_text(json.dumps({"namespace": ns, "name": name, "uid": uid, "ip": pod_ip}))
        self._launch(run)
        log.info(
            "started pod %s on %s as %d:%d (pid %s): %s",
            run.key,
            pod_ip,
            run_uid,
            run_gid,
            run.proc and run.proc.pid,
            argv,
        )
        return run

    def _image_paths(self) -> list[str]:
        """The session venv and the interpreter it was made from (its stdlib lives there)."""
        paths = [str(self.venv)]
        cfg = self.venv / "pyvenv.cfg"
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                paths.append(str(Path(value.strip()).parent))
        return paths

    def _launch(self, run: PodRun) -> None:
        assert run.spec_path is not None
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(run.log_path, "ab") as out:
            out.write(f"--- nodeagent: starting {run.key} at {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            run.proc = subprocess.Popen(
                [
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "--",
                    sys.executable,
                    str(LAUNCHER),
                    str(run.spec_path),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"},
            )
        start = None
        for _ in range(50):
            start = _starttime(run.proc.pid)
            if start:
                break
            time.sleep(0.01)
        (run.pod_dir / "pid").write_text(f"{run.proc.pid} {start}")
        run.started_at = time.monotonic()
        run.exit_seen = False
        run.mnt_ns = None

    async def _env(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        """The image's env, then ``envFrom``, then ``env`` with ``$(VAR)`` expansion and ``valueFrom``."""
        ns = pod["metadata"]["namespace"]
        bin_dir = str(self.venv / "bin")
        env: dict[str, str] = {
            "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": IMAGE_HOME,
            "HOSTNAME": pod["metadata"]["name"],
            "LANG": "C.UTF-8",
            "SHELL": "/bin/bash",
        }
        cache: dict[tuple[str, str, str], Any] = {}
        for src in container.get("envFrom") or []:
            ref = src.get("configMapRef") or src.get("secretRef") or {}
            kind = "configmap" if "configMapRef" in src else "secret"
            obj = await self._object(cache, kind, ns, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise VolumeError(f"envFrom {kind} {ns}/{ref.get('name')} not found")
            data = decode_configmap(obj) if kind == "configmap" else decode_secret(obj)
            for key, value in data.items():
                env[src.get("prefix", "") + key] = value.decode(errors="replace")
        for item in container.get("env") or []:
            name = item["name"]
            if "valueFrom" not in item:
                env[name] = expand_vars(item.get("value", ""), env)
                continue
            vf = item["valueFrom"]
            if "fieldRef" in vf:
                env[name] = downward_value(pod, vf["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in vf:
                env[name] = _resource_value(container, vf["resourceFieldRef"])
            else:
                kind = "secret" if "secretKeyRef" in vf else "configmap"
                ref = vf.get("secretKeyRef") or vf.get("configMapKeyRef") or {}
                obj = await self._object(cache, kind, ns, ref.get("name", ""))
                found = None if obj is None else (decode_secret(obj) if kind == "secret" else decode_configmap(obj))
                if found is None or ref.get("key") not in found:
                    if ref.get("optional"):
                        continue
                    raise VolumeError(f"env {name}: {kind} {ns}/{ref.get('name')} key {ref.get('key')!r} missing")
                env[name] = found[ref["key"]].decode(errors="replace")
        if bin_dir not in env["PATH"].split(":"):
            env["PATH"] = f"{bin_dir}:{env['PATH']}"
        return env

    async def _volumes(self, run: PodRun, pod: dict[str, Any], run_uid: int, run_gid: int) -> dict[str, Path]:
        """Materialise every pod volume; return name → host directory (or file)."""
        ns = run.namespace
        out: dict[str, Path] = {}
        vol_root = run.pod_dir / "volumes"
        vol_root.mkdir(mode=0o711)
        for vol in pod["spec"].get("volumes") or []:
            name = vol["name"]
            path = vol_root / name
            kind = next((k for k in ("secret", "configMap", "downwardAPI", "projected") if k in vol), None)
            if kind:
                av = AtomicVolume(name, vol[kind], kind, path)
                await self._sync_atomic(run, av, {})
                run.atomic.append(av)
                out[name] = path
            elif "emptyDir" in vol:
                path.mkdir()
                os.chmod(path, 0o777)  # noqa: S103 - the kubelet makes emptyDirs 0777
                if run.fs_group is not None:
                    apply_ownership(path, run.fs_group, read_only=False)
                limit = (vol["emptyDir"] or {}).get("sizeLimit")
                if limit:
                    log.info("pod %s emptyDir %s: sizeLimit %s noted, not enforced", run.key, name, limit)
                out[name] = path
            elif "hostPath" in vol:
                out[name] = self._host_path(vol["hostPath"])
            elif "persistentVolumeClaim" in vol:
                out[name] = await self._claim_dir(ns, vol["persistentVolumeClaim"]["claimName"], run.fs_group)
            else:
                log.warning("pod %s volume %s: unsupported type %s, mounted empty", run.key, name, sorted(vol))
                path.mkdir(mode=0o755)
                out[name] = path
        return out

    @staticmethod
    def _host_path(src: dict[str, Any]) -> Path:
        path = Path(src["path"])
        kind = src.get("type") or ""
        if kind == "DirectoryOrCreate":
            path.mkdir(parents=True, exist_ok=True, mode=0o755)
        elif kind == "FileOrCreate" and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o644)
        elif kind and not path.exists():
            raise VolumeError(f"hostPath {path} ({kind}) does not exist")
        elif not kind and not path.exists():
            path.mkdir(parents=True, mode=0o755)  # the kubelet's runtime creates it too
        return path

    async def _claim_dir(self, ns: str, claim: str, fs_group: int | None) -> Path:
        """A directory per claim; per NFS export or hostPath PV when bound to one, so pods share it."""
        pvc = await self.api.claim(ns, claim)
        pv = None
        if pvc and pvc.get("spec", {}).get("volumeName"):
            pv = await self.api.volume(pvc["spec"]["volumeName"])
        shared = Path(self.cfg["shared_dir"])
        if pv and "nfs" in pv["spec"]:
            nfs = pv["spec"]["nfs"]
            path: Path = shared / "nfs" / str(nfs["server"]) / str(nfs["path"]).strip("/")
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o777)  # noqa: S103 - a test export: anyone may create their directory in it
            return path
        if pv and "hostPath" in pv["spec"]:
            path = shared / "hostpath" / str(pv["spec"]["hostPath"]["path"]).strip("/")
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o777)  # noqa: S103 - a shared test directory
            return path
        name = pv["metadata"]["name"] if pv else f"{ns}_{claim}"
        path = shared / "pvc" / name
        fresh = not path.exists()
        path.mkdir(parents=True, exist_ok=True, mode=0o755)
        if fs_group is not None and (fresh or path.stat().st_gid != fs_group):
            apply_ownership(path, fs_group, read_only=False)  # fsGroupChangePolicy: OnRootMismatch
        return path

    def _mounts(
        self,
        run: PodRun,
        container: dict[str, Any],
        volumes: dict[str, Path],
        env: dict[str, str],
        run_uid: int,
        run_gid: int,
    ) -> list[dict[str, Any]]:
        """Bind mounts for the launcher: image layer (/tmp, home, /etc/hosts), then volumeMounts."""
        mounts: list[dict[str, Any]] = []
        targets = {os.path.normpath(m["mountPath"]) for m in container.get("volumeMounts") or []}
        tmp = run.pod_dir / "tmp"
        tmp.mkdir()
        os.chmod(tmp, 0o1777)  # noqa: S103 - /tmp is sticky and world-writable
        if "/tmp" not in targets:  # noqa: S108 - the pod's own /tmp
            mounts.append({"source": str(tmp), "target": "/tmp", "is_dir": True})  # noqa: S108
        if IMAGE_HOME not in targets:
            home = run.pod_dir / "home"
            home.mkdir()
            os.chown(home, run_uid, run_gid)
            mounts.append({"source": str(home), "target": IMAGE_HOME, "is_dir": True})
        hosts = run.pod_dir / "hosts"
        lines = ["# Kubernetes-managed hosts file (node agent).", "127.0.0.1\tlocalhost", "::1\tlocalhost"]
        lines.append(f"{run.pod['status']['podIP']}\t{run.name}")
        for alias in run.pod["spec"].get("hostAliases") or []:
            lines.append(f"{alias['ip']}\t{' '.join(alias.get('hostnames') or [])}")
        hosts.write_text("\n".join(lines) + "\n")
        os.chmod(hosts, 0o644)
        if "/etc/hosts" not in targets:
            mounts.append({"source": str(hosts), "target": "/etc/hosts", "is_dir": False})
        for vm in container.get("volumeMounts") or []:
            src = volumes.get(vm["name"])
            if src is None:
                raise VolumeError(f"volumeMount {vm['name']!r} has no volume")
            sub = vm.get("subPath") or (expand_vars(vm["subPathExpr"], env) if vm.get("subPathExpr") else "")
            if sub:
                if Path(sub).is_absolute() or ".." in Path(sub).parts:
                    raise VolumeError(f"invalid subPath {sub!r}")
                candidate = src / sub
                if not candidate.exists() and not candidate.is_symlink():
                    candidate.mkdir(parents=True, mode=0o775)
                    os.chown(candidate, run_uid, run.fs_group if run.fs_group is not None else run_gid)
                # Resolve now: a subPath into a Secret pins today's generation, like the kubelet.
                src = Path(os.path.realpath(candidate))
                if not str(src).startswith(os.path.realpath(volumes[vm["name"]])):
                    raise VolumeError(f"subPath {sub!r} escapes its volume")
            mounts.append(
                {
                    "source": str(src),
                    "target": os.path.normpath(vm["mountPath"]),
                    "read_only": bool(vm.get("readOnly")),
                    "is_dir": src.is_dir(),
                }
            )
        return mounts

    # ------------------------------------------------------------------ volume sync

    async def _payload(self, run: PodRun, av: AtomicVolume, cache: dict[tuple[str, str, str], Any]) -> Payload:
        ns = run.namespace
        src = av.source
        payload = Payload()
        mode = int(src.get("defaultMode", 0o644))
        if av.kind == "secret":
            obj = await self._object(cache, "secret", ns, src.get("secretName", ""))
            data = None if obj is None else decode_secret(obj)
            add_keyed(
                payload, data, src.get("items"), mode, bool(src.get("optional")), f"secret {src.get('secretName')}"
            )
        elif av.kind == "configMap":
            obj = await self._object(cache, "configmap", ns, src.get("name", ""))
            data = None if obj is None else decode_configmap(obj)
            add_keyed(payload, data, src.get("items"), mode, bool(src.get("optional")), f"configmap {src.get('name')}")
        elif av.kind == "downwardAPI":
            self._downward(run, src.get("items") or [], mode, payload)
        else:
            for proj in src.get("sources") or []:
                if "secret" in proj:
                    s = proj["secret"]
                    obj = await self._object(cache, "secret", ns, s.get("name", ""))
                    data = None if obj is None else decode_secret(obj)
                    add_keyed(payload, data, s.get("items"), mode, bool(s.get("optional")), f"secret {s.get('name')}")
                elif "configMap" in proj:
                    c = proj["configMap"]
                    obj = await self._object(cache, "configmap", ns, c.get("name", ""))
                    data = None if obj is None else decode_configmap(obj)
                    add_keyed(
                        payload, data, c.get("items"), mode, bool(c.get("optional")), f"configmap {c.get('name')}"
                    )
                elif "downwardAPI" in proj:
                    self._downward(run, proj["downwardAPI"].get("items") or [], mode, payload)
                elif "serviceAccountToken" in proj:
                    sat = proj["serviceAccountToken"]
                    payload.add(sat.get("path", "token"), await self._token(run, av, sat), mode)
                else:
                    log.warning("pod %s volume %s: unsupported projection %s", run.key, av.name, sorted(proj))
        return payload

    def _downward(self, run: PodRun, items: list[dict[str, Any]], mode: int, payload: Payload) -> None:
        container = run.pod["spec"]["containers"][0]
        for item in items:
            if "fieldRef" in item:
                value = downward_value(run.pod, item["fieldRef"]["fieldPath"])
            else:
                value = _resource_value(container, item.get("resourceFieldRef") or {})
            payload.add(item["path"], value.encode(), int(item.get("mode", mode)))

    async def _token(self, run: PodRun, av: AtomicVolume, sat: dict[str, Any]) -> bytes:
        """A bound service-account token from the TokenRequest API, renewed at 80% of its life."""
        audience = sat.get("audience") or ""
        ttl = int(sat.get("expirationSeconds") or 3607)
        cached = av.token_cache.get(audience)
        if cached and time.time() < cached[0]:
            return cached[1]
        sa = run.pod["spec"].get("serviceAccountName") or "default"
        body: dict[str, Any] = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": ttl,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": run.name, "uid": run.uid},
            },
        }
        if audience:
            body["spec"]["audiences"] = [audience]
        token = (await self.api.token(run.namespace, sa, body)).encode()
        av.token_cache[audience] = (time.time() + ttl * 0.8, token)
        return token

    async def _sync_atomic(self, run: PodRun, av: AtomicVolume, cache: dict[tuple[str, str, str], Any]) -> bool:
        payload = await self._payload(run, av, cache)
        digest = payload_digest(payload)
        if digest == av.digest:
            return False
        atomic_write(av.path, payload, run.fs_group)
        changed = bool(av.digest)
        av.digest = digest
        return changed

    async def sync_volumes(self) -> None:
        """Re-read every running pod's Secrets/ConfigMaps; write a new generation where they changed."""
        cache: dict[tuple[str, str, str], Any] = {}
        for run in list(self.runs.values()):
            if run.stopping:
                continue
            for av in run.atomic:
                try:
                    if await self._sync_atomic(run, av, cache):
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
                for member in _ns_members(run.mnt_ns):  # e.g. kernels the server left behind
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(member, signal.SIGKILL)
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
        ns = _mnt_ns(run.proc.pid)
        if ns and ns != _mnt_ns(os.getpid()):
            run.mnt_ns = ns
            record = run.pod_dir / "pid"
            with contextlib.suppress(OSError):
                record.write_text(f"{record.read_text().strip()} {ns}")

    async def stop_pod(self, run: PodRun, pod: dict[str, Any] | None = None) -> None:
        """Kill the process group (grace capped at MAX_GRACE), then remove the pod's directory."""
        run.stopping = True
        grace = float((pod or run.pod)["spec"].get("terminationGracePeriodSeconds", 30))
        grace = max(0.5, min(grace, MAX_GRACE))
        if run.proc is not None and run.proc.poll() is None:
            self._record_ns(run)
            await asyncio.to_thread(_kill_group, run.proc.pid, grace, run.mnt_ns)
        elif run.mnt_ns and _ns_members(run.mnt_ns):
            await asyncio.to_thread(_kill_group, 0, grace, run.mnt_ns)  # leftovers, e.g. kernels
        if run.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.proc.wait(timeout=5)  # reap: no zombie left behind
        shutil.rmtree(run.pod_dir, ignore_errors=True)
        self.runs.pop(run.uid, None)
        log.info("stopped pod %s", run.key)


# --------------------------------------------------------------------------- agent process


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
    parser = argparse.ArgumentParser(prog="localplatform.nodeagent")
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cfg = json.loads(args.config.read_text())
    asyncio.run(_amain(cfg))
    return 0


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
        [sys.executable, "-m", "localplatform.nodeagent", "--config", cfg_path],
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
        "label_selectors": list(LABEL_SELECTORS),
        "image_user": {"uid": IMAGE_UID, "gid": IMAGE_GID, "home": IMAGE_HOME},
        "rewrites": {"0.0.0.0": "podIP in JUPYTERHUB_SERVICE_URL and container args"},  # noqa: S104
    }


def down(state: Path) -> None:
    """Stop the agent (it stops its pods on TERM), then reap anything left and remove pod dirs."""
    paths = _paths(state)
    if paths["pidfile"].exists():
        stop_pidfile(paths["pidfile"], timeout=MAX_GRACE + 10)
    reap_orphans(paths["pods_dir"])
    (paths["agent_dir"] / "ready").unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
