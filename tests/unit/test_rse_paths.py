"""The Rucio panel's replica-mode paths, derived from the EOS mount and the RSE's prefix (issue #22).

What an admin writes: which RSE is behind which EOS mount, the RSE's prefix, and which EOS path the
mount shows. What the extension gets: ``rse_mount_path`` and ``path_begins_at`` such that the path
it builds from a PFN is the file's path in the notebook. A combination that cannot work is refused
by ``validate`` naming file:line and key; ``preview`` shows the derived values per profile.
"""

from __future__ import annotations

import posixpath
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from pydantic import ValidationError

from hub_config.settings import Settings
from hub_config.settings.rse import replica_paths

ROOT = Path(__file__).resolve().parents[2]
IAM = {"issuer": "https://iam.example.org/", "client_id": "hub", "allowed_groups": ["escape"]}


def _site(eos: dict[str, Any], extension: dict[str, Any]) -> dict[str, Any]:
    instance = {
        "name": "lake",
        "display_name": "Lake",
        "rucio_host": "https://rucio.example.org",
        "auth_host": "https://rucio.example.org",
        "extension": extension,
    }
    return {"iam": IAM, "storage": {"eos": [eos]}, "rucio": {"instances": [instance]}}


def _extension_path(pfn: str, rse_mount_path: str, path_begins_at: int) -> str:
    """What rucio-jupyterlab 41 does with a PFN in replica mode (ReplicaModeHandler.translate_pfn_to_path)."""
    suffix = urlparse(pfn).path.strip("/").split("/", path_begins_at)[-1]
    return posixpath.join(rse_mount_path, suffix)


@pytest.mark.parametrize(
    ("eos", "prefix", "pfn", "wanted"),
    [
        # a CERN-style EOS fuse mount: /eos on the node shows EOS's /eos, the RSE lives under /eos/eulake/rucio
        (
            {"name": "eos", "host_path": "/eos", "mount_path": "/eos"},
            "/eos/eulake/rucio",
            "root://eospublic.cern.ch:1094//eos/eulake/rucio/atlas/ab/cd/f.root",
            "/eos/eulake/rucio/atlas/ab/cd/f.root",
        ),
        # one EOS instance mounted at a node path of its own, shown at /eos/lake in the notebook
        (
            {"name": "lake", "host_path": "/var/eos/lake", "eos_path": "/eos/lake", "mount_path": "/eos/lake"},
            "/eos/lake",
            "davs://eos.example.org:8443/eos/lake/user.alice/1f/2e/data.csv",
            "/eos/lake/user.alice/1f/2e/data.csv",
        ),
        # the RSE's prefix deeper than the mount's root
        (
            {"name": "eos", "host_path": "/mnt/eos", "eos_path": "/eos/escape", "mount_path": "/eos/escape"},
            "/eos/escape/lake/rucio",
            "davs://eos.example.org/eos/escape/lake/rucio/scope/a/b/x.h5",
            "/eos/escape/lake/rucio/scope/a/b/x.h5",
        ),
    ],
)
def test_derived_paths_turn_a_pfn_into_the_files_notebook_path(
    eos: dict[str, Any], prefix: str, pfn: str, wanted: str
) -> None:
    """The extension's own PFN-to-path rule, fed the derived values, lands on the file inside the mount."""
    site = Settings.model_validate(
        _site(eos, {"destination_rse": "LAKE-EOS", "rse_mount": eos["name"], "rse_prefix": prefix})
    )
    paths = replica_paths(site.rucio.instances[0], site.storage)
    assert paths is not None
    assert paths.destination_rse == "LAKE-EOS"
    assert _extension_path(pfn, paths.rse_mount_path, paths.path_begins_at) == wanted
    assert paths.rse_mount_path.startswith(eos["mount_path"])


def test_no_rse_mount_means_no_replica_paths() -> None:
    site = Settings.model_validate(_site({"name": "eos"}, {}))
    assert replica_paths(site.rucio.instances[0], site.storage) is None


