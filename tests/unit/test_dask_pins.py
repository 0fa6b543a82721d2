"""One Dask Gateway release everywhere (issue 18).

A user's cluster runs the notebook's image; the client in that image talks to the gateway server.
A client and server from different releases disagree on the API, and a scheduler whose dask differs
from the notebook's refuses the client's tasks, so every place that installs them must agree with
requirements/dask-gateway.txt, and the Dask libraries with the notebook image's pins.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PINS = REPO / "requirements" / "dask-gateway.txt"
IMAGE_BASE = REPO / "images" / "datalake-base" / "requirements.txt"
SESSION = REPO / "scripts" / "localplatform" / "session-requirements.txt"
GATEWAY_VENV = REPO / "scripts" / "localplatform" / "gateway-requirements.txt"
PYPROJECT = REPO / "pyproject.toml"


def _pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file, names normalised as pip does (PEP 503)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^\"?([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\",]+)", line.strip())
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


WANTED = _pins(PINS)


def test_the_pin_file_names_client_and_server_at_one_release() -> None:
    """The client and the server come from one release (the project releases them together)."""
    assert set(WANTED) == {"dask-gateway", "dask-gateway-server"}
    assert WANTED["dask-gateway"] == WANTED["dask-gateway-server"]


@pytest.mark.parametrize(
    ("path", "package"),
    [
        (IMAGE_BASE, "dask-gateway"),
        (SESSION, "dask-gateway"),
        (GATEWAY_VENV, "dask-gateway-server"),
        (PYPROJECT, "dask-gateway-server"),
    ],
    ids=["image", "session-venv", "gateway-venv", "test-extra"],
)
def test_every_install_uses_the_pinned_release(path: Path, package: str) -> None:
    """The image family, the platform's session venv (what schedulers and workers run) and the
    gateway's venv all install the release requirements/dask-gateway.txt names."""
    assert _pins(path).get(package) == WANTED[package], f"{path.relative_to(REPO)} pins another {package}"


@pytest.mark.parametrize("package", ["dask", "distributed", "bokeh", "dask-labextension", "jupyter-server-proxy"])
def test_session_venv_has_the_images_dask_libraries(package: str) -> None:
    """The local session venv stands in for the notebook image: same Dask libraries, same versions."""
    image = _pins(IMAGE_BASE)
    assert package in image, f"images/datalake-base/requirements.txt does not pin {package}"
    assert _pins(SESSION).get(package) == image[package]
