"""Shared fixtures for unit tests: the reference settings and the shipped profiles."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hub_config.profiles.loader import LoadedProfile, load_profiles
from hub_config.settings import Settings
from tests.support.extension_schema import load_extension_schema

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def reference_settings() -> Settings:
    """The complete site configuration in tests/data/settings/reference.yaml."""
    return Settings.from_file(DATA / "settings" / "reference.yaml")


@pytest.fixture(scope="session")
def shipped_profiles(reference_settings: Settings) -> list[LoadedProfile]:
    """The profiles in profiles/, validated against the reference settings."""
    return load_profiles([ROOT / "profiles"], reference_settings)


@pytest.fixture
def minimal() -> dict[str, Any]:
    """The smallest valid `datalake:` block."""
    return {"iam": {"issuer": "https://iam.example.org/", "client_id": "hub", "allowed_groups": ["escape"]}}


@pytest.fixture(scope="session")
def session_python() -> Path:
    """Python of the notebook environment (rucio-clients 41.5.1, rucio-jupyterlab 41.0.0), cached."""
    try:
        from localplatform.base import PlatformError
        from localplatform.sessionenv import ensure_session_venv
    except ImportError as err:  # pragma: no cover - scripts/ is on pythonpath via pytest config
        pytest.skip(f"localplatform not importable: {err}")
    try:
        venv = ensure_session_venv()
    except PlatformError as err:
        pytest.skip(f"no notebook venv: {err}")
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def extension_schema() -> ModuleType:
    """rucio-jupyterlab 41.0.0's own ``config/schema.py``, fetched once into the cache."""
    schema = load_extension_schema()
    if isinstance(schema, str):
        pytest.skip(schema)
    return schema


@pytest.fixture
def offline_kubeconfig(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """KubeSpawner reads a kubeconfig when built; these tests make no API call, so none is served.

    kubernetes_asyncio reads $KUBECONFIG once, at import: its default location is pointed at the
    file too. Modules that build spawners use it with ``pytest.mark.usefixtures``.
    """
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: unused}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setattr("kubernetes_asyncio.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(path))
