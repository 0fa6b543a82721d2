"""When Rucio cannot be set up for a user: which files the session gets and what the user is told.

The default instance never moves: with the default failed, ``rucio.cfg`` is a stand-in that says why
(checked with the real Rucio client: one ``Details:`` line, no traceback) and the working instances
keep their own files; the progress lines and ``status.txt`` say the same thing, one line per
instance and an overall state.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hub_config.pod import build_pod_wiring
from hub_config.profiles.model import Profile
from hub_config.rucio import (
    InstanceStatus,
    build_rucio_secret,
    default_instance,
    env_for,
    extension_modes,
    instances_for,
    status_lines,
)
from hub_config.rucio_service import RucioProvisioner
from hub_config.rucio_service.server import progress_messages
from hub_config.settings import Settings
from tests.support.expected import fake_jwt

MOUNT = "/etc/datalake/rucio"
SITE: dict[str, Any] = {
    "iam": {"issuer": "https://iam.example.org/", "client_id": "hub", "allowed_groups": ["escape"]},
    "rucio": {
        "instances": [
            {
                "name": "first",
                "display_name": "First Rucio",
                "rucio_host": "https://rucio-first.example.org",
                "auth_host": "https://rucio-first-auth.example.org",
                # no claim in the token: the account cannot be derived for this user
                "account_claim": "rucio_account",
                "token_exchange": {"enabled": False},
            },
            {
                "name": "second",
                "display_name": "Second Rucio",
                "rucio_host": "https://rucio-second.example.org",
                "auth_host": "https://rucio-second-auth.example.org",
                "token_exchange": {"enabled": False},
            },
        ]
    },
}
TOKEN = fake_jwt(
    {"alg": "RS256", "kid": "k1"},
    {"sub": "a11ce", "preferred_username": "alice", "aud": "rucio", "exp": 2000000000, "scope": "openid profile"},
    b"signature",
)
PROFILE = Profile.model_validate({"slug": "base", "display_name": "Base", "description": "b", "image": "x"})
NO_ACCOUNT = "no Rucio account (the token has no 'rucio_account' claim)"


@pytest.fixture(scope="module")
def site() -> Settings:
    return Settings.model_validate(SITE)


def _files(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def _secret(site: Settings, unavailable: dict[str, str]) -> dict[str, str]:
    insts = instances_for(site.rucio, PROFILE)
    ready = [i.name for i in insts if i.name not in unavailable]
    return _files(
        build_rucio_secret(
            site.rucio,
            insts,
            name="jupyter-alice-rucio",
            namespace="hub",
            tokens=dict.fromkeys(ready, TOKEN),
            accounts=dict.fromkeys(ready, "alice"),
            issuer="escape",
            modes=extension_modes(site.rucio, PROFILE),
            unavailable=unavailable,
        )
    )


def _client_options(text: str) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.read_string(text)
    return dict(parser["client"])


FIRST_OK = InstanceStatus("first", "First Rucio", account="alice")
FIRST_BAD = InstanceStatus("first", "First Rucio", problem=NO_ACCOUNT)
SECOND_OK = InstanceStatus("second", "Second Rucio", account="alice")
SECOND_BAD = InstanceStatus("second", "Second Rucio", problem="the identity provider is unreachable")


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (
            [FIRST_OK, SECOND_OK],
            [
                "Rucio instance First Rucio (default): ready, account alice",
                "Rucio instance Second Rucio: ready, account alice",
                "Rucio is ready: rucio commands and the Rucio panel use First Rucio (the default)",
            ],
        ),
        (
            [FIRST_OK, SECOND_BAD],
            [
                "Rucio instance First Rucio (default): ready, account alice",
                "Rucio instance Second Rucio: unavailable: the identity provider is unreachable",
                "Rucio is partly ready: the default, First Rucio, works; unavailable: Second Rucio",
            ],
        ),
        (
            [FIRST_BAD, SECOND_OK],
            [
                f"Rucio instance First Rucio (default): unavailable: {NO_ACCOUNT}",
                "Rucio instance Second Rucio: ready, account alice",
                "Rucio is partly ready: the default, First Rucio, is unavailable (rucio.cfg says why); "
                f"working: Second Rucio (rucio --config {MOUNT}/rucio-second.cfg)",
            ],
        ),
        (
            [FIRST_BAD, SECOND_BAD],
            [
                f"Rucio instance First Rucio (default): unavailable: {NO_ACCOUNT}",
                "Rucio instance Second Rucio: unavailable: the identity provider is unreachable",
                "Rucio access is unavailable: no Rucio instance could be set up for you; "
                "the server starts without Rucio",
            ],
        ),
    ],
    ids=["all-ready", "default-ready", "default-failed", "none-ready"],
)
def test_status_lines_one_per_instance_and_an_overall_state(
    statuses: list[InstanceStatus], expected: list[str]
) -> None:
    """The exact lines the spawn progress and status.txt show (docs/users.md quotes them)."""
    assert status_lines(statuses, default="first", mount_path=MOUNT + "/") == expected


def test_default_is_decided_by_settings_and_profile_never_by_failures(site: Settings) -> None:
    """The first instance (documented default) unless the settings name another or the profile lacks it."""
    insts = site.rucio.instances
    assert default_instance(site.rucio, insts) == "first"
    assert default_instance(site.rucio, insts[1:]) == "second"
    assert default_instance(site.rucio, []) is None
    named = Settings.model_validate({**SITE, "rucio": {**SITE["rucio"], "default_instance": "second"}})
    assert default_instance(named.rucio, named.rucio.instances) == "second"


def test_session_env_names_the_default(site: Settings) -> None:
    """The pod's env says which instance rucio.cfg is, from the same decision as the Secret."""
    env = build_pod_wiring(site, PROFILE, image="x", rucio_secret="jupyter-alice-rucio").environment
    assert env["RUCIO_CONFIG"] == f"{MOUNT}/rucio.cfg"
    assert env["DATALAKE_RUCIO_DEFAULT"] == "first"
    assert env_for(site.rucio) == {"RUCIO_CONFIG": f"{MOUNT}/rucio.cfg", "DATALAKE_RUCIO_DIR": MOUNT}


