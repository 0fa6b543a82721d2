"""`helm install` of the umbrella (with z2jh 4.4.0) into the local platform's real kube-apiserver.

kwok marks the pods Running without running them, so this checks what the API server and helm
decide — the objects, RBAC as enforced, what the kubelet would mount, and when the hub restarts —
not the hub process itself (tests/integration/test_signin.py runs that). Needs the z2jh chart
archive (`$Z2JH_CHART` or chart/charts/jupyterhub-4.4.0.tgz); skipped with that reason otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.support.helm import REPO, chart_copy, z2jh_chart
from tests.support.release import RELEASE, Release, installed

pytestmark = pytest.mark.skipif(
    z2jh_chart() is None,
    reason="z2jh 4.4.0 chart archive absent: set $Z2JH_CHART or put it at chart/charts/jupyterhub-4.4.0.tgz",
)

SECRET_VERBS = ("get", "list", "watch", "create", "patch", "delete")
"""z2jh's Role gives all but `patch`; ours adds that (rotation rewrites a Secret in place)."""


@pytest.fixture(scope="module")
def release(platform_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """The chart with its defaults installed with `helm install --wait` into a fresh namespace."""
    tmp = tmp_path_factory.mktemp("chart-install")
    with installed(platform_factory("kwok"), chart_copy(tmp, with_z2jh=True), [], tmp) as rel:
        yield rel


def test_install_succeeds_and_hub_is_available(release: Release) -> None:
    """`helm install --wait` returns deployed and the hub Deployment reports available."""
    status = json.loads(release.helm("status", RELEASE, "--output", "json"))
    assert status["info"]["status"] == "deployed"
    hub = release.get("deployment", "hub")
    assert hub["status"].get("availableReplicas") == 1


def test_hub_serviceaccount_has_exactly_the_secret_verbs(release: Release) -> None:
    """RBAC as the API server enforces it: the hub may rotate users' Secrets here, nowhere else."""
    who = f"system:serviceaccount:{release.namespace}:hub"

    def can(verb: str, resource: str = "secrets", namespace: str | None = None) -> bool:
        return release.can(who, verb, resource, namespace)

    assert [v for v in SECRET_VERBS if not can(v)] == []
    assert not can("deletecollection")
    assert not can("update")
    assert not can("patch", namespace="default")
    assert not can("patch", "configmaps")


def test_mounted_package_and_settings_are_the_repo_files(release: Release) -> None:
    """What the kubelet mounts into the hub is byte for byte the repo's package and the values' settings."""
    data = release.get("configmap", "datalake-hub-package")["data"]
    hub = release.get("deployment", "hub")["spec"]["template"]["spec"]
    items = next(v for v in hub["volumes"] if v["name"] == "datalake-package")["configMap"]["items"]
    mounted = {item["path"]: data[item["key"]] for item in items}
    package = REPO / "hub_config"
    expected = {
        p.relative_to(package).as_posix(): p.read_text()
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert mounted == expected
    settings = release.get("configmap", "datalake-hub-settings")["data"]["settings.yaml"]
    chart_values = yaml.safe_load((REPO / "chart" / "values.yaml").read_text())
    assert yaml.safe_load(settings) == chart_values["datalake"]


def test_upgrades_leave_the_hub_deployment_alone(release: Release) -> None:
    """`helm upgrade` with a new profile or new settings changes only the ConfigMaps the hub watches:
    the profile hot-reloads, the settings make the hub restart itself (test_hub_settings_restart.py);
    neither rolls the Deployment, so nothing hangs on a checksum and Helm's rendering order."""
    # z2jh renders its generated keys twice at install (random both times), so its own checksum/secret
    # changes on the first upgrade whatever changed; settle it with an upgrade of unchanged values.
    release.upgrade()
    before = release.get("deployment", "hub")
    extra = {"slug": "extra", "display_name": "Extra", "description": "Added by an upgrade.", "image": "datalake-base"}
    release.upgrade(f"profileFiles.inline={json.dumps({'extra.yaml': extra})}", 'datalake.site_name="Renamed site"')
    assert "extra.yaml" in release.get("configmap", "datalake-hub-profiles")["data"]
    settings = yaml.safe_load(release.get("configmap", "datalake-hub-settings")["data"]["settings.yaml"])
    assert settings["site_name"] == "Renamed site"
    after = release.get("deployment", "hub")
    assert after["spec"]["template"] == before["spec"]["template"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


def test_notes_name_the_service_that_exists(release: Release) -> None:
    """The install notes' commands name z2jh's real proxy Service (plain http without an ingress)."""
    notes = release.helm("get", "notes", RELEASE)
    assert "service/proxy-public" in notes
    release.get("service", "proxy-public")
    assert "open http://127.0.0.1:8080/" in notes
