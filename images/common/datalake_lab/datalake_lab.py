"""Jupyter server extension in the notebook images: the Rucio panel works on first open.

rucio-jupyterlab 41 refuses every panel request ("Credentials not found. Did you authenticate?",
HTTP 401) until the user has once opened its Settings tab and pressed Save, even when the hub has
configured OIDC with a token file (``oidc_auth: file``) and the token is there. For a hub that
writes and rotates the token itself that step is pointless, so at server start this extension
records, in the panel's own database and through its own API, what that Save would record: OIDC
for every configured instance whose credentials the user has not set. A choice the user made
(another auth type, or other parameters) is never overwritten. Any failure is logged and the
server starts anyway; the panel then just asks for the Save as before.

It also answers the panel's "make available" and file-status requests in replica mode
(:mod:`datalake_lab_rucio`): asking twice reports the existing rule, a permission refusal reads as
one, and a rule waiting for a transfer says so.

On Dask Gateway sites it also routes the user's cluster dashboards through this server
(:mod:`datalake_lab_dask`), so they open in the browser.

Installed as modules (``datalake_lab``, ``datalake_lab_rucio``, ``datalake_lab_dask``) and enabled by
``jupyter_server_config.d/datalake_lab.json`` in the images (images/datalake-base/Dockerfile) and
in the local platform's session venv.
"""

from __future__ import annotations

from typing import Any

__all__ = ["seed_rucio_panel_auth"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "datalake_lab"}]


def seed_rucio_panel_auth(rucio_config: Any, db: Any) -> list[str]:
    """Record OIDC for each OIDC-configured instance without stored credentials; return their names."""
    seeded: list[str] = []
    instances = rucio_config.get("instances") or []
    for inst in instances:
        name = inst.get("name")
        if not name or inst.get("oidc_auth") not in ("file", "env"):
            continue
        if db.has_any_auth_credentials(namespace=name):
            continue
        db.set_rucio_auth_credentials(namespace=name, auth_type="oidc", params={})
        seeded.append(name)
    if seeded and not db.get_active_auth_method() and rucio_config.get("default_auth_type") == "oidc":
        db.set_active_auth_method("oidc")
    return seeded


def _load_jupyter_server_extension(server_app: Any) -> None:
    try:
        from datalake_lab_dask import install_dashboard_proxy

        route = install_dashboard_proxy(server_app.web_app)
    except Exception as err:  # noqa: BLE001 - the server starts; dashboards stay unreachable from the browser
        server_app.log.warning("datalake_lab: could not route the Dask dashboards: %s", err)
    else:
        if route:
            server_app.log.info("datalake_lab: Dask dashboards of the user's gateway clusters at %s", route)
    rucio_config = server_app.config.get("RucioConfig") or {}
    if not rucio_config.get("instances"):
        return
    try:
        from datalake_lab_rucio import install_handlers

        paths = install_handlers(server_app.web_app)
    except Exception as err:  # noqa: BLE001 - the panel keeps the extension's own answers
        server_app.log.warning("datalake_lab: could not install the Rucio panel's make-available answers: %s", err)
    else:
        server_app.log.info("datalake_lab: answering %s", ", ".join(paths))
    try:
        from rucio_jupyterlab.db import get_db

        seeded = seed_rucio_panel_auth(rucio_config, get_db())
    except Exception as err:  # noqa: BLE001 - never stop the server over the panel's convenience
        server_app.log.warning("datalake_lab: could not pre-set the Rucio panel's OIDC sign-in: %s", err)
        return
    if seeded:
        server_app.log.info("datalake_lab: Rucio panel set to OIDC (hub-managed token) for %s", ", ".join(seeded))
