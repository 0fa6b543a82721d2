"""Rucio for every notebook: the files the hub writes into a per-server Secret, and the tokens in them.

Pure pieces (no I/O): :mod:`.account` (which Rucio account), :mod:`.render` (``rucio.cfg``, token
file, rucio-jupyterlab config), :mod:`.selection` (which instances and extension modes a profile
gets: the one place that decides it), :mod:`.secret` (the Secret, its volume, the env).
I/O: :mod:`.tokens` (exchange/refresh at the IdP, tornado), :mod:`.lookup` (which account Rucio maps
an identity to). :mod:`.errors` names every failure
without carrying a secret. The Kubernetes side is :mod:`hub_config.kube`.
"""

from __future__ import annotations

from ..errors import (
    AccountError,
    ExtensionConfigError,
    IdPUnavailable,
    MalformedToken,
    RenderError,
    RucioError,
    TokenError,
    TokenExchangeRefused,
    UnsafeValue,
)
from ..jwt import jwt_claims, jwt_expiry
from .account import ACCOUNT_PATTERN, AccountChoice, LookupResult, account_for, choose_account, validate_account
from .render import (
    ExtensionMode,
    InstanceStatus,
    cfg_key,
    render_extension_config,
    render_rucio_cfg,
    render_token_file,
    status_lines,
    token_key,
)
from .secret import (
    CONFIG_KEY,
    EXTENSION_KEY,
    STATUS_KEY,
    VOLUME_NAME,
    OwnerPod,
    build_rucio_secret,
    build_secret_volume,
    default_instance,
    env_for,
    instance_statuses,
    secret_name_for,
    token_path,
)
from .selection import extension_modes, gets_rucio, instances_for, unknown_instances
from .tokens import TokenSet, exchange_token

__all__ = [
    "ACCOUNT_PATTERN",
    "CONFIG_KEY",
    "EXTENSION_KEY",
    "STATUS_KEY",
    "VOLUME_NAME",
    "AccountChoice",
    "AccountError",
    "ExtensionConfigError",
    "ExtensionMode",
    "IdPUnavailable",
    "InstanceStatus",
    "LookupResult",
    "MalformedToken",
    "OwnerPod",
    "RenderError",
    "RucioError",
    "TokenError",
    "TokenExchangeRefused",
    "TokenSet",
    "UnsafeValue",
    "account_for",
    "build_rucio_secret",
    "build_secret_volume",
    "cfg_key",
    "choose_account",
    "default_instance",
    "env_for",
    "exchange_token",
    "extension_modes",
    "gets_rucio",
    "instance_statuses",
    "instances_for",
    "jwt_claims",
    "jwt_expiry",
    "render_extension_config",
    "render_rucio_cfg",
    "render_token_file",
    "secret_name_for",
    "status_lines",
    "token_key",
    "token_path",
    "unknown_instances",
    "validate_account",
]
