"""The Python environment notebook servers run from on the local platform.

There is no container engine here, so the node agent cannot pull the notebook image; instead it
runs the container's command from this venv, which holds what the image would
(``jupyterhub-singleuser``, JupyterLab 4, ``notebook<7``, ``rucio-clients``, ``rucio-jupyterlab``,
``jupyter-server-proxy`` and TensorBoard for the web apps). What a test passing here proves holds
for the images only if the versions are theirs: every pin of the images' pip layers listed in
``IMAGE_PINS`` must be the session's too, checked before a venv is built or reused
(`check_matches_images`) and by the unit tests.
Building it takes about two minutes, so it is cached under ``~/.cache/datalake-hub/venvs/``,
keyed by a hash of ``session-requirements.txt`` (and the interpreter's version): changing a pin
builds a new venv, everything else reuses the old one.

``python -m localplatform.sessionenv`` builds it and prints its path.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .base import CACHE_DIR, PlatformError

__all__ = [
    "IMAGE_PINS",
    "IMAGE_START_COMMAND",
    "REQUIREMENTS",
    "check_matches_images",
    "ensure_pinned_venv",
    "ensure_session_venv",
    "image_pins",
    "session_python",
]

log = logging.getLogger("localplatform.sessionenv")

REQUIREMENTS = Path(__file__).with_name("session-requirements.txt")
"""Fully pinned requirements of the session venv."""

_IMAGES_COMMON = Path(__file__).resolve().parents[2] / "images" / "common"
LAB_OVERRIDES = _IMAGES_COMMON / "jupyter" / "overrides.json"
"""JupyterLab setting defaults the images install (datalake-base's Dockerfile); the venv gets the same."""
LAB_EXTENSION = _IMAGES_COMMON / "datalake_lab"
"""Our server extension (module + the config enabling it), installed as datalake-base's Dockerfile does."""
KERNEL_CONFIG = _IMAGES_COMMON / "ipython" / "ipython_kernel_config.json"
"""IPython kernel config of the images (loads the Rucio panel's kernel extension)."""

IMAGE_PINS: dict[str, frozenset[str] | None] = {
    "datalake-base/requirements.txt": None,
    "datalake-datascience/requirements.txt": frozenset({"tensorboard"}),
}
"""Image pip layers (under images/) the session runs: None takes every pin of the file, a set only
those packages (the session serves TensorBoard, not the whole data-science stack)."""

IMAGE_START = Path(__file__).with_name("image-start.sh")
"""Stand-in for the images' ENTRYPOINT (docker-stacks' start.sh running the before-notebook.d hooks)."""
IMAGE_START_COMMAND = "datalake-image-start"
"""Its name in the session venv's ``bin`` (first on the pod's PATH)."""

_INSTALL_TIMEOUT = 1200.0
"""Seconds a cold ``pip install`` may take before we give up (it takes ~2 minutes normally)."""

_READY = ".ready"
"""Marker written last, so a half-built venv (interrupted install) is never taken as ready."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a requirements file, by canonical name (comments and ranges skipped)."""
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            pins[_canonical(name.split("[", 1)[0])] = version.strip()
    return pins


def image_pins(images: Path = _IMAGES_COMMON.parent) -> dict[str, tuple[str, str]]:
    """The pins the session must share with the images: name -> (version, the file pinning it)."""
    out: dict[str, tuple[str, str]] = {}
    for rel, only in IMAGE_PINS.items():
        for name, version in _pins((images / rel).read_text()).items():
            if only is None or name in only:
                out[name] = (version, rel)
    return out


def check_matches_images(requirements: Path = REQUIREMENTS, images: Path = _IMAGES_COMMON.parent) -> None:
    """Raise PlatformError naming each image pin the session lacks or holds at another version."""
    session = _pins(requirements.read_text())
    wrong = [
        f"{name}=={version} (images/{rel}) but the session has {session.get(name, 'none')}"
        for name, (version, rel) in sorted(image_pins(images).items())
        if session.get(name) != version
    ]
    if wrong:
        raise PlatformError(f"{requirements.name} differs from the images: " + "; ".join(wrong))


def session_python() -> str:
    """The interpreter to build the venv from: pyenv's 3.12 (what the image has) if present."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    if candidates:
        return candidates[-1]
    found = shutil.which("python3")
    if not found:
        raise PlatformError("no python3 to build the session venv from")
    return found


def _interpreter_version(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip()


def _key(python: str, requirements: Path) -> str:
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(_interpreter_version(python).encode())
    return digest.hexdigest()[:16]


def ensure_session_venv(cache: Path | None = None) -> Path:
    """Return the session venv's directory, building it first if this requirements set has none."""
    target = ensure_pinned_venv("session", REQUIREMENTS, cache)
    _install_image_files(target)
    return target


def ensure_pinned_venv(prefix: str, requirements: Path, cache: Path | None = None) -> Path:
    """The venv ``<cache>/venvs/<prefix>-<hash>`` holding exactly ``requirements`` (a full freeze).

    A file lock serialises concurrent callers (two test sessions, or ``up`` racing ``make dev``).
    The venv is built in place (a venv cannot be moved: its scripts' shebangs name its path) and
    the ``.ready`` marker is written last, so an interrupted build is discarded, never used.
    """
    check_matches_images()
    python = session_python()
    root = (cache or CACHE_DIR) / "venvs"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{prefix}-{_key(python, requirements)}"
    if (target / _READY).exists():
        return target
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _READY).exists():
            return target
        building = target
        shutil.rmtree(building, ignore_errors=True)
        started = time.monotonic()
        log.info("building %s venv %s from %s (takes ~2 min)", prefix, target, python)
        try:
            subprocess.run([python, "-m", "venv", str(building)], check=True, timeout=300)
            pip = [str(building / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
            subprocess.run([*pip, "install", "--quiet", "--upgrade", "pip"], check=True, timeout=300)
            subprocess.run(
                [*pip, "install", "--quiet", "--no-deps", "-r", str(requirements)],
                check=True,
                timeout=_INSTALL_TIMEOUT,
            )
            subprocess.run([*pip, "check"], check=True, timeout=120, capture_output=True, text=True)
        except subprocess.CalledProcessError as err:
            shutil.rmtree(building, ignore_errors=True)
            detail = (err.stdout or "") + (err.stderr or "") if isinstance(err.stdout, str) else ""
            raise PlatformError(f"building the {prefix} venv failed: {err}\n{detail}") from err
        except subprocess.TimeoutExpired as err:
            shutil.rmtree(building, ignore_errors=True)
            raise PlatformError(f"building the {prefix} venv timed out: {err}") from err
        (target / _READY).write_text(f"{python}\n{requirements.read_text()}")
        log.info("%s venv ready in %.0fs", prefix, time.monotonic() - started)
    return target


def _install_image_files(venv: Path) -> None:
    """Put what the images add to Jupyter where the image has it (cheap; done on every call)."""
    (site,) = glob.glob(str(venv / "lib" / "python3.*" / "site-packages"))
    copies = {
        LAB_OVERRIDES: venv / "share" / "jupyter" / "lab" / "settings" / "overrides.json",
        LAB_EXTENSION / "datalake_lab.py": Path(site) / "datalake_lab.py",
        LAB_EXTENSION / "datalake_lab_rucio.py": Path(site) / "datalake_lab_rucio.py",
        LAB_EXTENSION / "datalake_lab_dask.py": Path(site) / "datalake_lab_dask.py",
        LAB_EXTENSION / "datalake_lab.json": venv / "etc" / "jupyter" / "jupyter_server_config.d" / "datalake_lab.json",
        # Python kernels load the Rucio panel's kernel extension ("add to notebook"), as in the images.
        KERNEL_CONFIG: venv / "etc" / "ipython" / "ipython_kernel_config.json",
        # TensorBoard's launcher command (datalake-datascience and datalake-full copy it to /usr/local/bin).
        _IMAGES_COMMON / "bin" / "datalake-tensorboard": venv / "bin" / "datalake-tensorboard",
        # The image's ENTRYPOINT (start.sh running the before-notebook.d hooks), see image-start.sh.
        IMAGE_START: venv / "bin" / IMAGE_START_COMMAND,
    }
    for hook in sorted((_IMAGES_COMMON / "before-notebook.d").glob("*.sh")):
        copies[hook] = venv / "share" / "datalake" / "before-notebook.d" / hook.name
    _link_code_server(venv)
    for src, dest in copies.items():
        wanted = src.read_bytes()
        if not dest.exists() or dest.read_bytes() != wanted:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(wanted)
            dest.chmod(src.stat().st_mode & 0o777 | 0o444)


def _link_code_server(venv: Path) -> None:
    """`code-server` on the session's PATH (the venv's bin), as the devops and full images have it."""
    from .codeserver import code_server_dir

    link, wrapper = venv / "bin" / "code-server", code_server_dir() / "bin" / "code-server"
    if wrapper.exists() and not link.is_symlink():
        link.symlink_to(wrapper)


def main() -> int:
    """Build (or find) the session venv and print its path."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        sys.stdout.write(f"{ensure_session_venv()}\n")
    except PlatformError as err:
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
