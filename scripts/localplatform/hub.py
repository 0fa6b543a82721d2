"""Run the hub under test (or for `make dev`) as a local process against the local platform.

The hub gets what the chart would give it in a cluster: a settings file (the `datalake:` block,
here filled with the platform's IdP issuer, Rucio URL and paths), a profiles directory, the IAM
client secret as a file, the auth-state key in its environment, and the hub ServiceAccount's
kubeconfig (so RBAC is really enforced). Several hubs can run at once, each with its own name,
ports, database and OAuth client.

The proxy runs apart from the hub, as z2jh runs it (its own ``proxy`` Deployment): the platform
starts configurable-http-proxy itself (``proxy-<name>``, with the default and error targets
pointing at the hub), and the hub only talks to its REST API (``should_start = False``) with the
token the platform gives both. So the hub can stop and start again (:func:`stop_hub` with
``keep_proxy=True``, then :func:`resume_hub`; or :func:`restart_hub`) while sessions stay
reachable through the proxy; the hub, back, finds its servers in its database and the routes.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .base import REPO_ROOT, Proc, free_port, spawn, stop_pidfile, wait_http, write_json
from .controlplane import kubectl
from .cull import culler_service

__all__ = [
    "HubHandle",
    "local_rucio_instance",
    "local_settings",
    "restart_hub",
    "resume_hub",
    "start_hub",
    "start_proxy",
    "stop_hub",
]

log = logging.getLogger(__name__)

CONFIG_FILE = Path(__file__).with_name("hub_local_config.py")


@dataclass(frozen=True)
class HubHandle:
    """A running local hub."""

    name: str
    url: str
    """Public URL (through configurable-http-proxy), e.g. http://127.0.0.1:PORT/."""
    api_url: str
    service_token: str
    """Admin-scoped service token for tests (never a user token)."""
    dir: Path
    settings_file: Path
    profiles_dir: Path
    log: Path
    client_id: str


NFS_PV = """
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {pv}}}
spec:
  capacity: {{storage: 100Gi}}
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  nfs: {{server: {server}, path: {path}}}
  claimRef: {{namespace: {ns}, name: {claim}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {claim}, namespace: {ns}}}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: ""
  volumeName: {pv}
  resources: {{requests: {{storage: 100Gi}}}}
"""


def local_settings(info: dict[str, Any], *, client_id: str, secret_file: Path, profiles_dir: Path) -> dict[str, Any]:
    """The `datalake:` block for the local platform (what an operator writes in values)."""
    idp = info["idp"]
    rucio = info.get("rucio_server")
    settings: dict[str, Any] = {
        "site_name": "datalake-hub (local)",
        "iam": {
            "issuer": idp["issuer"],
            "client_id": client_id,
            "client_secret": {"file": str(secret_file)},
            "allowed_groups": ["escape"],
            "admin_groups": ["escape/admins"],
            "ca_bundle": idp["ca_bundle"],
            "extra_authorize_params": {"prompt": "consent"},
            "logout_at_idp": True,
            "discovery_retries": 3,
            "discovery_timeout_seconds": 5,
        },
        "storage": {
            "home": {"type": "static-nfs", "nfs": {"server": "nfs.local", "path": "/exports/home"}},
            "scratch": [{"name": "scratch", "size_limit": "5Gi"}],
        },
        "profiles": {"directory": str(profiles_dir), "reload_seconds": 2},
        "announcement": {"text": "Local development hub: data and servers are throwaway.", "level": "info"},
    }
    if rucio:
        # The RSE behind the EOS mount, described as a site would: the directory its WebDAV server
        # serves is what the mount shows, the EOS path `/eos/lake` that its PFNs carry
        # (https://host:port/eos/lake/<scope path>). The Rucio panel's replica-mode paths are
        # derived from these: profiles mounting `eos` read its files in place.
        eos = rucio["rses"][rucio["rse"]]
        settings["storage"]["eos"] = [
            {"name": "eos", "host_path": eos["dir"], "eos_path": _eos_path(eos), "mount_path": eos["eos_mount"]}
        ]
        settings["rucio"] = {"instances": [local_rucio_instance(info)]}
    else:
        settings["storage"]["eos"] = [
            {"name": "eos", "host_path": str(Path(info["_state"]) / "eos"), "mount_path": "/eos"}
        ]
    settings["storage"]["cvmfs"] = {"name": "cvmfs", "host_path": str(Path(info["_state"]) / "cvmfs")}
    return settings


def _eos_path(endpoint: dict[str, Any]) -> str:
    """The path the EOS RSE's PFNs carry (its WebDAV prefix, e.g. ``/eos/lake``)."""
    return "/" + str(endpoint["prefix"]).strip("/")


