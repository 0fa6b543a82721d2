"""20 users start their servers at the same moment while every token lives 60 s (issue 17).

Everything is real: an IdP and a Rucio server of this module's own (20 generated users, so the
shared fixture and the lists printed by ``make dev`` stay as they are), the hub with KubeSpawner
against the platform's kube-apiserver, and 20 ``jupyterhub-singleuser`` processes run by the node
agent. While the servers start and for three minutes after each is ready, every server's mounted
token file is read as its session sees it: it must change in place (same pod, same process) and
never be expired; at the end every file holds its Secret's current token, which Rucio accepts.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from localplatform import idp, rucio_server
from localplatform.base import state_dir
from localplatform.clients import rucio_get
from localplatform.hub import HubHandle, hub_log_text

from tests.support.hubclient import api, login, running_hub, stop
from tests.support.kube import get_json, user_pods, wait_no_pods
from tests.support.podexec import pod_exec, pod_pid
from tests.support.rotation import fast_rotation

pytestmark = [pytest.mark.platform, pytest.mark.timeout(900)]

USERS = 20
TTL = 60
"""IAM access tokens (and so the exchanged Rucio tokens) live 60 s."""
WATCH = 180
"""Seconds each server's token file is watched after the server is ready."""
POLL = 5
SPAWN_BOUND = 420
"""Seconds the 20 servers may take to become ready together on the 2-core test machine."""
TOKEN_FILE = "/etc/datalake/rucio/token-local"
WHOAMI_SAMPLE = 3
"""Sessions where `rucio whoami` itself runs at the end (each costs a Rucio client start-up)."""


def storm_users() -> list[dict[str, Any]]:
    """The generated IdP users (group ``escape``; the passwords protect nothing)."""
    return [
        {
            "username": f"storm{i:02d}",
            "password": f"storm{i:02d}-password",
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"datalake-hub/tests/storm/{i}")),
            "name": f"Storm User {i}",
            "email": f"storm{i:02d}@escape.test",
            "groups": ["escape"],
        }
        for i in range(1, USERS + 1)
    ]


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> Iterator[dict[str, Any]]:
    """The platform, with an IdP serving the storm users and a Rucio server trusting that IdP."""
    platform = platform_factory()
    state = state_dir() / "storm"  # under the platform's state: pods see its host paths (the RSE)
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir()
    users_file = state / "users.json"
    users_file.write_text(json.dumps({"users": storm_users()}))
    try:
        section = idp.start(state, users_file=users_file)
        rucio = rucio_server.up(state, {"idp": section})
        yield {**platform, "idp": section, "rucio_server": rucio}
    finally:
        rucio_server.down(state)
        idp.stop(state)


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    """60 s tokens; Rucio tokens rotated with 20 s left, looked for every 5 s; default rotation concurrency."""
    patch = fast_rotation(iam_margin=30, rucio_margin=20, check_interval=POLL)
    with running_hub(state_dir(), info, "storm", settings_patch=patch, access_token_ttl=TTL) as handle:
        yield handle


def _claims(token: str) -> dict[str, Any]:
    """A JWT's payload, unverified (Rucio verifies it at the end)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


@dataclass
class Watched:
    """One user's server as the test sees it."""

    accepted: bool = False
    status: int | None = None
    pod: str | None = None
    pid: int | None = None
    ready_at: float | None = None
    tokens: list[str] = field(default_factory=list, repr=False)
    """The distinct tokens read, in order (kept out of repr: a failure report shows no token)."""
    least_left: float = float(TTL)
    """The shortest lifetime left that a read of the session's token file found (seconds)."""
    vanished: bool = False


def _request(hub: HubHandle, name: str, rec: Watched, go: threading.Event) -> None:
    go.wait()
    resp = api(hub, "POST", f"/users/{name}/server", json={"profile": "base"})
    rec.status = resp.status_code
    rec.accepted = resp.status_code in (201, 202)


def _read_token(info: dict[str, Any], rec: Watched) -> None:
    """Read the session's token file (in the pod's mount namespace, as its user) and check its ``exp``."""
    assert rec.pod is not None
    result = pod_exec(info, rec.pod, ["cat", TOKEN_FILE], timeout=30)
    now = time.time()
    assert result.returncode == 0, f"{rec.pod}: {result.stderr}"
    token = result.stdout
    assert token and not token.endswith("\n"), f"{rec.pod}: empty token file or one ending in a newline"
    claims = _claims(token)
    assert claims["exp"] - claims["iat"] <= TTL, f"{rec.pod}: the token lives longer than {TTL}s"
    left = claims["exp"] - now
    assert left > 0, f"{rec.pod}: the session's token file holds a token expired {-left:.1f}s ago"
    rec.least_left = min(rec.least_left, left)
    if not rec.tokens or rec.tokens[-1] != token:
        rec.tokens.append(token)


def _poll(hub: HubHandle, info: dict[str, Any], recs: dict[str, Watched]) -> None:
    """One round: note servers that became ready (their pod and process), read every ready server's token."""
    users = {u["name"]: u for u in api(hub, "GET", "/users").json()}
    for name, rec in recs.items():
        server = users.get(name, {}).get("servers", {}).get("")
        if rec.accepted and rec.ready_at is None and server is None and rec.status is not None:
            rec.vanished = True  # accepted, then gone: the spawn failed
        if server and server.get("ready") and rec.ready_at is None:
            rec.ready_at = time.monotonic()
            (pod,) = user_pods(info, name)
            rec.pod = pod["metadata"]["name"]
            rec.pid = pod_pid(info, rec.pod)
        if rec.ready_at is not None:
            _read_token(info, rec)


