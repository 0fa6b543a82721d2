"""Our own templates, rendered by the real helm without the z2jh subchart (what CI can always run).

Each values file in chart/ci/ is an operator's site: every object rendered must pass strict
validation against the Kubernetes schemas, and the hub must get exactly the files in this repo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hub_config.profiles.model import Profile
from hub_config.settings import Settings
from tests.support.helm import (
    NAMESPACE,
    REPO,
    HelmError,
    by_kind_name,
    chart_copy,
    helm,
    kube_version,
    render,
    validate_manifests,
)

CI = REPO / "chart" / "ci"
VALUES_FILES = sorted(CI.glob("*-values.yaml"))
SECRET_VERBS = ["patch"]
"""What our Role adds to z2jh's (get/list/watch/create/delete): rotation patches Secrets in place."""


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chart/ without the z2jh dependency (not downloadable here), symlinked files followed."""
    return chart_copy(tmp_path_factory.mktemp("chart"), with_z2jh=False)


def _objects(chart: Path, *values: Path, **set_json: Any) -> dict[tuple[str, str], dict[str, Any]]:
    return by_kind_name(render(chart, list(values), set_json=set_json))


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def test_lint_strict(chart: Path) -> None:
    """`helm lint --strict` passes: no warning an operator's CI would trip on."""
    out = helm("lint", "--strict", str(chart), "--kube-version", kube_version())
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("values", VALUES_FILES, ids=[p.name.removesuffix("-values.yaml") for p in VALUES_FILES])
def test_renders_valid_manifests(chart: Path, values: Path) -> None:
    """Every object the chart renders for this site is accepted by the API server's schemas."""
    objects = render(chart, [values])
    assert objects
    assert validate_manifests(objects) == []
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "datalake-hub"


@pytest.mark.parametrize("values", VALUES_FILES, ids=[p.name.removesuffix("-values.yaml") for p in VALUES_FILES])
def test_settings_file_is_the_datalake_block(chart: Path, values: Path) -> None:
    """The hub's settings file is the `datalake:` values, which the hub's model accepts."""
    if (_load(values).get("dask-gateway") or {}).get("enabled"):
        pytest.skip(
            "the gateway's addresses come from the dask-gateway subchart, which this dependency-free copy "
            "lacks; test_chart_dask_gateway.py checks this file's settings with the subchart"
        )
    settings = _objects(chart, values)["ConfigMap", "datalake-hub-settings"]["data"]["settings.yaml"]
    block = yaml.safe_load(settings)
    assert block == _load(values)["datalake"]
    Settings.model_validate(block)


