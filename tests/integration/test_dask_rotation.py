"""Token rotation reaches Dask workers (issue 18): 60 s tokens, 3 minutes, the same worker processes.

Real components as in test_dask_gateway (Traefik, the gateway API and controller, our hub, the real
IdP and Rucio server), with IAM tokens living 60 s, so the hub rotates alice's Rucio token about
every half minute. Her cluster's 2 workers mount the notebook's Rucio Secret as a directory; the
test reads, through a task on each worker, the token file at the path the worker's ``rucio.cfg``
names, and asks the real Rucio server who it is, for 3 minutes.

Meanwhile every Secret write in the namespace is watched at the API server: the only writes are the
hub's rotations of the notebook's Secret, as many as the hub counted on ``/hub/metrics`` — no
second token lifecycle, nothing per worker.

Each round asks every worker at the same moment (``client.run``), as a user's analysis does right
after a rotation. The Rucio server (41.5.1) records a JWT it has not seen before on its first use,
and two first uses at the same moment race on that insert (``UNIQUE constraint failed:
tokens.token``; upstream rucio/rucio#8217 and #8380): the loser would get a 401. The hub uses each
new token once itself before writing it (``RucioProvisioner._first_use``), so no worker's use is
the first.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from localplatform.gotools import ensure_tool
from localplatform.hub import HubHandle

from tests.support.dask import SUBMIT, gateway_and_hub, in_session, pod_network_available
from tests.support.hubclient import api, login, spawn, stop
from tests.support.kube import get_json, user_pods
from tests.support.rotation import fast_rotation

pytestmark = [
    pytest.mark.platform,
    pytest.mark.skipif(
        not pod_network_available(), reason="pods are on loopback here: Services get no Endpoints (localplatform.netns)"
    ),
]

TTL = 60
"""IAM (and so Rucio) tokens live 60 s; rotated with 30 s left, checked every 5 s."""
WINDOW = 180
"""Seconds the workers are probed: three token lifetimes."""
PROBE_EVERY = 10


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    patch = fast_rotation(iam_margin=30, rucio_margin=30)
    with gateway_and_hub(info, "dask-rotation", settings_patch=patch, access_token_ttl=TTL) as (handle, _):
        yield handle


@pytest.fixture(scope="module")
def alice(hub: HubHandle, info: dict[str, Any]) -> Iterator[dict[str, Any]]:
    assert login(hub, info, "alice", "alice-password")[1].status_code == 200
    assert spawn(hub, "alice", {"profile": "base"}).status_code in (201, 202)
    (pod,) = user_pods(info, "alice")
    yield pod
    if api(hub, "GET", "/users/alice").json().get("servers"):
        stop(hub, "alice")


NEW_CLUSTER = (
    SUBMIT
    + """
c = g.new_cluster(shutdown_on_close=False)
c.scale(2)
client = c.get_client()
client.wait_for_workers(2, timeout=240)
print("NAME", c.name, flush=True)
client.close()
"""
)

PROBE = (
    SUBMIT
    + """
import json, time

def probe():
    import configparser, hashlib, os
    from rucio.client import Client
    cfg = configparser.ConfigParser()
    cfg.read(os.environ["RUCIO_CONFIG"])
    path = cfg["client"]["auth_token_file_path"]
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    return {{"pid": os.getpid(), "path": path, "sha": digest, "account": Client().whoami()["account"]}}

client = g.connect({name!r}).get_client()
workers = sorted(client.scheduler_info()["workers"])
t0 = time.monotonic()
while True:
    t = time.monotonic() - t0
    for w, r in client.run(probe, workers=workers).items():  # every worker at the same moment
        print("PROBE", json.dumps({{"worker": w, "t": round(t, 1), **r}}), flush=True)
    if t >= {window}:
        break
    time.sleep({every})