def test_default_failed_rucio_cfg_stays_its_stand_in_and_the_other_keeps_its_file(site: Settings) -> None:
    """First fails: rucio.cfg explains (it does not become Second's), Second's file and token work."""
    files = _secret(site, {"first": NO_ACCOUNT})
    assert set(files) == {
        "rucio.cfg",
        "rucio-first.cfg",
        "rucio-second.cfg",
        "token-second",
        "status.txt",
        "jupyter_server_config.json",
    }
    assert files["rucio.cfg"] == files["rucio-first.cfg"]
    standin = _client_options(files["rucio.cfg"])
    assert "auth_token_file_path" not in standin
    assert standin["auth_type"] == (
        "unavailable - datalake-hub could not set up Rucio instance First Rucio for you in this session: "
        f"{NO_ACCOUNT}. Working instead: rucio --config {MOUNT}/rucio-second.cfg whoami. See {MOUNT}/status.txt"
    )
    second = _client_options(files["rucio-second.cfg"])
    assert second["auth_type"] == "oidc"
    assert second["auth_token_file_path"] == f"{MOUNT}/token-second"
    config = json.loads(files["jupyter_server_config.json"])["RucioConfig"]
    assert config["default_instance"] == "first"
    first, other = config["instances"]
    assert first["display_name"] == "First Rucio (unavailable)"
    assert first["datalake_unavailable"] == NO_ACCOUNT
    assert other["display_name"] == "Second Rucio"
    assert "datalake_unavailable" not in other
    assert files["status.txt"].splitlines()[1:] == status_lines(
        [FIRST_BAD, SECOND_OK], default="first", mount_path=MOUNT
    )


def test_no_instance_works_every_config_is_a_stand_in(site: Settings) -> None:
    """Nothing works: RUCIO_CONFIG still names a file, which says why; no token anywhere."""
    files = _secret(site, {"first": NO_ACCOUNT, "second": "the identity provider is unreachable"})
    assert not [k for k in files if k.startswith("token-")]
    for key in ("rucio.cfg", "rucio-first.cfg", "rucio-second.cfg"):
        assert _client_options(files[key])["auth_type"].startswith("unavailable - datalake-hub could not set up")
    assert "Working instead" not in files["rucio.cfg"]
    assert files["status.txt"].splitlines()[-1].startswith("Rucio access is unavailable")


def test_stand_in_reason_is_one_safe_line(site: Settings) -> None:
    """A reason with newlines or `%` (from an IdP's reply) cannot break or inject into the file."""
    files = _secret(site, {"first": "refused:\n[client]\nauth_type = userpass 100%"})
    standin = _client_options(files["rucio.cfg"])
    assert set(standin) == {"rucio_host", "auth_host", "ca_cert", "auth_type"}
    assert "refused: [client] auth_type = userpass 100%" in standin["auth_type"]


