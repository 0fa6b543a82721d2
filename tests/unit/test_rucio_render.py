"""The Rucio files a notebook gets: compared with stored expected files and read back by the real readers.

Outputs are checked three ways: against files under ``tests/data/expected/rucio/`` (review the
diff after ``UPDATE_EXPECTED=1``), by a strict ``ConfigParser`` / rucio-jupyterlab's own JSON
schema, and — in the notebook's Python environment (the local platform's session venv with
rucio-clients 41.5.1 and rucio-jupyterlab 41.0.0) — by the real Rucio client and extension.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hub_config.profiles.model import Profile
from hub_config.rucio import (
    AccountError,
    ExtensionConfigError,
    MalformedToken,
    OwnerPod,
    RenderError,
    UnsafeValue,
    account_for,
    build_rucio_secret,
    build_secret_volume,
    env_for,
    extension_modes,
    instances_for,
    render_extension_config,
    render_rucio_cfg,
    render_token_file,
    secret_name_for,
    token_path,
)
from hub_config.settings import Settings
from hub_config.settings.rse import replica_paths_by_instance
from hub_config.settings.rucio import RucioInstance
from tests.support.expected import EXPECTED, assert_matches_stored, fake_jwt
from tests.support.extension_schema import validate_extension

ISSUER = "https://iam-escape.cern.ch/"

SITE: dict[str, Any] = {
    "iam": {"issuer": ISSUER, "client_id": "datalake-hub", "allowed_groups": ["escape"]},
    "storage": {"eos": [{"name": "eos"}], "scratch": [{"name": "scratch"}]},
    "rucio": {
        "default_instance": "escape",
        "instances": [
            {
                "name": "escape",
                "display_name": "ESCAPE Rucio",
                "rucio_host": "https://vre-rucio.cern.ch",
                "auth_host": "https://vre-rucio-auth.cern.ch",
                "webui_url": "https://vre-rucio-ui.cern.ch",
                "site_name": "CERN",
                "account_claim": "rucio_account",
                "extension": {
                    "destination_rse": "CERN-EOS",
                    "rse_mount": "eos",
                    "rse_prefix": "/eos/eulake/rucio",
                    "replication_rule_lifetime_days": 7,
                },
            },
            {
                "name": "cta",
                "display_name": "CTA Rucio",
                # a gateway path with an escaped slash: the `%` must reach the client intact
                "rucio_host": "https://gw.cta.example.org/rucio%2Fapi",
                "auth_host": "https://gw.cta.example.org/rucio%2Fauth",
                "ca_cert": "/etc/pki/tls/certs/cta-ca.pem",
                "vo": "cta",
                "account_template": "{username}",
                "request_retries": 5,
                "token_exchange": {"audience": "cta-rucio", "scope": "openid profile"},
            },
        ],
    },
}


def _jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj, sort_keys=True).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'kid': 'k1', 'typ': 'at+jwt'})}.{part(claims)}.c2lnbmF0dXJl"


ALICE = {"sub": "a11ce", "preferred_username": "alice", "email": "alice@escape.test", "rucio_account": "alice"}
DAVE = {"sub": "da0e", "preferred_username": "dave.smith", "email": "dave.smith@escape.test", "rucio_account": "dsmith"}
TOKENS = {
    "escape": _jwt({"sub": "a11ce", "aud": "rucio", "exp": 2000000000, "scope": "openid profile"}),
    "cta": _jwt({"sub": "a11ce", "aud": "cta-rucio", "exp": 2000000000, "scope": "openid profile"}),
}


@pytest.fixture(scope="module")
def settings() -> Settings:
    """Two Rucio instances: ESCAPE (replica on EOS, account from a claim) and CTA (download, VO, `%`)."""
    return Settings.model_validate(SITE)


@pytest.fixture(scope="module")
def instances(settings: Settings) -> dict[str, RucioInstance]:
    return {i.name: i for i in settings.rucio.instances}


def _profile(slug: str, **kw: Any) -> Profile:
    return Profile.model_validate({"slug": slug, "display_name": slug, "description": slug, "image": "x", **kw})


HEP = _profile("hep", mounts=["eos", "scratch"])
TUTORIAL = _profile("tutorial", mounts=["scratch"])


def assert_text_matches_stored(name: str, actual: str) -> None:
    """Like :func:`assert_matches_stored`, for text files (``.cfg``) compared byte for byte."""
    path = EXPECTED / name
    if os.environ.get("UPDATE_EXPECTED") == "1" or not path.exists():
        if os.environ.get("CI") and not path.exists():
            raise AssertionError(f"{path} is missing; generate it with UPDATE_EXPECTED=1 and commit it")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    assert path.read_text() == actual, f"{name} differs from {path} (UPDATE_EXPECTED=1)"


def _strict_read(text: str) -> dict[str, str]:
    """Read ``text`` as the Rucio client does: strict ConfigParser, interpolation on."""
    parser = configparser.ConfigParser(strict=True)
    parser.read_string(text)
    assert parser.sections() == ["client"]
    return dict(parser["client"])


# --- rucio.cfg -------------------------------------------------------------------------------


def test_cfg_for_user_whose_account_comes_from_a_claim(instances: dict[str, RucioInstance]) -> None:
    """dave.smith signs in as `dave.smith` but is `dsmith` in Rucio (IAM claim `rucio_account`)."""
    inst = instances["escape"]
    account = account_for(inst, username="dave-2esmith", claims=DAVE)
    assert account == "dsmith"
    text = render_rucio_cfg(inst, account=account, token_path="/etc/datalake/rucio/token-escape", issuer="escape")
    assert_text_matches_stored("rucio/escape-dsmith.cfg", text)
    values = _strict_read(text)
    assert values == {
        "rucio_host": "https://vre-rucio.cern.ch",
        "auth_host": "https://vre-rucio-auth.cern.ch",
        "ca_cert": "/etc/ssl/certs/ca-certificates.crt",
        "account": "dsmith",
        "auth_type": "oidc",
        "oidc_audience": "rucio",
        "oidc_scope": "openid profile offline_access",
        "oidc_issuer": "escape",
        "oidc_polling": "true",
        "auth_token_file_path": "/etc/datalake/rucio/token-escape",
        "request_retries": "3",
    }


def test_cfg_escapes_percent_and_sets_vo(instances: dict[str, RucioInstance]) -> None:
    """A `%` in a URL is written `%%`, so the client's interpolating parser gives back `%`."""
    inst = instances["cta"]
    text = render_rucio_cfg(inst, account="alice", token_path="/etc/datalake/rucio/token-cta", issuer="escape")
    assert_text_matches_stored("rucio/cta-alice.cfg", text)
    assert "rucio%%2Fapi" in text
    values = _strict_read(text)
    assert values["rucio_host"] == "https://gw.cta.example.org/rucio%2Fapi"
    assert values["vo"] == "cta"
    assert values["oidc_audience"] == "cta-rucio"
    assert values["request_retries"] == "5"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("account", "alice\n[client]"),
        ("account", "alice\rauth_type = userpass"),
        ("issuer", "escape\nauth_type = userpass"),
        ("issuer", "escape\x00"),
        ("issuer", "escape\u2028x"),
        ("issuer", " escape"),
        ("issuer", ""),
    ],
)
def test_cfg_refuses_values_that_would_inject(instances: dict[str, RucioInstance], field: str, value: str) -> None:
    """A hostile account or issuer cannot add keys or sections: it is refused, not written."""
    kwargs = {"account": "alice", "token_path": "/etc/datalake/rucio/token-escape", "issuer": "escape", field: value}
    with pytest.raises(UnsafeValue) as info:
        render_rucio_cfg(instances["escape"], **kwargs)
    assert field in str(info.value)


