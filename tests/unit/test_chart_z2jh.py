"""The whole umbrella with z2jh 4.4.0 rendered offline: what the hub Deployment really gets.

Needs the z2jh chart archive (`$Z2JH_CHART` or chart/charts/jupyterhub-4.4.0.tgz), which cannot be
downloaded here; skipped with that reason otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.helm import (
    REPO,
    by_kind_name,
    chart_copy,
    helm,
    kube_version,
    render,
    validate_manifests,
    z2jh_chart,
)

pytestmark = pytest.mark.skipif(
    z2jh_chart() is None,
    reason="z2jh 4.4.0 chart archive absent: set $Z2JH_CHART or put it at chart/charts/jupyterhub-4.4.0.tgz",
)

CI = REPO / "chart" / "ci"
VALUES_FILES = sorted(CI.glob("*-values.yaml"))


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chart/ with the z2jh archive in charts/."""
    return chart_copy(tmp_path_factory.mktemp("chart"), with_z2jh=True)


def _hub(chart: Path, *values: Path, **set_json: Any) -> dict[str, Any]:
    return by_kind_name(render(chart, list(values), set_json=set_json))["Deployment", "hub"]


def _pod_template_without_z2jh_secret(deployment: dict[str, Any]) -> dict[str, Any]:
    """The hub pod template minus z2jh's own secret checksum (random keys when rendered offline)."""
    template: dict[str, Any] = yaml.safe_load(yaml.safe_dump(deployment["spec"]["template"]))
    template["metadata"]["annotations"].pop("checksum/secret")
    return template


def test_lint_strict_with_z2jh(chart: Path) -> None:
    """`helm lint --strict` of the umbrella passes."""
    assert "0 chart(s) failed" in helm("lint", "--strict", str(chart), "--kube-version", kube_version())


@pytest.mark.parametrize("values", VALUES_FILES, ids=[p.name.removesuffix("-values.yaml") for p in VALUES_FILES])
def test_full_render_is_valid(chart: Path, values: Path) -> None:
    """Every object of the umbrella (z2jh's and ours) passes strict Kubernetes schema validation."""
    objects = render(chart, [values])
    assert ("Deployment", "hub") in by_kind_name(objects)
    assert validate_manifests(objects) == []


def test_hub_runs_the_stock_image_with_our_package(chart: Path) -> None:
    """The stock z2jh hub image, our package where z2jh's config puts it on sys.path, one-line config."""
    hub = _hub(chart)
    pod = hub["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "quay.io/jupyterhub/k8s-hub:4.4.0"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["datalake-package"]["mountPath"] == "/usr/local/etc/jupyterhub/hub_config"
    assert mounts["datalake-settings"]["mountPath"] == "/etc/datalake/settings.yaml"
    assert mounts["datalake-profiles"]["mountPath"] == "/etc/datalake/profiles"
    assert "subPath" not in mounts["datalake-profiles"], "a subPath mount never sees profile edits"
    assert mounts["datalake-iam-client-secret"]["mountPath"] == "/etc/datalake/secrets"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["datalake-iam-client-secret"]["secret"]["items"] == [
        {"key": "client-secret", "path": "iam-client-secret"}
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["JUPYTERHUB_CRYPT_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "datalake-hub-iam", "key": "crypt-key"}


def test_extra_config_is_one_call(chart: Path) -> None:
    """No Python in values beyond the one line that calls the package."""
    objects = by_kind_name(render(chart))
    import base64

    values = yaml.safe_load(base64.b64decode(objects["Secret", "hub"]["data"]["values.yaml"]))
    assert values["hub"]["extraConfig"] == {
        "datalake": "from hub_config.apply import apply_from_file; apply_from_file(c)"
    }


def test_secret_names_flow_into_the_hub(chart: Path) -> None:
    """`secrets.*` names and keys reach the hub's volume and env without repeating them in z2jh values."""
    hub = _hub(chart, CI / "full-values.yaml")
    pod = hub["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "datalake-iam-client-secret")
    assert volume["secret"]["secretName"] == "site-iam"
    assert volume["secret"]["items"] == [{"key": "secret", "path": "iam-client-secret"}]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["JUPYTERHUB_CRYPT_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "site-crypt", "key": "key"}


def test_null_secret_names_leave_the_wiring_out(chart: Path) -> None:
    """With the client secret from elsewhere (env) and z2jh's own keys, no Secret is required."""
    hub = _hub(
        chart,
        **{
            "secrets": {"iamClientSecret": {"name": None}, "authStateKey": {"name": None}},
            "datalake.iam.client_secret": {"file": None, "env": "IAM_CLIENT_SECRET"},
        },
    )
    pod = hub["spec"]["template"]["spec"]
    assert "datalake-iam-client-secret" not in {v["name"] for v in pod["volumes"]}
    assert "JUPYTERHUB_CRYPT_KEY" not in {e["name"] for e in pod["containers"][0]["env"]}


def test_existing_profiles_configmap_is_mounted(chart: Path) -> None:
    """`profileFiles.existingConfigMap` is what the hub mounts at /etc/datalake/profiles."""
    pod = _hub(chart, CI / "profiles-existing-values.yaml")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "datalake-profiles")
    assert volume["configMap"]["name"] == "site-profiles"


def test_settings_change_restarts_hub_profile_change_does_not(chart: Path) -> None:
    """A settings edit changes the hub pod template (restart); a profile edit leaves it alone (hot reload)."""
    base = _pod_template_without_z2jh_secret(_hub(chart))
    assert "checksum/datalake-settings" in base["metadata"]["annotations"]
    extra = {"slug": "extra", "display_name": "X", "description": "Added.", "image": "datalake-base"}
    profile = {"profileFiles.inline": {"extra.yaml": extra}}
    assert _pod_template_without_z2jh_secret(_hub(chart, **profile)) == base
    changed = _pod_template_without_z2jh_secret(_hub(chart, **{"datalake.site_name": "Renamed"}))
    assert changed != base
    assert (
        changed["metadata"]["annotations"]["checksum/datalake-settings"]
        != (base["metadata"]["annotations"]["checksum/datalake-settings"])
    )


def test_egress_and_prepuller(chart: Path) -> None:
    """Hub and notebooks may reach IAM and Rucio over HTTPS; nodes pre-pull every profile image."""
    objects = by_kind_name(render(chart))
    for name in ("hub", "singleuser"):
        egress = objects["NetworkPolicy", name]["spec"]["egress"]
        assert {"ports": [{"port": 443, "protocol": "TCP"}]} in egress
    puller = objects["DaemonSet", "continuous-image-puller"]["spec"]["template"]["spec"]
    images = {c["image"] for c in puller["initContainers"]}
    assert "ghcr.io/datalake-hub/datalake-hep:2026.11" in images
    assert "ghcr.io/datalake-hub/datalake-full:2026.11" in images
