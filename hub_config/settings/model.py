"""The one settings model: the `datalake:` block of the chart's values.

The chart renders that block into a file the hub reads at start (`Settings.from_file`); the same
model generates `chart/values.schema.json`, so `helm install` refuses what the hub would refuse.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from ..errors import ConfigError, Problem
from ..modelbase import AbsPath, NonEmptyStr, Strict
from ..profiles.model import Profile
from ..yamlsource import Document, parse_yaml, problems_from_validation
from .dask import DaskGatewaySettings
from .iam import IAMSettings
from .rse import rse_problems
from .rucio import RucioSettings
from .spawner import ImageSettings, SpawnerSettings
from .storage import StorageSettings

__all__ = ["Announcement", "ProfilesSettings", "Settings"]


class Announcement(Strict):
    """A banner on the login, home and spawn pages (maintenance notices)."""

    text: NonEmptyStr = Field(description="Text of the banner (plain text; links are made clickable).")
    level: str = Field("info", pattern="^(info|warning|danger)$", description="`info`, `warning` or `danger`.")


class ProfilesSettings(Strict):
    """Where server options come from."""

    directory: AbsPath | None = Field(
        "/etc/datalake/profiles",
        description="Directory of profile YAML files in the hub (the profiles ConfigMap). Null: inline only.",
    )
    inline: list[Profile] = Field(default_factory=list, description="Profiles written directly in values.")
    reload_seconds: float = Field(30, ge=1, le=3600, description="How often the hub checks the directory for changes.")


class Settings(Strict):
    """Everything datalake-hub adds on top of z2jh."""

    site_name: NonEmptyStr = Field("datalake-hub", description="Name shown on the login page and titles.")
    iam: IAMSettings = Field(description="Sign-in with ESCAPE IAM.")
    rucio: RucioSettings = Field(default_factory=lambda: RucioSettings(), description="Rucio instances.")
    storage: StorageSettings = Field(default_factory=lambda: StorageSettings(), description="Volumes.")
    profiles: ProfilesSettings = Field(default_factory=lambda: ProfilesSettings(), description="Server options.")
    images: ImageSettings = Field(default_factory=lambda: ImageSettings(), description="Our image family.")
    spawner: SpawnerSettings = Field(default_factory=lambda: SpawnerSettings(), description="Server defaults.")
    dask_gateway: DaskGatewaySettings = Field(
        default_factory=lambda: DaskGatewaySettings(), description="Scale-out through Dask Gateway (off by default)."
    )
    announcement: Announcement | None = Field(None, description="Banner; null shows none.")
    settings_check_seconds: float = Field(
        10,
        ge=1,
        le=3600,
        description=(
            "How often the hub compares its mounted settings file with the one it started with; a change "
            "the model accepts restarts the hub (servers keep running), an invalid one is logged and ignored."
        ),
    )

    sqlite_write_ahead_log: bool = Field(
        True,
        description=(
            "Run the hub's SQLite database (z2jh's `hub.db.type: sqlite-pvc`) in write-ahead-log mode: one "
            "fsync per commit instead of three, same durability. Set false only if the hub's PVC is on a "
            "network filesystem (NFS), where SQLite does not support WAL; false also converts the database back."
        ),
    )

    @model_validator(mode="after")
    def _rse_mounts_resolve(self) -> Settings:
        """Each instance's RSE mount is an EOS mount that shows the RSE's prefix (first problem refused)."""
        problems = rse_problems(self.rucio, self.storage)
        if problems:
            raise problems[0]
        return self

    @classmethod
    def from_file(cls, path: str | Path) -> Settings:
        """Read settings from a YAML (or JSON) file; raise :class:`ConfigError` naming file:line and key."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise ConfigError([Problem(str(path), None, "", f"cannot read: {err.strerror}")]) from None
        return cls.from_document(parse_yaml(raw, str(path)))

    @classmethod
    def from_document(cls, doc: Document) -> Settings:
        """Validate a parsed document; the whole file is the `datalake:` block."""
        data = doc.data
        if not isinstance(data, dict):
            raise ConfigError([doc.problem((), "expected a mapping of settings (the `datalake:` block)")])
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(problems_from_validation(err, doc)) from None
