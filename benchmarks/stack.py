"""The benchmark's own local platform and its two hubs: ours and a plain baseline.

Why a separate state directory: benchmarks run while tests use the default one, and must never
stop or reuse their processes. Why no Rucio server: nothing measured here talks to Rucio (the hub
only exchanges tokens at the IdP and writes Secrets), and bootstrapping a thousand accounts would
only slow the set-up. The Rucio instance our hub is configured with is therefore a placeholder URL.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from localplatform import base, platform_down
from localplatform import hub as lphub
from localplatform.base import write_json

__all__ = [
    "BENCH_DIR",
    "Kube",
    "bench_users",
    "bring_up",
    "client_ca",
    "hub_pid",
    "start_bench_hub",
    "state",
    "stop_bench_hub",
    "tear_down",
]

log = logging.getLogger("benchmarks")

BENCH_DIR = Path(__file__).resolve().parent
HUB_CONFIG = BENCH_DIR / "hub_config_bench.py"
RESPONDER = BENCH_DIR / "responder.py"
PROFILES = BENCH_DIR / "profiles"
COMPONENTS = ("controlplane", "kwok", "idp", "nodeagent")
"""The platform minus the Rucio server (see the module docstring)."""


def state() -> Path:
    """``$DATALAKE_BENCH_STATE`` (default outside the checkout), exported as the platform's state dir."""
    path = Path(os.environ.get("DATALAKE_BENCH_STATE", "/var/tmp/datalake-bench"))
    os.environ["DATALAKE_PLATFORM_STATE"] = str(path)
    return base.state_dir(path)


def bench_users(n: int) -> list[dict[str, Any]]:
    """``n`` IdP users in group ``escape`` (benchmark accounts; the passwords protect nothing)."""
    return [
        {
            "username": f"bench{i:04d}",
            "password": f"bench{i:04d}-pw",
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"datalake-bench/{i}")),
            "name": f"Bench User {i}",
            "given_name": "Bench",
            "family_name": f"User{i}",
            "email": f"bench{i:04d}@escape.test",
            "groups": ["escape"],
        }
        for i in range(1, n + 1)
    ]


def bring_up(root: Path, n_users: int) -> dict[str, Any]:
    """Start control plane, kwok, IdP (with ``n_users`` bench users) and node agent in ``root``."""
    users_file = root / "bench-users.json"
    users_file.write_text(json.dumps({"users": bench_users(n_users)}))
    os.environ["DATALAKE_IDP_USERS"] = str(users_file)
    idp_cfg = root / "idp" / "config.json"
    if idp_cfg.exists():  # a previous run's users file sticks otherwise
        cfg = json.loads(idp_cfg.read_text())
        cfg["users_file"] = str(users_file)
        idp_cfg.write_text(json.dumps(cfg))
    # The test IdP rewrites its whole JSON token store on every change; a store left by an earlier
    # run (refresh tokens live 14 days) would slow every login and refresh of this one.
    (root / "idp" / "store.json").unlink(missing_ok=True)
    info: dict[str, Any] = {}
    for name in COMPONENTS:
        info[name] = importlib.import_module(f"localplatform.{name}").up(root, info)
        write_json(root / "platform.json", info)
        log.info("platform: %s up", name)
    return info


def tear_down(root: Path) -> None:
    """Stop hubs and components this run started (by PID, via the platform's own ``down``)."""
    platform_down(root)


def client_ca(info: dict[str, Any]) -> str:
    """What the load generator trusts: the IdP's CA alone, not the 450 kB system bundle.

    requests re-reads its ``verify`` file for every new connection; with the system bundle that
    was ~50 ms of CPU per simulated browser login, and the 8 client processes (on the same 2
    cores as the hubs) became the bottleneck of the logins figure. The hubs keep the full bundle.
    """
    return str(info["idp"]["ca"])


def bench_rucio_instance(info: dict[str, Any]) -> dict[str, Any]:
    """The Rucio instance every benchmark hub is configured with (its server is never called)."""
    return {
        "name": "bench",
        "display_name": "Bench Rucio",
        "rucio_host": "https://127.0.0.1:9/",
        "auth_host": "https://127.0.0.1:9/",
        "ca_cert": info["idp"]["ca_bundle"],
    }


