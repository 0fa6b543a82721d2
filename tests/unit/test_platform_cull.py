"""The local hub's idle culler is built as z2jh 4.4.0's jupyterhub_config.py builds it from `cull.*`."""

from __future__ import annotations

import pytest
from localplatform.cull import Z2JH_CULL_DEFAULTS, culler_service

API = "http://127.0.0.1:8081/hub/api"


def test_z2jh_defaults_give_z2jh_command_and_role() -> None:
    """With no `cull` values: enabled, 3600 s timeout, every 600 s, concurrency 10, admins culled too."""
    built = culler_service({}, API, "python3")
    assert built is not None
    service, role = built
    assert service == {
        "name": "jupyterhub-idle-culler",
        "command": [
            "python3",
            "-m",
            "jupyterhub_idle_culler",
            f"--url={API}",
            "--timeout=3600",
            "--cull-every=600",
            "--concurrency=10",
        ],
    }
    assert role == {
        "name": "jupyterhub-idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["jupyterhub-idle-culler"],
    }


def test_every_cull_value_maps_to_its_flag() -> None:
    """users adds --cull-users and admin:users; adminUsers false, removeNamedServers and maxAge add theirs."""
    built = culler_service(
        {"users": True, "adminUsers": False, "removeNamedServers": True, "maxAge": 86400, "timeout": 20, "every": 5},
        API,
        "py",
    )
    assert built is not None
    service, role = built
    assert service["command"][4:] == [
        "--timeout=20",
        "--cull-every=5",
        "--concurrency=10",
        "--cull-users",
        "--cull-admin-users=false",
        "--remove-named-servers",
        "--max-age=86400",
    ]
    assert "admin:users" in role["scopes"]


def test_disabled_or_misspelt() -> None:
    """enabled: false runs no culler; an unknown key is named, as z2jh's schema would refuse it."""
    assert culler_service({"enabled": False}, API, "py") is None
    with pytest.raises(ValueError, match="maxage"):
        culler_service({"maxage": 5}, API, "py")
    assert set(Z2JH_CULL_DEFAULTS) == {
        "enabled",
        "users",
        "adminUsers",
        "removeNamedServers",
        "timeout",
        "every",
        "concurrency",
        "maxAge",
    }
