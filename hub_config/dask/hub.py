"""The hub's side of Dask Gateway: the gateway as a hub service, and what notebooks are told.

The gateway authenticates each request by asking the hub who the caller's token belongs to
(``GET /hub/api/user``). So users and their server tokens must carry ``access:services!service=<gateway>``
(the gateway refuses tokens without it, as it should) and ``read:users:groups!user`` (else the reply
has no groups and every user gets the default limits). The notebook env points the ``dask_gateway``
client at the gateway with JupyterHub auth; its ``JUPYTERHUB_API_TOKEN`` is the credential.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, Problem
from ..settings.dask import DaskGatewaySettings

__all__ = [
    "SERVER_TOKEN_SCOPES",
    "apply_dask_gateway",
    "limits_table",
    "notebook_environment",
    "read_gateway_token",
]

SERVER_TOKEN_SCOPES = ("users:activity!user", "access:servers!server")
"""JupyterHub 5's own scopes of the ``server`` role (its default), which ours extends."""


def notebook_environment(gateway: DaskGatewaySettings) -> dict[str, str]:
    """``dask_gateway.Gateway()`` with no arguments finds the gateway from these (dask config env)."""
    if not gateway.enabled or gateway.address is None or gateway.proxy_address is None:
        return {}
    return {
        "DASK_GATEWAY__ADDRESS": gateway.address,
        "DASK_GATEWAY__PROXY_ADDRESS": gateway.proxy_address,
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
    }


def limits_table(gateway: DaskGatewaySettings) -> dict[str, Any]:
    """The limits as the gateway reads them (:func:`hub_config.dask.limits.limits_for`'s ``table``)."""
    return {
        "default": gateway.default_limits.model_dump(),
        "groups": {name: limits.model_dump() for name, limits in gateway.group_limits.items()},
    }


TOKEN_MAX_BYTES = 4096
"""A hub API token is 32-64 characters; a larger file is not a token (bounded read)."""


def read_gateway_token(gateway: DaskGatewaySettings) -> str | None:
    """The gateway's hub API token from its file (a mounted Secret), or None when the gateway is off.

    A missing, empty or oversized file stops the hub at start with the settings key named: a gateway
    the hub does not know would refuse every user."""
    if not gateway.enabled:
        return None
    where = "dask_gateway.api_token_file"
    try:
        with Path(gateway.api_token_file).open("rb") as fh:
            raw = fh.read(TOKEN_MAX_BYTES + 1)
    except OSError as err:
        raise ConfigError([Problem(gateway.api_token_file, None, where, f"cannot read: {err.strerror}")]) from None
    token = raw.decode("utf-8", "replace").strip()
    if not token or len(raw) > TOKEN_MAX_BYTES or any(ch.isspace() for ch in token):
        raise ConfigError([Problem(gateway.api_token_file, None, where, "does not hold one API token")])
    return token


def apply_dask_gateway(c: Any, gateway: DaskGatewaySettings, *, api_token: str | None) -> None:
    """Register the gateway as a hub service (with the token read from its Secret) and give servers'
    tokens the scopes the gateway checks. Nothing when the gateway is off."""
    if not gateway.enabled or api_token is None:
        return
    # Appended: z2jh's own services (hub.services values) are set before this runs.
    c.JupyterHub.services.append({"name": gateway.service_name, "api_token": api_token})
    server_role = {
        "name": "server",
        "scopes": [
            *SERVER_TOKEN_SCOPES,
            "read:users:groups!user",
            f"access:services!service={gateway.service_name}",
        ],
    }
    # A token never has more than its owner: users themselves must hold the access scope too.
    user_role = {"name": "user", "scopes": ["self", f"access:services!service={gateway.service_name}"]}
    c.JupyterHub.load_roles.append(server_role)
    c.JupyterHub.load_roles.append(user_role)