client.close()
"""
)


class SecretWatch:
    """Every Secret event in the namespace, as the API server streams them (``kubectl get -w``)."""

    def __init__(self, info: dict[str, Any]) -> None:
        argv = [
            str(ensure_tool("kubectl")),
            "--kubeconfig",
            info["controlplane"]["kubeconfig"],
            "get",
            "secrets",
            "-n",
            info["controlplane"]["namespace"],
            "--watch-only",
            "--output-watch-events",
            "-o",
            "json",
        ]
        self.events: list[dict[str, Any]] = []
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        time.sleep(2)  # the watch is established (a write now is seen)

    def _read(self) -> None:
        decoder, buf = json.JSONDecoder(), ""
        assert self._proc.stdout is not None
        for line in iter(self._proc.stdout.readline, b""):
            buf += line.decode()
            while buf.strip():
                try:
                    event, end = decoder.raw_decode(buf.lstrip())
                except json.JSONDecodeError:
                    break
                self.events.append(event)
                buf = buf.lstrip()[end:]

    def wait_write(self, name: str, after: int, timeout: float) -> int:
        """Index of the first event on Secret ``name`` after index ``after`` (waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, event in enumerate(self.events[after + 1 :], start=after + 1):
                if event["object"]["metadata"]["name"] == name:
                    return i
            time.sleep(0.5)
        raise AssertionError(f"no write of Secret {name} within {timeout}s")

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._reader.join(timeout=10)


def secret_writes_counted_by_the_hub(hub: HubHandle) -> float:
    """The hub's own count of Secret writes (``datalake_hub_secret_writes_total``, all operations)."""
    token = json.loads((Path(hub.dir) / "run.json").read_text())["metrics_token"]
    text = requests.get(f"{hub.url}hub/metrics", headers={"Authorization": f"token {token}"}, timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("datalake_hub_secret_writes_total{") and 'outcome="success"' in line
    )


def token_digest(secret: dict[str, Any], key: str) -> str:
    return hashlib.sha256(base64.b64decode(secret["data"][key])).hexdigest()


def test_workers_see_the_rotated_token_in_place_and_keep_acting_as_the_user(
    hub: HubHandle, alice: dict[str, Any], info: dict[str, Any]
) -> None:
    """Over 3 minutes (three token lifetimes) each worker process reads a token file whose content
    changes at the same path, always one the hub wrote to the notebook's Secret, and every task
    gets alice's account from the real Rucio server. The only Secret writes meanwhile are the hub's
    rotations of that one Secret."""
    secret_name = next(v for v in alice["spec"]["volumes"] if v["name"] == "datalake-rucio")["secret"]["secretName"]
    out = in_session(info, alice, NEW_CLUSTER, timeout=300)
    name = next((line.split()[1] for line in out.splitlines() if line.startswith("NAME ")), None)
    assert name, out

    namespace = info["controlplane"]["namespace"]
    in_force = get_json(info, "secret", "-n", namespace, secret_name)  # what workers may still read at first
    watch = SecretWatch(info)
    try:
        # Start and end right after a rotation (the next one is ~30 s away): the hub's counter
        # and the watch then cover the same writes.
        first = watch.wait_write(secret_name, -1, TTL)
        time.sleep(1)
        counted_before = secret_writes_counted_by_the_hub(hub)
        started = time.monotonic()
        script = PROBE.format(name=name, window=WINDOW, every=PROBE_EVERY)
        out = in_session(info, alice, script, timeout=WINDOW + 240)
        probed_for = time.monotonic() - started
        last = watch.wait_write(secret_name, len(watch.events) - 1, TTL)
        time.sleep(1)
        counted_after = secret_writes_counted_by_the_hub(hub)
    finally:
        watch.stop()

    probes = [json.loads(line[6:]) for line in out.splitlines() if line.startswith("PROBE ")]
    assert probes and probes[-1]["t"] >= WINDOW, out
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for p in probes:
        by_worker.setdefault(p["worker"], []).append(p)
    assert len(by_worker) == 2, out

    window = watch.events[first + 1 : last + 1]
    others = [
        (e["type"], e["object"]["metadata"]["name"]) for e in window if e["object"]["metadata"]["name"] != secret_name
    ]
    assert not others, f"Secret writes besides the notebook's rotations: {others}"
    assert {e["type"] for e in window} == {"MODIFIED"}
    assert len(window) == counted_after - counted_before, "writes the hub did not make"
    assert len(window) >= WINDOW // TTL, f"{len(window)} rotations in {probed_for:.0f}s"

    key = Path(probes[0]["path"]).name
    written = [token_digest(watch.events[first]["object"], key)] + [token_digest(e["object"], key) for e in window]
    assert len(set(written)) == len(written), "a write that did not rotate the token"
    # The first probes may still see the token written before the watched one (the node agent,
    # like a kubelet, syncs Secret volumes within seconds, not at once).
    written.insert(0, token_digest(in_force, key))
    for worker, seen in by_worker.items():
        assert {p["account"] for p in seen} == {"alice"}, seen
        assert len({p["pid"] for p in seen}) == 1, f"{worker}: the worker process was replaced"
        assert {p["path"] for p in seen} == {probes[0]["path"]}, seen
        digests = [p["sha"] for p in seen]
        unknown = [(p["t"], p["sha"][:12]) for p in seen if p["sha"] not in written]
        assert not unknown, f"{worker} read a token the hub never wrote (t, sha): {unknown}"
        assert len(set(digests)) >= WINDOW // TTL + 1, f"{worker} saw {len(set(digests))} tokens in {WINDOW}s"
    print(f"{len(window)} rotations in {probed_for:.0f}s; tokens seen per worker:", end=" ")
    print({w: len({p["sha"] for p in seen}) for w, seen in by_worker.items()})


def test_the_cluster_objects_hold_no_token(hub: HubHandle, alice: dict[str, Any], info: dict[str, Any]) -> None:
    """After all those rotations, the DaskCluster and its pods still name the Secret, never a token."""
    namespace = info["controlplane"]["namespace"]
    secret_name = next(v for v in alice["spec"]["volumes"] if v["name"] == "datalake-rucio")["secret"]["secretName"]
    token = base64.b64decode(get_json(info, "secret", "-n", namespace, secret_name)["data"]["token-local"]).decode()
    assert len(token) > 100
    objects = json.dumps(
        [
            get_json(info, "daskclusters", "-n", namespace),
            get_json(info, "pods", "-n", namespace, "-l", "gateway.dask.org/instance"),
        ]
    )
    assert secret_name in objects
    assert token[:60] not in objects
