"""Debian's Chromium for the browser tests (tests/e2e): installed by `make prepare`, never downloaded.

Playwright drives it through ``executable_path``; Playwright's own browser download is never used
(these machines reach package registries, not release pages). On a machine without the package,
``apt-get`` installs it when we are root (or have password-less sudo); otherwise the error says
which command an admin must run.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

from .base import PlatformError

__all__ = ["PACKAGES", "apt_install", "chromium_path", "ensure_chromium"]

log = logging.getLogger("localplatform.browser")

PACKAGES = ("chromium", "fonts-dejavu-core")
"""The browser and a font, so screenshots show text as users see it."""
_NAMES = ("chromium", "chromium-browser")
_APT_TIMEOUT = 1200.0


def chromium_path() -> str | None:
    """The Chromium binary on PATH (or ``$DATALAKE_CHROMIUM``), if any."""
    explicit = os.environ.get("DATALAKE_CHROMIUM")
    if explicit:
        return explicit
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def apt_install(packages: tuple[str, ...], why: str, *, recommends: bool = True) -> None:
    """Install Debian ``packages`` (needed for ``why``) with apt-get, as root or password-less sudo.

    ``recommends=False`` installs what the packages need and no more, as an image's apt layer does.
    """
    if not shutil.which("apt-get"):
        raise PlatformError(f"{why} needs the Debian packages {' '.join(packages)}: install them")
    log.info("installing %s with apt-get (for %s)", " ".join(packages), why)
    _apt("update", "-q", packages=packages)
    extra = () if recommends else ("--no-install-recommends",)
    _apt("install", "-y", "-q", *extra, *packages, packages=packages)


def _apt(*args: str, packages: tuple[str, ...] = PACKAGES) -> None:
    prefix: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise PlatformError(f"missing packages: run `apt-get install {' '.join(packages)}` as root")
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = [*prefix, "apt-get", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=_APT_TIMEOUT, env=env, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise PlatformError(f"`{' '.join(cmd)}` failed ({result.returncode}): " + " / ".join(tail))


def ensure_chromium() -> str:
    """Return Chromium's path, installing Debian's package first if it is absent."""
    found = chromium_path()
    if found:
        return found
    if not shutil.which("apt-get"):
        raise PlatformError("Chromium is missing and this is not a Debian-like system: install Chromium")
    log.info("installing %s with apt-get", " ".join(PACKAGES))
    _apt("update", "-q")
    _apt("install", "-y", "-q", *PACKAGES)
    found = chromium_path()
    if not found:
        raise PlatformError("apt-get installed chromium but no chromium binary is on PATH")
    return found
