"""Settings of the Rucio instances every notebook gets a working client for."""

from __future__ import annotations

import re
import string
from typing import Annotated, Literal

from pydantic import Discriminator, Field, StringConstraints, Tag, field_validator, model_validator

from ..modelbase import K8sName, KeyedValueError, NonEmptyStr, Strict
from ..redact import redact
from ..safevalue import FileHttpsUrl, FileHttpUrl, FileValue, LiteralPath, MountPath

__all__ = [
    "ACCOUNT_FIELDS",
    "MAX_INSTANCES",
    "AccountTransform",
    "ReplaceTransform",
    "RucioExtension",
    "RucioInstance",
    "RucioSettings",
    "TokenExchange",
]

MAX_INSTANCES = 16
"""Most Rucio instances a site may configure (every server's Secret holds files for each)."""

ACCOUNT_FIELDS = frozenset({"username", "preferred_username", "sub", "email_local"})
"""Placeholders an `account_template` may use."""

_ACCOUNT_CHARS = re.compile(r"^[a-z0-9_-]*$")
"""What a replacement may insert: characters Rucio accepts in an account name (or nothing)."""


class ReplaceTransform(Strict):
    """Replace each key's text by its value (`""` drops it), e.g. `{replace: {".": "_"}}`."""

    replace: dict[Annotated[str, StringConstraints(min_length=1)], str] = Field(
        min_length=1,
        description='Text to find → text to put instead (lowercase a-z, 0-9, `-`, `_`, or `""` to drop it). '
        "Applied in the order given.",
    )

    @field_validator("replace")
    @classmethod
    def _replacements_valid(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(v for v in value.values() if not _ACCOUNT_CHARS.fullmatch(v))
        if bad:
            raise ValueError(
                f"replacement(s) {bad} would put characters Rucio refuses into the account "
                "(allowed: lowercase a-z, 0-9, '-', '_', or \"\" to drop)"
            )
        return value


TRANSFORM_NAMES = ("lowercase", "drop_invalid", "truncate")


def _transform_kind(value: object) -> str:
    return "name" if isinstance(value, str) else "replace"


AccountTransform = Annotated[
    Annotated[Literal["lowercase", "drop_invalid", "truncate"], Tag("name")]
    | Annotated[ReplaceTransform, Tag("replace")],
    Discriminator(_transform_kind),
]
"""One step turning a filled `account_template` into a Rucio account name.

`lowercase`; `drop_invalid` (remove every character Rucio refuses); `truncate` (to Rucio's 25
characters); `{replace: {from: to}}`."""


class TokenExchange(Strict):
    """How the hub obtains the token the notebook presents to this Rucio instance."""

    enabled: bool = Field(
        True,
        description="Exchange the user's access token (RFC 8693) for one with this audience and scope. "
        "Off reuses the login access token, which must then already carry them.",
    )
    audience: FileValue = Field("rucio", description="Audience requested (Rucio checks `aud` ∋ this).")
    scope: FileValue = Field(
        "openid profile offline_access",
        description="Scope requested; Rucio requires at least `openid profile`.",
    )

    @model_validator(mode="after")
    def _scope_has_rucio_minimum(self) -> TokenExchange:
        missing = {"openid", "profile"} - set(self.scope.split())
        if missing:
            raise ValueError(f"scope lacks {' and '.join(sorted(missing))}: Rucio rejects such tokens")
        return self


class RucioExtension(Strict):
    """rucio-jupyterlab settings for this instance.

    The extension's mode and replica-mode paths are not set here: they are derived
    (:mod:`hub_config.settings.rse`) from which RSE is behind which EOS mount and the RSE's prefix.
    Profiles that mount `rse_mount` get replica mode (files read in place, "make available" makes a
    replication rule to `destination_rse`); every other profile gets download mode.
    """

    destination_rse: FileValue | None = Field(
        None,
        description='The RSE behind `rse_mount` (an EOS mount): "make available" replicates to it and profiles '
        "that mount it read its files in place (replica mode). Null: download mode everywhere.",
    )
    rse_mount: K8sName | None = Field(
        None, description="Name of the EOS mount (`storage.eos[].name`) where `destination_rse`'s files are."
    )
    rse_prefix: LiteralPath | None = Field(
        None,
        description="Path part of `destination_rse`'s protocol prefix, as its PFNs carry it (e.g. `/eos/eulake/rucio` "
        "in `root://eos.example.org//eos/eulake/rucio/scope/...`); must be inside what `rse_mount` shows "
        "(`storage.eos[].eos_path`). The extension's `rse_mount_path` and `path_begins_at` are derived from it.",
    )
    replication_rule_lifetime_days: int | None = Field(
        None, ge=1, description='Lifetime of the rules "make available" creates; null: no expiry.'
    )
    cache_expires_at: int | None = Field(None, ge=0, description="Extension cache lifetime (seconds).")
    wildcard_enabled: bool = Field(False, description="Allow wildcard DID searches in the panel.")
    app_id: FileValue | None = Field(None, description="Rucio `app_id` sent by the extension.")

    @field_validator("rse_prefix")
    @classmethod
    def _prefix_plain(cls, value: str | None) -> str | None:
        if value is not None and any(p in (".", "..") for p in value.split("/")):
            raise ValueError("must not contain . or .. components (PFNs carry the plain path)")
        return value

    @model_validator(mode="after")
    def _rse_and_mount_together(self) -> RucioExtension:
        given = {k: getattr(self, k) is not None for k in ("destination_rse", "rse_mount", "rse_prefix")}
        if any(given.values()) and not all(given.values()):
            missing = [k for k, v in given.items() if not v]
            named = [k for k, v in given.items() if v]
            raise KeyedValueError(
                (missing[0],),
                f"{', '.join(named)} set but {' and '.join(missing)} missing: an RSE read in place needs its "
                "name, the EOS mount it is behind and its prefix",
            )
        return self


class RucioInstance(Strict):
    """One Rucio deployment the users work with."""

    name: K8sName = Field(description="Short name; file names and the extension's instance id.")
    display_name: FileValue = Field(description="Name shown in the JupyterLab Rucio panel.")
    rucio_host: FileHttpUrl = Field(description="Rucio server URL.")
    auth_host: FileHttpUrl = Field(description="Rucio authentication server URL.")
    webui_url: FileHttpsUrl | None = Field(None, description="Rucio web UI URL shown in the panel.")
    ca_cert: LiteralPath = Field(
        "/etc/ssl/certs/ca-certificates.crt",
        description="CA bundle path inside the notebook used to verify Rucio's certificate. Required: "
        "rucio-jupyterlab's download mode needs it, and every profile that does not mount the instance's "
        "RSE gets download mode.",
    )
    vo: FileValue | None = Field(None, description="Rucio VO (multi-VO deployments only).")
    site_name: FileValue | None = Field(None, description="Site name reported by the extension.")
    account_claim: NonEmptyStr | None = Field(
        None,
        description="Claim holding the Rucio account name, used as is (first route tried). A user without "
        "the claim, or with a value Rucio refuses, falls through to `account_template`, then `account_lookup`.",
    )
    account_template: NonEmptyStr | None = Field(
        None,
        description="Rucio account from a template over {username}, {preferred_username}, {sub}, {email_local}, "
        "then `account_transforms` (second route). Null: `{username}` when neither `account_claim` nor "
        "`account_lookup` is set, else no template route.",
    )
    account_transforms: list[AccountTransform] = Field(
        default_factory=list,
        description="Steps applied in order to the filled `account_template`: `lowercase`, "
        '`{replace: {".": "_"}}`, `drop_invalid` (remove characters Rucio refuses), `truncate` (to 25).',
    )
    account_lookup: bool = Field(
        False,
        description="Last route: ask this Rucio server (`GET /accounts/whoami` with the user's Rucio token) "
        "which account holds the identity `SUB=<sub>, ISS=<issuer>`; done by the hub at each spawn and rotation.",
    )
    token_exchange: TokenExchange = Field(
        default_factory=lambda: TokenExchange(), description="How this instance's token is obtained."
    )
    extension: RucioExtension = Field(
        default_factory=lambda: RucioExtension(), description="JupyterLab extension settings."
    )
    request_retries: int = Field(3, ge=0, le=20, description="Client `request_retries`.")

    @field_validator("account_transforms", mode="before")
    @classmethod
    def _transforms_known(cls, value: object) -> object:
        """One clear message per wrong step (pydantic would list every union branch it tried)."""
        if not isinstance(value, list):
            return value
        for index, step in enumerate(value):
            if isinstance(step, str) and step not in TRANSFORM_NAMES:
                raise ValueError(
                    f"account_transforms[{index}]: unknown transform {redact(step, limit=40)!r}; "
                    f"known: {', '.join(TRANSFORM_NAMES)}, {{replace: {{from: to}}}}"
                )
            if isinstance(step, dict) and set(step) != {"replace"}:
                raise ValueError(
                    f"account_transforms[{index}]: a mapping step must be {{replace: {{from: to}}}}, "
                    f"got keys {sorted(map(str, step))}"
                )
            if not isinstance(step, str | dict | ReplaceTransform):
                raise ValueError(f"account_transforms[{index}]: expected a transform name or {{replace: ...}}")
        return value

    @field_validator("ca_cert", mode="before")
    @classmethod
    def _ca_cert_set(cls, value: object) -> object:
        if value is None:
            raise ValueError(
                "must be set (null is refused): rucio-jupyterlab's download mode needs a CA bundle, and every "
                "profile that does not mount this instance's RSE gets download mode"
            )
        return value

    @property
    def effective_account_template(self) -> str | None:
        """The template route's template: the one set, else `{username}` if no other route is set."""
        if self.account_template is not None:
            return self.account_template
        return "{username}" if self.account_claim is None and not self.account_lookup else None

    @model_validator(mode="after")
    def _account_rules(self) -> RucioInstance:
        if self.account_template is not None:
            try:
                parsed = list(string.Formatter().parse(self.account_template))
            except ValueError as err:
                raise ValueError(f"account_template is not a valid template: {err}") from None
            names = {f for _, f, _, _ in parsed if f is not None}
            unknown = names - ACCOUNT_FIELDS
            if unknown or any(not n for n in names):
                raise ValueError(
                    f"account_template uses unknown placeholder(s) {sorted(unknown) or ['{}']}; "
                    f"known: {sorted(ACCOUNT_FIELDS)}"
                )
            if any(spec or conv for _, f, spec, conv in parsed if f is not None):
                raise ValueError("account_template placeholders take no format spec or conversion ({name} only)")
        if self.account_transforms and self.effective_account_template is None:
            raise ValueError("account_transforms apply to account_template, which is not set for this instance")
        return self


class RucioSettings(Strict):
    """Rucio for every notebook: config files and tokens in a per-server Secret."""

    instances: list[RucioInstance] = Field(
        default_factory=list,
        max_length=MAX_INSTANCES,
        description=f"Rucio instances (none: no Rucio; at most {MAX_INSTANCES}, since each server's Secret "
        "holds every instance's files and Kubernetes caps a Secret at 1 MiB).",
    )
    default_instance: K8sName | None = Field(
        None, description="Instance `rucio.cfg` and the extension default to; null means the first."
    )
    mount_path: MountPath = Field(
        "/etc/datalake/rucio",
        description="Directory the per-server Secret is mounted at (whole directory, so rotation shows).",
    )
    refresh_margin_seconds: int = Field(
        300, ge=10, description="Rotate a notebook's tokens when they have less than this left."
    )
    max_concurrent_rotations: int = Field(
        8, ge=1, le=256, description="Token rotations the hub runs at once (IdP and API server protection)."
    )
    rotation_retry_min_seconds: int = Field(
        10,
        ge=1,
        le=600,
        description="First wait after a failed token rotation; it doubles per failure up to "
        "`rotation_retry_max_seconds`. While the IdP is unavailable the hub probes its token endpoint "
        "at this pace instead of refreshing every user's tokens.",
    )
    rotation_retry_max_seconds: int = Field(
        20,
        ge=1,
        le=600,
        description="Longest wait between retries of a rotation that failed because the IdP was unavailable "
        "(and between IdP probes during an outage): sessions whose tokens expired are rotated within about this "
        "long of the IdP coming back. Other failures back off to 10 minutes; permanent ones (no Rucio account, "
        "sign-in needed) are not retried.",
    )
    check_interval_seconds: int = Field(30, ge=1, le=3600, description="How often the rotator looks for work.")

    @model_validator(mode="after")
    def _names_consistent(self) -> RucioSettings:
        names = [i.name for i in self.instances]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate instance name(s): {', '.join(dupes)}")
        if self.default_instance is not None and self.default_instance not in names:
            raise ValueError(f"default_instance {self.default_instance!r} is not one of the instances {names}")
        return self

    @model_validator(mode="after")
    def _retry_bounds_ordered(self) -> RucioSettings:
        if self.rotation_retry_min_seconds > self.rotation_retry_max_seconds:
            raise ValueError("rotation_retry_min_seconds is larger than rotation_retry_max_seconds")
        return self

    @property
    def default(self) -> RucioInstance | None:
        """The instance `rucio.cfg` points at."""
        if not self.instances:
            return None
        name = self.default_instance or self.instances[0].name
        return next(i for i in self.instances if i.name == name)