def local_rucio_instance(info: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The local Rucio server as a settings instance, with the account mapping an ESCAPE site uses:
    the IdP's `rucio_account` claim where it sends one (dave.smith -> dsmith), else the hub username
    made into a Rucio account (erin.jones -> erin_jones)."""
    rucio = info["rucio_server"]
    instance: dict[str, Any] = {
        "name": "local",
        "display_name": "Local Rucio",
        "rucio_host": rucio["url"],
        "auth_host": rucio["auth_url"],
        "ca_cert": info["idp"]["ca_bundle"],
        "account_claim": "rucio_account",
        "account_template": "{username}",
        "account_transforms": ["lowercase", {"replace": {".": "_"}}, "drop_invalid", "truncate"],
        "extension": {
            "destination_rse": rucio["rse"],
            "rse_mount": "eos",
            "rse_prefix": _eos_path(rucio["rses"][rucio["rse"]]),
        },
    }
    return {**instance, **overrides}


def _ensure_home_claim(info: dict[str, Any]) -> None:
    cp = info["controlplane"]
    manifest = NFS_PV.format(
        pv=f"datalake-home-{cp['namespace']}",
        server="nfs.local",
        path="/exports/home",
        ns=cp["namespace"],
        claim="datalake-home",
    )
    kubectl(cp["kubeconfig"], "apply", "-f", "-", input_text=manifest)


def _register_client(info: dict[str, Any], d: Path, name: str, public_url: str, ttl: int | None) -> tuple[str, Path]:
    """A confidential IdP client of this hub's own (its callback, its token lifetime); the secret
    goes to a 0600 file, as the chart mounts it from a Secret."""
    from .idp import register_client

    client_id = f"datalake-hub-{name}"
    client_secret = secrets.token_urlsafe(32)
    register_client(
        info,
        client_id,
        client_secret,
        [f"{public_url}hub/oauth_callback"],
        access_token_ttl=ttl,
        post_logout_redirect_uris=[public_url],
    )
    secret_file = d / "iam-client-secret"
    secret_file.write_text(client_secret)
    secret_file.chmod(0o600)
    return client_id, secret_file


def _profiles(d: Path, profiles_src: Path | None, copy_profiles: bool) -> Path:
    """The hub's profile directory: a copy tests may edit, or a link to the source (``make dev``)."""
    profiles_dir = d / "profiles"
    src = profiles_src or REPO_ROOT / "profiles"
    if copy_profiles:
        shutil.copytree(src, profiles_dir)
    else:
        profiles_dir.symlink_to(src.resolve())
    return profiles_dir


def _write_run(d: Path, info: dict[str, Any], public_url: str, cull: dict[str, Any] | None = None) -> tuple[Path, str]:
    """What ``hub_local_config`` needs that the chart would not give (ports, the proxy's API and
    token, pid file, the idle culler as z2jh's ``cull`` values make it); 0600, as it holds the
    admin service token. Returns the file and that token."""
    service_token = secrets.token_hex(32)
    hub_bind_url = f"http://127.0.0.1:{free_port()}"
    culler = culler_service(cull or {}, f"{hub_bind_url}/hub/api", sys.executable)
    run = {
        "public_url": public_url,
        "hub_bind_url": hub_bind_url,
        "proxy_api_url": f"http://127.0.0.1:{free_port()}",
        "db_url": f"sqlite:///{d / 'jupyterhub.sqlite'}",
        "cookie_secret_file": str(d / "cookie_secret"),
        "pid_file": str(d / "jupyterhub.pid"),
        "proxy_auth_token": secrets.token_hex(32),
        "node": info["idp"]["node"],
        "chp": info["idp"]["chp"],
        "namespace": info["controlplane"]["namespace"],
        "service_token": service_token,
        "culler": {"service": culler[0], "role": culler[1]} if culler else None,
    }
    prometheus = info.get("prometheus")
    if prometheus:  # the platform's Prometheus scrapes /hub/metrics with this token (scope read:metrics)
        run["metrics_token"] = Path(prometheus["token_file"]).read_text().strip()
    run_file = d / "run.json"
    write_json(run_file, run)
    run_file.chmod(0o600)
    return run_file, service_token


def start_hub(
    state: Path,
    info: dict[str, Any],
    *,
    name: str = "hub",
    settings_patch: dict[str, Any] | None = None,
    profiles_src: Path | None = None,
    access_token_ttl: int | None = None,
    port: int | None = None,
    copy_profiles: bool = True,
    cull: dict[str, Any] | None = None,
) -> HubHandle:
    """Start a hub named ``name``; ``settings_patch`` is deep-merged over the local settings.

    ``cull`` is z2jh's ``cull:`` block (``timeout``, ``every``, ``adminUsers``, ...) over z2jh's
    defaults: the idle culler runs beside the hub as it does in a cluster (:mod:`localplatform.cull`).
    """
    d = state / "hubs" / name
    if d.exists():
        stop_hub(state, name)
        shutil.rmtree(d)
    d.mkdir(parents=True)
    info = {**info, "_state": str(state)}
    for sub in ("eos", "cvmfs"):
        (state / sub).mkdir(exist_ok=True)
    public_port = port or free_port()
    public_url = f"http://127.0.0.1:{public_port}/"
    client_id, secret_file = _register_client(info, d, name, public_url, access_token_ttl)
    profiles_dir = _profiles(d, profiles_src, copy_profiles)
    settings = local_settings(info, client_id=client_id, secret_file=secret_file, profiles_dir=profiles_dir)
    settings["iam"]["post_logout_redirect_url"] = public_url
    if settings_patch:
        settings = _merge(settings, settings_patch)
    settings_file = d / "settings.yaml"
    settings_file.write_text(yaml.safe_dump(settings, sort_keys=False))
    _ensure_home_claim(info)
    run_file, service_token = _write_run(d, info, public_url, cull)
    env = {
        "DATALAKE_LOCAL_HUB": str(run_file),
        "DATALAKE_SETTINGS": str(settings_file),
        "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),
        "KUBECONFIG": info["controlplane"]["hub_kubeconfig"],
        "PYTHONPATH": str(REPO_ROOT),
        # As in the z2jh hub image, which does not set it: a PYTHONDONTWRITEBYTECODE inherited from
        # the developer's shell would turn off hub_config's bytecode cache (hub_config/_bytecode.py).
        "PYTHONDONTWRITEBYTECODE": "",
    }
    # What starting the hub again needs (the same auth-state key above all); 0600, like run.json.
    launch = d / "launch.json"
    write_json(launch, {"argv": [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG_FILE)], "env": env})
    launch.chmod(0o600)
    start_proxy(state, name)
    proc = resume_hub(state, name)
    if info.get("prometheus"):
        from .prometheus import add_target

        add_target(info["prometheus"], name, f"127.0.0.1:{public_port}")
    return HubHandle(
        name=name,
        url=public_url,
        api_url=f"{public_url}hub/api",
        service_token=service_token,
        dir=d,
        settings_file=settings_file,
        profiles_dir=profiles_dir,
        log=proc.log,
        client_id=client_id,
    )