def test_package_is_shipped_byte_for_byte(chart: Path) -> None:
    """The hub runs exactly the hub_config in this repo, not a templated copy."""
    data = _objects(chart)["ConfigMap", "datalake-hub-package"]["data"]
    package = REPO / "hub_config"
    shipped = {
        p.relative_to(package).as_posix(): p.read_text()
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert {k.replace("--", "/"): v for k, v in data.items()} == shipped


def test_shipped_profiles_are_the_repo_files(chart: Path) -> None:
    """The profiles ConfigMap holds profiles/*.yaml verbatim (comments included)."""
    data = _objects(chart)["ConfigMap", "datalake-hub-profiles"]["data"]
    assert data == {p.name: p.read_text() for p in sorted((REPO / "profiles").glob("*.yaml"))}


def test_inline_profiles_join_the_files(chart: Path) -> None:
    """Profiles written in values land in the same hot-reloaded ConfigMap, valid for the hub."""
    data = _objects(chart, CI / "full-values.yaml")["ConfigMap", "datalake-hub-profiles"]["data"]
    assert "base.yaml" in data and "tutorial.yaml" in data
    assert Profile.model_validate(yaml.safe_load(data["tutorial.yaml"])).slug == "tutorial"


def test_inline_only_profiles(chart: Path) -> None:
    """With the chart's files off, only the inline profiles are served."""
    inline = _load(CI / "full-values.yaml")["profileFiles"]["inline"]
    objects = _objects(chart, **{"profileFiles": {"enabled": False, "inline": inline}})
    assert sorted(objects["ConfigMap", "datalake-hub-profiles"]["data"]) == ["tutorial.yaml"]


def test_existing_profiles_configmap(chart: Path) -> None:
    """An operator's own profiles ConfigMap replaces ours (the chart renders none)."""
    objects = _objects(chart, CI / "profiles-existing-values.yaml")
    assert ("ConfigMap", "datalake-hub-profiles") not in objects
    assert ("ConfigMap", "datalake-hub-settings") in objects


@pytest.mark.parametrize(
    ("values", "pv"),
    [
        ("storage-static-nfs-values.yaml", True),
        ("full-values.yaml", True),
        ("storage-dynamic-values.yaml", False),
        ("storage-ephemeral-values.yaml", False),
        ("minimal-values.yaml", False),
    ],
)
def test_home_volume_only_for_static_nfs(chart: Path, values: str, pv: bool) -> None:
    """A static NFS home gets a PV bound only to the claim the spawner mounts; other modes get none."""
    objects = _objects(chart, CI / values)
    pvs = [o for (kind, _), o in objects.items() if kind == "PersistentVolume"]
    pvcs = [o for (kind, _), o in objects.items() if kind == "PersistentVolumeClaim"]
    assert bool(pvs) == pv and bool(pvcs) == pv
    if pv:
        home = _load(CI / values)["datalake"]["storage"]["home"]
        claim = home.get("claim_name", "datalake-home")
        assert pvcs[0]["metadata"]["name"] == claim
        assert pvs[0]["spec"]["claimRef"] == {"namespace": NAMESPACE, "name": claim}
        assert pvs[0]["spec"]["nfs"] == home["nfs"]
        assert pvs[0]["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert pvcs[0]["spec"]["volumeName"] == pvs[0]["metadata"]["name"]


def test_hub_may_rotate_secrets_and_nothing_else(chart: Path) -> None:
    """The hub's ServiceAccount gets only the Secret verb z2jh's Role lacks, in its namespace."""
    objects = _objects(chart)
    role = objects["Role", "datalake-hub-user-secrets"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": SECRET_VERBS}]
    binding = objects["RoleBinding", "datalake-hub-user-secrets"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hub", "namespace": NAMESPACE}]
    assert binding["roleRef"]["name"] == "datalake-hub-user-secrets"


def test_with_dask_gateway_the_hub_may_end_users_clusters(chart: Path) -> None:
    """Dask Gateway on: the hub's Role also lists and deletes DaskCluster objects (a server's stop
    ends its user's clusters), nothing more; off (the default), the Role is unchanged (above)."""
    objects = _objects(
        chart,
        **{
            "datalake.dask_gateway": {"enabled": True, "address": "http://gw", "proxy_address": "tls://gw:8786"},
            "secrets.daskGatewayApiToken.name": "dask-gateway-token",
        },
    )
    role = objects["Role", "datalake-hub-user-secrets"]
    assert role["rules"][1] == {
        "apiGroups": ["gateway.dask.org"],
        "resources": ["daskclusters"],
        "verbs": ["list", "delete"],
    }
    assert len(role["rules"]) == 2


def test_settings_carry_no_checksum_to_depend_on(chart: Path) -> None:
    """The hub restarts itself on a settings change (settings_watch.py): no render-order checksum wiring."""
    configmap = _objects(chart, CI / "minimal-values.yaml")["ConfigMap", "datalake-hub-settings"]
    assert "annotations" not in configmap["metadata"]


def test_helm_test_pod_asks_the_hub_api(chart: Path) -> None:
    """`helm test` runs a pod that may reach the hub (network-access label) and calls /hub/api/."""
    pod = _objects(chart)["Pod", "datalake-hub-test-hub-api"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["metadata"]["labels"]["hub.jupyter.org/network-access-hub"] == "true"
    assert "http://hub:8081/hub/api/" in pod["spec"]["containers"][0]["command"][-1]


@pytest.mark.parametrize(
    ("set_json", "needle"),
    [
        ({"datalake.iam.scopez": []}, "scopez"),
        ({"datalake.iam.issuer": "http://iam.example.org/"}, "issuer"),
        ({"datalake.storage": {"home": {"type": "nfs"}}}, "type"),
        ({"datalake.rucio": {"instances": [{"name": "Bad Name"}]}}, "name"),
        ({"datalake.spawner": {"uid": 0}}, "uid"),
        ({"profileFiles.inline": {"Bad.yaml": {}}}, "Bad.yaml"),
        ({"secrets.iamClientSecret.nmae": "x"}, "nmae"),
        ({"secrets": None}, "missing property 'secrets'"),
        ({"secrets.authStateKey": None}, "missing property 'authStateKey'"),
        ({"profileFiles": None}, "missing property 'profileFiles'"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(chart: Path, set_json: dict[str, Any], needle: str) -> None:
    """`helm install` with a typo or a wrong type fails before anything is applied, naming the key."""
    with pytest.raises(HelmError) as err:
        render(chart, set_json=set_json)
    assert "schema" in str(err.value) and needle in str(err.value)


@pytest.mark.parametrize(
    ("set_json", "needle"),
    [
        (
            {"jupyterhub.hub.extraVolumes": [{"name": "datalake-package", "emptyDir": {}}]},
            'jupyterhub.hub.extraVolumes: the entry "datalake-package"',
        ),
        (
            {"jupyterhub.hub.extraVolumeMounts": [{"name": "mine", "mountPath": "/etc/datalake/profiles/"}]},
            'jupyterhub.hub.extraVolumeMounts: the entry "mine" (/etc/datalake/profiles/) clashes',
        ),
        ({"jupyterhub.hub.extraVolumes": {"mine": {"emptyDir": {}}}}, "jupyterhub.hub.extraVolumes must be a list"),
        ({"jupyterhub.hub.extraConfig": {"datalake": "c.Spawner.cmd = ['x']"}}, "extraConfig.datalake is the chart's"),
        ({"jupyterhub.hub.extraEnv": {"JUPYTERHUB_CRYPT_KEY": "inline"}}, "set by the chart from secrets.authStateKey"),
        (
            {"jupyterhub.hub.extraEnv": [{"name": "JUPYTERHUB_CRYPT_KEY", "value": "inline"}]},
            "set by the chart from secrets.authStateKey",
        ),
        (
            {"jupyterhub.hub.serviceAccount": {"create": False}},
            "jupyterhub.hub.serviceAccount.create is false and no name is set",
        ),
        (
            {"datalake.dask_gateway": {"enabled": True, "address": "http://gw", "proxy_address": "tls://gw:8786"}},
            "datalake.dask_gateway.enabled is true but secrets.daskGatewayApiToken.name is not set",
        ),
    ],
)
def test_values_that_would_break_the_hub_wiring_are_refused(chart: Path, set_json: dict[str, Any], needle: str) -> None:
    """An operator entry that would shadow the chart's wiring fails at install, naming the key."""
    with pytest.raises(HelmError) as err:
        render(chart, set_json=set_json)
    assert needle in str(err.value)


def test_operator_entries_beside_the_wiring_render(chart: Path) -> None:
    """The operator's own hub volume, mount, env and config are not refused (z2jh tests show the merge)."""
    render(
        chart,
        set_json={
            "jupyterhub.hub.extraVolumes": [{"name": "site-ca", "configMap": {"name": "site-ca"}}],
            "jupyterhub.hub.extraVolumeMounts": [{"name": "site-ca", "mountPath": "/etc/site-ca"}],
            "jupyterhub.hub.extraEnv": {"SITE": "lake"},
            "jupyterhub.hub.extraConfig": {"site": "c.JupyterHub.shutdown_on_logout = True"},
        },
    )


def test_kind_workflow_values_render(chart: Path, tmp_path: Path) -> None:
    """scripts/kind/values-kind.yaml (not run here: no Docker) renders valid objects the hub accepts."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nplaceholder\n-----END CERTIFICATE-----\n")
    values = REPO / "scripts" / "kind" / "values-kind.yaml"
    objects = render(chart, [values], extra=["--set-file", f"jupyterhub.hub.extraFiles.dev-idp-ca.stringData={ca}"])
    assert validate_manifests(objects) == []
    indexed = by_kind_name(objects)
    Settings.model_validate(yaml.safe_load(indexed["ConfigMap", "datalake-hub-settings"]["data"]["settings.yaml"]))
    profiles = indexed["ConfigMap", "datalake-hub-profiles"]["data"]
    assert sorted(profiles) == ["base.yaml"]
    Profile.model_validate(yaml.safe_load(profiles["base.yaml"]))


def test_monitoring_objects_are_off_by_default_and_ship_the_tested_files(chart: Path) -> None:
    """Off: no PrometheusRule, no dashboard ConfigMap. On: the rules promtool checks and the generated
    dashboard, verbatim, with the Grafana sidecar's label and the operator's extra labels."""
    kinds = {kind for kind, _ in _objects(chart)}
    assert "PrometheusRule" not in kinds
    assert not [o for o in render(chart) if (o["metadata"].get("labels") or {}).get("grafana_dashboard")]
    on = render(
        chart,
        set_json={
            "monitoring.prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "monitoring.grafanaDashboard.enabled": True,
        },
    )
    (rule,) = [o for o in on if o["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == _load(REPO / "chart" / "files" / "alerts" / "datalake-hub.rules.yaml")
    (dashboard,) = [o for o in on if (o["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"]
    assert dashboard["kind"] == "ConfigMap"
    shipped = (REPO / "chart" / "files" / "dashboards" / "datalake-hub.json").read_text()
    assert dashboard["data"]["datalake-hub.json"] == shipped
    assert validate_manifests([dashboard]) == []
