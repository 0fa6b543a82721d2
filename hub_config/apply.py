"""The hub's whole configuration in one call: `apply(c, load(path))`.

`hub.extraConfig` in the chart is one line — `from hub_config.apply import apply_from_file;
apply_from_file(c)` — so no Python lives in YAML. Settings and profiles are validated before
anything is set: a broken file stops the hub at start with every problem listed (file:line:
key), never a traceback, and never a half-configured hub.
"""

from __future__ import annotations

import html
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .auth import apply_auth, discover, read_client_secret
from .errors import AuthConfigError, ConfigError, DiscoveryError
from .logs import route_to_hub_log
from .profiles.source import ProfileSource
from .rucio_service import Rotator, RucioProvisioner
from .settings.model import Settings
from .settings_watch import SettingsWatch
from .spawner import apply_spawner

__all__ = ["DEFAULT_SETTINGS_PATH", "apply", "apply_from_file", "load", "settings_path"]

DEFAULT_SETTINGS_PATH = "/etc/datalake/settings/settings.yaml"
log = logging.getLogger("hub_config")


def settings_path(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else ``$DATALAKE_SETTINGS``, else the chart's mount point."""
    return Path(path or os.environ.get("DATALAKE_SETTINGS", DEFAULT_SETTINGS_PATH))


def load(path: str | os.PathLike[str] | None = None) -> Settings:
    """Settings from :func:`settings_path`."""
    return Settings.from_file(settings_path(path))


def apply(c: Any, settings: Settings, *, hub_url: str | None = None) -> ProfileSource:
    """Configure authentication, spawning and pages on the traitlets config ``c``."""
    route_to_hub_log()
    profiles = ProfileSource(settings)
    profiles.load_initial()
    crypt_key = os.environ.get("JUPYTERHUB_CRYPT_KEY", "")
    if crypt_key.strip():
        # The operator's key (from their existing Secret) wins over the one z2jh generates, so auth
        # state stays readable if the release is reinstalled; JupyterHub validates the format.
        c.CryptKeeper.keys = [k for k in crypt_key.split(";") if k.strip()]
    endpoints = discover(settings.iam)
    client_secret = read_client_secret(settings.iam)
    apply_auth(c, settings.iam, hub_url=hub_url, endpoints=endpoints, client_secret=client_secret)
    rucio: RucioProvisioner | None = None
    rotator: Rotator | None = None
    if settings.rucio.instances:
        rucio = RucioProvisioner(
            settings,
            token_url=endpoints.token_url,
            client_id=settings.iam.client_id,
            client_secret=client_secret,
            ca_bundle=settings.iam.ca_bundle,
        )
        rotator = Rotator(
            margin=settings.rucio.refresh_margin_seconds,
            interval=settings.rucio.check_interval_seconds,
            concurrency=settings.rucio.max_concurrent_rotations,
        )
    apply_spawner(c, settings, profiles, rucio=rucio, rotator=rotator)
    # `update`/`prepend` merge with what other config files set (traitlets' lazy values).
    c.JupyterHub.template_vars.update(
        {
            "datalake_site_name": settings.site_name,
            # JupyterHub's page template renders `announcement` unescaped; settings hold plain text.
            "announcement": html.escape(settings.announcement.text) if settings.announcement else None,
            "announcement_level": settings.announcement.level if settings.announcement else None,
        }
    )
    templates = Path(__file__).parent / "templates"
    if templates.is_dir():
        c.JupyterHub.template_paths.prepend([str(templates)])
    return profiles


def apply_from_file(c: Any, path: str | os.PathLike[str] | None = None) -> ProfileSource:
    """`apply(c, load(path))` in the hub: configuration errors become a clear exit at start, and a
    later change of the settings file restarts the hub (settings_watch.py)."""
    where = settings_path(path)
    watch = SettingsWatch(where)  # fingerprint taken before the file is read
    try:
        settings = load(where)
        profiles = apply(c, settings)
        watch.start(settings.settings_check_seconds)
        return profiles
    except ConfigError as err:
        _die(f"datalake-hub configuration is invalid ({len(err.problems)} problem(s)):\n{err}")
    except (DiscoveryError, AuthConfigError) as err:
        _die(f"datalake-hub cannot start: {err}")
    raise AssertionError("unreachable")


def _die(message: str) -> None:
    log.critical(message)
    print(message, file=sys.stderr)
    raise SystemExit(1)
