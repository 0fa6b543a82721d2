"""Rucio accounts for real IAM names, through the hub: claim, transformed template, lookup at Rucio.

Everything is real: the platform IdP sends a `rucio_account` claim for dave.smith and none for
erin.jones or frank.miller; the Rucio bootstrap maps each user's identity (`SUB=…, ISS=…`) to their
account (dsmith, erin_jones, fmiller); the hub derives the account per instance and writes it
into the server's Secret; the Rucio client in the session talks to the real Rucio server.

One hub, three instances on the same Rucio server, one per set of routes:
- ``local`` (the default): claim `rucio_account`, else `{username}` with the ESCAPE transforms;
- ``bylookup``: only asks Rucio which account holds the identity;
- ``claimonly``: only the claim, so a user without it gets no account, and is told why.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from localplatform.base import state_dir
from localplatform.hub import HubHandle

from tests.support.hubclient import api, login, progress_messages, running_hub, stop
from tests.support.kube import get_json, user_pods, wait_no_pods
from tests.support.podexec import pod_exec

pytestmark = pytest.mark.platform

RUCIO_DIR = "/etc/datalake/rucio"
TRANSFORMS = ["lowercase", {"replace": {".": "_"}}, "drop_invalid", "truncate"]


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


def _instance(info: dict[str, Any], name: str, display: str, **routes: Any) -> dict[str, Any]:
    rucio = info["rucio_server"]
    return {
        "name": name,
        "display_name": display,
        "rucio_host": rucio["url"],
        "auth_host": rucio["auth_url"],
        "ca_cert": info["idp"]["ca_bundle"],
        **routes,
    }


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    instances = [
        _instance(
            info,
            "local",
            "Local Rucio",
            account_claim="rucio_account",
            account_template="{username}",
            account_transforms=TRANSFORMS,
        ),
        _instance(info, "bylookup", "Lookup Rucio", account_lookup=True),
        _instance(info, "claimonly", "Claim Rucio", account_claim="rucio_account"),
    ]
    patch = {"rucio": {"instances": instances, "default_instance": "local"}}
    with running_hub(state_dir(), info, "rucio-accounts", settings_patch=patch) as handle:
        yield handle


def _start(hub: HubHandle, info: dict[str, Any], user: str, password: str) -> tuple[dict[str, Any], list[str]]:
    """Sign ``user`` in, spawn `base` while following the progress; return the pod and the messages."""
    _, page = login(hub, info, user, password)
    assert page.status_code == 200, page.text[:500]
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=1) as pool:
            request = pool.submit(api, hub, "POST", f"/users/{user}/server", json={"profile": "base"})
            messages = progress_messages(hub, user, wait_pending=30)
            assert request.result().status_code in (201, 202)
        if len(messages) > 1:
            break
        # The spawn (~0.3 s on kwok) was over before the stream opened, which then gives only
        # "ready": the messages a user follows on the spawn page were not seen. Start again.
        stop(hub, user)
    deadline = time.monotonic() + 60
    while not api(hub, "GET", f"/users/{user}").json()["servers"].get("", {}).get("ready"):
        assert time.monotonic() < deadline, f"{user}'s server not ready; hub log {hub.log}"
        time.sleep(1)
    (pod,) = user_pods(info, user)
    return pod, messages


def _cfg_accounts(info: dict[str, Any], pod: dict[str, Any]) -> dict[str, str]:
    """Instance → `account` in its rucio-<instance>.cfg, read from the server's Secret (an instance
    that could not be set up has a stand-in file that names no account, and is left out)."""
    import base64

    secret = get_json(info, "secret", "-n", info["controlplane"]["namespace"], f"{pod['metadata']['name']}-rucio")
    out: dict[str, str] = {}
    for key, value in secret["data"].items():
        found = re.fullmatch(r"rucio-(.+)\.cfg", key)
        if found:
            text = base64.b64decode(value).decode()
            account = re.search(r"^account\s*=\s*(\S+)$", text, re.MULTILINE)
            if account:
                out[found.group(1)] = account.group(1)
            else:
                assert re.search(r"^auth_type = unavailable", text, re.MULTILINE | re.IGNORECASE), text
    return out


def _whoami(info: dict[str, Any], pod: dict[str, Any], instance: str) -> str:
    cmd = ["env", f"RUCIO_CONFIG={RUCIO_DIR}/rucio-{instance}.cfg", "rucio", "whoami"]
    result = pod_exec(info, pod["metadata"]["name"], cmd)
    return result.stdout + result.stderr


def _stop(hub: HubHandle, info: dict[str, Any], user: str) -> None:
    stop(hub, user)
    wait_no_pods(info, user)


def test_dave_gets_dsmith_from_the_claim(hub: HubHandle, info: dict[str, Any]) -> None:
    """IAM sends dave.smith's `rucio_account: dsmith`: every claim route uses it; whoami agrees."""
    pod, messages = _start(hub, info, "dave.smith", "dave-password")
    try:
        assert _cfg_accounts(info, pod) == {"local": "dsmith", "bylookup": "dsmith", "claimonly": "dsmith"}
        assert re.search(r"^account\s*:\s*dsmith$", _whoami(info, pod, "local"), re.MULTILINE)
        assert not [m for m in messages if "no Rucio account" in m], messages
    finally:
        _stop(hub, info, "dave.smith")


def test_dotted_name_without_claim_gets_the_transformed_username(hub: HubHandle, info: dict[str, Any]) -> None:
    """erin.jones has no claim: `local` falls through to `{username}` with `.` → `_`, giving erin_jones;
    the claim-only instance gives her no account and says exactly why, and her server still starts."""
    pod, messages = _start(hub, info, "erin.jones", "erin-password")
    try:
        accounts = _cfg_accounts(info, pod)
        assert accounts == {"local": "erin_jones", "bylookup": "erin_jones"}
        assert re.search(r"^account\s*:\s*erin_jones$", _whoami(info, pod, "local"), re.MULTILINE)
        line = next(m for m in messages if m.startswith("Rucio instance Claim Rucio"))
        assert line.startswith("Rucio instance Claim Rucio: unavailable: no Rucio account"), messages
        assert "the user's claims have no (string) 'rucio_account' claim" in line, line
    finally:
        _stop(hub, info, "erin.jones")


def test_lookup_finds_the_account_rucio_maps_the_identity_to(hub: HubHandle, info: dict[str, Any]) -> None:
    """frank.miller is `fmiller` only in Rucio's identity mapping: the lookup route asks Rucio and finds it."""
    pod, _ = _start(hub, info, "frank.miller", "frank-password")
    try:
        accounts = _cfg_accounts(info, pod)
        assert accounts["bylookup"] == "fmiller"
        assert accounts["local"] == "frank_miller", "the template route is a guess; only the lookup knows"
        assert re.search(r"^account\s*:\s*fmiller$", _whoami(info, pod, "bylookup"), re.MULTILINE)
    finally:
        _stop(hub, info, "frank.miller")
