"""The hub's whole configuration in one call: `apply(c, load(path))`.

`hub.extraConfig` in the chart is one line — `from hub_config.apply import apply_from_file;
apply_from_file(c)` — so no Python lives in YAML. Settings and profiles are validated before
anything is set: a broken file stops the hub at start with every problem listed (file:line:
key), never a traceback, and never a half-configured hub.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .auth import apply_auth, apply_auth_state_key, discover, read_client_secret
from .dask.hub import apply_dask_gateway, read_gateway_token
from .database import apply_database
from .errors import AuthConfigError, ConfigError, DiscoveryError
from .logs import route_to_hub_log
from .memtrim import MemoryTrimmer
from .pages import apply_pages
from .profiles.source import ProfileSource
from .rucio_service import Rotator, RucioProvisioner
from .rucio_service.rotator import token_endpoint_probe
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
    """Configure the hub on the traitlets config ``c``: one `apply_<concern>` per concern.

    What the concerns share is read here, once: the profiles, the IdP's endpoints (discovery),
    the client secret and the auth-state key. The `apply_*` functions only write `c.*`.
    """
    route_to_hub_log()
    apply_database(write_ahead_log=settings.sqlite_write_ahead_log)
    profiles = ProfileSource(settings)
    profiles.load_initial()
    endpoints = discover(settings.iam)
    client_secret = read_client_secret(settings.iam)
    apply_auth_state_key(c, os.environ.get("JUPYTERHUB_CRYPT_KEY", ""))
    apply_auth(c, settings.iam, endpoints=endpoints, client_secret=client_secret, hub_url=hub_url)
    rucio, rotator = _rucio_services(settings, token_url=endpoints.token_url, client_secret=client_secret)
    apply_spawner(c, settings, profiles, rucio=rucio, rotator=rotator)
    apply_pages(c, settings)
    apply_dask_gateway(c, settings.dask_gateway, api_token=read_gateway_token(settings.dask_gateway))
    return profiles


def _rucio_services(
    settings: Settings, *, token_url: str, client_secret: str
) -> tuple[RucioProvisioner | None, Rotator | None]:
    """The hub-wide Rucio provisioner and rotator, or none without Rucio instances."""
    if not settings.rucio.instances:
        return None, None
    rucio = RucioProvisioner(
        settings,
        token_url=token_url,
        client_id=settings.iam.client_id,
        client_secret=client_secret,
        ca_bundle=settings.iam.ca_bundle,
    )
    rotator = Rotator(
        margin=settings.rucio.refresh_margin_seconds,
        interval=settings.rucio.check_interval_seconds,
        concurrency=settings.rucio.max_concurrent_rotations,
        probe=token_endpoint_probe(token_url, settings.iam.ca_bundle),
        min_backoff=settings.rucio.rotation_retry_min_seconds,
        max_backoff=settings.rucio.rotation_retry_max_seconds,
    )
    return rucio, rotator


def apply_from_file(c: Any, path: str | os.PathLike[str] | None = None) -> ProfileSource:
    """`apply(c, load(path))` in the hub: configuration errors become a clear exit at start, and a
    later change of the settings file restarts the hub (settings_watch.py)."""
    where = settings_path(path)
    watch = SettingsWatch(where)  # fingerprint taken before the file is read
    try:
        settings = load(where)
        profiles = apply(c, settings)
        watch.start(settings.settings_check_seconds)
        # What is imported and configured by now lives as long as the hub: gc.freeze() takes it
        # out of the collector's walks, so no later full collection (while a restarted hub loads
        # its users and servers, and after) visits the ~280k objects of JupyterHub and its
        # libraries again: ~0.1 s of CPU each on the benchmark machine. The price, import-time
        # garbage kept for good, is next to nothing.
        gc.freeze()
        MemoryTrimmer().start()
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
