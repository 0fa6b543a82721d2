"""`helm install` of the umbrella (with z2jh 4.4.0) into the local platform's real kube-apiserver.

kwok marks the pods Running without running them, so this checks what the API server and helm
decide — the objects, RBAC as enforced, what the kubelet would mount, and when the hub restarts —
not the hub process itself (tests/integration/test_signin.py runs that). Needs the z2jh chart
archive (`$Z2JH_CHART` or chart/charts/jupyterhub-4.4.0.tgz); skipped with that reason otherwise.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from localplatform.base import PlatformError
from localplatform.controlplane import kubectl

from tests.support.helm import REPO, chart_copy, helm, z2jh_chart

pytestmark = pytest.mark.skipif(
    z2jh_chart() is None,
    reason="z2jh 4.4.0 chart archive absent: set $Z2JH_CHART or put it at chart/charts/jupyterhub-4.4.0.tgz",
)

RELEASE = "datalake"
SECRET_VERBS = ("get", "list", "watch", "create", "patch", "update", "delete")
# What the local platform cannot provide, and only that: no storage class (hub database), no load
# balancer (helm --wait would wait for its address forever), no Job runner for the pre-pull hook.
PLATFORM_VALUES = {
    "jupyterhub": {
        "hub": {"db": {"type": "sqlite-memory"}},
        "proxy": {"service": {"type": "ClusterIP"}},
        "prePuller": {"hook": {"enabled": False}},
    }
}


@dataclass
class Release:
    """An installed release: where it is and how to talk to it."""

    chart: Path
    namespace: str
    kubeconfig: str
    values: Path

    def kubectl(self, *args: str) -> str:
        return kubectl(self.kubeconfig, "--namespace", self.namespace, *args)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.kubectl("get", kind, name, "-o", "json"))
        return data

    def helm(self, *args: str, timeout: float = 400) -> str:
        env = {"KUBECONFIG": self.kubeconfig}
        return helm(*args, "--namespace", self.namespace, env=env, timeout=timeout)

    def upgrade(self, *set_json: str) -> None:
        extra = [arg for item in set_json for arg in ("--set-json", item)]
        self.helm(
            "upgrade", RELEASE, str(self.chart), "--values", str(self.values), *extra, "--wait", "--timeout", "5m"
        )


@pytest.fixture(scope="module")
def release(platform_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """The chart installed with `helm install --wait` into a fresh namespace of the local platform."""
    info = platform_factory("kwok")
    kubeconfig = info["controlplane"]["kubeconfig"]
    tmp = tmp_path_factory.mktemp("chart-install")
    values = tmp / "platform-values.yaml"
    values.write_text(yaml.safe_dump(PLATFORM_VALUES))
    rel = Release(chart_copy(tmp, with_z2jh=True), f"chart-{uuid.uuid4().hex[:8]}", kubeconfig, values)
    kubectl(kubeconfig, "create", "namespace", rel.namespace)
    rel.kubectl(
        "create",
        "secret",
        "generic",
        "datalake-hub-iam",
        "--from-literal=client-secret=not-a-real-secret",
        f"--from-literal=crypt-key={secrets.token_hex(32)}",
    )
    try:
        rel.helm("install", RELEASE, str(rel.chart), "--values", str(values), "--wait", "--timeout", "5m")
        yield rel
    finally:
        try:
            rel.helm("uninstall", RELEASE, "--wait", "--timeout", "2m")
        finally:
            kubectl(kubeconfig, "delete", "namespace", rel.namespace, "--wait=false")


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
        ns = namespace or release.namespace
        try:
            out = kubectl(release.kubeconfig, "auth", "can-i", verb, resource, "--namespace", ns, "--as", who)
        except PlatformError:  # `can-i` exits 1 for "no"
            return False
        return out.strip() == "yes"

    assert [v for v in SECRET_VERBS if not can(v)] == []
    assert not can("deletecollection")
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


def test_profile_edit_keeps_hub_settings_edit_restarts_it(release: Release) -> None:
    """`helm upgrade` with a new profile leaves the hub pod template alone; a settings change rolls it."""
    # z2jh renders its generated keys twice at install (random both times), so its own checksum/secret
    # changes on the first upgrade whatever changed; settle it with an upgrade of unchanged values.
    release.upgrade()
    before = release.get("deployment", "hub")
    extra = {"slug": "extra", "display_name": "Extra", "description": "Added by an upgrade.", "image": "datalake-base"}
    release.upgrade(f"profileFiles.inline={json.dumps({'extra.yaml': extra})}")
    assert "extra.yaml" in release.get("configmap", "datalake-hub-profiles")["data"]
    after_profile = release.get("deployment", "hub")
    assert after_profile["spec"]["template"] == before["spec"]["template"]
    assert after_profile["metadata"]["generation"] == before["metadata"]["generation"]

    release.upgrade(f"profileFiles.inline={json.dumps({'extra.yaml': extra})}", 'datalake.site_name="Renamed site"')
    after_settings = release.get("deployment", "hub")
    assert after_settings["metadata"]["generation"] > before["metadata"]["generation"]
    key = "checksum/datalake-settings"
    assert (
        after_settings["spec"]["template"]["metadata"]["annotations"][key]
        != before["spec"]["template"]["metadata"]["annotations"][key]
    )
