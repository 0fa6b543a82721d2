"""Dask Gateway on the hub's side (issue 18): settings, per-group limits, the service and the notebook env.

Each test is something an operator or a user would notice: a gateway switched on without an
address, a user in two groups, an oversized worker, a gateway the hub does not know.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from traitlets.config import Config

from hub_config.dask.hub import apply_dask_gateway, limits_table, notebook_environment, read_gateway_token
from hub_config.dask.limits import LimitError, check_request, limits_for, memory_bytes
from hub_config.errors import ConfigError
from hub_config.pod import base_environment
from hub_config.settings import DaskGatewaySettings, Settings

GIB = 2**30


def enabled(tmp_path: Path, **extra: Any) -> DaskGatewaySettings:
    token = tmp_path / "api-token"
    token.write_text("0123456789abcdef0123456789abcdef\n")
    return DaskGatewaySettings.model_validate(
        {
            "enabled": True,
            "address": "http://traefik-dask-gateway.datalake",
            "proxy_address": "tls://traefik-dask-gateway.datalake:8786",
            "api_token_file": str(token),
            **extra,
        }
    )


def test_gateway_is_off_by_default_and_notebooks_get_no_dask_env(minimal: dict[str, Any]) -> None:
    """A site that did not ask for Dask Gateway sees no change in its servers."""
    settings = Settings.model_validate(minimal)
    assert settings.dask_gateway.enabled is False
    assert not any(key.startswith("DASK_GATEWAY") for key in base_environment(settings))


def test_enabling_without_addresses_is_refused_naming_the_keys(minimal: dict[str, Any]) -> None:
    """Notebooks cannot find a gateway without its address: `validate` says so, not the first user."""
    with pytest.raises(ValidationError, match="needs `address` and `proxy_address`"):
        Settings.model_validate({**minimal, "dask_gateway": {"enabled": True}})


def test_zero_memory_limit_is_refused(minimal: dict[str, Any]) -> None:
    """`0G` would read as "no limit" to Kubernetes; it is refused like the spawner's sizes."""
    with pytest.raises(ValidationError, match="max_memory_per_worker"):
        Settings.model_validate({**minimal, "dask_gateway": {"default_limits": {"max_memory_per_worker": "0G"}}})


def test_notebooks_find_the_gateway_with_no_arguments(tmp_path: Path, minimal: dict[str, Any]) -> None:
    """`Gateway()` reads address, proxy and auth type from dask config env; no token is among them."""
    settings = Settings.model_validate({**minimal, "dask_gateway": enabled(tmp_path).model_dump()})
    env = base_environment(settings)
    assert env["DASK_GATEWAY__ADDRESS"] == "http://traefik-dask-gateway.datalake"
    assert env["DASK_GATEWAY__PROXY_ADDRESS"] == "tls://traefik-dask-gateway.datalake:8786"
    assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    assert "0123456789abcdef" not in repr(env)


def test_a_member_of_several_groups_gets_the_largest_of_each_limit(tmp_path: Path) -> None:
    """Groups only add: joining a small group never lowers what a big one grants."""
    gateway = enabled(
        tmp_path,
        default_limits={"max_workers": 2, "max_cores_per_worker": 1, "max_memory_per_worker": "2G"},
        group_limits={
            "escape/analysis": {"max_workers": 20, "max_cores_per_worker": 1, "max_memory_per_worker": "8G"},
            "escape/gpu": {"max_workers": 4, "max_cores_per_worker": 8, "max_memory_per_worker": "4G"},
        },
    )
    table = limits_table(gateway)
    assert limits_for(table, []).max_workers == 2
    both = limits_for(table, ["escape/gpu", "escape/analysis", "unrelated"])
    assert (both.max_workers, both.max_cores_per_worker, both.max_memory_per_worker) == (20, 8.0, 8 * GIB)
    assert limits_for(table, ["escape/gpu"]).max_memory_per_worker == 4 * GIB


def test_an_oversized_worker_is_refused_with_the_limit_named(tmp_path: Path) -> None:
    """The user sees which limit they hit and what their groups allow."""
    limits = limits_for(limits_table(enabled(tmp_path)), [])
    check_request(limits, worker_cores=2, worker_memory=4 * GIB)
    with pytest.raises(LimitError, match=r"worker_cores=3 is more than your groups allow \(2 per worker\)"):
        check_request(limits, worker_cores=3, worker_memory=GIB)
    with pytest.raises(LimitError, match=r"worker_memory=8 GiB .*\(4 GiB per worker\)"):
        check_request(limits, worker_cores=1, worker_memory=8 * GIB)


def test_memory_sizes_are_binary_units() -> None:
    assert memory_bytes("4G") == 4 * GIB
    assert memory_bytes("512M") == 512 * 2**20
    with pytest.raises(ValueError, match="not a size"):
        memory_bytes("4GB")


def test_gateway_is_a_hub_service_and_server_tokens_may_use_it(tmp_path: Path) -> None:
    """The gateway's token comes from its Secret file; servers' tokens get exactly the two scopes the
    gateway checks (access to the service, the owner's groups) on top of JupyterHub's own."""
    gateway = enabled(tmp_path)
    c = Config()
    c.JupyterHub.services = [{"name": "other", "api_token": "x"}]
    apply_dask_gateway(c, gateway, api_token=read_gateway_token(gateway))
    assert c.JupyterHub.services[-1] == {"name": "dask-gateway", "api_token": "0123456789abcdef0123456789abcdef"}
    assert c.JupyterHub.services[0]["name"] == "other"
    # Appended lazily (z2jh or the chart may define roles too): resolve as traitlets will at load.
    roles = c.JupyterHub.load_roles.get_value([])
    (role,) = [r for r in roles if r["name"] == "server"]
    assert set(role["scopes"]) == {
        "users:activity!user",
        "access:servers!server",
        "read:users:groups!user",
        "access:services!service=dask-gateway",
    }
    (user_role,) = [r for r in roles if r["name"] == "user"]
    assert user_role["scopes"] == ["self", "access:services!service=dask-gateway"]


def test_an_unreadable_token_file_stops_the_hub_naming_the_key(tmp_path: Path) -> None:
    """A gateway the hub does not know would refuse every user; better to say so at start."""
    gateway = enabled(tmp_path).model_copy(update={"api_token_file": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="dask_gateway.api_token_file: cannot read"):
        read_gateway_token(gateway)
    (tmp_path / "blank").write_text("\n")
    with pytest.raises(ConfigError, match="does not hold one API token"):
        read_gateway_token(gateway.model_copy(update={"api_token_file": str(tmp_path / "blank")}))


def test_gateway_off_registers_nothing(minimal: dict[str, Any]) -> None:
    c = Config()
    gateway = Settings.model_validate(minimal).dask_gateway
    apply_dask_gateway(c, gateway, api_token=read_gateway_token(gateway))
    assert "JupyterHub" not in c
    assert notebook_environment(gateway) == {}
