"""What datalake-hub adds to the hub's Prometheus metrics, on JupyterHub's own `/hub/metrics`.

JupyterHub serves ``prometheus_client``'s default registry at `/hub/metrics` (scope
`read:metrics` unless `authenticate_prometheus` is off), so registering here is all it takes for
our series to appear beside ``jupyterhub_*``: same endpoint, same auth, one scrape job.

Each event is counted at the one place it happens (the exchange in ``rucio.tokens``, the refresh in
``auth.authenticator``, the Start's token source in ``rucio_service.provisioner``, rotations in
``rucio_service.rotator``, Secret writes in ``kube``, reloads
in ``profiles.source``, spawns in ``spawner``); state that already lives in a hub-wide object (the
rotator's tracked servers, the profile set in force, the running servers) is read when Prometheus
scrapes, by one collector, so no gauge can drift from the truth it reports.

Labels are bounded by construction: outcomes, phases, operations and grant types are fixed sets
below; ``profile`` is a profile slug, defined by the admins (or ``(none)`` for Dask clusters whose
owner has no running server). Never a username or server name.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

__all__ = [
    "GRANTS",
    "METRICS",
    "PREFIX",
    "RELOAD_OUTCOMES",
    "ROTATION_OUTCOMES",
    "SECRET_OPERATIONS",
    "SECRET_OUTCOMES",
    "SPAWN_EXCHANGE_SOURCES",
    "SPAWN_PHASES",
    "TOKEN_OUTCOMES",
    "Metrics",
    "timer",
]

PREFIX: Final = "datalake_hub_"

GRANTS: Final = ("token_exchange", "refresh_token")
TOKEN_OUTCOMES: Final = ("success", "refused", "unavailable")
"""``refused``: the IdP answered no (4xx); ``unavailable``: it could not be asked (5xx, timeout, TLS)."""
ROTATION_OUTCOMES: Final = ("success", "idp_unavailable", "stopped", "error")
"""One per rotation policy: back off for the IdP, parked until a new sign-in, back off alone."""
SECRET_OPERATIONS: Final = ("create", "patch", "delete")
SECRET_OUTCOMES: Final = ("success", "conflict", "not_found", "error")
"""``conflict``: a create found the Secret (it is patched next); ``not_found``: a patch or delete found none."""
RELOAD_OUTCOMES: Final = ("success", "refused", "error")
SPAWN_PHASES: Final = ("options", "rucio", "pod")
"""``options``: the choice was refused (400/403, no pod); ``rucio``: the server starts without (some)
Rucio credentials; ``pod``: KubeSpawner's start failed (pod not created, or not running in time)."""
FRESHNESS_REASONS: Final = ("expired", "stopped")
SPAWN_EXCHANGE_SOURCES: Final = ("preexchanged", "at_start")
"""Where a Start's Rucio token came from: exchanged while the spawn page was shown, or at the Start itself."""

TOKEN_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds; a token request times out at 10 s."""
REMAINING_BUCKETS: Final = (0.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Seconds the old token still had when a rotation replaced it; 0 holds the already expired."""


class _RotatorView(Protocol):
    """What the collector reads of the rotator (``rucio_service.rotator.Rotator``)."""

    def freshness(self, now: float | None = None) -> dict[str, int]: ...


class _ProfilesView(Protocol):
    """What the collector reads of the profile source (``profiles.source.ProfileSource``)."""

    generation: int
    loaded_at: float | None

    @property
    def refused_at(self) -> float | None: ...

    def slugs(self) -> Sequence[str]: ...

    def check_soon(self) -> None: ...


class _DaskView(Protocol):
    """What the collector reads of the hub's Dask clusters (``dask.clusters.DaskClusters``)."""

    def by_profile(self) -> dict[str, tuple[int, int]]: ...


