"""The generated parts of chart/values.yaml and docs/operator.md follow profiles/ and the schema (no helm needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chart_files  # scripts/ is on pytest's pythonpath
import yaml

ROOT = Path(__file__).resolve().parents[2]

VALUES = ROOT / "chart" / "values.yaml"


def _values() -> dict[str, Any]:
    data = yaml.safe_load(VALUES.read_text())
    assert isinstance(data, dict)
    return data


def test_generated_regions_are_current() -> None:
    """A package file or profile image added without `make chart-files` would be missing from the hub."""
    text = VALUES.read_text()
    assert chart_files.render_values(text) == text, "chart/values.yaml is stale: run `make chart-files`"


def test_prepuller_lists_every_shipped_profile_image() -> None:
    """Nodes pull every profile's image before users ask for it, resolved as the hub resolves it."""
    from hub_config.profiles.kubespawner import image_ref
    from hub_config.settings import ImageSettings

    images = ImageSettings.model_validate(_values()["datalake"].get("images") or {})
    extra = _values()["jupyterhub"]["prePuller"]["extraImages"]
    pulled = {f"{e['name']}:{e['tag']}" for e in extra.values()}
    for path in sorted((ROOT / "profiles").glob("*.yaml")):
        ref = image_ref(yaml.safe_load(path.read_text())["image"], images)
        assert ref in pulled, f"{path.name}: {ref} is not pre-pulled"
    assert all(isinstance(e["tag"], str) for e in extra.values()), "tags must stay strings (2026.10 != 2026.1)"


def test_image_keys_are_unique_and_valid() -> None:
    """z2jh names a pre-puller container after each key: keys must be DNS labels and distinct."""
    images = chart_files.profile_images(
        [ROOT / "profiles" / "base.yaml"],
        chart_files.ImageSettings(registry="r.example.org/x", tag="1.0"),
    )
    assert images == {"datalake-base": ("r.example.org/x/datalake-base", "1.0")}


def test_no_package_path_needs_an_ambiguous_key() -> None:
    """The chart stores `a/b.py` as ConfigMap key `a--b.py`: no shipped file may contain `--` itself."""
    shipped = [p.relative_to(ROOT / "hub_config").as_posix() for p in (ROOT / "hub_config").rglob("*") if p.is_file()]
    assert shipped and not [p for p in shipped if "--" in p]


def test_values_reference_is_current() -> None:
    """docs/operator.md documents every value with the schema's own description (no drift)."""
    doc = ROOT / "docs" / "operator.md"
    text = doc.read_text()
    assert chart_files.render_doc(text) == text, "docs/operator.md is stale: run `make chart-files`"


def test_values_reference_covers_every_key() -> None:
    """Every settings key an operator can set has a row, with a description."""
    rows = {key: desc for key, _, _, desc in chart_files.values_reference()}
    for key in ("datalake.iam.issuer", "datalake.storage.home.nfs.server", "datalake.rucio.instances[].name"):
        assert rows.get(key), key
    assert all(desc for key, desc in rows.items() if key.startswith("datalake."))


def _helm_requirements_digest(req: list[dict[str, Any]], lock: list[dict[str, Any]]) -> str:
    """Helm 3's Chart.lock digest: sha256 of Go's JSON of [Chart.yaml deps, locked deps]
    (`resolver.HashReq`; field order and omitempty as in `chart.Dependency`)."""
    import hashlib
    import json

    fields = ("name", "version", "repository", "condition", "tags", "enabled", "import-values", "alias")
    always = {"name", "repository"}

    def go(dep: dict[str, Any]) -> dict[str, Any]:
        return {f: dep.get(f, "") for f in fields if f in always or dep.get(f)}

    data = json.dumps([[go(d) for d in req], [go(d) for d in lock]], separators=(",", ":"))
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


def test_chart_lock_pins_chart_yaml() -> None:
    """Chart.lock is committed and in step with Chart.yaml: `helm dependency build` fetches exactly it."""
    meta = yaml.safe_load((ROOT / "chart" / "Chart.yaml").read_text())
    lock = yaml.safe_load((ROOT / "chart" / "Chart.lock").read_text())
    wanted = [{k: d[k] for k in ("name", "repository", "version")} for d in meta["dependencies"]]
    assert lock["dependencies"] == wanted
    assert lock["digest"] == _helm_requirements_digest(meta["dependencies"], lock["dependencies"])