@pytest.mark.parametrize("path", ["~/token", "token", "$HOME/token", "/home/$USER/token"])
def test_cfg_refuses_token_paths_the_client_would_not_find(instances: dict[str, RucioInstance], path: str) -> None:
    """The client uses `auth_token_file_path` literally: relative, `~` or `$` paths are refused."""
    with pytest.raises(UnsafeValue, match="auth_token_file_path"):
        render_rucio_cfg(instances["escape"], account="alice", token_path=path, issuer="escape")


@given(st.text(min_size=1, max_size=40))
def test_cfg_any_issuer_round_trips_or_is_refused(issuer: str) -> None:
    """Whatever the issuer string, the file either parses back to exactly it or is refused."""
    inst = Settings.model_validate(SITE).rucio.instances[0]
    try:
        text = render_rucio_cfg(inst, account="alice", token_path="/t/token", issuer=issuer)
    except UnsafeValue:
        return
    assert _strict_read(text)["oidc_issuer"] == issuer


# --- accounts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claim",
    [
        "alice\n[client]",
        "Alice",
        "alice smith",
        "../alice",
        "a" * 26,
        "",
        "dsmith%",
    ],
)
def test_hostile_or_invalid_account_claim_is_refused(instances: dict[str, RucioInstance], claim: str) -> None:
    """Claims come from the IdP: anything that is not a Rucio account name raises AccountError."""
    with pytest.raises(AccountError, match="escape"):
        account_for(instances["escape"], username="alice", claims={**ALICE, "rucio_account": claim})


