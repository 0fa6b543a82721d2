"""The notebook images' Debian packages on the local platform (R and IRkernel for datalake-datascience).

An image's apt layer installs the packages its ``apt`` files list (images/family.toml). The node
agent has no image to pull, so `make prepare` installs the same packages on this machine from the
same files (`ensure_image_packages`), and pods see them at the same paths: ``/usr/bin/R``, and the
``ir`` kernelspec Debian's r-cran-irkernel registers system-wide in ``/usr/share/jupyter/kernels``.

The host has one ``/usr`` for every pod, but only some images ship these packages. So a pod of an
image without them must not see the kernelspecs they add: `hidden_kernelspecs` names those
directories (found with ``dpkg -L``, not hard-coded), and the node agent covers each with an empty
directory in that pod's mount namespace, so Jupyter there lists no R kernel, as in that image.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

from .base import PlatformError
from .browser import apt_install
from .nodeagent_env import IMAGES_DIR

__all__ = ["KERNELS_DIR", "apt_packages", "ensure_image_packages", "hidden_kernelspecs", "missing_packages"]

KERNELS_DIR = Path("/usr/share/jupyter/kernels")
"""Where Debian's Jupyter kernel packages register their kernelspecs (in Jupyter's system path)."""
_DPKG_TIMEOUT = 60.0


def apt_packages(image: str | None = None, images: Path = IMAGES_DIR) -> tuple[str, ...]:
    """The packages ``image``'s apt files list (an image not in the family has none); every image's if None."""
    family = tomllib.loads((images / "family.toml").read_text())
    files: list[str] = []
    for entry in family["image"]:
        if image is None or entry["name"] == image:
            files.extend(f for f in entry.get("apt", []) if f not in files)
    packages: list[str] = []
    for rel in files:
        for raw in (images / rel).read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if line and line not in packages:
                packages.append(line)
    return tuple(packages)


def missing_packages(packages: tuple[str, ...]) -> list[str]:
    """Those of ``packages`` dpkg does not have installed."""
    if not packages:
        return []
    if not shutil.which("dpkg-query"):
        return list(packages)
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *packages],
        capture_output=True,
        text=True,
        timeout=_DPKG_TIMEOUT,
        check=False,
    )
    installed = {line.split()[0] for line in result.stdout.splitlines() if line.endswith(" installed")}
    return [p for p in packages if p not in installed]


def ensure_image_packages() -> None:
    """Install the family's Debian packages with apt-get unless dpkg already has them all."""
    packages = apt_packages()
    missing = missing_packages(packages)
    if missing:
        apt_install(tuple(missing), "the notebook images' apt layers (R and its Jupyter kernel)", recommends=False)
    still = missing_packages(packages)
    if still:
        raise PlatformError(f"apt-get ran but {' '.join(still)} is still not installed")


def hidden_kernelspecs(image: str, images: Path = IMAGES_DIR) -> list[Path]:
    """Kernelspec directories that family packages ``image`` does not ship put in `KERNELS_DIR`.

    ``image`` is the image's name (``datalake-base``); an image outside the family ships none.
    """
    own = set(apt_packages(image, images))
    others = [p for p in apt_packages(None, images) if p not in own]
    if not others or not shutil.which("dpkg-query"):
        return []
    result = subprocess.run(
        ["dpkg-query", "-L", *others], capture_output=True, text=True, timeout=_DPKG_TIMEOUT, check=False
    )
    found = {Path(line) for line in result.stdout.splitlines() if Path(line).parent == KERNELS_DIR}
    return sorted(p for p in found if p.is_dir())