def _secrets(info: dict[str, Any]) -> list[dict[str, Any]]:
    namespace = info["controlplane"]["namespace"]
    selector = "app.kubernetes.io/component=rucio-credentials"
    items: list[dict[str, Any]] = get_json(info, "secrets", "-n", namespace, "-l", selector)["items"]
    return [s for s in items if s["metadata"]["name"].startswith("jupyter-storm")]


def _secret_token(secret: dict[str, Any]) -> str:
    return base64.b64decode(secret["data"]["token-local"]).decode()


def test_twenty_concurrent_spawns_while_tokens_rotate_every_minute(hub: HubHandle, info: dict[str, Any]) -> None:
    """20 users ask for a server at once, with 60 s tokens: every spawn succeeds; for 3 minutes after each
    server is ready its token file changes in place and is never expired; at the end each file holds its
    one Secret's current token, which Rucio accepts for that user; stopping removes pods and Secrets."""
    names = [u["username"] for u in storm_users()]
    passwords = {u["username"]: u["password"] for u in storm_users()}
    with ThreadPoolExecutor(max_workers=4) as pool:  # logins in parallel, but bounded
        pages = dict(
            zip(names, pool.map(lambda n: login(hub, info, n, passwords[n])[1].status_code, names), strict=True)
        )
    assert set(pages.values()) == {200}, pages

    recs = {name: Watched() for name in names}
    go = threading.Event()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=USERS) as pool:
            requests_done = [pool.submit(_request, hub, name, recs[name], go) for name in names]
            go.set()  # every request goes out at the same moment
            while True:
                _poll(hub, info, recs)
                now = time.monotonic()
                if all(r.ready_at is not None and now - r.ready_at >= WATCH for r in recs.values()):
                    break
                failed = {n: r.status for n, r in recs.items() if r.vanished or (r.status and not r.accepted)}
                assert not failed, f"failed spawns (user: HTTP status of the request) {failed}; hub log {hub.log}"
                late = [n for n, r in recs.items() if r.ready_at is None and now - started > SPAWN_BOUND]
                assert not late, f"not ready {SPAWN_BOUND}s after the request: {late}; hub log {hub.log}"
                time.sleep(POLL)
            for done in requests_done:
                done.result()
        ready = sorted(r.ready_at - started for r in recs.values() if r.ready_at is not None)
        print(f"\n{USERS} servers ready {ready[0]:.0f}–{ready[-1]:.0f}s after the requests")

        for name, rec in recs.items():
            assert len(rec.tokens) >= WATCH // TTL + 1, f"{name}'s token file changed {len(rec.tokens) - 1} times"
            assert rec.pod is not None
            assert pod_pid(info, rec.pod) == rec.pid, f"{name}'s server was restarted, not rotated in place"

        secrets = _secrets(info)
        by_pod = {s["metadata"]["name"]: s for s in secrets}
        assert len(secrets) == USERS == len(by_pod), f"duplicate or missing Secrets: {sorted(by_pod)}"
        for name, rec in recs.items():
            secret = by_pod[f"{rec.pod}-rucio"]
            owner = [o["name"] for o in secret["metadata"].get("ownerReferences") or []]
            assert owner == [rec.pod], f"{name}'s Secret is owned by {owner}"
            # No stale file: what the session reads is the Secret's current token (the node
            # agent re-syncs within seconds, like a kubelet; allow one rotation racing the read).
            deadline = time.monotonic() + 3 * POLL
            while True:
                _read_token(info, rec)
                if rec.tokens[-1] == _secret_token(secret):
                    break
                assert time.monotonic() < deadline, f"{name}'s token file is not its Secret's current token"
                time.sleep(1)
                secret = get_json(info, "secret", "-n", info["controlplane"]["namespace"], f"{rec.pod}-rucio")
            answer = rucio_get(info["rucio_server"], "/accounts/whoami", rec.tokens[-1])
            assert answer.status_code == 200, f"Rucio refused {name}'s session token: {answer.status_code}"
            assert answer.json()["account"] == name
        for name in names[:WHOAMI_SAMPLE]:
            pod = recs[name].pod
            assert pod is not None
            out = pod_exec(info, pod, ["rucio", "whoami"])
            assert re.search(rf"^account\s*:\s*{name}$", out.stdout + out.stderr, re.MULTILINE), out.stdout

        rotations = sum(len(r.tokens) - 1 for r in recs.values())
        failures = len(re.findall(r"rotation for \S+ failed", hub_log_text(hub)))
        least = min(r.least_left for r in recs.values())
        print(f"{rotations} rotations seen in sessions (least lifetime left at a read: {least:.0f}s); ", end="")
        print(f"{failures} failed rotation attempts in the hub log")
    finally:
        with ThreadPoolExecutor(max_workers=5) as pool:
            list(pool.map(lambda n: _stop_if_running(hub, n), names))
        for name in names:
            wait_no_pods(info, name, timeout=120)
    deadline = time.monotonic() + 60
    while left := [s["metadata"]["name"] for s in _secrets(info)]:
        assert time.monotonic() < deadline, f"Secrets left after every server stopped: {left}"
        time.sleep(1)


def _stop_if_running(hub: HubHandle, name: str) -> None:
    try:
        if api(hub, "GET", f"/users/{name}").json().get("servers"):
            stop(hub, name, timeout=120)
    except requests.RequestException:
        pass