def test_missing_account_claim_is_an_error_not_a_guess(instances: dict[str, RucioInstance]) -> None:
    """No fallback to the username: a guessed account would silently be someone else's or nobody's."""
    with pytest.raises(AccountError, match="rucio_account"):
        account_for(instances["escape"], username="alice", claims={"sub": "x"})


def test_template_accounts(instances: dict[str, RucioInstance]) -> None:
    """Templates use the JupyterHub name, claims or the email's local part; invalid results are refused."""
    cta = instances["cta"]
    assert account_for(cta, username="alice", claims=ALICE) == "alice"
    with pytest.raises(AccountError, match="not a valid Rucio account"):
        account_for(cta, username="dave.smith", claims=DAVE)
    by_email = cta.model_copy(update={"account_template": "x_{email_local}"})
    assert account_for(by_email, username="ignored", claims=ALICE) == "x_alice"
    with pytest.raises(AccountError, match="email_local"):
        account_for(by_email, username="alice", claims={"email": "no-at-sign"})
    by_pref = cta.model_copy(update={"account_template": "{preferred_username}"})
    with pytest.raises(AccountError, match="preferred_username"):
        account_for(by_pref, username="alice", claims={})


# --- token file ------------------------------------------------------------------------------


def test_token_file_is_the_raw_jwt_without_newline() -> None:
    """The client sends the file's first line unstripped: a trailing newline would break every call."""
    token = TOKENS["escape"]
    data = render_token_file(f"  {token}\n")
    assert data == token.encode()
    assert not data.endswith(b"\n")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not-a-token",
        "a.b",
        "a.b.c.d",
        fake_jwt({"alg": "none"}, {"sub": "x"}),  # unsigned (alg none)
        "aGVsbG8.d29ybGQ.c2ln",  # base64url but not JSON
        "eyJhIjoxfQ.eyJiIjoyfQ.sig\nmore",
        "eyJhIjoxfQ.eyJiIjoyfQ.s+g/",
    ],
)
def test_token_file_refuses_non_jws_without_showing_it(value: str) -> None:
    """Anything but a compact JWS is refused, and the message never contains the value."""
    with pytest.raises(MalformedToken) as info:
        render_token_file(value)
    if len(value) >= 4:
        assert value.strip() not in str(info.value)
        assert value.strip() not in repr(info.value)


# --- extension -------------------------------------------------------------------------------


