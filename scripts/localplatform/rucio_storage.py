"""The local data lake's storage: one HTTPS WebDAV server per RSE (helper of :mod:`localplatform.rucio_server`).

Why: a real lake is reached over the network, whatever the checkout's location. A ``file://`` RSE on
a host path under the platform state cannot be read from a pod (its private ``/tmp`` hides a clone
under ``/tmp``), and it does not exercise what a site runs. Rucio's ``webdav`` protocol (``https``
scheme, plain ``requests``) is spoken by the server, the notebooks' ``rucio`` CLI and rucio-jupyterlab.

The RSEs (:data:`RSES`):

- ``LOCAL_EOS``: the RSE behind the EOS mount. Its WebDAV share ``/eos/lake`` serves the directory the
  hub's settings mount at ``/eos/lake`` in notebooks, so the PFN
  ``https://127.0.0.1:<port>/eos/lake/user/alice/hello.txt`` is the file ``/eos/lake/user/alice/hello.txt``
  in a session. Users have a quota (rules made by "make available" land here) but may not upload:
  Rucio's generic permission policy lets accounts add replicas only on ``*USERDISK``/``*SCRATCHDISK`` RSEs.
- ``LOCAL_USERDISK``: WebDAV only (share ``/lake/userdisk``), user-writable with a quota; holds a sample
  dataset that is on no other RSE, so "make available" has something to replicate.

TLS: the servers present the IdP's server certificate (``127.0.0.1``/``localhost``, signed by the
platform's own CA), so anything that trusts ``info["idp"]["ca_bundle"]`` trusts the storage too.
Ports are kept per state directory, so a restart finds the RSEs' protocols in the database unchanged.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

from .base import PlatformError, free_port, spawn, stop_pidfile

__all__ = ["EOS_RSE", "HOST", "RSES", "USER_RSE", "down", "ensure_webdav_venv", "plan", "running", "up"]

log = logging.getLogger("localplatform.rucio_storage")

HERE = Path(__file__).with_name("rucio")
REQUIREMENTS = HERE / "webdav-requirements.txt"
SERVER = HERE / "webdav_server.py"
HOST = "127.0.0.1"
EOS_RSE = "LOCAL_EOS"
USER_RSE = "LOCAL_USERDISK"
RSES: dict[str, dict[str, Any]] = {
    EOS_RSE: {"share": "/eos/lake", "eos_mount": "/eos/lake", "user_upload": False},
    USER_RSE: {"share": "/lake/userdisk", "eos_mount": None, "user_upload": True},
}
"""RSE name → WebDAV share (the URL path its prefix starts with), EOS mount path, whether users upload."""
_START_TIMEOUT = 60.0


def ensure_webdav_venv(cache: Path | None = None) -> Path:
    """WsgiDAV + cheroot in a venv of their own (small; cached like the server's)."""
    from .rucio_server import build_venv

    return build_venv("rucio-webdav", REQUIREMENTS, cache)


def _proc_name(rse: str) -> str:
    return f"webdav-{rse.lower()}"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _ports(home: Path) -> dict[str, int]:
    """This state dir's ports, chosen once and kept while free (the RSE protocols name them)."""
    saved = home / "storage-ports.json"
    ports: dict[str, int] = json.loads(saved.read_text()) if saved.exists() else {}
    for rse in RSES:
        if rse not in ports or not _port_free(ports[rse]):
            ports[rse] = free_port(HOST)
    saved.write_text(json.dumps(ports, sort_keys=True))
    return ports


def _wait(url: str, ca: Path, proc_log: Path, pid: int) -> None:
    """Until the share answers over TLS trusted by the platform CA (a HEAD, as Rucio's client pings)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + _START_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, method="HEAD")  # noqa: S310 - our own https endpoint
            with urllib.request.urlopen(req, timeout=3, context=ctx) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except OSError as err:
            last = err
        try:
            Path(f"/proc/{pid}").stat()
        except FileNotFoundError:
            break
        time.sleep(0.2)
    tail = proc_log.read_text(errors="replace")[-2000:] if proc_log.exists() else ""
    raise PlatformError(f"WebDAV server for {url} did not answer ({last}); log {proc_log}:\n{tail}")


def plan(home: Path) -> dict[str, dict[str, Any]]:
    """Each RSE's endpoint: ``{rse: {url, scheme, hostname, port, prefix, dir, eos_mount, user_upload}}``.

    ``dir`` is the directory its server serves (the bootstrap writes sample files there, as on a
    storage's disk); for the EOS RSE it is also what notebooks mount at ``eos_mount``.
    """
    ports = _ports(home)
    out: dict[str, dict[str, Any]] = {}
    for rse, desc in RSES.items():
        prefix = desc["share"].rstrip("/") + "/"
        out[rse] = {
            "url": f"https://{HOST}:{ports[rse]}{prefix}",
            "scheme": "https",
            "hostname": HOST,
            "port": ports[rse],
            "prefix": prefix,
            "dir": str(home / "rse" / rse.lower()),
            "eos_mount": desc["eos_mount"],
            "user_upload": desc["user_upload"],
        }
    return out


def up(state: Path, endpoints: dict[str, dict[str, Any]], tls: tuple[Path, Path, Path]) -> dict[str, dict[str, Any]]:
    """Start one WebDAV server per planned endpoint (``tls`` is ``(ca, cert, key)``); add ``pid``, ``log``."""
    venv = ensure_webdav_venv()
    ca, cert, key = tls
    out: dict[str, dict[str, Any]] = {}
    try:
        for rse, endpoint in endpoints.items():
            Path(endpoint["dir"]).mkdir(parents=True, exist_ok=True)
            config = {
                "host": endpoint["hostname"],
                "port": endpoint["port"],
                "cert": str(cert),
                "key": str(key),
                "share": endpoint["prefix"],
                "root": endpoint["dir"],
            }
            cfg = Path(endpoint["dir"]).parent.parent / f"{_proc_name(rse)}.json"
            cfg.write_text(json.dumps(config, indent=2))
            proc = spawn(_proc_name(rse), [venv / "bin" / "python", SERVER, cfg], state, cwd=cfg.parent)
            out[rse] = {**endpoint, "pid": proc.pid, "log": str(proc.log)}
        for section in out.values():
            _wait(section["url"], ca, Path(section["log"]), int(section["pid"]))
    except BaseException:
        down(state, list(out))
        raise
    return out


def running(endpoints: dict[str, dict[str, Any]]) -> bool:
    """Whether every endpoint's server process (as recorded by :func:`up`) is still alive."""
    return all(Path(f"/proc/{int(e.get('pid', 0))}").exists() for e in endpoints.values()) and bool(endpoints)


def down(state: Path, rses: list[str] | None = None) -> None:
    """Stop the WebDAV servers this state dir started (by PID)."""
    for rse in rses if rses is not None else list(RSES):
        stop_pidfile(state / "pids" / f"{_proc_name(rse)}.pid")
