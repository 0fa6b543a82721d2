"""Dask Gateway on the local platform for a test module: the gateway, a hub that knows it, a session.

Shared by the Dask integration tests (and the browser test's Dask step): Traefik + the gateway's API
and controller (:mod:`localplatform.daskgateway`) with our per-group limits, and a hub with
``datalake.dask_gateway`` on, so a notebook session's ``Gateway()`` finds it from its env alone.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from localplatform import daskgateway
from localplatform.base import free_port, state_dir
from localplatform.hub import HubHandle
from localplatform.netns import pod_network

from hub_config.dask.hub import limits_table
from hub_config.settings import DaskGatewaySettings
from tests.support.hubclient import hub_xsrf, login, running_hub
from tests.support.podexec import pod_exec

__all__ = [
    "LIMITS",
    "RUCIO_DIR",
    "SUBMIT",
    "gateway_and_hub",
    "gateway_cookie",
    "in_session",
    "pod_network_available",
    "user_token",
]

LIMITS = {
    "default_limits": {"max_workers": 2, "max_cores_per_worker": 1, "max_memory_per_worker": "2G"},
    "group_limits": {"escape/gpu": {"max_workers": 8, "max_cores_per_worker": 4, "max_memory_per_worker": "8G"}},
}
RUCIO_DIR = "/etc/datalake/rucio"
"""Where the hub mounts a server's Rucio Secret (and the gateway mounts it on the cluster's pods)."""
SUBMIT = "from dask_gateway import Gateway\ng = Gateway()\n"


def pod_network_available() -> bool:
    """True inside a network namespace of our own (``python -m localplatform.netns``)."""
    try:
        return pod_network() is not None
    except Exception:  # noqa: BLE001 - asked for but unusable: the platform will say why
        return False


@contextmanager
def gateway_and_hub(
    info: dict[str, Any], name: str, *, settings_patch: dict[str, Any] | None = None, **hub_kwargs: Any
) -> Iterator[tuple[HubHandle, dict[str, Any]]]:
    """Traefik + gateway API + controller, and a hub named ``name`` that knows the gateway as a
    service; ``settings_patch`` is merged next to the ``dask_gateway`` block. Both stopped after."""
    state = state_dir()
    token_file = state / "daskgateway-api-token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    hub_port = free_port()
    section = daskgateway.up(
        state,
        info,
        jupyterhub_api_url=f"http://127.0.0.1:{hub_port}/hub/api",
        api_token_file=token_file,
        limits=limits_table(DaskGatewaySettings.model_validate(LIMITS)),
    )
    patch = {
        **(settings_patch or {}),
        "dask_gateway": {
            "enabled": True,
            "address": section["address"],
            "proxy_address": section["proxy_address"],
            "api_token_file": str(token_file),
            **LIMITS,
        },
    }
    try:
        with running_hub(state, info, name, settings_patch=patch, port=hub_port, **hub_kwargs) as hub:
            yield hub, section
    finally:
        daskgateway.down(state)


def in_session(info: dict[str, Any], pod: dict[str, Any], code: str, timeout: float = 120) -> str:
    """Run Python in the user's session (their env, their files), like a notebook cell; stdout + stderr."""
    result = pod_exec(info, pod["metadata"]["name"], ["python", "-c", code], timeout=timeout)
    return result.stdout + result.stderr


def user_token(hub: HubHandle, info: dict[str, Any], username: str, password: str) -> str:
    """A token ``username`` makes for themselves after signing in (as on the hub's token page), with
    what a server's token has for the gateway."""
    session, page = login(hub, info, username, password)
    assert page.status_code == 200
    scopes = ["access:services!service=dask-gateway", "read:users:groups!user"]
    resp = session.post(
        f"{hub.api_url}/users/{username}/tokens",
        json={"scopes": scopes, "expires_in": 600},
        headers={"X-XSRFToken": hub_xsrf(session)},
        timeout=30,
    )
    assert resp.status_code in (200, 201), resp.text
    token: str = resp.json()["token"]
    return token


def gateway_cookie(address: str, token: str) -> tuple[str, str]:
    """The gateway's session cookie (name, value) for ``token``'s user: what the gateway API sets on
    an authenticated call (through its Traefik at ``address``), as a browser would hold it."""
    resp = requests.get(f"{address}/api/v1/clusters/", headers={"Authorization": f"jupyterhub {token}"}, timeout=30)
    assert resp.status_code == 200, resp.text[:500]
    ((name, value),) = [(c.name, c.value) for c in resp.cookies if c.name.startswith("dask-gateway")]
    return name, value
