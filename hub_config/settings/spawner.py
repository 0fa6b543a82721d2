"""Settings shared by every server: identity inside the pod, timeouts, GPU scheduling, images."""

from __future__ import annotations

from pydantic import Field

from ..modelbase import AbsPath, NonEmptyStr, Strict, Toleration

__all__ = [
    "STARTUP_SCRIPT_ENV",
    "STARTUP_SCRIPT_TIMEOUT_ENV",
    "GPUSettings",
    "ImageSettings",
    "SpawnerSettings",
    "Toleration",
    "startup_script_env",
]

STARTUP_SCRIPT_ENV = "DATALAKE_STARTUP_SCRIPT"
"""The only place the images' start-up hook takes the script's path from (unset: it runs none)."""

STARTUP_SCRIPT_TIMEOUT_ENV = "DATALAKE_STARTUP_SCRIPT_TIMEOUT"
"""Seconds the hook lets the script run (default 60); not a setting, for tests and debugging."""


class GPUSettings(Strict):
    """How a GPU choice reaches the scheduler."""

    resource_name: NonEmptyStr = Field("nvidia.com/gpu", description="Extended resource name of a GPU.")
    node_selector: dict[str, str] = Field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"},
        description="Node labels GPU servers are scheduled on.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=lambda: [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        description="Tolerations for the GPU nodes' taints.",
    )


class ImageSettings(Strict):
    """Where profile images with a bare name (`datalake-hep`) are pulled from."""

    registry: NonEmptyStr = Field("ghcr.io/datalake-hub", description="Registry and namespace of our images.")
    tag: NonEmptyStr = Field("2026.11", description="Tag of our image family.")
    pull_policy: str = Field("IfNotPresent", pattern="^(Always|IfNotPresent|Never)$", description="Pull policy.")


class SpawnerSettings(Strict):
    """Defaults for every notebook server."""

    uid: int = Field(1000, ge=1, description="User id the notebook runs as (never root).")
    gid: int = Field(100, ge=0, description="Primary group id.")
    fs_group: int = Field(100, ge=0, description="fsGroup: group owning mounted volumes.")
    default_url: NonEmptyStr = Field("/lab", description="Where users land.")
    start_timeout_seconds: int = Field(600, ge=30, description="Time a server may take to start (image pulls).")
    http_timeout_seconds: int = Field(120, ge=10, description="Time a started server may take to answer.")
    api_request_timeout_seconds: int = Field(
        10,
        ge=1,
        le=120,
        description=(
            "Timeout of each Kubernetes API call KubeSpawner makes (its default, 3, makes a lagging API server "
            "create pods twice: the retry meets the first pod, kills it and starts over)."
        ),
    )
    api_retry_timeout_seconds: int = Field(
        90,
        ge=10,
        le=900,
        description="Time KubeSpawner keeps retrying a Kubernetes API call before the spawn fails (its default: 30).",
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels every server needs.")
    extra_labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on notebook pods.")
    gpu: GPUSettings = Field(default_factory=lambda: GPUSettings(), description="GPU scheduling.")
    startup_script: AbsPath | None = Field(
        "/home/jovyan/.jupyterlabrc",
        description=(
            "Personal start-up script the images run before the server starts, when the file exists "
            "(passed to the pod as `DATALAKE_STARTUP_SCRIPT`). Null: the images run none."
        ),
    )


def startup_script_env(spawner: SpawnerSettings) -> dict[str, str]:
    """The pod env that tells the images' start-up hook which script to run.

    The hook reads the path from this variable only, so the setting is the one place that decides
    it; null gives no variable and the hook runs nothing.
    """
    if spawner.startup_script is None:
        return {}
    return {STARTUP_SCRIPT_ENV: spawner.startup_script}