async def test_provisioner_reports_each_instance_and_keeps_the_default(site: Settings) -> None:
    """Through the provisioner: First has no account for alice, Second works; the default stays First."""
    provisioner = RucioProvisioner(
        site, token_url="https://unused.test/t", client_id="h", client_secret="s", ca_bundle=None
    )
    secret, result = await provisioner.render(
        namespace="hub",
        secret_name="jupyter-alice-rucio",
        username="alice",
        auth_state={"access_token": TOKEN, "oauth_user": {"preferred_username": "alice"}},
        profile=PROFILE,
    )
    assert secret is not None
    assert result.instances == ["second"]
    assert result.default == "first"
    messages = progress_messages(result, mount_path=MOUNT)
    assert messages[0].startswith("Rucio instance First Rucio (default): unavailable: no Rucio account")
    assert messages[1] == "Rucio instance Second Rucio: ready, account alice"
    assert messages[2].startswith("Rucio is partly ready: the default, First Rucio, is unavailable")
    assert result.warnings and result.warnings[0].startswith("First Rucio: no Rucio account")


async def test_no_iam_token_still_gets_stand_ins(site: Settings) -> None:
    """Without an IAM session token the Secret is still written, each config saying why."""
    provisioner = RucioProvisioner(
        site, token_url="https://unused.test/t", client_id="h", client_secret="s", ca_bundle=None
    )
    secret, result = await provisioner.render(
        namespace="hub", secret_name="jupyter-alice-rucio", username="alice", auth_state=None, profile=PROFILE
    )
    assert secret is not None
    assert result.instances == []
    files = _files(secret)
    assert "you have no iam session token" in _client_options(files["rucio.cfg"])["auth_type"].lower()
    assert progress_messages(result, mount_path=MOUNT)[-1].startswith("Rucio access is unavailable")


def _whoami(session_python: Path, cfg: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BEARER_TOKEN", "RUCIO_", "X509_"))}
    env.update(RUCIO_CONFIG=str(cfg), HOME=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path))
    rucio = session_python.parent / "rucio"
    return subprocess.run(
        [str(rucio), "whoami"], env=env, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path
    )


def test_real_client_prints_the_stand_ins_reason_without_a_traceback(
    site: Settings, session_python: Path, tmp_path: Path
) -> None:
    """rucio-clients 41.5.1 `rucio whoami` with the stand-in: "Cannot authenticate." and one Details line."""
    files = _secret(site, {"first": NO_ACCOUNT})
    cfg = tmp_path / "rucio.cfg"
    cfg.write_text(files["rucio.cfg"])
    result = _whoami(session_python, cfg, tmp_path)
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out
    assert "ConfigLoadingError" not in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 2, out
    assert "Cannot authenticate." in lines[0]
    assert lines[1].startswith(
        "Details: auth type 'unavailable - datalake-hub could not set up rucio instance first rucio"
    )
    assert "rucio --config /etc/datalake/rucio/rucio-second.cfg whoami" in lines[1]
    assert result.returncode != 0


def test_user_guide_quotes_the_overall_lines() -> None:
    """docs/users.md shows users the overall Rucio line of each case exactly as the hub prints it."""
    guide = (Path(__file__).resolve().parents[2] / "docs" / "users.md").read_text()
    cases = [[FIRST_OK, SECOND_OK], [FIRST_OK, SECOND_BAD], [FIRST_BAD, SECOND_OK], [FIRST_BAD, SECOND_BAD]]
    for statuses in cases:
        overall = status_lines(statuses, default="first", mount_path=MOUNT)[-1]
        assert overall in guide, overall


class _Store:
    """SecretStore as the provisioner uses it: records what it was asked to write."""

    def __init__(self) -> None:
        self.written: list[tuple[str, dict[str, Any]]] = []

    async def apply(self, secret: dict[str, Any]) -> None:
        self.written.append(("apply", secret))

    async def update(self, secret: dict[str, Any]) -> None:
        self.written.append(("update", secret))


async def test_spawn_writes_stand_ins_but_a_failed_rotation_keeps_the_last_good_files(site: Settings) -> None:
    """At spawn the stand-ins are written (RUCIO_CONFIG must name a file); a rotation that got nothing
    writes nothing, so tokens written before and possibly still valid stay in place."""
    provisioner = RucioProvisioner(
        site, token_url="https://unused.test/t", client_id="h", client_secret="s", ca_bundle=None
    )
    store = _Store()
    common: dict[str, Any] = {
        "namespace": "hub",
        "secret_name": "jupyter-alice-rucio",
        "username": "alice",
        "auth_state": None,
        "profile": PROFILE,
    }
    spawned = await provisioner.provision(store=store, **common)  # type: ignore[arg-type]
    assert [kind for kind, _ in store.written] == ["apply"]
    assert spawned.instances == []
    rotated = await provisioner.provision(store=store, existing=True, **common)  # type: ignore[arg-type]
    assert [kind for kind, _ in store.written] == ["apply"]
    assert rotated.instances == []
