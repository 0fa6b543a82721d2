"""The Rucio panel's "make available" and file status, as datalake_lab answers them (issue #22).

Real pieces only: the platform's IdP and Rucio 41.5.1 server (in a state dir of this module's
own, no control plane), alice's token from a real login and exchange, and a real Jupyter server
from the notebooks' venv running rucio-jupyterlab 41 with our server extension, configured in
replica mode as the hub configures it. The requests are the panel's own (its REST paths and
bodies). A second RSE without any transfer service stands for "the copy has not happened yet".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from localplatform import idp, rucio_server
from localplatform.base import free_port, wait_http
from localplatform.clients import REDIRECT, code_login, exchange
from localplatform.sessionenv import ensure_session_venv

pytestmark = [pytest.mark.platform, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
LAB_MODULES = REPO / "images" / "common" / "datalake_lab"
CLIENT, SECRET = "hub", "hub-secret-for-panel-tests"
PENDING_RSE = "PENDING-DISK"
"""An RSE no transfer tool serves: rules to it stay REPLICATING, as on a site without FTS."""
SERVER_TOKEN = "panel-test-token"
"""The throwaway Jupyter server's own API token."""


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """IdP and Rucio server in a fresh state dir, alice's Rucio token, and the second RSE."""
    state = tmp_path_factory.mktemp("panel-platform")
    try:
        idp_section = idp.up(state, {})
        idp.register_client(idp_section, CLIENT, SECRET, [REDIRECT])
        section = rucio_server.up(state, {"idp": idp_section})
        alice = next(u for u in idp.load_users(idp_section) if u["username"] == "alice")
        login = code_login(
            idp_section,
            "alice",
            alice["password"],
            client_id=CLIENT,
            client_secret=SECRET,
            scope="openid profile email offline_access wlcg.groups",
        )
        answer = exchange(
            idp_section,
            login["access_token"],
            client_id=CLIENT,
            client_secret=SECRET,
            audience="rucio",
            scope="openid profile",
        )
        assert answer.status_code == 200, answer.text
        root = _root_token(section)
        _as_root(section, root, "POST", f"/rses/{PENDING_RSE}", {})
        _as_root(section, root, "POST", f"/accountlimits/local/alice/{PENDING_RSE}", {"bytes": 10**9})
        yield {"idp": idp_section, "rucio": section, "token": answer.json()["access_token"], "state": state}
    finally:
        rucio_server.down(state)
        idp.down(state)


