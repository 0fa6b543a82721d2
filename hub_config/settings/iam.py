"""Settings of the identity provider (ESCAPE IAM, an INDIGO IAM OIDC provider)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..modelbase import AbsPath, HttpsUrl, HttpUrl, NonEmptyStr, Strict
from ..safevalue import FileHttpsUrl

__all__ = ["ClientSecretSource", "GroupsClaim", "IAMEndpoints", "IAMSettings"]


class ClientSecretSource(Strict):
    """Where the hub reads the OAuth client secret from — never the secret itself.

    The chart mounts it from an existing Kubernetes Secret, so it is in no ConfigMap, values file or log.
    """

    file: AbsPath | None = Field(
        "/etc/datalake/secrets/iam-client-secret",
        description="File in the hub container holding the client secret (mounted from an existing Secret).",
    )
    env: NonEmptyStr | None = Field(
        None, description="Environment variable holding the client secret, used instead of `file` when set."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ClientSecretSource:
        if self.file is None and self.env is None:
            raise ValueError("set `file` or `env`: the hub cannot sign in without a client secret")
        return self


class GroupsClaim(Strict):
    """How IAM group membership is read from the user's claims.

    IAM offers `groups` (`escape/gpu`), `wlcg.groups` (`/escape/gpu`) and `eduperson_entitlement`
    (`urn:mace:escape:group:escape:gpu`); all three normalise to `escape/gpu`.
    """

    claim: NonEmptyStr = Field("groups", description="Claim holding the groups (`groups`, `wlcg.groups`, ...).")
    prefix: NonEmptyStr | None = Field(
        None,
        description="Keep only values starting with this prefix and strip it "
        "(e.g. `urn:mace:escape:group:` for eduperson_entitlement). Null keeps every value.",
    )
    separator: NonEmptyStr | None = Field(
        None,
        description="Replace this separator with `/` after stripping the prefix (`:` for entitlements).",
    )
    strip_leading_slash: bool = Field(True, description="Drop the leading `/` of wlcg.groups values.")


class IAMEndpoints(Strict):
    """Explicit OIDC endpoints; each one set here overrides the issuer's discovery document."""

    authorize_url: HttpsUrl | None = Field(None, description="Authorization endpoint.")
    token_url: HttpsUrl | None = Field(None, description="Token endpoint.")
    userdata_url: HttpsUrl | None = Field(None, description="Userinfo endpoint.")
    end_session_url: HttpsUrl | None = Field(None, description="End-session (logout) endpoint.")


class IAMSettings(Strict):
    """Sign-in with ESCAPE IAM."""

    issuer: FileHttpsUrl = Field(
        description="OIDC issuer URL exactly as it appears in tokens' `iss` (IAM's ends with `/`). "
        "Endpoints come from `<issuer>/.well-known/openid-configuration` at hub start."
    )
    client_id: NonEmptyStr = Field(description="OAuth client id registered at IAM for this hub.")
    client_secret: ClientSecretSource = Field(
        default_factory=lambda: ClientSecretSource(), description="Where the client secret is read from."
    )
    scopes: list[NonEmptyStr] = Field(
        default_factory=lambda: ["openid", "profile", "email", "offline_access", "wlcg.groups"],
        description="Scopes requested at login. `offline_access` gives the refresh token that keeps "
        "Rucio tokens fresh for the whole session.",
    )
    username_claim: NonEmptyStr = Field(
        "preferred_username", description="Claim the JupyterHub username is derived from (then normalised)."
    )
    groups: GroupsClaim = Field(default_factory=lambda: GroupsClaim(), description="Where groups come from.")
    allowed_groups: list[NonEmptyStr] = Field(
        default_factory=list,
        description="IAM groups whose members may sign in. Empty requires `allow_all: true`.",
    )
    allow_all: bool = Field(
        False, description="Let every authenticated IAM user in. Off by default: access follows groups."
    )
    admin_groups: list[NonEmptyStr] = Field(
        default_factory=list, description="IAM groups whose members are JupyterHub admins."
    )
    login_service: NonEmptyStr = Field(
        "ESCAPE IAM", description="Name on the login button: 'Sign in with <login_service>'."
    )
    endpoints: IAMEndpoints = Field(
        default_factory=lambda: IAMEndpoints(), description="Endpoint overrides (normally discovered)."
    )
    discovery_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Timeout of one discovery request at hub start."
    )
    discovery_retries: int = Field(
        5, ge=0, le=100, description="Retries (with backoff) before the hub refuses to start."
    )
    refresh_age_seconds: int = Field(
        300,
        ge=0,
        description="Refresh auth state (via the refresh token) when older than this (`auth_refresh_age`).",
    )
    refresh_margin_seconds: int = Field(
        120, ge=0, description="Refresh the access token (refresh grant) when it has less than this left."
    )
    extra_authorize_params: dict[str, str] = Field(
        default_factory=dict,
        description="Extra authorize-request parameters (e.g. `prompt: consent` for IdPs that only issue "
        "refresh tokens on consent).",
    )
    logout_at_idp: bool = Field(False, description="Log out of IAM too when the user logs out of the hub.")
    ca_bundle: AbsPath | None = Field(
        None, description="CA bundle (path in the hub) to trust IAM's certificate; null uses the system's."
    )
    pkce: bool = Field(True, description="Use PKCE with the authorization code flow.")
    post_logout_redirect_url: HttpUrl | None = Field(
        None, description="Where IAM sends the user after logout (when `logout_at_idp`)."
    )
    claim_source: Literal["userinfo", "id_token"] = Field(
        "userinfo", description="Read username and groups from the userinfo endpoint or the id token."
    )

    @model_validator(mode="after")
    def _access_is_explicit(self) -> IAMSettings:
        if not self.allowed_groups and not self.allow_all:
            raise ValueError(
                "allowed_groups is empty, so nobody could sign in: list the IAM groups allowed in "
                "or set allow_all: true"
            )
        if "openid" not in self.scopes:
            raise ValueError("scopes must include `openid`")
        return self