class Metrics:
    """Our metrics on ``registry``: counters and histograms, plus a collector for the hub's state."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.token_requests = Histogram(
            f"{PREFIX}token_request_duration_seconds",
            "Token requests to the IdP (RFC 8693 exchange for Rucio, refresh of the login tokens), by outcome.",
            ["grant", "outcome"],
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.rotations = Counter(
            f"{PREFIX}token_rotations",
            "Rucio token rotations of running servers (refresh, exchange, Secret patch), by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.rotation_remaining = Histogram(
            f"{PREFIX}token_rotation_remaining_seconds",
            "Seconds the replaced token still had when a rotation succeeded (0: it had expired).",
            buckets=REMAINING_BUCKETS,
            registry=registry,
        )
        self.secret_writes = Counter(
            f"{PREFIX}secret_writes",
            "Writes of per-server Rucio Secrets to the Kubernetes API, by operation and outcome.",
            ["operation", "outcome"],
            registry=registry,
        )
        self.profile_reloads = Counter(
            f"{PREFIX}profile_reloads",
            "Loads of the profile files (at start and after each change), by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.spawn_failures = Counter(
            f"{PREFIX}spawn_failures",
            "Spawns that failed, by phase (rucio: the server started without Rucio credentials).",
            ["phase"],
            registry=registry,
        )
        self.spawn_exchanges = Counter(
            f"{PREFIX}spawn_token_exchanges",
            "Rucio tokens a Start needed, by source (preexchanged: taken from the exchange done when the "
            "spawn page was shown; at_start: exchanged at the Start, on its critical path).",
            ["source"],
            registry=registry,
        )
        # Every fixed label combination exists from the start, at 0: `increase()` and `rate()` then
        # see the first event, and the dashboard shows zeros rather than "no data".
        for grant in GRANTS:
            for outcome in TOKEN_OUTCOMES:
                self.token_requests.labels(grant=grant, outcome=outcome)
        for outcome in ROTATION_OUTCOMES:
            self.rotations.labels(outcome=outcome)
        for operation in SECRET_OPERATIONS:
            for outcome in SECRET_OUTCOMES:
                self.secret_writes.labels(operation=operation, outcome=outcome)
        for outcome in RELOAD_OUTCOMES:
            self.profile_reloads.labels(outcome=outcome)
        for phase in SPAWN_PHASES:
            self.spawn_failures.labels(phase=phase)
        for source in SPAWN_EXCHANGE_SOURCES:
            self.spawn_exchanges.labels(source=source)
        self._rotator: Callable[[], _RotatorView | None] = lambda: None
        self._profiles: Callable[[], _ProfilesView | None] = lambda: None
        self._running: dict[str, str] = {}
        self._default_servers: dict[str, str] = {}
        """User → key of their running default server (never a label: read by ``default_profile``)."""
        self._dask: Callable[[], _DaskView | None] = lambda: None
        self._lock = threading.Lock()
        registry.register(_StateCollector(self))

    # --- events -------------------------------------------------------------------------------

    def token_request(self, grant: str, outcome: str, seconds: float) -> None:
        """One token request to the IdP took ``seconds`` and ended in ``outcome``."""
        self.token_requests.labels(grant=grant, outcome=outcome).observe(seconds)

    def rotation(self, outcome: str, remaining: float | None = None) -> None:
        """One rotation ended; on success, ``remaining`` is what the replaced token still had."""
        self.rotations.labels(outcome=outcome).inc()
        if outcome == "success" and remaining is not None:
            self.rotation_remaining.observe(max(0.0, remaining))

    def secret_write(self, operation: str, outcome: str) -> None:
        self.secret_writes.labels(operation=operation, outcome=outcome).inc()

    def profile_reload(self, outcome: str) -> None:
        self.profile_reloads.labels(outcome=outcome).inc()

    def spawn_failed(self, phase: str) -> None:
        self.spawn_failures.labels(phase=phase).inc()

    def spawn_exchange(self, source: str) -> None:
        """A Start got one instance's Rucio token from ``source`` (see ``SPAWN_EXCHANGE_SOURCES``)."""
        self.spawn_exchanges.labels(source=source).inc()

    def server_running(self, key: str, profile: str, *, default_of: str | None = None) -> None:
        """Server ``key`` (namespace/pod) runs a server of profile ``profile`` (its slug).

        ``default_of``: the user whose default server it is (their Dask clusters run beside it).
        """
        with self._lock:
            self._running[key] = profile
            if default_of is not None:
                self._default_servers[default_of] = key

    def server_stopped(self, key: str) -> None:
        with self._lock:
            self._running.pop(key, None)
            for user in [u for u, k in self._default_servers.items() if k == key]:
                del self._default_servers[user]

    def default_profile(self, user: str) -> str | None:
        """The profile slug of ``user``'s running default server, if any."""
        with self._lock:
            key = self._default_servers.get(user)
            return self._running.get(key) if key is not None else None

    # --- state read at scrape time ------------------------------------------------------------

    def watch_rotator(self, rotator: _RotatorView) -> None:
        """Report this rotator's servers without a fresh token (the hub has one; the last one wins)."""
        self._rotator = weakref.ref(rotator)

    def watch_profiles(self, source: _ProfilesView) -> None:
        """Report this profile source's generation and refusals (the hub has one; the last one wins)."""
        self._profiles = weakref.ref(source)

    def watch_dask(self, clusters: _DaskView) -> None:
        """Report these Dask clusters and workers per profile (the hub has one view; the last one wins)."""
        self._dask = weakref.ref(clusters)

    def running_by_profile(self) -> dict[str, int]:
        """Running servers per profile slug: every profile in force (0 if none) and any retired one still running."""
        source = self._profiles()
        counts = dict.fromkeys(source.slugs() if source is not None else (), 0)
        with self._lock:
            for slug in self._running.values():
                counts[slug] = counts.get(slug, 0) + 1
        return counts

    def collect_state(self) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            f"{PREFIX}running_servers", "Servers running now, by profile slug.", labels=["profile"]
        )
        for slug, count in sorted(self.running_by_profile().items()):
            running.add_metric([slug], count)
        yield running

        clusters = GaugeMetricFamily(
            f"{PREFIX}dask_clusters",
            "Dask Gateway clusters pending or running, by the profile of their owner's server "
            "((none): the owner has no running server).",
            labels=["profile"],
        )
        workers = GaugeMetricFamily(
            f"{PREFIX}dask_workers",
            "Dask workers requested by those clusters (their scale), by the same profile.",
            labels=["profile"],
        )
        dask = self._dask()
        if dask is not None:  # no samples on a hub without Dask Gateway
            in_force = self._profiles()
            per_profile = dict.fromkeys(in_force.slugs() if in_force is not None else (), (0, 0))
            per_profile.update(dask.by_profile())
            for slug, (n_clusters, n_workers) in sorted(per_profile.items()):
                clusters.add_metric([slug], n_clusters)
                workers.add_metric([slug], n_workers)
        yield clusters
        yield workers

        stale = GaugeMetricFamily(
            f"{PREFIX}servers_without_fresh_token",
            "Running servers whose Rucio token has expired while rotation retries, or whose rotation "
            "stopped until the user signs in again.",
            labels=["reason"],
        )
        rotator = self._rotator()
        counts = rotator.freshness() if rotator is not None else {}
        for reason in FRESHNESS_REASONS:
            stale.add_metric([reason], counts.get(reason, 0))
        yield stale

        source = self._profiles()  # None before the hub loads its profiles: zeros
        if source is not None:
            source.check_soon()  # an edit nobody has looked at yet shows at the next scrape
        yield GaugeMetricFamily(
            f"{PREFIX}profile_generation",
            "Generation of the profile set in force (1 at start, +1 per accepted edit).",
            value=source.generation if source is not None else 0,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}profiles", "Profiles in the set in force.", value=len(source.slugs()) if source else 0
        )
        yield GaugeMetricFamily(
            f"{PREFIX}profile_loaded_timestamp_seconds",
            "When the profile set in force was loaded (Unix time).",
            value=(source.loaded_at if source is not None else None) or 0.0,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}profile_last_refused_timestamp_seconds",
            "When the last profile edit was refused (Unix time; 0: none since the hub started). "
            "Later than the loaded timestamp: the edit in the files is not in force.",
            value=(source.refused_at if source is not None else None) or 0.0,
        )


class _StateCollector:
    """Reads the hub's state when Prometheus scrapes (prometheus_client's custom-collector protocol)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.collect_state()

    def describe(self) -> list[Any]:
        return []  # state-dependent: not checked for duplicates at registration


def timer() -> Callable[[], float]:
    """Seconds since this call, on the monotonic clock (for ``Metrics.token_request``)."""
    started = time.monotonic()
    return lambda: time.monotonic() - started


METRICS: Final = Metrics(REGISTRY)
"""Ours, in JupyterHub's registry (`/hub/metrics`)."""
