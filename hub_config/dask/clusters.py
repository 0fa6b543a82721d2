"""Dask clusters and workers per profile, for the hub's `/hub/metrics`, from the DaskCluster objects.

The gateway's controller keeps one DaskCluster object per cluster in the hub's namespace:
``spec.username`` (the owner), ``spec.replicas`` (the workers asked for; the controller converges
the worker pods to it), ``status.phase`` (``Pending``, ``Running``, then ``Stopped``/``Failed``).
A cluster runs beside its owner's default server (the spawner stops the clusters with it), so
its profile is that server's; the owner's name is used for the lookup only, never as a label.

Cheap by design: Prometheus scrapes synchronously on the hub's event loop, so a scrape never
waits for the API server. It reports the counts of the last list and, when that list is older
than ``min_interval``, asks for a new one in the background (one at a time): at most one list
per interval, none when nobody scrapes; the figures lag one scrape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from ..errors import KubeError
from ..kube import list_dask_clusters
from ..metrics import METRICS
from ..shared import HubWide

__all__ = ["ACTIVE_PHASES", "NO_SERVER", "DaskClusters", "count_by_profile"]

log = logging.getLogger(__name__)

ACTIVE_PHASES: Final = frozenset({"Pending", "Running"})
"""Cluster phases counted (a cluster without a status yet is ``Pending``, as the gateway reads it)."""
NO_SERVER: Final = "(none)"
"""Profile label of a cluster whose owner has no running server (never a profile slug: not a Kubernetes name)."""
MIN_INTERVAL_SECONDS: Final = 15.0
"""At most one list of DaskCluster objects per this many seconds (Prometheus scrapes every 15-60 s)."""


def count_by_profile(
    items: Iterable[Mapping[str, Any]], profile_of: Callable[[str], str | None]
) -> dict[str, tuple[int, int]]:
    """``{profile: (clusters, workers)}`` over the pending and running clusters in ``items``."""
    counts: dict[str, tuple[int, int]] = {}
    for item in items:
        phase = (item.get("status") or {}).get("phase") or "Pending"
        if phase not in ACTIVE_PHASES or (item.get("metadata") or {}).get("deletionTimestamp"):
            continue
        spec = item.get("spec") or {}
        owner = spec.get("username")
        profile = (profile_of(owner) if isinstance(owner, str) else None) or NO_SERVER
        replicas = spec.get("replicas")
        workers = replicas if isinstance(replicas, int) and not isinstance(replicas, bool) and replicas > 0 else 0
        clusters, total = counts.get(profile, (0, 0))
        counts[profile] = (clusters + 1, total + workers)
    return counts


class DaskClusters(HubWide):
    """The hub's view of its namespace's Dask clusters, refreshed at most once per interval."""

    def __init__(self, *, min_interval: float = MIN_INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._min_interval = min_interval
        self._clock = clock
        self._api_client: Any = None
        self._namespace = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._counts: dict[str, tuple[int, int]] = {}
        self._listed_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def attach(self, api_client: Any, namespace: str) -> None:
        """Use this API client and namespace (the spawners'), and report on `/hub/metrics` from now on.

        Called by every spawner on start and poll; only the first call does anything.
        """
        if self._api_client is not None:
            return
        self._api_client, self._namespace = api_client, namespace
        self._loop = asyncio.get_running_loop()
        METRICS.watch_dask(self)

    def by_profile(self) -> dict[str, tuple[int, int]]:
        """The last list's counts; a new list is asked for when it is older than the interval."""
        now = self._clock()
        if self._listed_at is None or now - self._listed_at >= self._min_interval:
            self._refresh_soon()
        return dict(self._counts)

    def _refresh_soon(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or (self._task is not None and not self._task.done()):
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._task = loop.create_task(self.refresh())
        else:  # a scrape from another thread: hand it to the hub's loop
            loop.call_soon_threadsafe(self._start_from_loop)

    def _start_from_loop(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.refresh())

    async def refresh(self) -> None:
        """List the DaskCluster objects once and count them (a failure keeps the last counts, logged once)."""
        self._listed_at = self._clock()
        try:
            items = await list_dask_clusters(self._api_client, self._namespace)
        except KubeError as err:
            if not self._failing:
                log.warning("Dask cluster metrics keep their last values: %s", err)
            self._failing = True
            return
        self._failing = False
        self._counts = count_by_profile(items, METRICS.default_profile)
        self._listed_at = self._clock()