def _settings_patch(info: dict[str, Any]) -> dict[str, Any]:
    return {"rucio": {"instances": [bench_rucio_instance(info)]}}


@contextmanager
def _config_file(path: Path) -> Iterator[None]:
    saved = lphub.CONFIG_FILE
    lphub.CONFIG_FILE = path
    try:
        yield
    finally:
        lphub.CONFIG_FILE = saved


def start_bench_hub(
    root: Path,
    info: dict[str, Any],
    kind: str,
    *,
    profiles: Path = PROFILES,
    baseline_profiles: Path | None = None,
) -> lphub.HubHandle:
    """Start hub ``kind`` ("ours" or "baseline") through ``localplatform.hub.start_hub``.

    Both get the same proxy, IdP, namespace, node agent and the minimal responder as the pod
    command; ``hub_config_bench.py`` picks our whole configuration or the stock classes. The
    hub inherits this process's environment, which is how the kind reaches the config file.
    """
    os.environ["DATALAKE_BENCH_KIND"] = kind
    os.environ["DATALAKE_BENCH_RESPONDER"] = str(RESPONDER)
    if baseline_profiles is not None:
        os.environ["DATALAKE_BENCH_PROFILE_LIST"] = str(baseline_profiles)
    with _config_file(HUB_CONFIG):
        return lphub.start_hub(
            root, {**info, "_state": str(root)}, name=kind, settings_patch=_settings_patch(info), profiles_src=profiles
        )


def stop_bench_hub(root: Path, kind: str) -> None:
    """Stop hub ``kind`` and its proxy."""
    lphub.stop_hub(root, kind)


def hub_pid(root: Path, kind: str) -> int:
    """PID of the hub process (the spawned ``python -m jupyterhub`` itself)."""
    return int((root / "pids" / f"hub-{kind}.pid").read_text().strip())


class Kube:
    """Minimal admin client for the API server: list pods, delete notebook pods, read /metrics."""

    def __init__(self, info: dict[str, Any]) -> None:
        cfg = json.loads(Path(info["controlplane"]["kubeconfig"]).read_text())
        self.server = cfg["clusters"][0]["cluster"]["server"]
        self.session = requests.Session()
        self.ca = cfg["clusters"][0]["cluster"]["certificate-authority"]
        user = cfg["users"][0]["user"]
        self.session.cert = (user["client-certificate"], user["client-key"])
        self.namespace = info["controlplane"]["namespace"]

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """``verify`` per call: requests lets ``$REQUESTS_CA_BUNDLE`` override a session's own."""
        return self.session.request(method, f"{self.server}{path}", verify=self.ca, timeout=60, **kwargs)

    def notebook_pods(self) -> list[dict[str, Any]]:
        url = f"/api/v1/namespaces/{self.namespace}/pods"
        resp = self.request("GET", url, params={"labelSelector": "component=singleuser-server"})
        resp.raise_for_status()
        items: list[dict[str, Any]] = resp.json()["items"]
        return items

    def delete_notebook_pods(self) -> None:
        url = f"/api/v1/namespaces/{self.namespace}/pods"
        self.request("DELETE", url, params={"labelSelector": "component=singleuser-server", "gracePeriodSeconds": "0"})

    def delete_secrets(self, selector: str) -> None:
        self.request("DELETE", f"/api/v1/namespaces/{self.namespace}/secrets", params={"labelSelector": selector})

    def request_counts(self, resource: str = "secrets") -> dict[str, float]:
        """``apiserver_request_total`` for ``resource``, summed by ``"VERB code"``."""
        resp = self.request("GET", "/metrics")
        resp.raise_for_status()
        out: dict[str, float] = {}
        for line in resp.text.splitlines():
            if not line.startswith("apiserver_request_total{") or f'resource="{resource}"' not in line:
                continue
            labels, _, value = line.rpartition(" ")
            verb = labels.split('verb="', 1)[1].split('"', 1)[0]
            code = labels.split('code="', 1)[1].split('"', 1)[0] if 'code="' in labels else "?"
            out[f"{verb} {code}"] = out.get(f"{verb} {code}", 0.0) + float(value)
        return out
