"""R in the Data science option: its server offers the `ir` kernel, and a cell runs in it.

alice starts the `datascience` option through the hub like any user. The node agent runs her server
from the session venv, with R and IRkernel from the Debian packages `make prepare` installs from the
image's own list (images/datalake-datascience/apt-packages.txt, the one its Dockerfile installs). She
starts a kernel through the Jupyter REST API and runs a cell over the kernel's websocket, as the Lab
does. bob's `base` server lists no R kernel: that image has no R.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from localplatform.base import state_dir
from localplatform.hub import HubHandle

from tests.support.hubclient import api, running_hub, spawn, stop
from tests.support.kernel import execute, server_token
from tests.support.kube import user_pods, wait_no_pods

pytestmark = pytest.mark.platform

CELL = "cat(R.version$major, sum(1:10))"
"""R's major version and 55: output only R can give (a Python kernel would fail on ``$``)."""


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    with running_hub(state_dir(), info, "rkernel") as handle:
        yield handle


@pytest.fixture(scope="module")
def servers(hub: HubHandle, info: dict[str, Any]) -> Iterator[dict[str, str]]:
    """alice on `datascience`, bob on `base`, both started through the hub; each user's own token."""
    tokens = {}
    for user, profile in (("alice", "datascience"), ("bob", "base")):
        tokens[user] = server_token(hub, info, user, f"{user}-password")
        assert spawn(hub, user, {"profile": profile}).status_code in (201, 202)
        assert len(user_pods(info, user)) == 1
    yield tokens
    for user in tokens:
        if api(hub, "GET", f"/users/{user}").json().get("servers"):
            stop(hub, user)
        wait_no_pods(info, user)


def kernelspecs(hub: HubHandle, user: str, token: str) -> dict[str, Any]:
    resp = requests.get(
        f"{hub.url}user/{user}/api/kernelspecs", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert resp.status_code == 200, resp.text[:300]
    specs: dict[str, Any] = resp.json()["kernelspecs"]
    return specs


def test_datascience_server_runs_an_r_cell(hub: HubHandle, servers: dict[str, str]) -> None:
    token = servers["alice"]
    specs = kernelspecs(hub, "alice", token)
    assert "ir" in specs, f"alice's datascience server offers no R kernel, only {sorted(specs)}"
    assert specs["ir"]["spec"]["language"] == "R"
    assert specs["ir"]["spec"]["display_name"] == "R"

    headers = {"Authorization": f"token {token}"}
    started = time.monotonic()
    resp = requests.post(f"{hub.url}user/alice/api/kernels", json={"name": "ir"}, headers=headers, timeout=120)
    assert resp.status_code == 201, resp.text[:500]
    kernel = resp.json()
    assert kernel["name"] == "ir"
    ws_url = f"{hub.url.replace('http', 'ws', 1)}user/alice/api/kernels/{kernel['id']}/channels"
    status, outputs = asyncio.run(execute(ws_url, token, CELL))
    print(f"R kernel start + first cell through the hub: {time.monotonic() - started:.1f} s")
    assert status == "ok", outputs
    assert re.fullmatch(r"[0-9]+ 55", "".join(outputs).strip()), outputs

    failing_status, failing = asyncio.run(execute(ws_url, token, "stop('no such data')"))
    assert failing_status == "error"
    assert "no such data" in "".join(failing), failing
    gone = requests.delete(f"{hub.url}user/alice/api/kernels/{kernel['id']}", headers=headers, timeout=60)
    assert gone.status_code == 204, gone.text[:300]


def test_base_server_offers_no_r_kernel(hub: HubHandle, servers: dict[str, str]) -> None:
    """The base image has no R: its server lists Python only, though R is installed on this machine."""
    specs = kernelspecs(hub, "bob", servers["bob"])
    assert "python3" in specs
    assert "ir" not in specs, "bob's base server offers alice's image's R kernel"
