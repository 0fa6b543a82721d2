"""A real Prometheus (Debian's package) scraping the local hubs' `/hub/metrics`, with our alert rules.

Why real: the metrics, the rules and the dashboard's queries are only proven when a Prometheus
parses the hub's exposition, stores the series and answers PromQL about them. Debian's
``prometheus`` package brings ``prometheus`` and ``promtool`` (2.42); its ``.deb`` is fetched with
``apt-get download`` and unpacked into ``~/.cache/datalake-hub`` (no service is installed or
started, nothing outside the cache changes), so `make prepare` installs it and the unit tests find
``promtool`` there.

One Prometheus per platform scrapes every hub started on it: :mod:`localplatform.hub` writes a
file-discovery target per hub (``targets/<hub>.json``) and registers the platform's metrics token
as a hub service with the ``read:metrics`` scope, as a site gives its Prometheus a token (see
docs/operator.md). It listens on loopback only, keeps 2 hours of data, and is stopped by PID.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .base import CACHE_DIR, REPO_ROOT, PlatformError, free_port, spawn, stop_pidfile, wait_http

__all__ = ["NAME", "RULES_FILE", "down", "ensure_prometheus", "promtool", "query", "up"]

log = logging.getLogger("localplatform.prometheus")

NAME = "prometheus"
PACKAGE = "prometheus"
"""Debian's package (bookworm: 2.42.0)."""
RULES_FILE = REPO_ROOT / "chart" / "files" / "alerts" / "datalake-hub.rules.yaml"
"""The alert rules the chart ships; the platform's Prometheus evaluates them too."""
SCRAPE_SECONDS = 2
_INSTALL = CACHE_DIR / "prometheus-deb"
_APT_TIMEOUT = 600.0


def _binaries() -> tuple[Path, Path]:
    return _INSTALL / "bin" / "prometheus", _INSTALL / "bin" / "promtool"


def _runs(binary: Path) -> bool:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, timeout=30, check=False)
    except OSError:
        return False
    return done.returncode == 0


def _apt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    prefix = [] if os.geteuid() == 0 or args[0] == "download" else ["sudo", "-n"]
    return subprocess.run(
        [*prefix, "apt-get", *args], capture_output=True, text=True, timeout=_APT_TIMEOUT, env=env, cwd=cwd, check=False
    )


def ensure_prometheus() -> Path:
    """The directory holding ``bin/prometheus`` and ``bin/promtool``, unpacked from Debian's package once."""
    prometheus, tool = _binaries()
    if _runs(prometheus) and _runs(tool):
        return _INSTALL
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise PlatformError("Prometheus is missing and this is not a Debian-like system: install `prometheus`")
    with tempfile.TemporaryDirectory(prefix="prometheus-deb-") as tmp:
        work = Path(tmp)
        got = _apt("download", "-q", PACKAGE, cwd=work)
        if got.returncode != 0:  # package lists absent or stale on a fresh machine
            _apt("update", "-q", cwd=work)
            got = _apt("download", "-q", PACKAGE, cwd=work)
        debs = sorted(work.glob(f"{PACKAGE}_*.deb"))
        if got.returncode != 0 or not debs:
            tail = " / ".join((got.stderr or got.stdout).strip().splitlines()[-3:])
            raise PlatformError(f"`apt-get download {PACKAGE}` failed ({got.returncode}): {tail}")
        tree = work / "tree"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tree)], check=True, timeout=300)
        staged = work / "install" / "bin"
        staged.mkdir(parents=True)
        for name in ("prometheus", "promtool"):
            shutil.copy2(tree / "usr" / "bin" / name, staged / name)
        (staged.parent / "VERSION").write_text(debs[0].name + "\n")
        shutil.rmtree(_INSTALL, ignore_errors=True)
        _INSTALL.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged.parent), _INSTALL)
    if not (_runs(prometheus) and _runs(tool)):
        raise PlatformError(f"Prometheus unpacked into {_INSTALL} but does not run")
    log.info("Prometheus from %s ready in %s", (_INSTALL / "VERSION").read_text().strip(), _INSTALL)
    return _INSTALL


