"""The node agent's one deviation from a kubelet: "all interfaces" in a pod's args means its pod IP.

In a cluster each pod has its own network namespace, so binding every interface is private to the
pod; here every pod shares the host's loopback, and two schedulers binding ``:8786`` would collide
(and listen beyond loopback). Each spelling the pods we run use is rewritten; nothing else is.
"""

from __future__ import annotations

from localplatform.nodeagent_env import container_argv

POD_IP = "127.173.2.1"


def test_dask_gateway_scheduler_args_bind_the_pod_ip() -> None:
    """The Dask Gateway controller's scheduler command, as it writes it."""
    container = {
        "args": ["dask", "scheduler", "--protocol", "tls", "--host", "", "--port", "8786",
                 "--dashboard-address", ":8787", "--dg-api-address", ":8788"],
    }  # fmt: skip
    argv = container_argv(container, {}, POD_IP)
    assert argv[argv.index("--host") + 1] == POD_IP
    assert argv[argv.index("--dashboard-address") + 1] == f"{POD_IP}:8787"
    assert argv[argv.index("--dg-api-address") + 1] == f"{POD_IP}:8788"


def test_other_args_are_left_alone() -> None:
    """An empty value of another option, a URL with a port, a bare port number: unchanged."""
    container = {"command": ["x"], "args": ["--name", "", "tls://dask-abc.datalake:8786", "8786", "--ip=0.0.0.0"]}
    assert container_argv(container, {}, POD_IP) == [
        "x",
        "--name",
        "",
        "tls://dask-abc.datalake:8786",
        "8786",
        f"--ip={POD_IP}",
    ]
