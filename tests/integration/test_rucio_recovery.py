"""Recovery after an IdP outage, and servers that cannot get Rucio, on the real local platform.

The platform's IdP process is stopped for longer than a token lives, so the session's Rucio
token expires while the hub cannot get a new one; then it is started again (same issuer, keys
and token store) and the time until `rucio whoami` works again in the session is measured.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from localplatform import idp
from localplatform.base import state_dir
from localplatform.hub import HubHandle, hub_log_text, local_rucio_instance

from tests.support.hubclient import api, login, running_hub, spawn, stop
from tests.support.kube import user_pods, wait_no_pods
from tests.support.podexec import pod_exec
from tests.support.rotation import fast_rotation

pytestmark = [pytest.mark.platform, pytest.mark.timeout(900)]

TTL = 30
CHECK_INTERVAL = 5
RECOVERY_BOUND = 30
"""Seconds within which a session's expired token is rotated once the IdP answers again (issue 21)."""


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    """A hub whose IAM tokens live 30 s, rotated with 15 s left, checked every 5 s; default retry caps."""
    patch = fast_rotation(iam_margin=20, rucio_margin=15, check_interval=CHECK_INTERVAL)
    with running_hub(state_dir(), info, "rucio-recovery", settings_patch=patch, access_token_ttl=TTL) as handle:
        yield handle


def _whoami_ok(info: dict[str, Any], pod_name: str, account: str) -> bool:
    result = pod_exec(info, pod_name, ["rucio", "whoami"])
    return re.search(rf"^account\s*:\s*{account}$", result.stdout + result.stderr, re.MULTILINE) is not None


def test_session_recovers_quickly_after_an_idp_outage_longer_than_a_token(hub: HubHandle, info: dict[str, Any]) -> None:
    """IdP down for TTL + 15 s: the token expires and whoami fails; IdP back: whoami works within 30 s."""
    seen = len(hub_log_text(hub))
    login(hub, info, "bob", "bob-password")
    assert spawn(hub, "bob", {"profile": "base"}).status_code in (201, 202)
    (pod,) = user_pods(info, "bob")
    name = pod["metadata"]["name"]
    try:
        assert _whoami_ok(info, name, "bob")
        idp.stop(state_dir())
        try:
            time.sleep(TTL + 15)
            assert not _whoami_ok(info, name, "bob"), "the session's token should have expired during the outage"
        finally:
            idp.start(state_dir())
        back = time.monotonic()
        while not _whoami_ok(info, name, "bob"):
            assert time.monotonic() - back < RECOVERY_BOUND + CHECK_INTERVAL + 30, "no recovery; see " + str(hub.log)
            time.sleep(1)
        recovery = time.monotonic() - back
        print(f"\nrucio whoami works again {recovery:.1f}s after the IdP came back")
        log = hub_log_text(hub)[seen:]
        assert "The IdP is unavailable: token rotations wait" in log
        assert "The IdP is available again" in log
        assert recovery <= RECOVERY_BOUND + CHECK_INTERVAL
    finally:
        stop(hub, "bob")
        wait_no_pods(info, "bob")


@pytest.fixture(scope="module")
def claim_only_hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    """The same, with an instance that takes the account from the IdP's claim only (no template)."""
    instance = local_rucio_instance(info, account_template=None, account_transforms=[])
    patch = fast_rotation(iam_margin=20, rucio_margin=15, check_interval=CHECK_INTERVAL, instances=[instance])
    with running_hub(state_dir(), info, "rucio-claim-only", settings_patch=patch, access_token_ttl=TTL) as handle:
        yield handle


def test_server_without_a_valid_account_is_not_retried(claim_only_hub: HubHandle, info: dict[str, Any]) -> None:
    """erin.jones has no account claim, and the instance has no other route: the server is parked once,
    with the reason in the log, and its user's tokens are not refreshed by rotations."""
    hub = claim_only_hub
    seen = len(hub_log_text(hub))  # the log file outlives a run: read only what this test adds
    login(hub, info, "erin.jones", "erin-password")
    assert spawn(hub, "erin.jones", {"profile": "base"}).status_code in (201, 202)
    (pod,) = user_pods(info, "erin.jones")
    key = pod["metadata"]["name"]
    try:
        time.sleep(4 * CHECK_INTERVAL)
        lines = [line for line in hub_log_text(hub)[seen:].splitlines() if key in line]
        parked = [line for line in lines if "are no longer rotated" in line]
        assert len(parked) == 1, lines
        assert "no (string) 'rucio_account' claim" in parked[0]
        assert not [line for line in lines if "rotation for" in line and "failed" in line], lines
        assert api(hub, "GET", "/users/erin.jones").json()["servers"][""]["ready"] is True
    finally:
        stop(hub, "erin.jones")
        wait_no_pods(info, "erin.jones")
