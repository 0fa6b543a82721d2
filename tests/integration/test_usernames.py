"""Squatting a derived hub name, for real: an IAM account whose username *is* another identity's derived name.

The derived name depends on the issuer, and the local IdP's issuer on a port chosen at its first
start, so no fixed users file can hold the squatter: this module starts its own IdP (own state dir,
same server), learns its issuer, then restarts it with the fixture users plus the squatter. Under the
old rule the squatter, signing in first, took `evil-user-x-<8 hex>` verbatim and `../Evil User@x`
got a 403; now both get their own hub user, server, pod and home.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from localplatform import idp as idp_mod
from localplatform.base import state_dir
from localplatform.hub import HubHandle

from hub_config.auth.usernames import is_derived, normalise_username
from tests.support.hubclient import api, login, running_hub, spawn, stop
from tests.support.kube import user_pods, wait_no_pods

pytestmark = pytest.mark.platform

VICTIM = "../Evil User@x"
SQUATTER_SUB = "2f6a1c0e-0a1b-4c2d-9e3f-5a0a77e20007"


@pytest.fixture(scope="module")
def squat(platform_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The platform with an IdP of its own serving the fixture users plus the squatter."""
    info = platform_factory()
    state = tmp_path_factory.mktemp("idp-squat")
    users = json.loads(Path(idp_mod.DEFAULT_USERS).read_text())["users"]
    victim = next(u for u in users if u["username"] == VICTIM)
    issuer = idp_mod.start(state)["issuer"]  # fixes the port, hence the issuer
    idp_mod.stop(state)
    victim_name = normalise_username(VICTIM, issuer=issuer, sub=victim["sub"])
    squatter = {
        "username": victim_name,
        "password": "squatter-password",
        "sub": SQUATTER_SUB,
        "name": "Mallory Squatter",
        "email": "mallory@escape.test",
        "groups": ["escape"],
        "role": "holds another identity's derived name as IAM username",
    }
    users_file = state / "users.json"
    users_file.write_text(json.dumps({"users": [*users, squatter]}))
    try:
        section = idp_mod.start(state, users_file=users_file)
        assert section["issuer"] == issuer
        yield {"info": {**info, "idp": section}, "victim": victim, "victim_name": victim_name}
    finally:
        idp_mod.stop(state)


@pytest.fixture(scope="module")
def hub(squat: dict[str, Any]) -> Iterator[HubHandle]:
    with running_hub(state_dir(), squat["info"], "usernames") as handle:
        yield handle


def _saved_sub(hub: HubHandle, name: str) -> str:
    user = api(hub, "GET", f"/users/{name}", params={"include_stopped_servers": "1"}).json()
    return str((user.get("auth_state") or {}).get("oauth_user", {}).get("sub"))


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")


def test_squatter_first_then_owner_both_get_own_user_server_and_home(hub: HubHandle, squat: dict[str, Any]) -> None:
    """The squatter signs in first under the owner's derived name; the owner still gets exactly that name,
    the squatter a derived name of their own, and each their own server, pod and home."""
    info, victim, victim_name = squat["info"], squat["victim"], squat["victim_name"]
    assert is_derived(victim_name)

    _, page = login(hub, info, victim_name, "squatter-password")
    assert page.status_code == 200, page.text[:300]
    _, page = login(hub, info, VICTIM, victim["password"])
    assert page.status_code == 200, page.text[:300]

    subs = {u["name"]: _saved_sub(hub, u["name"]) for u in api(hub, "GET", "/users").json()}
    assert subs[victim_name] == victim["sub"], "the owner has the derived name"
    (squatter_name,) = [n for n, s in subs.items() if s == SQUATTER_SUB]
    assert squatter_name != victim_name
    assert squatter_name.startswith(f"{victim_name}-"), "the squatter's claim was itself derived"

    pods: dict[str, dict[str, Any]] = {}
    try:
        for name in (victim_name, squatter_name):
            resp = spawn(hub, name, {"profile": "base"})
            assert resp.status_code in (201, 202), resp.text
            (pods[name],) = user_pods(info, name)
        homes = {
            name: next(m for m in _container(pod)["volumeMounts"] if m["name"] == "home")["subPath"]
            for name, pod in pods.items()
        }
        assert homes[victim_name] != homes[squatter_name]
        assert pods[victim_name]["metadata"]["name"] != pods[squatter_name]["metadata"]["name"]
        servers = {name: api(hub, "GET", f"/users/{name}").json()["servers"][""]["url"] for name in pods}
        assert servers[victim_name] != servers[squatter_name]
    finally:
        for name in (victim_name, squatter_name):
            if api(hub, "GET", f"/users/{name}").json().get("servers"):
                stop(hub, name)
            wait_no_pods(info, name)

    # Signing in again changes nothing: each keeps the name they have.
    login(hub, info, victim_name, "squatter-password")
    login(hub, info, VICTIM, victim["password"])
    after = {u["name"]: _saved_sub(hub, u["name"]) for u in api(hub, "GET", "/users").json()}
    assert after[victim_name] == victim["sub"]
    assert after[squatter_name] == SQUATTER_SUB