@pytest.mark.parametrize(
    ("eos", "extension", "key", "message"),
    [
        (
            {"name": "eos"},
            {"destination_rse": "LAKE-EOS"},
            ("rucio", "instances", 0, "extension", "rse_mount"),
            "destination_rse set but rse_mount and rse_prefix missing",
        ),
        (
            {"name": "eos"},
            {"destination_rse": "LAKE-EOS", "rse_mount": "scratch", "rse_prefix": "/eos/lake"},
            ("rucio", "instances", 0, "extension", "rse_mount"),
            "'scratch' is not an EOS mount in storage.eos (known: eos)",
        ),
        (
            {"name": "eos", "host_path": "/eos/lake", "mount_path": "/eos/lake"},
            {"destination_rse": "LAKE-EOS", "rse_mount": "eos", "rse_prefix": "/eos/other/rucio"},
            ("rucio", "instances", 0, "extension", "rse_prefix"),
            "prefix /eos/other/rucio is not inside what EOS mount 'eos' shows (EOS path /eos/lake",
        ),
        (
            {"name": "eos", "eos_path": "/", "mount_path": "/eos"},
            {"destination_rse": "LAKE-EOS", "rse_mount": "eos", "rse_prefix": "/" + "x" * 254},
            ("rucio", "instances", 0, "extension", "rse_prefix"),
            "is longer than 256 characters",
        ),
    ],
)
def test_wrong_combinations_are_refused_at_their_key(
    eos: dict[str, Any], extension: dict[str, Any], key: tuple[str | int, ...], message: str
) -> None:
    """Each refusal is placed at the key to fix (the problem builder appends it to pydantic's place)."""
    from hub_config.yamlsource import parse_yaml, problems_from_validation

    data = _site(eos, extension)
    doc = parse_yaml(yaml.safe_dump(data).encode(), "site.yaml")
    with pytest.raises(ValidationError) as err:
        Settings.model_validate(data)
    problems = problems_from_validation(err.value, doc)
    assert len(problems) == 1
    dotted = ".".join(str(k) for k in key).replace(".0.", "[0].")
    assert problems[0].key == dotted
    assert message in problems[0].message
    assert problems[0].line is not None


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub_config", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_validate_names_file_line_and_key_of_a_prefix_outside_the_mount(tmp_path: Path) -> None:
    """What an admin sees: one line, file:line: key: why, exit 1, no traceback."""
    site = _site(
        {"name": "eos", "host_path": "/eos/lake", "mount_path": "/eos/lake"},
        {"destination_rse": "LAKE-EOS", "rse_mount": "eos", "rse_prefix": "/eos/other"},
    )
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump(site, sort_keys=False))
    line = next(n for n, text in enumerate(settings.read_text().splitlines(), 1) if "rse_prefix" in text)
    result = _cli("validate", "profiles/", "--settings", str(settings))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        f"{settings}:{line}: rucio.instances[0].extension.rse_prefix: RSE LAKE-EOS prefix /eos/other is not inside"
        in (result.stderr)
    )


def test_preview_shows_replica_where_eos_is_mounted_and_download_elsewhere() -> None:
    """The shipped profiles under the reference settings: EOS profiles read CERN-EOS in place, the others download."""
    result = _cli("preview", "profiles/", "--settings", "tests/data/settings/reference.yaml", "--user", "alice",
                  "--groups", "escape,escape/hep,escape/gpu")  # fmt: skip
    assert result.returncode == 0, result.stderr
    panels = {p["slug"]: p["rucio_panel"]["escape"] for p in yaml.safe_load(result.stdout)["profiles"]}
    assert panels["hep"] == {
        "mode": "replica",
        "destination_rse": "CERN-EOS",
        "rse_mount_path": "/eos/eulake",
        "path_begins_at": 2,
    }
    assert panels["base"] == {"mode": "download", "why": "mount 'eos' (RSE CERN-EOS) is not in this profile"}
