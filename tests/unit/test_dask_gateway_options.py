"""The gateway's per-user cluster options (issue 18), with dask-gateway-server's real Options.

What a user notices: their cluster runs their notebook's image and sees their Rucio files, a worker
bigger than their groups allow is refused with the limit named, and nobody gets someone else's
Secret or image, whatever they put in the request.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from dask_gateway_server.models import User

from hub_config.dask import gateway
from hub_config.dask.gateway import ClusterOptions, pick_server
from hub_config.dask.limits import LimitError
from hub_config.rucio.secret import VOLUME_NAME

TABLE = {
    "default": {
        "max_workers": 2,
        "max_cores_per_worker": 1,
        "max_memory_per_worker": "2G",
        "idle_timeout_minutes": 10,
    },
    "groups": {
        "escape/analysis": {
            "max_workers": 8,
            "max_cores_per_worker": 4,
            "max_memory_per_worker": "8G",
            "idle_timeout_minutes": 60,
        }
    },
}
TOKEN = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJl"


def notebook_pod(
    user: str, *, server: str = "", phase: str = "Running", image: str = "ghcr.io/x/datalake-hep:2026.11"
) -> dict[str, Any]:
    """A notebook pod as KubeSpawner and the hub's wiring make it (the parts the gateway reads)."""
    secret = f"jupyter-{user}-rucio"
    return {
        "metadata": {
            "name": f"jupyter-{user}",
            "annotations": {"hub.jupyter.org/username": user, "hub.jupyter.org/servername": server},
        },
        "spec": {
            "securityContext": {"fsGroup": 100, "runAsUser": 1000},
            "volumes": [
                {"name": "home", "emptyDir": {}},
                {"name": VOLUME_NAME, "secret": {"secretName": secret, "defaultMode": 0o440, "optional": True}},
            ],
            "containers": [
                {
                    "name": "notebook",
                    "image": image,
                    "env": [
                        {"name": "RUCIO_CONFIG", "value": "/opt/rucio/etc/rucio.cfg"},
                        {"name": "JUPYTERHUB_API_TOKEN", "value": TOKEN},
                    ],
                    "volumeMounts": [{"name": VOLUME_NAME, "mountPath": "/opt/rucio/etc", "readOnly": True}],
                }
            ],
        },
        "status": {"phase": phase},
    }


def options_for(user: User, pods: list[dict[str, Any]]) -> Any:
    async def servers() -> list[dict[str, Any]]:
        return pods

    return asyncio.run(ClusterOptions(TABLE, servers)(user))


def configure(user: User, pods: list[dict[str, Any]], request: dict[str, Any]) -> dict[str, Any]:
    options = options_for(user, pods)
    config: dict[str, Any] = options.get_configuration(options.parse_options(request), user)
    return config


def test_cluster_runs_the_notebooks_image_and_mounts_its_rucio_secret_as_a_directory() -> None:
    alice = User("alice", groups=["escape"])
    config = configure(alice, [notebook_pod("bob", image="evil:1"), notebook_pod("alice")], {})
    assert config["image"] == "ghcr.io/x/datalake-hep:2026.11"
    (volume,) = config["worker_extra_pod_config"]["volumes"]
    assert volume["secret"]["secretName"] == "jupyter-alice-rucio"
    (mount,) = config["worker_extra_container_config"]["volumeMounts"]
    assert mount == {"name": VOLUME_NAME, "mountPath": "/opt/rucio/etc", "readOnly": True}
    assert "subPath" not in mount  # a subPath mount would never see a rotated token
    assert config["scheduler_extra_pod_config"] == config["worker_extra_pod_config"]
    assert config["worker_extra_pod_config"]["securityContext"]["fsGroup"] == 100
    assert config["environment"] == {"RUCIO_CONFIG": "/opt/rucio/etc/rucio.cfg"}
    assert TOKEN not in json.dumps(config)
    assert config["cluster_max_workers"] == 2 and config["idle_timeout"] == 600
    # The images' distributed has no `dask-scheduler` script any more (see the session venv).
    assert config["scheduler_cmd"] == ["dask", "scheduler"]
    assert config["worker_cmd"][:2] == ["dask", "worker"]


def test_workers_listen_on_and_advertise_their_own_pod_ip() -> None:
    """`--host $(POD_IP)`, the variable from the downward API: the kubelet substitutes it in args, so
    each worker's address is its pod's, as the scheduler and the other workers must dial it."""
    config = configure(User("alice", groups=["escape"]), [notebook_pod("alice")], {})
    assert config["worker_cmd"] == ["dask", "worker", "--host", "$(POD_IP)"]
    pod_ip = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    assert pod_ip in config["worker_extra_container_config"]["env"]
    assert "POD_IP" not in config["environment"]  # values only there; the gateway appends this list


def test_group_members_get_their_groups_limits() -> None:
    config = configure(User("carol", groups=["escape/analysis"]), [notebook_pod("carol")], {"worker_cores": 4})
    assert config["cluster_max_workers"] == 8
    assert config["worker_cores"] == 4


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"worker_cores": 3}, "worker_cores=3 is more than your groups allow"),
        ({"worker_memory": 16}, "worker_memory=16 GiB"),
    ],
)
def test_an_oversized_worker_is_refused(request_: dict[str, Any], message: str) -> None:
    with pytest.raises(LimitError, match=message):
        configure(User("alice", groups=["escape"]), [notebook_pod("alice")], request_)


def test_no_running_server_no_cluster() -> None:
    """Clusters live within a server: without one (or with only someone else's) the request is refused."""
    with pytest.raises(ValueError, match="start your notebook server first"):
        options_for(User("alice"), [notebook_pod("bob"), notebook_pod("alice", phase="Pending")])


def test_named_servers_are_not_taken_for_the_default_one() -> None:
    pods = [notebook_pod("alice", server="gpu")]
    assert pick_server(pods, "alice") is None
    assert pick_server(pods, "alice", "gpu") is pods[0]


def test_the_gateway_looks_for_the_volume_the_hub_makes() -> None:
    assert gateway.VOLUME_NAME == VOLUME_NAME


def test_the_gateway_module_runs_without_pydantic() -> None:
    """The gateway's image has dask-gateway-server, kubernetes_asyncio and aiohttp, not pydantic
    nor prometheus_client."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['pydantic'] = sys.modules['prometheus_client'] = None\n"
        "import hub_config.dask.gateway, hub_config.kube\nprint('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_limit_left_out_is_the_settings_default() -> None:
    """The chart hands the gateway `datalake.dask_gateway` as written: a group entry (or a default)
    that leaves a limit out gets the settings model's default for it, as the hub would."""
    from hub_config.dask.limits import limits_for
    from hub_config.settings import DaskGatewaySettings

    written = {"default_limits": {"max_workers": 3}, "group_limits": {"escape/gpu": {"max_cores_per_worker": 8}}}
    model = DaskGatewaySettings.model_validate(written)
    table = {"default": written["default_limits"], "groups": written["group_limits"]}
    for groups in (["escape"], ["escape", "escape/gpu"]):
        from hub_config.dask.hub import limits_table

        assert limits_for(table, groups) == limits_for(limits_table(model), groups), groups
    assert limits_for(table, ["escape/gpu"]).max_cores_per_worker == 8


def test_the_bootstrap_refuses_a_file_outside_the_package() -> None:
    """The chart's gateway bootstrap writes only inside its private hub_config directory."""
    from hub_config.dask.gateway_bootstrap import install_package

    with pytest.raises(ValueError, match="not a relative path inside the package"):
        install_package({"../escape.py": "x = 1"})