def test_extension_modes_follow_profile_mounts(settings: Settings) -> None:
    """Replica only where the RSE is mounted; the profile's own mode wins; no RSE means download."""
    rucio = settings.rucio
    assert extension_modes(rucio, HEP) == {"escape": "replica", "cta": "download"}
    assert extension_modes(rucio, TUTORIAL) == {"escape": "download", "cta": "download"}
    forced_download = _profile("dl", mounts=["eos"], rucio={"mode": "download"})
    assert extension_modes(rucio, forced_download) == {"escape": "download", "cta": "download"}
    forced_replica = _profile("rp", rucio={"mode": "replica"})  # refused by the loader; never replica here
    assert extension_modes(rucio, forced_replica) == {"escape": "download", "cta": "download"}
    assert extension_modes(rucio, _profile("off", rucio={"enabled": False})) == {}
    only_cta = _profile("cta-only", mounts=["eos"], rucio={"instances": ["cta"]})
    assert extension_modes(rucio, only_cta) == {"cta": "download"}
    assert [i.name for i in instances_for(rucio, only_cta)] == ["cta"]


@pytest.mark.parametrize("profile", [HEP, TUTORIAL], ids=lambda p: p.slug)
def test_extension_config_matches_stored(settings: Settings, profile: Profile, extension_schema: ModuleType) -> None:
    """The config for a profile with and without the EOS mount, valid for rucio-jupyterlab 41."""
    rucio = settings.rucio
    config = render_extension_config(
        rucio.instances,
        default_instance="escape",
        token_path_for=lambda n: token_path(rucio, n),
        modes=extension_modes(rucio, profile),
        replica=replica_paths_by_instance(rucio, settings.storage),
    )
    assert_matches_stored(f"rucio/extension-{profile.slug}", config)
    validate_extension(config, extension_schema)
    for inst in config["RucioConfig"]["instances"]:
        assert inst["oidc_auth"] == "file"
        assert inst["oidc_file_name"] == f"/etc/datalake/rucio/token-{inst['name']}"


def test_extension_download_mode_needs_ca_cert_so_the_model_requires_it() -> None:
    """rucio-jupyterlab requires `rucio_ca_cert` in download mode, which any instance can get: null is refused
    by the settings model (with the key path), not at every spawn."""
    site = json.loads(json.dumps(SITE))
    site["rucio"]["instances"][1]["ca_cert"] = None
    with pytest.raises(ValidationError) as err:
        Settings.model_validate(site)
    assert [e["loc"] for e in err.value.errors()] == [("rucio", "instances", 1, "ca_cert")]
    assert "download mode needs a CA bundle" in str(err.value)


def test_extension_config_refuses_what_the_extension_would(settings: Settings) -> None:
    cta = settings.rucio.instances[1]
    with pytest.raises(ExtensionConfigError, match="replica mode needs"):
        render_extension_config([cta], default_instance="cta", token_path_for=str, modes={"cta": "replica"})
    with pytest.raises(ExtensionConfigError, match="default instance"):
        render_extension_config([cta], default_instance="escape", token_path_for=str, modes={"cta": "download"})


# --- the Secret, its volume and env ----------------------------------------------------------


def _alice_secret(settings: Settings, **kw: Any) -> dict[str, Any]:
    rucio = settings.rucio
    insts = instances_for(rucio, HEP)
    return build_rucio_secret(
        rucio,
        insts,
        name=secret_name_for("jupyter-alice"),
        namespace="datalake",
        tokens=TOKENS,
        accounts={i.name: account_for(i, username="alice", claims=ALICE) for i in insts},
        issuer="escape",
        modes=extension_modes(rucio, HEP),
        replica=replica_paths_by_instance(rucio, settings.storage),
        labels={"hub.jupyter.org/username": "alice"},
        **kw,
    )


