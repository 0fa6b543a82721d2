"""The node agent's session venv runs the images' versions, so a session test speaks for the images."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from localplatform.base import PlatformError
from localplatform.sessionenv import REQUIREMENTS, check_matches_images, image_pins

IMAGES = Path(__file__).resolve().parents[2] / "images"


def test_the_session_pins_what_the_images_pin() -> None:
    """JupyterHub, Lab, the Rucio pieces, jupyter-server-proxy and TensorBoard at the images' versions."""
    pins = image_pins()
    assert {"jupyterhub", "jupyterlab", "rucio-jupyterlab", "jupyter-server-proxy", "tensorboard"} <= set(pins)
    check_matches_images()


def test_a_drift_is_named_with_the_image_file(tmp_path: Path) -> None:
    """Bumping a pin in an image without the session (or the reverse) stops the platform before it builds."""
    images = tmp_path / "images"
    for rel in ("datalake-base/requirements.txt", "datalake-datascience/requirements.txt"):
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(IMAGES / rel, images / rel)
    base = images / "datalake-base" / "requirements.txt"
    base.write_text(re.sub(r"(?m)^jupyterhub==.*$", "jupyterhub==9.9.9", base.read_text()))
    with pytest.raises(PlatformError) as err:
        check_matches_images(REQUIREMENTS, images)
    assert "jupyterhub==9.9.9 (images/datalake-base/requirements.txt) but the session has 5.5" in str(err.value)


def test_a_notebook_runs_behind_the_images_entrypoint() -> None:
    """KubeSpawner sets `args` only, so the image's ENTRYPOINT (start-up hooks) runs first; a `command` replaces it."""
    from localplatform.nodeagent_env import container_argv

    assert container_argv({"args": ["jupyterhub-singleuser"]}, {}, "127.1.0.5") == [
        "datalake-image-start",
        "jupyterhub-singleuser",
    ]
    assert container_argv({"command": ["dask-worker"], "args": ["--nthreads", "1"]}, {}, "127.1.0.5") == [
        "dask-worker",
        "--nthreads",
        "1",
    ]


def test_a_session_gets_its_images_web_app_entries() -> None:
    """The Lab of a profile shows the launcher entries of that profile's image, at the image's path."""
    from localplatform.nodeagent_mounts import SERVER_PROXY_TARGET, image_files

    (entry,) = image_files("registry.example.org/escape/datalake-datascience:2026.11")
    assert entry["source"] == str(IMAGES / "datalake-datascience" / "jupyter-server-proxy.json")
    assert entry["target"] == SERVER_PROXY_TARGET and entry["read_only"]
    assert image_files("registry.example.org/escape/datalake-base:2026.11") == []
    dockerfile = (IMAGES / "datalake-datascience" / "Dockerfile").read_text()
    assert f"datalake-datascience/jupyter-server-proxy.json {SERVER_PROXY_TARGET}" in dockerfile


def test_code_server_is_a_version_the_images_allow() -> None:
    """Sessions run code-server from npm; the images take it from conda-forge within a range."""
    from localplatform.codeserver import VERSION
    from packaging.specifiers import SpecifierSet

    for image in ("datalake-devops",):
        text = (IMAGES / image / "conda-packages.txt").read_text()
        match = re.search(r"^code-server([<>=!][^\s#]*)", text, re.M)
        assert match, f"{image} does not install code-server"
        assert VERSION in SpecifierSet(match.group(1)), f"code-server {VERSION} is outside {image}'s {match.group(1)}"


def test_the_platform_installs_the_datascience_images_apt_list() -> None:
    """R and IRkernel come from one list: the image's apt layer and `make prepare` both read it."""
    from localplatform.imagepkgs import apt_packages

    assert apt_packages("datalake-datascience") == ("r-base-core", "r-cran-irkernel")
    assert apt_packages("datalake-full") == ("r-base-core", "r-cran-irkernel")
    assert apt_packages("datalake-base") == apt_packages("not-in-the-family") == ()
    assert set(apt_packages()) == {"r-base-core", "r-cran-irkernel"}
    dockerfile = (IMAGES / "datalake-datascience" / "Dockerfile").read_text()
    assert "COPY datalake-datascience/apt-packages.txt " in dockerfile


def test_only_images_with_r_see_the_r_kernelspec() -> None:
    """Debian's r-cran-irkernel registers `ir` for the whole machine; pods of images without it must not see it."""
    from localplatform.imagepkgs import KERNELS_DIR, hidden_kernelspecs, missing_packages

    if missing_packages(("r-cran-irkernel",)):
        pytest.skip("r-cran-irkernel is not installed (`make prepare` installs it)")
    assert hidden_kernelspecs("datalake-base") == [KERNELS_DIR / "ir"]
    assert hidden_kernelspecs("datalake-devops") == [KERNELS_DIR / "ir"]
    assert hidden_kernelspecs("datalake-datascience") == []
    assert hidden_kernelspecs("datalake-full") == []
