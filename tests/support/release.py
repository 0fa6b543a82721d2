"""A release of the chart installed with the real helm into the local platform's API server.

kwok marks pods Running without running them, so an install checks what the API server and helm
decide (objects, RBAC as enforced, --wait readiness), not the hub process itself.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from localplatform.base import PlatformError
from localplatform.controlplane import kubectl

from tests.support.helm import CHART, PLATFORM_VALUES, HelmError, helm

__all__ = ["RELEASE", "Release", "installed", "secrets_named"]

RELEASE = "datalake"


@dataclass
class Release:
    """An installed release: where it is and how to talk to it."""

    chart: Path
    namespace: str
    kubeconfig: str
    values: list[Path]

    def kubectl(self, *args: str) -> str:
        return kubectl(self.kubeconfig, "--namespace", self.namespace, *args)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.kubectl("get", kind, name, "-o", "json"))
        return data

    def by_label(self, kind: str, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.kubectl("get", kind, "-l", selector, "-o", "json"))["items"]
        return items

    def helm(self, *args: str, timeout: float = 400) -> str:
        env = {"KUBECONFIG": self.kubeconfig}
        return helm(*args, "--namespace", self.namespace, env=env, timeout=timeout)

    def values_args(self) -> list[str]:
        return [arg for path in self.values for arg in ("--values", str(path))]

    def upgrade(self, *set_json: str) -> None:
        extra = [arg for item in set_json for arg in ("--set-json", item)]
        self.helm("upgrade", RELEASE, str(self.chart), *self.values_args(), *extra, "--wait", "--timeout", "5m")

    def can(self, who: str, verb: str, resource: str = "secrets", namespace: str | None = None) -> bool:
        """`kubectl auth can-i` as ``who``, answered by the API server's RBAC."""
        ns = namespace or self.namespace
        try:
            out = kubectl(self.kubeconfig, "auth", "can-i", verb, resource, "--namespace", ns, "--as", who)
        except PlatformError:  # `can-i` exits 1 for "no"
            return False
        return out.strip() == "yes"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def secrets_named(values: Sequence[Path]) -> dict[str, dict[str, str]]:
    """The Secrets (name -> keys) the values make the hub read, as an operator creates them first."""
    merged = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in values:
        merged = _merge(merged, yaml.safe_load(path.read_text()) or {})
    wanted: dict[str, dict[str, str]] = {}
    for ref, value in (("iamClientSecret", "not-a-real-secret"), ("authStateKey", secrets.token_hex(32))):
        spec = (merged.get("secrets") or {}).get(ref) or {}
        if spec.get("name"):
            wanted.setdefault(spec["name"], {})[spec["key"]] = value
    return wanted


@contextmanager
def installed(info: dict[str, Any], chart: Path, values: Sequence[Path], tmp: Path) -> Iterator[Release]:
    """``chart`` installed with ``values`` (then the platform's) by `helm install --wait` into a fresh
    namespace holding the Secrets they name; uninstalled and the namespace deleted afterwards."""
    kubeconfig = info["controlplane"]["kubeconfig"]
    platform = tmp / "platform-values.yaml"
    platform.write_text(yaml.safe_dump(PLATFORM_VALUES))
    rel = Release(chart, f"chart-{uuid.uuid4().hex[:8]}", kubeconfig, [*values, platform])
    kubectl(kubeconfig, "create", "namespace", rel.namespace)
    try:
        for name, data in secrets_named(values).items():
            rel.kubectl("create", "secret", "generic", name, *(f"--from-literal={k}={v}" for k, v in data.items()))
        rel.helm("install", RELEASE, str(chart), *rel.values_args(), "--wait", "--timeout", "5m")
        yield rel
    finally:
        # A failed install may leave nothing to uninstall; the namespace goes either way.
        with contextlib.suppress(HelmError):
            rel.helm("uninstall", RELEASE, "--wait", "--timeout", "2m")
        kubectl(kubeconfig, "delete", "namespace", rel.namespace, "--wait=false")
