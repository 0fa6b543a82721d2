"""Every example the docs tell operators and admins to use works as written.

Values examples (README and docs/operator.md, plus chart/ci/*.yaml) pass `helm lint --strict`, and
render objects the Kubernetes schemas accept and settings the hub accepts: without the z2jh subchart
always (CI), and with it when its archive is here. tests/integration/test_chart_examples.py installs
them. Profile examples are profiles the hub's model accepts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hub_config.profiles.model import Profile
from hub_config.settings import Settings
from tests.support.docs_examples import Example, examples
from tests.support.helm import (
    DASK_GATEWAY_REASON,
    DASK_GATEWAY_VERSION,
    REPO,
    by_kind_name,
    chart_copy,
    helm,
    kube_version,
    render,
    validate_manifests,
    z2jh_chart,
)

EXAMPLES = examples()
VALUES = [e for e in EXAMPLES if e.kind == "values"]
PROFILES = [e for e in EXAMPLES if e.kind == "profile"]
NO_Z2JH = "z2jh 4.4.0 chart archive absent: set $Z2JH_CHART or put it at chart/charts/jupyterhub-4.4.0.tgz"


def test_the_install_guide_examples_are_found() -> None:
    """The extraction sees the operator's site.yaml and the site CA example (a doc rewrite cannot hide them)."""
    sources = {e.source.split(":")[0] for e in VALUES}
    assert sources == {"docs/operator.md"}
    assert any("static-nfs" in e.text for e in VALUES), "the install's site.yaml"
    assert any("extraVolumes" in e.text for e in VALUES), "the own-hub-volume example"
    assert PROFILES, "the README's profile example"


@pytest.fixture(scope="module", params=[False, True], ids=["ours", "with-z2jh"])
def chart(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if request.param and z2jh_chart() is None:
        pytest.skip(NO_Z2JH)
    return chart_copy(tmp_path_factory.mktemp("chart"), with_z2jh=bool(request.param))


@pytest.mark.parametrize("example", VALUES, ids=[e.id for e in VALUES])
def test_values_example_lints_renders_and_validates(chart: Path, example: Example, tmp_path: Path) -> None:
    _needs_dask_gateway_subchart(chart, example.data())
    values = tmp_path / "values.yaml"
    values.write_text(example.text)
    out = helm("lint", "--strict", str(chart), "--values", str(values), "--kube-version", kube_version())
    assert "0 chart(s) failed" in out, f"{example.source}:\n{out}"
    objects = render(chart, [values])
    assert validate_manifests(objects) == [], example.source
    settings = by_kind_name(objects)["ConfigMap", "datalake-hub-settings"]["data"]["settings.yaml"]
    Settings.model_validate(yaml.safe_load(settings))


def _needs_dask_gateway_subchart(chart: Path, values: dict[str, object]) -> None:
    """Skip an example enabling Dask Gateway where the subchart is absent: its settings (the gateway's
    addresses) come from the subchart."""
    enabled = values.get("dask-gateway")
    if not (isinstance(enabled, dict) and enabled.get("enabled")):
        return
    if not (chart / "charts" / f"dask-gateway-{DASK_GATEWAY_VERSION}.tgz").is_file():
        pytest.skip(
            DASK_GATEWAY_REASON
            if (chart / "charts").is_dir()
            else "this dependency-free copy lacks the dask-gateway subchart, which the example enables"
        )


CI_FILES = sorted((REPO / "chart" / "ci").glob("*-values.yaml"))


@pytest.mark.parametrize("values", CI_FILES, ids=[p.name for p in CI_FILES])
def test_ci_values_lint_strict(chart: Path, values: Path) -> None:
    """Every shipped values set is lint-clean, not just the defaults."""
    out = helm("lint", "--strict", str(chart), "--values", str(values), "--kube-version", kube_version())
    assert "0 chart(s) failed" in out, out


@pytest.mark.parametrize("example", PROFILES, ids=[e.id for e in PROFILES])
def test_profile_example_is_a_valid_profile(example: Example) -> None:
    Profile.model_validate(example.data())
