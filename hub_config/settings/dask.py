"""Dask Gateway: where the notebooks find it and what each IAM group may ask of it.

The gateway (the official dask-gateway chart, an optional dependency) enforces the limits: the hub
renders them into the gateway's configuration, and the gateway's options handler refuses a cluster
request beyond them (:mod:`hub_config.dask.limits`). The notebooks only get the addresses.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ..dask.limits import DEFAULT_LIMITS
from ..modelbase import MEMORY_PATTERN, AbsPath, HttpUrl, K8sName, NonEmptyStr, Strict

__all__ = ["DaskGatewaySettings", "DaskLimits"]


class DaskLimits(Strict):
    """What one IAM group's members may ask of the gateway, per cluster."""

    max_workers: int = Field(
        DEFAULT_LIMITS["max_workers"], ge=1, le=1000, description="Most workers one cluster may scale to."
    )
    max_cores_per_worker: float = Field(
        DEFAULT_LIMITS["max_cores_per_worker"], gt=0, le=256, description="Most CPU cores one worker may request."
    )
    max_memory_per_worker: str = Field(
        DEFAULT_LIMITS["max_memory_per_worker"],
        pattern=MEMORY_PATTERN,
        description="Most memory one worker may request (K, M, G or T; 4G = 4 GiB).",
    )
    idle_timeout_minutes: float = Field(
        DEFAULT_LIMITS["idle_timeout_minutes"],
        ge=1,
        le=7 * 24 * 60,
        description="A cluster with no client connected for this long is stopped.",
    )


class DaskGatewaySettings(Strict):
    """Scale-out through Dask Gateway (off unless `enabled`)."""

    enabled: bool = Field(False, description="Point notebooks at the gateway and register it as a hub service.")
    address: HttpUrl | None = Field(
        None, description="The gateway's HTTP address as notebooks reach it (its Traefik proxy's `web` entrypoint)."
    )
    proxy_address: NonEmptyStr | None = Field(
        None,
        pattern=r"^(tls|tcp)://[^\s/]+:[0-9]+$",
        description="The scheduler proxy (Traefik's `tcp` entrypoint), e.g. `tls://traefik-dask-gateway:8786`.",
    )
    service_name: K8sName = Field("dask-gateway", description="The gateway's name as a JupyterHub service.")
    api_token_file: AbsPath = Field(
        "/etc/datalake/dask-gateway/api-token",
        description="File (a mounted Secret) holding the gateway's hub API token; never a literal in values.",
    )
    default_limits: DaskLimits = Field(
        default_factory=lambda: DaskLimits(), description="Limits of users in none of the `group_limits` groups."
    )
    group_limits: dict[NonEmptyStr, DaskLimits] = Field(
        default_factory=dict,
        description="Limits by IAM group; a member of several groups gets the largest value of each limit.",
    )

    @model_validator(mode="after")
    def _addresses_when_enabled(self) -> DaskGatewaySettings:
        if self.enabled and (self.address is None or self.proxy_address is None):
            raise ValueError("dask_gateway.enabled needs `address` and `proxy_address` (where notebooks reach it)")
        return self
