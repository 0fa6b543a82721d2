"""jupyterhub-idle-culler as z2jh 4.4.0 runs it, for the local hub.

In a cluster, z2jh's ``jupyterhub_config.py`` turns the ``cull.*`` values into a hub-managed
service (``python3 -m jupyterhub_idle_culler --url=http://localhost:8081/hub/api ...``) and a role
with only the scopes the culler needs. Our chart leaves ``jupyterhub.cull`` to z2jh, so the hub
runs the culler beside ``hub_config``; the local hub must do the same, or culling (and the Rucio
Secret going with a culled server) would only ever happen in production. :func:`culler_service`
is that block of z2jh's file (``jupyterhub/files/hub/jupyterhub_config.py``, "cull.enabled")
translated line by line; only the hub's API URL and the interpreter differ, because the local hub
listens on a free port and runs from the project's venv (which pins the hub image's culler,
``requirements/hub-image.txt``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Z2JH_CULL_DEFAULTS", "culler_service"]

Z2JH_CULL_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "users": False,
    "adminUsers": True,
    "removeNamedServers": False,
    "timeout": 3600,
    "every": 600,
    "concurrency": 10,
    "maxAge": 0,
}
"""``cull:`` in z2jh 4.4.0's values.yaml: what a site gets unless it sets ``jupyterhub.cull``."""


def culler_service(
    cull: Mapping[str, Any], hub_api_url: str, python: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The culler's JupyterHub service and role for ``cull`` (z2jh's keys, over its defaults).

    None when ``cull.enabled`` is false, as in z2jh. ``hub_api_url`` is what z2jh writes as
    ``http://localhost:8081/hub/api``; ``python`` stands for the image's ``python3``.
    """
    unknown = set(cull) - set(Z2JH_CULL_DEFAULTS)
    if unknown:
        raise ValueError(f"cull: unknown key(s) {sorted(unknown)}; z2jh 4.4.0 has {sorted(Z2JH_CULL_DEFAULTS)}")
    values = {**Z2JH_CULL_DEFAULTS, **cull}
    if not values["enabled"]:
        return None
    role: dict[str, Any] = {
        "name": "jupyterhub-idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["jupyterhub-idle-culler"],
    }
    cmd = [python, "-m", "jupyterhub_idle_culler", f"--url={hub_api_url}"]
    if values["timeout"]:
        cmd.append(f"--timeout={values['timeout']}")
    if values["every"]:
        cmd.append(f"--cull-every={values['every']}")
    if values["concurrency"]:
        cmd.append(f"--concurrency={values['concurrency']}")
    if values["users"]:
        cmd.append("--cull-users")
        role["scopes"].append("admin:users")
    if not values["adminUsers"]:
        cmd.append("--cull-admin-users=false")
    if values["removeNamedServers"]:
        cmd.append("--remove-named-servers")
    if values["maxAge"]:
        cmd.append(f"--max-age={values['maxAge']}")
    return {"name": "jupyterhub-idle-culler", "command": cmd}, role