def promtool() -> Path:
    """``promtool`` (installed by :func:`ensure_prometheus` if missing)."""
    return ensure_prometheus() / "bin" / "promtool"


def _paths(state: Path) -> dict[str, Path]:
    root = state / NAME
    return {
        "root": root,
        "config": root / "prometheus.yml",
        "data": root / "data",
        "targets": root / "targets",
        "token": root / "metrics-token",
        "section": root / "section.json",
        "pidfile": state / "pids" / f"{NAME}.pid",
    }


def _config(paths: dict[str, Path]) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [
            {
                "job_name": "datalake-hub",
                "metrics_path": "/hub/metrics",
                "authorization": {"type": "Bearer", "credentials_file": str(paths["token"])},
                "file_sd_configs": [{"files": [str(paths["targets"] / "*.json")], "refresh_interval": "5s"}],
            }
        ],
    }


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:  # noqa: S310 - loopback
            return bool(resp.status == 200)
    except OSError:
        return False


def up(state: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Start Prometheus (or keep the running one); return the ``prometheus`` section of ``platform.json``."""
    paths = _paths(state)
    if paths["section"].exists() and paths["pidfile"].exists():
        section: dict[str, Any] = json.loads(paths["section"].read_text())
        if _ready(section["url"]):
            log.info("prometheus already up at %s", section["url"])
            return section
    down(state)
    install = ensure_prometheus()
    paths["targets"].mkdir(parents=True, exist_ok=True)
    shutil.rmtree(paths["data"], ignore_errors=True)  # each start is empty: no series of an earlier run's hubs
    paths["data"].mkdir(parents=True)
    if not paths["token"].exists():
        paths["token"].write_text(secrets.token_hex(32))
        paths["token"].chmod(0o600)
    paths["config"].write_text(yaml.safe_dump(_config(paths), sort_keys=False))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    proc = spawn(
        NAME,
        [
            install / "bin" / "prometheus",
            f"--config.file={paths['config']}",
            f"--storage.tsdb.path={paths['data']}",
            "--storage.tsdb.retention.time=2h",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        state,
    )
    wait_http("prometheus", f"{url}/-/ready", timeout=60, proc=proc, ok_status=lambda s: s == 200)
    section = {
        "url": url,
        "targets_dir": str(paths["targets"]),
        "token_file": str(paths["token"]),
        "rules_file": str(RULES_FILE),
        "scrape_seconds": SCRAPE_SECONDS,
    }
    paths["section"].write_text(json.dumps(section, indent=2))
    log.info("prometheus up at %s in %.1fs", url, time.monotonic() - started)
    return section


def down(state: Path) -> None:
    """Stop the Prometheus this state directory's ``up`` started (by PID); its data stays for post-mortems
    until the next start."""
    stop_pidfile(_paths(state)["pidfile"])
    _paths(state)["section"].unlink(missing_ok=True)


def add_target(section: dict[str, Any], hub: str, address: str) -> None:
    """Scrape hub ``hub`` at ``address`` (host:port of its public URL) from now on."""
    target = Path(section["targets_dir"]) / f"{hub}.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": [address], "labels": {"hub": hub}}]))
    tmp.replace(target)


def remove_target(state: Path, hub: str) -> None:
    (_paths(state)["targets"] / f"{hub}.json").unlink(missing_ok=True)


def query(section: dict[str, Any], promql: str) -> list[dict[str, Any]]:
    """An instant PromQL query: the result vector (raises :class:`PlatformError` on a bad query)."""
    url = f"{section['url']}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
            body = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raise PlatformError(f"PromQL {promql!r}: HTTP {err.code}: {err.read()[:300]!r}") from None
    if body.get("status") != "success":
        raise PlatformError(f"PromQL {promql!r}: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result
