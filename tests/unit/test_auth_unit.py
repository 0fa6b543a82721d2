"""Sign-in pieces that need no IdP: usernames, groups, client secret, discovery errors, hub config."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from traitlets.config import Config

from hub_config.auth import OIDCEndpoints, apply_auth, discover, read_client_secret
from hub_config.auth.groups import groups_from_claims
from hub_config.auth.usernames import normalise_username
from hub_config.errors import AuthConfigError, DiscoveryError
from hub_config.settings import GroupsClaim, IAMSettings

ISS = "https://iam.example.org/"
SAFE = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice", "alice"),
        ("dave.smith", "dave.smith"),
        ("../x", "x-{h}"),
        ("Alice", "alice-{h}"),
        ("a@b", "a-b-{h}"),
        ("Jürgen", "jurgen-{h}"),
        ("x" * 200, "x" * 23 + "-{h}"),
        ("...", "user-{h}"),
    ],
)
def test_hostile_usernames_become_safe(raw: str, expected: str) -> None:
    """Traversal, case, unicode, length and @ give a safe name; lossy ones carry a subject digest."""
    name = normalise_username(raw, issuer=ISS, sub="sub-1")
    digest = normalise_username("Z", issuer=ISS, sub="sub-1").rsplit("-", 1)[1]
    assert name == expected.format(h=digest)
    assert SAFE.match(name)
    assert len(name) <= 32


def test_distinct_subjects_never_collide() -> None:
    """`Alice` and `alice!` from two IAM identities normalise alike but get different names."""
    a = normalise_username("Alice", issuer=ISS, sub="sub-a")
    b = normalise_username("alice!", issuer=ISS, sub="sub-b")
    assert a != b
    assert normalise_username("Alice", issuer=ISS, sub="sub-a") == a


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300), st.text(min_size=1, max_size=40))
def test_any_username_is_safe_and_bounded(raw: str, sub: str) -> None:
    """Whatever IAM sends, the hub name is short, safe in pods/labels/paths, and has no `..`."""
    name = normalise_username(raw, issuer=ISS, sub=sub)
    assert SAFE.match(name), name
    assert len(name) <= 32
    assert ".." not in name


@pytest.mark.parametrize(
    ("claims", "spec", "expected"),
    [
        ({"groups": ["escape", "escape/gpu"]}, GroupsClaim(), ["escape", "escape/gpu"]),
        ({"wlcg.groups": ["/escape", "/escape/gpu"]}, GroupsClaim(claim="wlcg.groups"), ["escape", "escape/gpu"]),
        (
            {"eduperson_entitlement": ["urn:mace:escape:group:escape:gpu", "urn:other:x"]},
            GroupsClaim(claim="eduperson_entitlement", prefix="urn:mace:escape:group:", separator=":"),
            ["escape/gpu"],
        ),
        ({"groups": "escape"}, GroupsClaim(), ["escape"]),
        ({"groups": [None, 3, "", "ok"]}, GroupsClaim(), ["ok"]),
        ({}, GroupsClaim(), []),
    ],
)
def test_groups_from_each_claim_style(claims: dict[str, object], spec: GroupsClaim, expected: list[str]) -> None:
    """The three IAM group claim styles map to the same group names; junk values are dropped."""
    assert groups_from_claims(claims, spec) == expected


def _iam(**extra: object) -> IAMSettings:
    return IAMSettings.model_validate({"issuer": ISS, "client_id": "hub", "allowed_groups": ["escape"], **extra})


def test_client_secret_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret is read from the mounted file (trailing newline dropped) or a named variable."""
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t\n")
    assert read_client_secret(_iam(client_secret={"file": str(secret)})) == "s3cr3t"
    monkeypatch.setenv("IAM_SECRET", "from-env")
    assert read_client_secret(_iam(client_secret={"file": None, "env": "IAM_SECRET"})) == "from-env"


def test_missing_client_secret_names_the_source_not_a_value(tmp_path: Path) -> None:
    """An unmounted Secret is a clear start-up error naming the file."""
    with pytest.raises(AuthConfigError, match=r"cannot read .*/nope .*is the IAM client Secret mounted"):
        read_client_secret(_iam(client_secret={"file": str(tmp_path / "nope")}))


def test_unreachable_issuer_is_a_clear_error() -> None:
    """Discovery against an issuer nobody listens on fails after the retries, naming the issuer."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    iam = _iam(issuer=f"https://127.0.0.1:{port}/", discovery_retries=2, discovery_timeout_seconds=1)
    sleeps: list[float] = []
    with pytest.raises(DiscoveryError) as err:
        discover(iam, sleep=sleeps.append)
    assert f"https://127.0.0.1:{port}/ is unreachable" in str(err.value)
    assert "after 3 attempt(s)" in str(err.value)
    assert sleeps == [1.0, 2.0]


def test_explicit_endpoints_skip_discovery() -> None:
    """With all endpoints set, the hub starts without contacting the issuer."""
    iam = _iam(
        endpoints={
            "authorize_url": "https://iam.example.org/authorize",
            "token_url": "https://iam.example.org/token",
            "userdata_url": "https://iam.example.org/userinfo",
        }
    )
    assert discover(iam).token_url == "https://iam.example.org/token"


def test_apply_auth_sets_a_real_traitlets_config(tmp_path: Path) -> None:
    """The hub config asks for refresh, syncs groups, encrypts auth state, and logs out at IAM if asked."""
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t")
    iam = _iam(
        client_secret={"file": str(secret)},
        admin_groups=["escape/admins"],
        logout_at_idp=True,
        extra_authorize_params={"prompt": "consent"},
    )
    endpoints = OIDCEndpoints(
        authorize_url="https://iam.example.org/authorize",
        token_url="https://iam.example.org/token",
        userdata_url="https://iam.example.org/userinfo",
        end_session_url="https://iam.example.org/logout",
        jwks_uri=None,
    )
    c = Config()
    apply_auth(
        c, iam, endpoints=endpoints, client_secret=read_client_secret(iam), hub_url="https://hub.example.org/hub/"
    )
    a = c.DatalakeOAuthenticator
    assert c.JupyterHub.authenticator_class == "hub_config.auth.authenticator.DatalakeOAuthenticator"
    assert a.scope == ["openid", "profile", "email", "offline_access", "wlcg.groups"]
    assert a.manage_groups is True
    assert a.allowed_groups == {"escape"}
    assert a.admin_groups == {"escape/admins"}
    assert a.enable_auth_state is True
    assert a.refresh_pre_spawn is True
    assert a.enable_pkce is True
    assert a.login_service == "ESCAPE IAM"
    assert a.extra_authorize_params == {"prompt": "consent"}
    assert a.logout_redirect_url == (
        "https://iam.example.org/logout?client_id=hub&post_logout_redirect_uri=https%3A%2F%2Fhub.example.org%2Fhub%2F"
    )


def test_one_jwt_claims_reader() -> None:
    """Sign-in and the Rucio side read claims with the same function, so they agree on what a JWT is."""
    from hub_config import jwt, rucio
    from hub_config.auth import authenticator

    assert authenticator.jwt_claims is jwt.jwt_claims is rucio.jwt_claims
    assert jwt.jwt_claims(None) is None
    assert jwt.jwt_claims("opaque") is None
