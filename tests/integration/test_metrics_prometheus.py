"""Our metrics as an operator's Prometheus sees them: the platform's real Prometheus scrapes the hub's
`/hub/metrics` with a `read:metrics` token, and PromQL is asked what happened.

Rotations succeed for real (IAM tokens living 30 s, rotated with 15 s left), then fail for real (the
IdP process stopped for longer than a token lives), then recover; a broken profile edit is refused.
The shipped alert rules are loaded by the same Prometheus and must evaluate without error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from localplatform import idp
from localplatform.base import state_dir
from localplatform.hub import HubHandle
from localplatform.prometheus import query

from tests.support.hubclient import login, running_hub, spawn, stop
from tests.support.kube import user_pods, wait_no_pods
from tests.support.rotation import fast_rotation

pytestmark = [pytest.mark.platform, pytest.mark.timeout(900)]

TTL = 30
CHECK_INTERVAL = 5
HUB = "metrics"


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory("prometheus")


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    patch = fast_rotation(iam_margin=20, rucio_margin=15, check_interval=CHECK_INTERVAL)
    with running_hub(state_dir(), info, HUB, settings_patch=patch, access_token_ttl=TTL) as handle:
        _INSTANCE[0] = urlsplit(handle.url).netloc
        yield handle


def promql(info: dict[str, Any], expr: str) -> float | None:
    """The single value of ``expr`` for this hub, or None when the result is empty."""
    result = query(info["prometheus"], expr)
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def wait_until(
    info: dict[str, Any], expr: str, ok: Callable[[float | None], bool], timeout: float, why: str
) -> float | None:
    deadline = time.monotonic() + timeout
    while True:
        value = promql(info, expr)
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"{why}: `{expr}` is {value} after {timeout:.0f}s"
        time.sleep(1)


def sel(name: str, *matchers: str, **labels: str) -> str:
    """``name`` of this hub process (its target address), with ``labels`` and other ``matchers``."""
    equal = [f'{k}="{v}"' for k, v in {"hub": HUB, "instance": _INSTANCE[0], **labels}.items()]
    return name + "{" + ",".join([*equal, *matchers]) + "}"


_INSTANCE = [""]
"""host:port Prometheus scrapes this module's hub at (set by the ``hub`` fixture)."""


