"""Bring the platform's components up in dependency order and down in reverse."""

from __future__ import annotations

import importlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from .base import state_dir, write_json

__all__ = ["COMPONENTS", "load_info", "platform_down", "platform_up"]

log = logging.getLogger("localplatform")

COMPONENTS: tuple[str, ...] = ("controlplane", "kwok", "idp", "rucio_server", "nodeagent", "prometheus")
"""Start order; each may use the sections of those before it."""


def _module(name: str) -> Any:
    return importlib.import_module(f"localplatform.{name}")


def load_info(state: Path | None = None) -> dict[str, Any]:
    """The ``platform.json`` of a running platform (empty if none is up)."""
    path = state_dir(state) / "platform.json"
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def platform_up(state: Path | None = None, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Start every component (or those in ``only``, with what they need before them)."""
    root = state_dir(state)
    info = load_info(root)
    wanted = COMPONENTS if only is None else COMPONENTS[: max(COMPONENTS.index(n) for n in only) + 1]
    for name in wanted:
        started = time.monotonic()
        info[name] = _module(name).up(root, info)
        info.setdefault("_timings", {})[name] = round(time.monotonic() - started, 2)
        write_json(root / "platform.json", info)
        log.info("%s up in %.1fs", name, info["_timings"][name])
    return info


def platform_down(state: Path | None = None) -> None:
    """Stop every component, last started first; components that are not up are skipped.

    A `make dev` running on this state is asked to stop first (and waited for), so `make dev-down`
    ends it too; the hubs (each with its proxy) go next.
    """
    root = state_dir(state)
    from .dev import stop_dev

    stop_dev(root)
    hubs = root / "hubs"
    if hubs.is_dir():
        from .hub import stop_hub

        for hub_dir in sorted(hubs.iterdir()):
            stop_hub(root, hub_dir.name)
    from .daskgateway import down as dask_gateway_down

    dask_gateway_down(root)  # started beside the hubs (make dev, the Dask tests), not a component
    for name in reversed(COMPONENTS):
        try:
            _module(name).down(root)
        except ModuleNotFoundError:
            continue
    (root / "platform.json").unlink(missing_ok=True)