def test_secret_matches_stored(settings: Settings) -> None:
    """Alice's HEP server: both instances, default instance as rucio.cfg, tokens without newline."""
    secret = _alice_secret(settings, owner=OwnerPod(name="jupyter-alice", uid="0b7c1f7e-1111-2222-3333-444455556666"))
    assert_matches_stored("rucio/secret-alice-hep", secret)
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert set(data) == {
        "rucio.cfg",
        "rucio-escape.cfg",
        "rucio-cta.cfg",
        "token-escape",
        "token-cta",
        "status.txt",
        "jupyter_server_config.json",
    }
    assert data["rucio.cfg"] == data["rucio-escape.cfg"]
    assert data["token-cta"] == TOKENS["cta"].encode()
    assert secret["metadata"]["name"] == "jupyter-alice-rucio"
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "Pod"
    assert secret["type"] == "Opaque"
    for key in ("rucio.cfg", "rucio-cta.cfg"):
        _strict_read(data[key].decode())


def test_secret_without_owner_and_with_default_not_selected(settings: Settings) -> None:
    """Before the pod exists there is no owner; a profile without the default instance uses its first."""
    rucio = settings.rucio
    cta = [rucio.instances[1]]
    secret = build_rucio_secret(
        rucio,
        cta,
        name="jupyter-alice-rucio",
        namespace="datalake",
        tokens=TOKENS,
        accounts={"cta": "alice"},
        issuer="escape",
        modes={"cta": "download"},
    )
    assert "ownerReferences" not in secret["metadata"]
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert data["rucio.cfg"] == data["rucio-cta.cfg"]
    assert json.loads(data["jupyter_server_config.json"])["RucioConfig"]["default_instance"] == "cta"


def test_secret_refuses_bad_names_and_missing_tokens(settings: Settings) -> None:
    """Names must be DNS subdomains ≤ 253; every instance needs a token and an account."""
    with pytest.raises(RenderError, match="not a valid Secret name"):
        secret_name_for("x" * 250)
    with pytest.raises(RenderError, match="not a valid Secret name"):
        secret_name_for("Jupyter_Alice")
    with pytest.raises(RenderError, match="no token or account"):
        build_rucio_secret(
            settings.rucio,
            settings.rucio.instances,
            name="s",
            namespace="datalake",
            tokens={"escape": TOKENS["escape"]},
            accounts={"escape": "alice", "cta": "alice"},
            issuer="escape",
            modes={"escape": "download", "cta": "download"},
        )
    with pytest.raises(MalformedToken):
        build_rucio_secret(
            settings.rucio,
            settings.rucio.instances[1:],
            name="s",
            namespace="datalake",
            tokens={"cta": "garbage"},
            accounts={"cta": "alice"},
            issuer="escape",
            modes={"cta": "download"},
        )


def test_volume_mount_and_env(settings: Settings) -> None:
    """A read-only directory mount (never subPath, so rotation shows), 0440, and env without tokens."""
    volume, mount = build_secret_volume(settings.rucio, "jupyter-alice-rucio")
    env = env_for(settings.rucio)
    assert_matches_stored("rucio/volume", {"volume": volume, "mount": mount, "env": env})
    assert "subPath" not in mount
    assert mount["readOnly"] is True
    assert volume["secret"]["defaultMode"] == 0o440
    assert env == {"RUCIO_CONFIG": "/etc/datalake/rucio/rucio.cfg", "DATALAKE_RUCIO_DIR": "/etc/datalake/rucio"}
    assert not any(k.startswith("BEARER_TOKEN") for k in env)


# --- the real readers ------------------------------------------------------------------------


def test_schema_rejects_what_we_refuse(extension_schema: ModuleType) -> None:
    """The real schema is strict where we are: download without CA, replica without RSE."""
    base = {"name": "x", "display_name": "X", "rucio_base_url": "https://r"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**base, "mode": "download"}, schema=extension_schema.instance)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**base, "mode": "replica", "destination_rse": "R"}, schema=extension_schema.instance)


def _materialise(secret: dict[str, Any], directory: Path) -> None:
    """Write the Secret's files as the kubelet would (contents only; modes are the kubelet's job)."""
    for key, value in secret["data"].items():
        (directory / key).write_bytes(base64.b64decode(value))


