"""The local data lake from a real session: upload, list, download over the network, read through /eos.

Everything is real: two WebDAV RSEs over HTTPS (``LOCAL_EOS`` behind the ``/eos/lake`` mount,
``LOCAL_USERDISK`` user-writable), the Rucio server with the platform's policy package, the hub
writing the session's rucio.cfg and token, and the notebook's own ``rucio`` CLI. Commands run inside
alice's session like ``kubectl exec``. No host path of the platform state is used by the client: every
replica is an ``https://`` PFN, so this works from a checkout anywhere (pods have a private ``/tmp``).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from localplatform.base import state_dir
from localplatform.hub import HubHandle

from tests.support.hubclient import api, login, running_hub, spawn, stop
from tests.support.kube import user_pods, wait_no_pods
from tests.support.podexec import pod_exec

pytestmark = pytest.mark.platform

EOS_PROFILE = "hep-slim"
"""A profile with the EOS mount (``mounts: [eos, scratch]``) and no group restriction."""
PLAIN_PROFILE = "base"
"""A profile without it (``mounts: [scratch]``)."""


@pytest.fixture(scope="module")
def info(platform_factory: Any) -> dict[str, Any]:
    return platform_factory()


@pytest.fixture(scope="module")
def lake(info: dict[str, Any]) -> dict[str, Any]:
    return dict(info["rucio_server"])


@pytest.fixture(scope="module")
def hub(info: dict[str, Any]) -> Iterator[HubHandle]:
    with running_hub(state_dir(), info, "lake") as handle:
        yield handle


def _server(hub: HubHandle, info: dict[str, Any], user: str, profile: str) -> Iterator[str]:
    _, page = login(hub, info, user, f"{user}-password")
    assert page.status_code == 200
    assert spawn(hub, user, {"profile": profile}).status_code in (201, 202)
    (pod,) = user_pods(info, user)
    yield str(pod["metadata"]["name"])
    if api(hub, "GET", f"/users/{user}").json().get("servers"):
        stop(hub, user)
        wait_no_pods(info, user)


@pytest.fixture(scope="module")
def alice(hub: HubHandle, info: dict[str, Any]) -> Iterator[str]:
    """alice's running server on the EOS profile; its pod name."""
    yield from _server(hub, info, "alice", EOS_PROFILE)


def _sh(info: dict[str, Any], pod: str, script: str, timeout: float = 180) -> tuple[int, str]:
    result = pod_exec(info, pod, ["bash", "-c", script], timeout=timeout)
    return result.returncode, result.stdout + result.stderr


def test_rses_are_webdav_over_https(lake: dict[str, Any]) -> None:
    """Two RSEs, both reached over HTTPS, none on a host path; the EOS one serves the EOS mount's directory."""
    rses = lake["rses"]
    assert set(rses) == {"LOCAL_EOS", "LOCAL_USERDISK"}
    assert all(r["url"].startswith("https://") for r in rses.values())
    assert rses["LOCAL_EOS"]["prefix"] == "/eos/lake/"
    assert rses["LOCAL_EOS"]["eos_mount"] == "/eos/lake"
    assert rses["LOCAL_EOS"]["dir"] == lake["rse_dir"]


def test_upload_to_own_scope_then_listed_with_a_replica(info: dict[str, Any], alice: str) -> None:
    """alice uploads a result from her home to user.alice on the user RSE; it is listed with its HTTPS replica."""
    name = f"result-{uuid.uuid4().hex[:8]}.txt"
    code, out = _sh(
        info,
        alice,
        f'cd ~ && echo "my result" > {name} && rucio upload --rse LOCAL_USERDISK --scope user.alice {name}',
    )
    assert code == 0, out
    assert f"Successfully uploaded file {name}" in out, out
    code, listing = _sh(info, alice, f"rucio list-file-replicas user.alice:{name}")
    assert code == 0, listing
    assert re.search(rf"LOCAL_USERDISK: https://127\.0\.0\.1:\d+/lake/userdisk/user/alice/{name}", listing), listing


def test_upload_into_another_scope_is_refused(info: dict[str, Any], alice: str) -> None:
    """Uploading into bob's scope is refused by the server with a permission error, and nothing is registered.

    The CLI shows the refusal only with ``-v`` (rucio-clients 41.5.1 answers any 401, AccessDenied
    included, with its interactive OIDC login; see docs/users.md), so the user's real evidence is the
    server's ``AccessDenied`` answer and the absent replica.
    """
    name = f"intruder-{uuid.uuid4().hex[:8]}.txt"
    _, out = _sh(
        info, alice, f"cd ~ && echo x > {name} && rucio -v upload --rse LOCAL_USERDISK --scope user.bob {name}"
    )
    assert '"ExceptionClass": "AccessDenied"' in out, out
    assert "account alice can not add file DIDs" in out, out
    assert "Successfully uploaded" not in out, out
    _, listing = _sh(info, alice, f"rucio list-file-replicas user.bob:{name}")
    assert "LOCAL_USERDISK:" not in listing, listing