def start_proxy(state: Path, name: str = "hub") -> Proc:
    """Start hub ``name``'s configurable-http-proxy as its own process (``proxy-<name>``), as z2jh
    runs it: public port, API port, the hub as default target and its error page as error target."""
    run = json.loads((state / "hubs" / name / "run.json").read_text())
    public, api = urlsplit(run["public_url"]), urlsplit(run["proxy_api_url"])
    argv = [
        run["node"],
        run["chp"],
        f"--ip={public.hostname}",
        f"--port={public.port}",
        f"--api-ip={api.hostname}",
        f"--api-port={api.port}",
        f"--default-target={run['hub_bind_url']}",
        f"--error-target={run['hub_bind_url']}/hub/error",
        "--log-level=warn",
    ]
    proc = spawn(f"proxy-{name}", argv, state, env={"CONFIGPROXY_AUTH_TOKEN": run["proxy_auth_token"]})
    # Without the token the API answers 403: it is listening.
    wait_http(f"proxy {name}", f"{run['proxy_api_url']}/api/routes", timeout=30, proc=proc)
    return proc


def resume_hub(state: Path, name: str = "hub", timeout: float = 90) -> Proc:
    """Start hub ``name``'s process (again) with the run :func:`start_hub` prepared — same ports,
    database, cookie secret and auth-state key — behind its running proxy; wait until healthy."""
    launch = json.loads((state / "hubs" / name / "launch.json").read_text())
    run = json.loads((state / "hubs" / name / "run.json").read_text())
    proc = spawn(f"hub-{name}", launch["argv"], state, env=launch["env"], cwd=state / "hubs" / name)
    started = time.monotonic()
    url = f"{run['public_url']}hub/health"
    wait_http(f"hub {name}", url, timeout=timeout, proc=proc, ok_status=lambda s: s == 200)
    log.info("hub %s up at %s in %.1fs", name, run["public_url"], time.monotonic() - started)
    return proc


def restart_hub(state: Path, name: str = "hub") -> Proc:
    """Restart hub ``name`` as Kubernetes restarts the hub pod: the proxy keeps serving sessions."""
    stop_hub(state, name, keep_proxy=True)
    return resume_hub(state, name)


def stop_hub(state: Path, name: str = "hub", *, keep_proxy: bool = False) -> None:
    """Stop the hub and, unless ``keep_proxy``, its proxy (both by PID)."""
    stop_pidfile(state / "pids" / f"hub-{name}.pid", children=True)
    if keep_proxy:
        return
    stop_pidfile(state / "pids" / f"proxy-{name}.pid")
    from .prometheus import remove_target

    remove_target(state, name)
    legacy = state / "hubs" / name / "proxy.pid"  # a proxy the hub itself started, before it ran apart
    if legacy.exists():
        stop_pidfile(legacy)


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def hub_log_text(handle: HubHandle) -> str:
    """The hub's log so far (for assertions and the secret scan)."""
    try:
        return handle.log.read_text(errors="replace")
    except OSError:
        return ""