def _notebook_env(directory: Path, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BEARER_TOKEN", "RUCIO_", "X509_"))}
    runtime = tmp_path / "xdg"
    runtime.mkdir(exist_ok=True)
    env.update(RUCIO_CONFIG=str(directory / "rucio.cfg"), XDG_RUNTIME_DIR=str(runtime), HOME=str(tmp_path))
    return env


REAL_CLIENT = """
import json
from rucio.client.baseclient import BaseClient
client = BaseClient()
print(json.dumps({
    "host": client.host, "auth_host": client.auth_host, "account": client.account, "vo": client.vo,
    "ca_cert": client.ca_cert, "auth_type": client.auth_type, "retries": client.request_retries,
    "token_file": client.token_file, "token": client.headers.get("X-Rucio-Auth-Token"),
}))
"""


def _real_client(python: Path, cfg: Path, tmp_path: Path) -> dict[str, Any]:
    """What a fresh ``BaseClient()`` in the notebook makes of ``cfg`` (no server contacted: a token is there)."""
    env = _notebook_env(cfg.parent, tmp_path)
    env["RUCIO_CONFIG"] = str(cfg)
    proc = subprocess.run(
        [str(python), "-c", REAL_CLIENT], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_real_rucio_client_reads_config_and_token(settings: Settings, session_python: Path, tmp_path: Path) -> None:
    """rucio-clients 41.5.1 reads the rendered files: hosts (with `%`), account, VO and the token unchanged."""
    if Path(f"/tmp/bt_u{os.geteuid()}").exists():
        pytest.skip(f"/tmp/bt_u{os.geteuid()} exists and would win over auth_token_file_path")
    mount = tmp_path / "mount"
    mount.mkdir()
    rucio = settings.rucio.model_copy(update={"mount_path": str(mount)})
    _materialise(_alice_secret(settings.model_copy(update={"rucio": rucio})), mount)
    default = _real_client(session_python, mount / "rucio.cfg", tmp_path)
    assert default["token"] == TOKENS["escape"]
    assert default["account"] == "alice"
    assert default["host"] == "https://vre-rucio.cern.ch"
    assert default["auth_type"] == "oidc"
    assert default["token_file"] == str(mount / "token-escape")
    cta = _real_client(session_python, mount / "rucio-cta.cfg", tmp_path)
    assert cta["host"] == "https://gw.cta.example.org/rucio%2Fapi"
    assert cta["vo"] == "cta"
    assert cta["retries"] == 5
    assert cta["ca_cert"] == "/etc/pki/tls/certs/cta-ca.pem"
    assert cta["token"] == TOKENS["cta"]


REAL_EXTENSION = """
import json, sys
from traitlets.config import Config as TraitletsConfig
from rucio_jupyterlab.config.config import Config, RucioConfig
cfg = json.load(open(sys.argv[1]))
config = Config(RucioConfig(config=TraitletsConfig(cfg)))
print(json.dumps({"instances": config.list_instances(), "default": config.get_default_instance(),
                  "auth": config.get_default_auth_type()}))
"""


def test_real_extension_accepts_config_and_finds_tokens(
    settings: Settings, session_python: Path, tmp_path: Path
) -> None:
    """rucio-jupyterlab 41.0.0's own Config class validates the file and reads each token file."""
    mount = tmp_path / "mount"
    mount.mkdir()
    rucio = settings.rucio.model_copy(update={"mount_path": str(mount)})
    _materialise(_alice_secret(settings.model_copy(update={"rucio": rucio})), mount)
    proc = subprocess.run(
        [str(session_python), "-c", REAL_EXTENSION, str(mount / "jupyter_server_config.json")],
        env=_notebook_env(mount, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["default"] == "escape"
    assert got["auth"] == "oidc"
    assert [(i["name"], i["mode"], i["oidc_enabled"]) for i in got["instances"]] == [
        ("escape", "replica", True),
        ("cta", "download", True),
    ]