def test_download_from_the_other_rse_into_the_home(info: dict[str, Any], alice: str, lake: dict[str, Any]) -> None:
    """A file only on LOCAL_USERDISK downloads over HTTPS into the home (download mode's path)."""
    assert "datalake:calibration.csv" in lake["remote_files"]
    code, out = _sh(
        info,
        alice,
        "cd ~ && rucio download --dir downloads datalake:calibration.csv && cat downloads/datalake/calibration.csv",
    )
    assert code == 0, out
    assert "channel,gain\n1,0.98\n" in out, out


def test_sample_on_the_eos_rse_reads_through_the_mount(info: dict[str, Any], alice: str, lake: dict[str, Any]) -> None:
    """A file of a sample dataset on LOCAL_EOS is at /eos/lake/<scope path>/<name> with the right contents."""
    code, out = _sh(info, alice, "cat /eos/lake/datalake/events.csv")
    assert code == 0, out
    with open(lake["files"]["datalake:events.csv"], encoding="utf-8") as fh:
        assert out == fh.read()
    code, pfns = _sh(info, alice, "rucio replica list file --pfns datalake:events.csv 2>/dev/null")
    assert code == 0, pfns
    assert pfns.strip().endswith("/eos/lake/datalake/events.csv"), pfns


def test_sample_datasets_are_protected_by_rules(info: dict[str, Any], alice: str) -> None:
    """The sample datasets have rules, so their replicas are locked (the panel shows them as such)."""
    code, out = _sh(info, alice, "rucio list-rules datalake:samples; rucio list-rules user.alice:my-first-dataset")
    assert code == 0, out
    assert re.search(r"datalake:samples\s.*LOCAL_EOS", out), out
    assert re.search(r"user\.alice:my-first-dataset\s.*LOCAL_EOS", out), out


def test_a_rule_to_the_eos_rse_waits_for_a_transfer(info: dict[str, Any], alice: str) -> None:
    """ "Make available" for a file only on LOCAL_USERDISK: one rule, REPLICATING with its lock waiting
    (nothing transfers on this platform: no FTS, see docs/operator.md); asking twice is refused as a duplicate."""
    name = f"wanted-{uuid.uuid4().hex[:8]}.txt"
    code, out = _sh(
        info, alice, f"cd ~ && echo data > {name} && rucio upload --rse LOCAL_USERDISK --scope user.alice {name}"
    )
    assert code == 0, out
    code, rule_id = _sh(info, alice, f"rucio add-rule user.alice:{name} 1 LOCAL_EOS 2>/dev/null")
    assert code == 0 and re.fullmatch(r"[0-9a-f]{32}", rule_id.strip()), rule_id
    _, shown = _sh(info, alice, f"rucio rule-info {rule_id.strip()} 2>/dev/null")
    assert re.search(r"^State:\s+REPLICATING$", shown, re.MULTILINE), shown
    assert re.search(r"^Locks OK/REPLICATING/STUCK:\s+0/1/0$", shown, re.MULTILINE), shown
    _, again = _sh(info, alice, f"rucio add-rule user.alice:{name} 1 LOCAL_EOS")
    assert "A duplicate rule for this account, did, rse_expression, copies already exists" in again, again
    _, rules = _sh(info, alice, f"rucio list-rules user.alice:{name} 2>/dev/null")
    assert len(re.findall(r"LOCAL_EOS", rules)) == 1, rules
    code, _ = _sh(info, alice, f"test -e /eos/lake/user/alice/{name}")
    assert code != 0, "nothing copies the file to the EOS RSE here"


def test_a_session_without_the_eos_mount_has_no_eos(hub: HubHandle, info: dict[str, Any], alice: str) -> None:
    """carol on a profile without EOS: no /eos at all (not an empty directory)."""
    del alice  # alice's EOS session runs meanwhile: its mount point must not leak into carol's view
    for pod in _server(hub, info, "carol", PLAIN_PROFILE):
        _code, out = _sh(info, pod, "test -e /eos && echo present || echo absent")
        assert out.strip() == "absent", out


def test_a_head_on_a_missing_file_leaves_the_connection_clean(info: dict[str, Any], lake: dict[str, Any]) -> None:
    """Rucio's upload asks ``HEAD`` (does the file exist?) and then ``PUT``s on the same kept-alive
    connection: the 404 must carry no body, or the next response on that connection starts with the
    error page's ``<!DOCTYPE HTML`` (http.client's BadStatusLine, an upload failing at random)."""
    import http.client
    import ssl

    endpoint = lake["rses"]["LOCAL_USERDISK"]
    context = ssl.create_default_context(cafile=info["idp"]["ca"])  # the storage's certificate is the IdP CA's
    conn = http.client.HTTPSConnection(endpoint["hostname"], endpoint["port"], context=context, timeout=30)
    try:
        conn.request("HEAD", f"{endpoint['prefix']}no-such-file-{uuid.uuid4().hex}")
        missing = conn.getresponse()
        missing.read()
        assert missing.status == 404
        time.sleep(0.5)  # the body, if any, has arrived on the socket by now
        conn.request("PROPFIND", endpoint["prefix"], headers={"Depth": "0"})
        listing = conn.getresponse()  # BadStatusLine here if the 404's page was sent
        assert listing.status == 207, listing.status
        listing.read()
    finally:
        conn.close()