def _exposition(hub: HubHandle, info: dict[str, Any]) -> str:
    token = Path(info["prometheus"]["token_file"]).read_text().strip()
    with requests.get(f"{hub.url}hub/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10) as resp:
        assert resp.status_code == 200
        return resp.text


def test_metrics_need_the_read_metrics_scope(hub: HubHandle, info: dict[str, Any]) -> None:
    """Same auth as JupyterHub's own metrics: no token, no metrics; Prometheus's token scrapes."""
    assert requests.get(f"{hub.url}hub/metrics", timeout=10).status_code in (401, 403)
    wait_until(info, sel("up"), lambda v: v == 1, 30, "Prometheus scrapes the hub")
    assert promql(info, sel("datalake_hub_profile_generation")) == 1


def test_rotations_succeed_fail_and_recover_in_promql(hub: HubHandle, info: dict[str, Any]) -> None:
    login(hub, info, "bob", "bob-password")
    assert spawn(hub, "bob", {"profile": "base"}).status_code in (201, 202)
    (pod,) = user_pods(info, "bob")
    assert pod
    try:
        wait_until(info, sel("datalake_hub_running_servers", profile="base"), lambda v: v == 1, 30, "running")
        wait_until(
            info,
            sel("datalake_hub_secret_writes_total", operation="create", outcome="success"),
            lambda v: v is not None and v >= 1,
            30,
            "the spawn's Secret write",
        )
        ok_before = wait_until(
            info,
            sel("datalake_hub_token_rotations_total", outcome="success"),
            lambda v: v is not None and v >= 1,
            TTL + 30,
            "a rotation succeeds",
        )
        assert (promql(info, sel("datalake_hub_secret_writes_total", operation="patch", outcome="success")) or 0) >= 1
        exchanges = sel("datalake_hub_token_request_duration_seconds_count", grant="token_exchange", outcome="success")
        assert (promql(info, exchanges) or 0) >= 2, "the spawn's exchange and the rotation's"
        refreshes = sel("datalake_hub_token_request_duration_seconds_count", grant="refresh_token", outcome="success")
        assert (promql(info, refreshes) or 0) >= 1
        assert promql(info, sel("datalake_hub_servers_without_fresh_token", reason="expired")) == 0
        ours = [line for line in _exposition(hub, info).splitlines() if line.startswith("datalake_hub_")]
        assert ours and not [line for line in ours if "bob" in line or pod["metadata"]["name"] in line]

        idp.stop(state_dir())
        try:
            wait_until(
                info,
                sel("datalake_hub_token_rotations_total", outcome="idp_unavailable"),
                lambda v: v is not None and v >= 1,
                TTL + 30,
                "a rotation fails while the IdP is down",
            )
            wait_until(
                info,
                sel("datalake_hub_servers_without_fresh_token", reason="expired"),
                lambda v: v == 1,
                TTL + 30,
                "the session's token expires during the outage",
            )
        finally:
            idp.start(state_dir())
        wait_until(
            info,
            sel("datalake_hub_servers_without_fresh_token", reason="expired"),
            lambda v: v == 0,
            60,
            "the session gets a fresh token once the IdP is back",
        )
        ok_after = promql(info, sel("datalake_hub_token_rotations_total", outcome="success"))
        assert ok_after is not None and ok_before is not None and ok_after > ok_before
        # The dashboard's error-ratio panel and the alert's expression answer over the same data.
        failed = sel("datalake_hub_token_rotations_total", 'outcome!="success"')
        every = sel("datalake_hub_token_rotations_total")
        ratio = promql(
            info, f"sum without (outcome) (increase({failed}[10m])) / sum without (outcome) (increase({every}[10m]))"
        )
        assert ratio is not None and 0 < ratio < 1
    finally:
        stop(hub, "bob")
        wait_no_pods(info, "bob")
    wait_until(info, sel("datalake_hub_running_servers", profile="base"), lambda v: v == 0, 30, "stopped")


def test_a_refused_profile_edit_shows_in_promql(hub: HubHandle, info: dict[str, Any]) -> None:
    """The alert's expression (refused later than loaded) holds after a broken edit, and not after a fix,
    with nobody opening a page: Prometheus's scrapes make the hub look for the edit."""
    refused = sel("datalake_hub_profile_last_refused_timestamp_seconds")
    loaded = sel("datalake_hub_profile_loaded_timestamp_seconds")
    alert_expr = f"{refused} > {loaded}"
    path = hub.profiles_dir / "base.yaml"
    good = path.read_text()
    try:
        path.write_text(good + "\nmounts: [tape]\n")
        wait_until(info, alert_expr, lambda v: v is not None, 30, "the refused edit")
        assert promql(info, sel("datalake_hub_profile_reloads_total", outcome="refused")) == 1
    finally:
        path.write_text(good + "\n# fixed\n")
    wait_until(info, alert_expr, lambda v: v is None, 30, "a good edit supersedes the refused one")
    assert promql(info, sel("datalake_hub_profile_generation")) == 2


def test_the_shipped_rules_evaluate_in_prometheus(info: dict[str, Any]) -> None:
    """Prometheus loaded chart/files/alerts and evaluates every rule without error."""
    with requests.get(f"{info['prometheus']['url']}/api/v1/rules", timeout=10) as resp:
        groups = resp.json()["data"]["groups"]
    rules = [r for g in groups if g["name"] == "datalake-hub" for r in g["rules"]]
    assert len(rules) == 5
    assert {r["health"] for r in rules} == {"ok"}, [(r["name"], r.get("lastError")) for r in rules]


POD_HUB = "metrics-pod"
NO_NODE = {"datalake.test/no-such-node": "true"}
"""A node selector no node of the platform carries: the pod stays Pending (Unschedulable)."""


def test_a_pod_that_never_starts_counts_as_a_pod_phase_failure(info: dict[str, Any]) -> None:
    """A hub whose pods fit no node: the scheduler leaves alice's pod Pending, KubeSpawner gives up
    after the start timeout, and Prometheus reads one spawn failure in the `pod` phase (and none
    counted in the others), while the hub stops the server and its pod is deleted."""
    patch = {"spawner": {"node_selector": NO_NODE, "start_timeout_seconds": 30}}
    with running_hub(state_dir(), info, POD_HUB, settings_patch=patch) as other:
        instance = urlsplit(other.url).netloc

        def failures(phase: str) -> str:
            return f'datalake_hub_spawn_failures_total{{hub="{POD_HUB}",instance="{instance}",phase="{phase}"}}'

        wait_until(info, failures("pod"), lambda v: v == 0, 30, "Prometheus scrapes the second hub")
        login(other, info, "alice", "alice-password")
        resp = requests.post(
            f"{other.api_url}/users/alice/server",
            json={"profile": "base"},
            headers={"Authorization": f"token {other.service_token}"},
            timeout=60,
        )
        assert resp.status_code in (201, 202), resp.text
        try:
            deadline = time.monotonic() + 30
            while not (pods := user_pods(info, "alice")):
                assert time.monotonic() < deadline, "no pod was created"
                time.sleep(0.5)
            assert pods[0]["spec"]["nodeSelector"] == NO_NODE
            assert pods[0]["status"].get("phase") == "Pending"
            wait_until(info, failures("pod"), lambda v: v == 1, 120, "the start failed in the pod phase")
            assert promql(info, failures("options")) == 0
            deadline = time.monotonic() + 60
            while (
                requests.get(
                    f"{other.api_url}/users/alice",
                    headers={"Authorization": f"token {other.service_token}"},
                    timeout=10,
                )
                .json()
                .get("servers")
            ):
                assert time.monotonic() < deadline, "the hub kept the failed server"
                time.sleep(1)
        finally:
            wait_no_pods(info, "alice")
