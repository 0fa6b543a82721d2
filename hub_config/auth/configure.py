"""`apply_auth`: the hub's authentication configuration from settings."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

from ..errors import AuthConfigError
from ..redact import remember_secret
from ..settings.iam import IAMSettings
from .discovery import OIDCEndpoints

__all__ = ["AuthConfigError", "apply_auth", "apply_auth_state_key", "read_client_secret"]


def read_client_secret(iam: IAMSettings) -> str:
    """The OAuth client secret from the file or variable the chart mounts from an existing Secret."""
    source = iam.client_secret
    if source.env is not None:
        value = os.environ.get(source.env)
        if not value:
            raise AuthConfigError(f"datalake.iam.client_secret.env: variable {source.env} is unset or empty")
        remember_secret(value.strip())
        return value.strip()
    assert source.file is not None  # guaranteed by the model
    try:
        value = Path(source.file).read_text().strip()
    except OSError as err:
        raise AuthConfigError(
            f"datalake.iam.client_secret.file: cannot read {source.file} ({err.strerror}); "
            "is the IAM client Secret mounted?"
        ) from None
    if not value:
        raise AuthConfigError(f"datalake.iam.client_secret.file: {source.file} is empty")
    remember_secret(value)  # masked in every log line, page and error of this process from now on
    return value


def apply_auth(
    c: Any,
    iam: IAMSettings,
    *,
    endpoints: OIDCEndpoints,
    client_secret: str,
    hub_url: str | None = None,
) -> None:
    """Configure JupyterHub to sign users in with ``iam``.

    Pure `c.*` writes: ``endpoints`` are discovered and ``client_secret`` read once, by
    :func:`hub_config.apply.apply`, which hands the same values to the Rucio provisioner.
    """
    cls = "DatalakeOAuthenticator"
    c.JupyterHub.authenticator_class = "hub_config.auth.authenticator.DatalakeOAuthenticator"
    auth = c[cls]
    auth.client_id = iam.client_id
    auth.client_secret = client_secret
    auth.authorize_url = endpoints.authorize_url
    auth.token_url = endpoints.token_url
    auth.userdata_url = endpoints.userdata_url
    auth.userdata_from_id_token = iam.claim_source == "id_token"
    auth.scope = list(iam.scopes)
    auth.username_claim = iam.username_claim
    auth.enable_pkce = iam.pkce
    auth.login_service = iam.login_service
    auth.manage_groups = True
    auth.allowed_groups = set(iam.allowed_groups)
    auth.admin_groups = set(iam.admin_groups)
    auth.allow_all = iam.allow_all
    auth.enable_auth_state = True
    auth.refresh_pre_spawn = True
    auth.auth_refresh_age = iam.refresh_age_seconds
    auth.refresh_margin_seconds = iam.refresh_margin_seconds
    auth.datalake_issuer = iam.issuer
    auth.datalake_groups = iam.groups
    auth.datalake_access_groups = list(iam.allowed_groups)
    if iam.extra_authorize_params:
        auth.extra_authorize_params = dict(iam.extra_authorize_params)
    if iam.ca_bundle:
        auth.http_request_kwargs = {"ca_certs": iam.ca_bundle}
    if iam.logout_at_idp and endpoints.end_session_url:
        query = {"client_id": iam.client_id}
        target = iam.post_logout_redirect_url or hub_url
        if target:
            query["post_logout_redirect_uri"] = target
        auth.logout_redirect_url = f"{endpoints.end_session_url}?{urllib.parse.urlencode(query)}"


def apply_auth_state_key(c: Any, crypt_key: str) -> None:
    """Encrypt auth state with the operator's key(s) (``;``-separated, as JupyterHub documents).

    It wins over the key z2jh generates (z2jh's jupyterhub_config.py sets `CryptKeeper.keys` from
    its own Secret first), so auth state stays readable after a reinstall. Empty: z2jh's key stays.
    """
    keys = [k for k in crypt_key.split(";") if k.strip()]
    if keys:
        c.CryptKeeper.keys = keys
