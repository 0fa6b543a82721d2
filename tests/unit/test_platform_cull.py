"""The local hub's idle culler is built as z2jh 4.4.0's jupyterhub_config.py builds it from `cull.*`."""

from __future__ import annotations

import tarfile

import pytest
from jupyterhub.utils import url_path_join
from localplatform.cull import Z2JH_CULL_DEFAULTS, culler_service
from traitlets.config import Config

from tests.support.helm import z2jh_chart

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


@pytest.mark.skipif(
    z2jh_chart() is None,
    reason="z2jh 4.4.0 chart archive absent: set $Z2JH_CHART or put it at chart/charts/jupyterhub-4.4.0.tgz",
)
@pytest.mark.parametrize(
    "cull",
    [
        {},
        {"enabled": False},
        {"timeout": 20, "every": 5, "adminUsers": False},
        {"users": True, "removeNamedServers": True, "maxAge": 7200, "concurrency": 3, "every": 0},
    ],
)
def test_same_service_as_z2jhs_own_config(cull: dict[str, object]) -> None:
    """z2jh's own `cull` block, run on the same values, builds the same service and role."""
    archive = z2jh_chart()
    assert archive is not None
    with tarfile.open(archive) as tar:
        member = tar.extractfile("jupyterhub/files/hub/jupyterhub_config.py")
        assert member is not None
        source = member.read().decode()
    start = source.index('if get_config("cull.enabled", False):')
    block = source[start : source.index('for key, service in get_config("hub.services"', start)]
    values = {**Z2JH_CULL_DEFAULTS, **cull}
    c = Config()
    c.JupyterHub.services = []
    c.JupyterHub.load_roles = []

    def get_config(key: str, default: object = None) -> object:
        return values.get(key.removeprefix("cull."), default)

    code = compile(block, "z2jh jupyterhub_config.py", "exec")
    namespace = {"c": c, "get_config": get_config, "url_path_join": url_path_join}
    exec(code, namespace)  # noqa: S102 - z2jh's own file, from the chart archive
    ours = culler_service(cull, "http://localhost:8081/hub/api", "python3")
    if ours is None:
        assert c.JupyterHub.services == [] and c.JupyterHub.load_roles == []
    else:
        assert c.JupyterHub.services == [ours[0]]
        assert c.JupyterHub.load_roles == [ours[1]]
