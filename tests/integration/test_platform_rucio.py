"""A real Rucio 41.5.1 server trusts the local IdP the way production Rucio trusts ESCAPE IAM.

The token path a notebook depends on, end to end and without the hub: log in at the IdP over
plain HTTP, exchange the login token for audience ``rucio``, write the raw JWT to a file, render
a ``rucio.cfg`` pointing at it, and run the real ``rucio`` CLI from the notebooks' venv. Runs the
IdP and the Rucio server in a temporary state dir of their own (no control plane needed).
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from localplatform import idp, rucio_server
from localplatform.clients import REDIRECT, client_config, code_login, exchange, rucio_get, run_rucio

pytestmark = [pytest.mark.platform, pytest.mark.timeout(900)]

HUB_CLIENT = "hub"
HUB_SECRET = "hub-secret-for-rucio-tests"
SHORT_CLIENT = "hub-3s"
LOGIN_SCOPE = "openid profile email offline_access wlcg.groups"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """IdP then Rucio server in a fresh state dir; both stopped (by PID) afterwards."""
    stale = Path(f"/tmp/bt_u{os.getuid()}")
    assert not stale.exists(), f"{stale} exists: the Rucio client would use it instead of our token files"
    state = tmp_path_factory.mktemp("platform")
    try:
        idp_section = idp.up(state, {})
        idp.register_client(idp_section, HUB_CLIENT, HUB_SECRET, [REDIRECT])
        idp.register_client(idp_section, SHORT_CLIENT, HUB_SECRET, [REDIRECT], access_token_ttl=3)
        section = rucio_server.up(state, {"idp": idp_section})
        yield {"idp": idp_section, "rucio": section, "state": state}
    finally:
        rucio_server.down(state)
        idp.down(state)


@pytest.fixture(scope="module")
def users(platform: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Fixture users by username (with their passwords)."""
    return {u["username"]: u for u in idp.load_users(platform["idp"])}


def _login(info: dict[str, Any], user: dict[str, Any], client_id: str = HUB_CLIENT) -> str:
    """Authorization code + PKCE over plain HTTP, as the hub does it; returns the access token."""
    body = code_login(
        info, user["username"], user["password"], client_id=client_id, client_secret=HUB_SECRET, scope=LOGIN_SCOPE
    )
    access: str = body["access_token"]
    return access


def _exchange(info: dict[str, Any], subject_token: str, client_id: str = HUB_CLIENT) -> str:
    """RFC 8693 exchange for audience ``rucio``, as the hub's pre-spawn hook does."""
    resp = exchange(
        info, subject_token, client_id=client_id, client_secret=HUB_SECRET, audience="rucio", scope="openid profile"
    )
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["access_token"]
    return token


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return data


def _whoami(platform: dict[str, Any], tmp_path: Path, token_text: str, account: str | None = None) -> str:
    """Write the token file exactly as given and run ``rucio whoami``; return stdout + stderr."""
    token_file = tmp_path / "token"
    token_file.write_text(token_text)
    token_file.chmod(0o600)
    cfg = tmp_path / "rucio.cfg"
    cfg.write_text(client_config(platform["rucio"], token_file, account=account))
    proc = run_rucio(platform["rucio"], ["whoami"], cfg)
    # The new CLI exits 0 even when authentication fails, so the exit code proves nothing.
    return proc.stdout + proc.stderr


def _account_line(output: str) -> str | None:
    match = re.search(r"^account\s*:\s*(\S+)\s*$", output, re.MULTILINE)
    return match.group(1) if match else None


def _server_answer(platform: dict[str, Any], token: str) -> requests.Response:
    """What the server itself says to a token (the CLI turns a 401 into an interactive prompt)."""
    return rucio_get(platform["rucio"], "/accounts/whoami", token)


def test_ping_answers(platform: dict[str, Any]) -> None:
    """The server is up and is the version production runs: a notebook's client talks to a real 41.5.1."""
    with urllib.request.urlopen(f"{platform['rucio']['url']}/ping", timeout=10) as resp:
        body = resp.read().decode()
    assert resp.status == 200
    assert "41.5.1" in body


def test_accounts_exist_for_fixture_users(platform: dict[str, Any], users: dict[str, dict[str, Any]]) -> None:
    """Every fixture user has an account, ``rucio_account`` wins over the username, and data is there to list."""
    section = platform["rucio"]
    accounts = section["accounts"]
    assert accounts["alice"] == "alice"
    assert accounts["dave.smith"] == "dsmith"
    assert accounts["../Evil User@x"] == "evil"
    assert set(accounts) | set(section["skipped_users"]) == set(users)
    hello = Path(section["files"]["user.alice:hello.txt"])
    assert hello == Path(section["rse_dir"]) / "user" / "alice" / "hello.txt"
    assert hello.read_text().startswith("Hello alice")


@pytest.mark.parametrize(
    ("username", "account"),
    [("alice", "alice"), ("dave.smith", "dsmith"), ("../Evil User@x", "evil")],
)
def test_exchanged_token_gives_whoami_the_users_account(
    platform: dict[str, Any], users: dict[str, dict[str, Any]], tmp_path: Path, username: str, account: str
) -> None:
    """A user whose hub did the exchange sees their own account in ``rucio whoami``, even when it
    differs from their IAM username (dave.smith → dsmith) or the username is hostile."""
    token = _exchange(platform["idp"], _login(platform["idp"], users[username]))
    assert _claims(token)["iss"] == platform["rucio"]["issuer"]
    output = _whoami(platform, tmp_path, token, account=account)
    assert _account_line(output) == account, output


