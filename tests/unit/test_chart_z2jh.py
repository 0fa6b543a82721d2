"""The whole umbrella with z2jh 4.4.0 rendered offline: what the hub Deployment really gets.

Needs the z2jh chart archive (`$Z2JH_CHART` or chart/charts/jupyterhub-4.4.0.tgz), which cannot be
downloaded here; skipped with that reason otherwise.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub_config.apply import DEFAULT_SETTINGS_PATH
from tests.support.helm import (
    DASK_GATEWAY_REASON,
    DASK_GATEWAY_VERSION,
    REPO,
    HelmError,
    by_kind_name,
    chart_copy,
    dask_gateway_chart,
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


def _named(objects: list[dict[str, Any]], kind: str, component: str) -> str:
    """The name z2jh gave its ``kind`` object of ``component`` (found by label, not by name)."""
    (name,) = [
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == kind and o["metadata"].get("labels", {}).get("component") == component
    ]
    return str(name)


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
    # A directory mount (no subPath, which never updates), where the hub looks for its settings file.
    assert mounts["datalake-settings"]["mountPath"] == posixpath.dirname(DEFAULT_SETTINGS_PATH)
    assert "subPath" not in mounts["datalake-settings"], "a subPath mount never sees settings edits"
    assert mounts["datalake-profiles"]["mountPath"] == "/etc/datalake/profiles"
    assert "subPath" not in mounts["datalake-profiles"], "a subPath mount never sees profile edits"
    assert mounts["datalake-iam-client-secret"]["mountPath"] == "/etc/datalake/secrets"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["datalake-iam-client-secret"]["secret"]["items"] == [
        {"key": "client-secret", "path": "iam-client-secret"}
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["JUPYTERHUB_CRYPT_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "datalake-hub-iam", "key": "crypt-key"}
    items = volumes["datalake-package"]["configMap"]["items"]
    package = REPO / "hub_config"
    shipped = sorted(
        p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    assert [i["path"] for i in items] == shipped, "every package file, at its path, and nothing else"
    assert all(i["key"] == i["path"].replace("/", "--") for i in items)


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


def test_neither_settings_nor_profile_changes_depend_on_the_pod_template(chart: Path) -> None:
    """No checksum of ours on the hub pod: the hub restarts itself on a settings change (settings_watch.py)
    and hot-reloads profiles, so nothing relies on the order in which Helm renders templates for that."""
    base = _pod_template_without_z2jh_secret(_hub(chart))
    assert not [k for k in base["metadata"]["annotations"] if "datalake" in k]
    extra = {"slug": "extra", "display_name": "X", "description": "Added.", "image": "datalake-base"}
    assert _pod_template_without_z2jh_secret(_hub(chart, **{"profileFiles.inline": {"extra.yaml": extra}})) == base
    assert _pod_template_without_z2jh_secret(_hub(chart, **{"datalake.site_name": "Renamed"})) == base


def test_operator_hub_entries_merge_with_the_chart_wiring(chart: Path) -> None:
    """A site's own hub volume, mount, env and extraConfig join ours; nothing of ours is copied or lost."""
    site = {
        "jupyterhub.hub.extraVolumes": [{"name": "site-ca", "configMap": {"name": "site-ca"}}],
        "jupyterhub.hub.extraVolumeMounts": [{"name": "site-ca", "mountPath": "/etc/site-ca", "readOnly": True}],
        "jupyterhub.hub.extraEnv": {"SITE": "lake"},
        "jupyterhub.hub.extraConfig": {"site": "c.JupyterHub.shutdown_on_logout = True"},
    }
    objects = render(chart, set_json=site)
    indexed = by_kind_name(objects)
    pod = indexed["Deployment", "hub"]["spec"]["template"]["spec"]
    volumes = [v["name"] for v in pod["volumes"]]
    assert {"site-ca", "datalake-package", "datalake-settings", "datalake-profiles"} <= set(volumes)
    assert len(volumes) == len(set(volumes))
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["site-ca"] == "/etc/site-ca" and mounts["datalake-package"].endswith("/hub_config")
    env = {e["name"] for e in pod["containers"][0]["env"]}
    assert {"SITE", "JUPYTERHUB_CRYPT_KEY"} <= env
    import base64

    values = yaml.safe_load(base64.b64decode(indexed["Secret", "hub"]["data"]["values.yaml"]))
    assert set(values["hub"]["extraConfig"]) == {"datalake", "site"}
    assert validate_manifests(objects) == []


NAMING = {
    "default": {},
    "release-prefixed": {"jupyterhub.fullnameOverride": None},
    "fullname": {"jupyterhub.fullnameOverride": "lake"},
    "name": {"jupyterhub.fullnameOverride": None, "jupyterhub.nameOverride": "jh"},
    "own-serviceaccount": {"jupyterhub.hub.serviceAccount": {"create": True, "name": "lake-hub-sa"}},
    "existing-serviceaccount": {"jupyterhub.hub.serviceAccount": {"create": False, "name": "site-hub"}},
}


