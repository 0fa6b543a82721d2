"""helm for the chart tests: render, lint, validate offline, and find the dependency charts.

The z2jh and dask-gateway charts cannot be downloaded here, so tests run in modes. Without z2jh, our
own templates are rendered from a copy of the chart whose Chart.yaml drops the dependencies (helm
refuses a chart with a declared dependency missing from `charts/`). With it (`$Z2JH_CHART` or
`chart/charts/jupyterhub-4.4.0.tgz`), the whole umbrella is rendered from a copy with the tgz in
`charts/`, and with the dask-gateway archive too when it is here (`$DASK_GATEWAY_CHART` or
`chart/charts/dask-gateway-2026.3.0.tgz`; else that optional dependency is dropped). Copies follow
the `chart/files/*` symlinks, exactly as `helm package` does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CHART",
    "DASK_GATEWAY_REASON",
    "DASK_GATEWAY_VERSION",
    "NAMESPACE",
    "PLATFORM_VALUES",
    "RELEASE",
    "REPO",
    "Z2JH_VERSION",
    "HelmError",
    "by_kind_name",
    "chart_copy",
    "dask_gateway_chart",
    "helm",
    "helm_binary",
    "kube_version",
    "render",
    "validate_manifests",
    "z2jh_chart",
]

# What the local platform cannot provide to an install, and only that: no storage class (hub database)
# and no load balancer (helm --wait would wait for its address forever).
PLATFORM_VALUES: dict[str, Any] = {
    "jupyterhub": {
        "hub": {"db": {"type": "sqlite-memory"}},
        "proxy": {"service": {"type": "ClusterIP"}},
    }
}

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart"
Z2JH_VERSION = "4.4.0"
DASK_GATEWAY_VERSION = "2026.3.0"
DASK_GATEWAY_REASON = (
    f"dask-gateway {DASK_GATEWAY_VERSION} chart archive absent: set $DASK_GATEWAY_CHART or put it at "
    f"chart/charts/dask-gateway-{DASK_GATEWAY_VERSION}.tgz"
)
RELEASE = "datalake"
NAMESPACE = "datalake"


CUSTOM_GROUPS = frozenset({"traefik.io"})
"""API groups of objects the dask-gateway subchart renders for CRDs it installs itself (Traefik's
IngressRoute, Middleware): no bundled schema to validate them offline; the chart install test's
API server checks them against the CRDs."""


class HelmError(RuntimeError):
    """helm exited non-zero; the message holds its stderr."""


def helm_binary() -> Path:
    """helm built from its Go module by the local platform's tool cache (first call builds it)."""
    from localplatform.gotools import ensure_tool

    return ensure_tool("helm")


def kube_version() -> str:
    """The Kubernetes version the local platform runs (and offline renders assume), e.g. `1.34.4`."""
    from localplatform.gotools import kubernetes_version

    return kubernetes_version().lstrip("v")


def helm(*args: str, env: Mapping[str, str] | None = None, timeout: float = 300) -> str:
    """Run helm; stdout on success, :class:`HelmError` with stderr otherwise."""
    proc = subprocess.run(
        [str(helm_binary()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if proc.returncode != 0:
        raise HelmError(f"helm {' '.join(args[:2])} failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
    return proc.stdout


def z2jh_chart() -> Path | None:
    """The z2jh 4.4.0 chart archive: `$Z2JH_CHART`, else `chart/charts/jupyterhub-4.4.0.tgz`, else None."""
    candidates = [os.environ.get("Z2JH_CHART"), str(CHART / "charts" / f"jupyterhub-{Z2JH_VERSION}.tgz")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def dask_gateway_chart() -> Path | None:
    """The dask-gateway chart archive: `$DASK_GATEWAY_CHART`, else
    `chart/charts/dask-gateway-2026.3.0.tgz`, else None."""
    candidates = [
        os.environ.get("DASK_GATEWAY_CHART"),
        str(CHART / "charts" / f"dask-gateway-{DASK_GATEWAY_VERSION}.tgz"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def chart_copy(dest: Path, *, with_z2jh: bool) -> Path:
    """A copy of chart/ in ``dest`` (symlinks followed): with the z2jh archive in `charts/` (and the
    dask-gateway one when it is here, else without that optional dependency), or without any
    dependency at all."""
    target = dest / "datalake-hub"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(CHART, target, symlinks=False, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "charts"))
    meta_path = target / "Chart.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    if with_z2jh:
        archive = z2jh_chart()
        if archive is None:
            raise FileNotFoundError("no z2jh chart archive ($Z2JH_CHART or chart/charts/jupyterhub-4.4.0.tgz)")
        (target / "charts").mkdir()
        shutil.copy(archive, target / "charts" / f"jupyterhub-{Z2JH_VERSION}.tgz")
        dask = dask_gateway_chart()
        if dask is not None:
            shutil.copy(dask, target / "charts" / f"dask-gateway-{DASK_GATEWAY_VERSION}.tgz")
        else:
            meta["dependencies"] = [d for d in meta["dependencies"] if d["name"] != "dask-gateway"]
            meta_path.write_text(yaml.safe_dump(meta, sort_keys=False))
            (target / "Chart.lock").unlink()
    else:
        meta.pop("dependencies", None)
        meta_path.write_text(yaml.safe_dump(meta, sort_keys=False))
        (target / "Chart.lock").unlink()
    return target


def render(
    chart: Path,
    values: Sequence[Path] = (),
    *,
    set_json: Mapping[str, Any] | None = None,
    extra: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """`helm template` of ``chart`` with ``values`` files: the rendered objects (empty documents dropped)."""
    import json

    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", kube_version()]
    for path in values:
        args += ["--values", str(path)]
    for key, value in (set_json or {}).items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    out = helm(*args, *extra)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind_name(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Rendered objects indexed by (kind, name)."""
    return {(str(o["kind"]), str(o["metadata"]["name"])): dict(o) for o in objects}


def validate_manifests(objects: Iterable[Mapping[str, Any]], version: str | None = None) -> list[str]:
    """Problems of strict validation against the bundled Kubernetes schemas (empty: all valid)."""
    import kubernetes_validate  # type: ignore[import-untyped]
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError  # type: ignore[import-untyped]

    wanted = version or kube_version()
    problems: list[str] = []
    for obj in objects:
        if str(obj.get("apiVersion", "")).split("/")[0] in CUSTOM_GROUPS:
            continue
        name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        try:
            kubernetes_validate.validate(dict(obj), wanted, strict=True)
        except ValidationError as err:
            problems.append(f"{name}: {'.'.join(str(p) for p in err.path)}: {err.message}")
        except SchemaNotFoundError as err:
            problems.append(f"{name}: no schema: {err}")
    return problems