def test_listing_works_with_an_exchanged_token(
    platform: dict[str, Any], users: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """A user can list their sample dataset and its replica on the EOS RSE: an HTTPS (WebDAV) PFN the
    platform's CA vouches for, serving the same file the EOS mount shows."""
    token = _exchange(platform["idp"], _login(platform["idp"], users["dave.smith"]))
    token_file = tmp_path / "token"
    token_file.write_text(token)
    cfg = tmp_path / "rucio.cfg"
    cfg.write_text(client_config(platform["rucio"], token_file, account="dsmith"))
    listing = run_rucio(platform["rucio"], ["did", "list", "user.dsmith:*"], cfg)
    assert "user.dsmith:my-first-dataset" in listing.stdout, listing.stdout + listing.stderr
    replicas = run_rucio(platform["rucio"], ["replica", "list", "file", "--pfns", "user.dsmith:hello.txt"], cfg)
    pfn = replicas.stdout.strip()
    section = platform["rucio"]
    eos = section["rses"][section["rse"]]
    assert pfn == f"{eos['url']}user/dsmith/hello.txt", replicas.stdout + replicas.stderr
    assert urlsplit(pfn).scheme == "https", "the lake is reached over the network, not a host path"
    fetched = requests.get(pfn, verify=platform["idp"]["ca_bundle"], timeout=10)
    assert fetched.status_code == 200, fetched.text
    assert fetched.text.startswith("Hello dave.smith")
    assert Path(section["files"]["user.dsmith:hello.txt"]).read_text() == fetched.text


def test_auth_validate_accepts_the_exchanged_token(platform: dict[str, Any], users: dict[str, dict[str, Any]]) -> None:
    """The JupyterLab extension checks its token file with ``GET /auth/validate``: the side panel
    works only if that answers 200 with the user's account and the token's lifetime."""
    token = _exchange(platform["idp"], _login(platform["idp"], users["carol"]))
    resp = rucio_get(platform["rucio"], "/auth/validate", token, auth=True)
    assert resp.status_code == 200, resp.text
    assert "carol" in resp.text


def test_login_token_without_rucio_audience_is_refused(
    platform: dict[str, Any], users: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Handing Rucio the raw login token (audience = the hub's client) does not work: the hub must
    exchange it. The user would see Rucio's browser-login prompt instead of their account."""
    raw = _login(platform["idp"], users["alice"])
    assert "rucio" not in str(_claims(raw)["aud"])
    answer = _server_answer(platform, raw)
    assert answer.status_code == 401
    assert answer.headers["ExceptionClass"] == "CannotAuthenticate"
    output = _whoami(platform, tmp_path, raw, account="alice")
    assert _account_line(output) is None, output


def test_token_file_with_trailing_newline_fails(
    platform: dict[str, Any], users: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """A token file ending in a newline breaks every request before it is sent (FACTS): the user
    gets an 'Invalid ... return character(s) in header value' error, not their account."""
    token = _exchange(platform["idp"], _login(platform["idp"], users["alice"]))
    assert _account_line(_whoami(platform, tmp_path, token, account="alice")) == "alice"
    output = _whoami(platform, tmp_path, token + "\n", account="alice")
    assert _account_line(output) is None, output
    assert "header value" in output, output


def test_garbage_token_is_refused_with_a_message(platform: dict[str, Any], tmp_path: Path) -> None:
    """A corrupted token file gets a 401 'Cannot authenticate' from the server; the CLI shows no account."""
    answer = _server_answer(platform, "not-a-jwt")
    assert answer.status_code == 401
    assert "Cannot authenticate" in answer.headers["ExceptionMessage"]
    output = _whoami(platform, tmp_path, "not-a-jwt")
    assert _account_line(output) is None, output
    assert "authenticate" in output.lower(), output


def test_expired_token_is_refused_with_a_message(
    platform: dict[str, Any], users: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """A token that was valid stops working once expired: why sessions need the hub's refresher."""
    token = _exchange(platform["idp"], _login(platform["idp"], users["alice"]), SHORT_CLIENT)
    claims = _claims(token)
    assert claims["exp"] - claims["iat"] <= 3
    deadline = time.monotonic() + 15
    while time.time() <= claims["exp"] + 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    answer = _server_answer(platform, token)
    assert answer.status_code == 401
    assert "Cannot authenticate" in answer.headers["ExceptionMessage"]
    output = _whoami(platform, tmp_path, token, account="alice")
    assert _account_line(output) is None, output


def test_up_is_idempotent(platform: dict[str, Any]) -> None:
    """Asking for the server again (the orchestrator does) reuses the running one in well under a second."""
    started = time.monotonic()
    again = rucio_server.up(platform["state"], {"idp": platform["idp"]})
    assert again["pid"] == platform["rucio"]["pid"]
    assert time.monotonic() - started < 2


def test_username_rucio_refuses_is_skipped_with_a_reason(tmp_path: Path) -> None:
    """A fixture user whose name Rucio cannot take as an account (and who has no ``rucio_account``)
    gets no account, with Rucio's reason in the section; everyone else is still served."""
    users_file = tmp_path / "users.json"
    users_file.write_text(
        json.dumps(
            {
                "users": [
                    {"username": "../Evil User@x", "sub": "sub-evil"},
                    {"username": "erin", "sub": "sub-erin", "email": "erin@escape.test"},
                ]
            }
        )
    )
    state = tmp_path / "state"
    try:
        section = rucio_server.up(state, {"idp": {"users_file": str(users_file)}})
        assert section["accounts"] == {"erin": "erin"}
        assert "../Evil User@x" in section["skipped_users"]
        assert "Rucio refused" in section["skipped_users"]["../Evil User@x"]
    finally:
        rucio_server.down(state)