def _root_token(section: dict[str, Any]) -> str:
    root = section["root"]
    resp = requests.get(
        f"{section['auth_url']}/auth/userpass",
        headers={"X-Rucio-Account": "root", "X-Rucio-Username": root["username"], "X-Rucio-Password": root["password"]},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return resp.headers["X-Rucio-Auth-Token"]


def _as_root(section: dict[str, Any], token: str, method: str, path: str, body: dict[str, Any]) -> None:
    resp = requests.request(
        method, f"{section['url']}{path}", headers={"X-Rucio-Auth-Token": token}, json=body, timeout=30
    )
    assert resp.status_code in (200, 201), f"{method} {path}: {resp.status_code} {resp.text}"


def _instance(section: dict[str, Any], name: str, rse: str, token_file: Path) -> dict[str, Any]:
    """A replica-mode instance as the hub renders it (hub_config.rucio.render)."""
    return {
        "name": name,
        "display_name": name,
        "rucio_base_url": section["url"],
        "rucio_auth_url": section["auth_url"],
        "rucio_ca_cert": "/etc/ssl/certs/ca-certificates.crt",
        "mode": "replica",
        "destination_rse": rse,
        "rse_mount_path": "/eos/lake",
        "path_begins_at": 0,
        "oidc_auth": "file",
        "oidc_file_name": str(token_file),
    }


@pytest.fixture(scope="module")
def lab(lake: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Jupyter server from the notebooks' venv with rucio-jupyterlab and datalake_lab; its URL."""
    d = tmp_path_factory.mktemp("lab")
    token_file = d / "token"
    token_file.write_text(lake["token"])  # the raw JWT, no newline, as the hub writes it
    (d / "config").mkdir()
    rucio = lake["rucio"]
    config = {
        "RucioConfig": {
            "instances": [
                _instance(rucio, "lake", rucio["rse"], token_file),
                _instance(rucio, "pending", PENDING_RSE, token_file),
            ],
            "default_instance": "lake",
            "default_auth_type": "oidc",
        },
        "IdentityProvider": {"token": SERVER_TOKEN},
    }
    (d / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
    venv = ensure_session_venv()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BEARER_TOKEN", "JUPYTER", "RUCIO"))},
        "HOME": str(d),
        "JUPYTER_CONFIG_DIR": str(d / "config"),
        "PYTHONPATH": str(LAB_MODULES),  # this checkout's datalake_lab, ahead of the venv's copy
    }
    log = (d / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(venv / "bin" / "jupyter"),
            "server",
            "--allow-root",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--ServerApp.root_dir={d}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http("jupyter server", f"{url}/api/status?token={SERVER_TOKEN}", timeout=120, ok_status=lambda s: s == 200)
        text = (d / "server.log").read_text()
        assert "datalake_lab: answering /rucio-jupyterlab/did/make-available" in text, text[-3000:]
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _panel(lab: str, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
    return requests.request(
        method,
        f"{lab}/rucio-jupyterlab/{path}",
        headers={"Authorization": f"token {SERVER_TOKEN}"},
        data=json.dumps(body) if body is not None else None,
        timeout=60,
    )


def _rules(lake: dict[str, Any], did: str, rse: str) -> list[dict[str, Any]]:
    scope, name = did.split(":")
    resp = requests.get(
        f"{lake['rucio']['url']}/dids/{scope}/{name}/rules", headers={"X-Rucio-Auth-Token": lake["token"]}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    rules = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
    return [r for r in rules if r["rse_expression"] == rse]


def test_make_available_twice_is_one_rule_and_no_error(lake: dict[str, Any], lab: str) -> None:
    """The second request answers 200 with the rule the first made (the extension alone: DuplicateRule body)."""
    did = "user.alice:hello.txt"
    first = _panel(lab, "POST", "did/make-available?namespace=lake", {"did": did})
    assert first.status_code == 200, first.text
    assert first.json()["existing"] is False
    second = _panel(lab, "POST", "did/make-available?namespace=lake", {"did": did})
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["existing"] is True and body["rule_id"] == first.json()["rule_id"]
    assert "already exists" in body["message"]
    assert "DuplicateRule" not in second.text
    assert [r["id"] for r in _rules(lake, did, lake["rucio"]["rse"])] == [body["rule_id"]]


def test_a_rule_waiting_for_a_transfer_is_shown_as_pending(lake: dict[str, Any], lab: str) -> None:
    """No transfer tool serves the second RSE: the file's status says the copy is pending, and why."""
    did = "user.alice:numbers.csv"
    made = _panel(lab, "POST", "did/make-available?namespace=pending", {"did": did})
    assert made.status_code == 200, made.text
    (rule,) = _rules(lake, did, PENDING_RSE)
    assert rule["state"] == "REPLICATING"
    deadline = time.monotonic() + 60
    while True:
        answer = _panel(lab, "GET", f"did?namespace=pending&did={did}")
        assert answer.status_code == 200, answer.text
        (detail,) = answer.json()
        if detail.get("rule_state") == "REPLICATING" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert detail["status"] == "FETCHING", detail  # the status the panel shows a message for, and keeps polling
    assert detail["message"].startswith(f"Pending transfer to {PENDING_RSE}, 0 of 1 file(s) copied: ")
    assert f"Rule {rule['id']}, since " in detail["message"]
    assert "transfer service (FTS)" in detail["message"]


def test_a_permission_refusal_reads_as_one(lake: dict[str, Any]) -> None:
    """Rucio's real AccessDenied (a locked rule, which only admins may make) becomes "Permission denied" (403).

    The panel only names authentication for a 401, so the answer must not be one."""
    resp = requests.post(
        f"{lake['rucio']['url']}/rules/",
        headers={"X-Rucio-Auth-Token": lake["token"]},
        json={
            "dids": [{"scope": "user.alice", "name": "hello.txt"}],
            "copies": 1,
            "rse_expression": PENDING_RSE,
            "locked": True,
            "account": "alice",
        },
        timeout=30,
    )
    sys.path.insert(0, str(LAB_MODULES))
    try:
        from datalake_lab_rucio import refusal, rucio_error
    finally:
        sys.path.remove(str(LAB_MODULES))
    error = rucio_error(resp.json())
    assert error is not None and error[0] == "AccessDenied", resp.text
    status, text = refusal(*error, action=f"create a replication rule to {PENDING_RSE}")
    assert status == 403
    assert text.startswith(f"Permission denied: your Rucio account may not create a replication rule to {PENDING_RSE}")
    assert "authenticat" not in text.lower()
