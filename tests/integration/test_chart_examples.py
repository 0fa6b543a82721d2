"""Every values file the project ships or documents installs with `helm install --wait`, as written.

chart/ci/*.yaml, every values example of the README and docs/operator.md (tests/support/docs_examples.py),
and z2jh's release-prefixed naming (`fullnameOverride: null`), each into a fresh namespace of the local
platform with the real z2jh 4.4.0 chart (skipped with the reason when its archive is absent). For each:
the hub Deployment becomes available, the ServiceAccount it runs as may patch Secrets (token
rotation) and nothing more of ours, and the install notes name the Service that exists. A values
file that enables Dask Gateway (chart/ci/dask-gateway-values.yaml) also brings the gateway up with
its RBAC as the API server enforces it (skipped with the reason when the dask-gateway archive is absent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.docs_examples import examples
from tests.support.helm import DASK_GATEWAY_REASON, REPO, chart_copy, dask_gateway_chart, z2jh_chart
from tests.support.release import RELEASE, installed

pytestmark = pytest.mark.skipif(
    z2jh_chart() is None,
    reason="z2jh 4.4.0 chart archive absent: set $Z2JH_CHART or put it at chart/charts/jupyterhub-4.4.0.tgz",
)

CASES: dict[str, str] = {
    **{e.id: e.text for e in examples() if e.kind == "values"},
    **{p.name: p.read_text() for p in sorted((REPO / "chart" / "ci").glob("*-values.yaml"))},
    "release-prefixed-names": "jupyterhub:\n  fullnameOverride: null\n",
    "named-release-prefix": "jupyterhub:\n  fullnameOverride: lake\n  hub:\n    serviceAccount: {name: lake-hub-sa}\n",
}


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chart_copy(tmp_path_factory.mktemp("chart"), with_z2jh=True)


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_values_install_and_wire_the_hub(platform_factory: Any, chart: Path, text: str, tmp_path: Path) -> None:
    dask = bool((yaml.safe_load(text).get("dask-gateway") or {}).get("enabled"))
    if dask and dask_gateway_chart() is None:
        pytest.skip(DASK_GATEWAY_REASON)
    values = tmp_path / "site.yaml"
    values.write_text(text)
    with installed(platform_factory("kwok"), chart, [values], tmp_path) as release:
        (hub,) = release.by_label("deployment", "app=jupyterhub,component=hub")
        assert hub["status"].get("availableReplicas") == 1
        account = hub["spec"]["template"]["spec"]["serviceAccountName"]
        who = f"system:serviceaccount:{release.namespace}:{account}"
        assert release.can(who, "patch"), f"the hub's ServiceAccount {account} cannot rotate Secrets"
        assert not release.can(who, "update") and not release.can(who, "patch", "configmaps")

        (proxy,) = release.by_label("service", "app=jupyterhub,component=proxy-public")
        notes = release.helm("get", "notes", RELEASE)
        ingress = release.by_label("ingress", "app=jupyterhub")
        if ingress:
            tls_hosts = {h for t in ingress[0]["spec"].get("tls") or [] for h in t.get("hosts") or []}
            for rule in ingress[0]["spec"]["rules"]:
                scheme = "https" if rule["host"] in tls_hosts else "http"
                assert f"{scheme}://{rule['host']}/" in notes
        else:
            assert f"service/{proxy['metadata']['name']} 8080:http" in notes
        if dask:
            _dask_gateway_is_up_with_its_rbac(release)


def _dask_gateway_is_up_with_its_rbac(release: Any) -> None:
    """The gateway's three Deployments are available; the DaskCluster CRD is served; the gateway's
    hub token is a Secret the chart generated; RBAC as enforced: the gateway may list the notebook
    pods here (hub_config.dask.gateway) but not write them, and the hub may list and delete
    DaskClusters (a user's clusters end with their server)."""
    # The dask-gateway chart labels only its pods with a component: its objects go by name.
    for prefix in ("api", "controller", "traefik"):
        deployment = release.get("deployment", f"{prefix}-{RELEASE}-dask-gateway")
        assert deployment["status"].get("availableReplicas") == 1, prefix
    assert release.kubectl("get", "crd", "daskclusters.gateway.dask.org", "-o", "name").strip()
    token = release.get("secret", "datalake-hub-dask-gateway-token")
    assert set(token["data"]) == {"api-token"}
    gateway = release.get("deployment", f"api-{RELEASE}-dask-gateway")
    account = gateway["spec"]["template"]["spec"]["serviceAccountName"]
    who = f"system:serviceaccount:{release.namespace}:{account}"
    assert release.can(who, "list", "pods")
    assert not release.can(who, "create", "pods") and not release.can(who, "list", "pods", namespace="default")
    hub = f"system:serviceaccount:{release.namespace}:hub"
    assert release.can(hub, "list", "daskclusters.gateway.dask.org")
    assert release.can(hub, "delete", "daskclusters.gateway.dask.org")