@pytest.mark.parametrize("case", NAMING.values(), ids=NAMING.keys())
def test_names_follow_z2jh_naming_options(chart: Path, case: dict[str, Any]) -> None:
    """With any naming option z2jh supports, our RBAC, helm test and mounts find z2jh's objects and ours."""
    objects = render(chart, set_json=case)
    assert validate_manifests(objects) == []
    hub_service = _named(objects, "Service", "hub")
    configmaps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    ours = [o for o in objects if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "datalake-hub"]
    (binding,) = [o for o in ours if o["kind"] == "RoleBinding"]
    hub_deployment = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == hub_service)
    pod = hub_deployment["spec"]["template"]["spec"]
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    test_pod = next(o for o in objects if o["kind"] == "Pod")
    assert f"http://{hub_service}:8081/hub/api/" in test_pod["spec"]["containers"][0]["command"][-1]
    for volume in pod["volumes"]:
        if "configMap" in volume:
            assert volume["configMap"]["name"] in configmaps, f"{volume['name']} mounts a ConfigMap not rendered"
    # Ours carry z2jh's prefix (none by default), so two prefixed releases share a namespace.
    prefix = hub_service.removesuffix("hub")
    assert all(
        o["metadata"]["name"].startswith(f"{prefix}datalake-hub-") for o in ours if o["kind"] != "PersistentVolume"
    )


def test_egress_and_prepuller(chart: Path) -> None:
    """Hub and notebooks may reach IAM and Rucio over HTTPS; nodes pre-pull every profile image in the
    background (continuous puller), and no install-time hook holds `helm install` for multi-GB pulls."""
    rendered = render(chart)
    hooks = [o for o in rendered if "helm.sh/hook" in (o["metadata"].get("annotations") or {})]
    assert [o["metadata"]["name"] for o in hooks] == ["datalake-hub-test-hub-api"]
    assert "hook-image-puller" not in {o["metadata"]["name"] for o in rendered}
    objects = by_kind_name(rendered)
    for name in ("hub", "singleuser"):
        egress = objects["NetworkPolicy", name]["spec"]["egress"]
        assert {"ports": [{"port": 443, "protocol": "TCP"}]} in egress
    puller = objects["DaemonSet", "continuous-image-puller"]["spec"]["template"]["spec"]
    images = {c["image"] for c in puller["initContainers"]}
    assert "ghcr.io/datalake-hub/datalake-hep:2026.11" in images
    assert "ghcr.io/datalake-hub/datalake-full:2026.11" in images


@pytest.fixture
def loopback_repo(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The dependencies' chart repositories as helm sees them, on loopback: each URL of Chart.yaml
    resolves through a cached index whose entries point at a local HTTP server holding the archives
    (the real repositories are unreachable here)."""
    import functools
    import http.server
    import shutil
    import threading

    archives = [z2jh_chart(), dask_gateway_chart()]
    if archives[1] is None:
        pytest.skip(DASK_GATEWAY_REASON)
    serve = tmp_path / "serve"
    cache = tmp_path / "cache"
    serve.mkdir()
    cache.mkdir()
    for archive in archives:
        assert archive is not None
        shutil.copy(archive, serve / archive.name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(serve))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        helm("repo", "index", str(serve), "--url", f"http://127.0.0.1:{server.server_address[1]}/")
        meta = yaml.safe_load((REPO / "chart" / "Chart.yaml").read_text())
        repos: dict[str, Any] = {"apiVersion": "", "repositories": []}
        for dep in meta["dependencies"]:
            shutil.copy(serve / "index.yaml", cache / f"{dep['name']}-index.yaml")
            repos["repositories"].append({"name": dep["name"], "url": dep["repository"]})
        (tmp_path / "repositories.yaml").write_text(yaml.safe_dump(repos))
        yield {
            "HELM_REPOSITORY_CONFIG": str(tmp_path / "repositories.yaml"),
            "HELM_REPOSITORY_CACHE": str(cache),
            "serve": str(serve),
        }
    finally:
        server.shutdown()


def test_chart_lock_is_what_helm_dependency_build_fetches(tmp_path: Path, loopback_repo: dict[str, str]) -> None:
    """`make chart-deps` (helm dependency build) accepts the committed Chart.lock and fetches z2jh 4.4.0
    and dask-gateway 2026.3.0; a lock out of step with Chart.yaml is refused, so the check is real."""
    import hashlib

    env = {k: v for k, v in loopback_repo.items() if k.startswith("HELM_")}
    chart = chart_copy(tmp_path / "build", with_z2jh=True)
    for path in (chart / "charts").iterdir():
        path.unlink()
    helm("dependency", "build", "--skip-refresh", str(chart), env=env)
    for name in ("jupyterhub-4.4.0.tgz", f"dask-gateway-{DASK_GATEWAY_VERSION}.tgz"):
        fetched = hashlib.sha256((chart / "charts" / name).read_bytes()).hexdigest()
        assert fetched == hashlib.sha256((Path(loopback_repo["serve"]) / name).read_bytes()).hexdigest(), name

    lock = chart / "Chart.lock"
    lock.write_text(lock.read_text().replace("digest: sha256:", "digest: sha256:0"))
    with pytest.raises(HelmError, match="out of sync"):
        helm("dependency", "build", "--skip-refresh", str(chart), env=env)
