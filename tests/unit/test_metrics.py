"""Our metrics on JupyterHub's registry: names per Prometheus conventions, bounded labels, and each
event counted where it happens (rotations, exchanges, profile reloads, refused spawns).

Counted through the real registry JupyterHub serves at `/hub/metrics` (``prometheus_client.REGISTRY``)
and read back as Prometheus would, from the text exposition; values are compared before and after,
since other tests in the same process count too.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hub_config.errors import IdPUnavailable, TokenExchangeRefused
from hub_config.metrics import METRICS, PREFIX, Metrics
from hub_config.profiles.source import ProfileSource
from hub_config.rucio import exchange_token
from hub_config.rucio_service import Rotator
from hub_config.rucio_service.rotator import RotationStopped
from hub_config.settings import Settings
from tests.unit.test_rucio_tokens import SECRET, SUBJECT, Script, idp, same_loop  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]
DOWN = IdPUnavailable("refresh", "https://iam.example/token", "cannot connect")


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/hub/metrics`` as Prometheus parses it: (sample name, sorted labels) -> value."""
    text = generate_latest(REGISTRY).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(name: str, **labels: str) -> float:
    return scrape().get((name, tuple(sorted(labels.items()))), 0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def rotator_clock() -> AsyncIterator[tuple[Rotator, Clock]]:
    clock = Clock()
    rotator = Rotator(margin=60, interval=30, concurrency=4, clock=clock, min_backoff=10, max_backoff=20)
    yield rotator, clock
    await rotator.close()


def test_names_follow_prometheus_conventions_and_labels_are_bounded() -> None:
    """Counters end in `_total`, durations are `_seconds` histograms, and no label could hold a user."""
    families = {f.name: f for f in REGISTRY.collect() if f.name.startswith(PREFIX)}
    assert {
        "datalake_hub_token_request_duration_seconds",
        "datalake_hub_token_rotations",
        "datalake_hub_token_rotation_remaining_seconds",
        "datalake_hub_secret_writes",
        "datalake_hub_profile_reloads",
        "datalake_hub_spawn_failures",
        "datalake_hub_running_servers",
        "datalake_hub_servers_without_fresh_token",
        "datalake_hub_spawn_token_exchanges",
        "datalake_hub_dask_clusters",
        "datalake_hub_dask_workers",
    } <= set(families)
    text = generate_latest(REGISTRY).decode()
    for family in families.values():
        if family.type == "counter":
            assert f"# TYPE {family.name}_total counter" in text or f"# TYPE {family.name} counter" in text
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith(("_total", "_created")), sample.name
            assert set(sample.labels) <= {"grant", "outcome", "operation", "phase", "profile", "reason", "source", "le"}


def test_a_fresh_registry_exposes_every_family_at_zero_state() -> None:
    """On a registry of its own (no rotator, no profiles yet) the state gauges read zero, not absent."""
    registry = CollectorRegistry()
    Metrics(registry)
    samples = {
        s.name: s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
        if s.name == "datalake_hub_servers_without_fresh_token"
    }
    assert samples == {"datalake_hub_servers_without_fresh_token": 0.0}


async def test_rotations_are_counted_by_outcome_with_the_time_left(rotator_clock: tuple[Rotator, Clock]) -> None:
    """Each rotation outcome has its own series; a success records how long the old token had left."""
    rotator, clock = rotator_clock
    outcomes: dict[str, BaseException | None] = {
        "hub/ok": None,
        "hub/idp": DOWN,
        "hub/parked": RotationStopped("the user must sign in again"),
        "hub/bug": RuntimeError("a bug"),
    }

    def rotate(key: str) -> Any:
        async def call() -> float:
            err = outcomes[key]
            if err is not None:
                raise err
            return clock.now + 600

        return call

    before = {
        o: value("datalake_hub_token_rotations_total", outcome=o)
        for o in ("success", "idp_unavailable", "stopped", "error")
    }
    hist_before = value("datalake_hub_token_rotation_remaining_seconds_bucket", le="30.0")
    for key in outcomes:
        rotator.track(key, rotate(key), clock.now + 20)  # 20 s left: due (margin 60)
    await rotator.tick()
    after = {o: value("datalake_hub_token_rotations_total", outcome=o) for o in before}
    assert {o: after[o] - before[o] for o in before} == {"success": 1, "idp_unavailable": 1, "stopped": 1, "error": 1}
    assert value("datalake_hub_token_rotation_remaining_seconds_bucket", le="30.0") - hist_before == 1


async def test_servers_without_a_fresh_token_follow_the_rotator(rotator_clock: tuple[Rotator, Clock]) -> None:
    """Parked servers count at once; a failing server counts once its last token has expired."""
    rotator, clock = rotator_clock

    async def fails() -> float:
        raise DOWN

    async def parked() -> float:
        raise TokenExchangeRefused("token exchange", "u", status=400, error="invalid_grant")

    rotator.track("hub/a", fails, clock.now + 30)
    rotator.track("hub/b", parked, clock.now + 30)
    await rotator.tick()
    assert value("datalake_hub_servers_without_fresh_token", reason="stopped") == 1
    assert value("datalake_hub_servers_without_fresh_token", reason="expired") == 0
    clock.now += 31
    assert value("datalake_hub_servers_without_fresh_token", reason="expired") == 1
    rotator.untrack("hub/a")
    rotator.untrack("hub/b")
    assert value("datalake_hub_servers_without_fresh_token", reason="expired") == 0


@same_loop
async def test_exchanges_are_timed_by_outcome(idp: tuple[str, Script]) -> None:  # noqa: F811 - fixture
    """Success, a refusal (4xx) and an unavailable IdP (5xx) land in separate series with their latency."""
    url, script = idp
    name = "datalake_hub_token_request_duration_seconds_count"
    before = {o: value(name, grant="token_exchange", outcome=o) for o in ("success", "refused", "unavailable")}
    script.body = {"access_token": "a.b.c", "expires_in": 300}
    await exchange_token(url, "hub", SECRET, SUBJECT, "rucio", "openid profile")
    script.status, script.body = 400, {"error": "invalid_grant"}
    with pytest.raises(TokenExchangeRefused):
        await exchange_token(url, "hub", SECRET, SUBJECT, "rucio", "openid profile")
    script.status, script.body, script.delay = 503, "down", 0.3
    fast_before = value(
        "datalake_hub_token_request_duration_seconds_bucket", grant="token_exchange", outcome="unavailable", le="0.25"
    )
    with pytest.raises(IdPUnavailable):
        await exchange_token(url, "hub", SECRET, SUBJECT, "rucio", "openid profile")
    after = {o: value(name, grant="token_exchange", outcome=o) for o in before}
    assert {o: after[o] - before[o] for o in before} == {"success": 1, "refused": 1, "unavailable": 1}
    fast = value(
        "datalake_hub_token_request_duration_seconds_bucket", grant="token_exchange", outcome="unavailable", le="0.25"
    )
    assert fast == fast_before, "the 0.3 s answer is not in the 0.25 s bucket"


def test_profile_reloads_generation_and_refused_edit(tmp_path: Path, reference_settings: Settings) -> None:
    """A good edit bumps the generation; a refused one counts and its time passes the loaded time."""
    profiles = tmp_path / "profiles"
    shutil.copytree(ROOT / "profiles", profiles)
    data = reference_settings.model_dump()
    data["profiles"] = {"directory": str(profiles), "reload_seconds": 30}
    before = {o: value("datalake_hub_profile_reloads_total", outcome=o) for o in ("success", "refused")}
    clock = Clock()
    source = ProfileSource(Settings.model_validate(data), clock=clock)
    source.load_initial()
    assert value("datalake_hub_profile_generation") == 1
    assert value("datalake_hub_profile_last_refused_timestamp_seconds") == 0
    slugs = source.slugs()
    assert {value("datalake_hub_running_servers", profile=s) for s in slugs} == {0.0}
    (profiles / "tutorial.yaml").write_text("slug: tutorial\ndisplay_name: T\ndescription: d\nimage: datalake-base\n")
    clock.now += 31
    source.reload_if_changed()
    assert value("datalake_hub_profile_generation") == 2
    time.sleep(0.01)
    (profiles / "hep.yaml").write_text("slug: hep\ndisplay_name: HEP\ndescription: d\nimage: x\nmounts: [tape]\n")
    clock.now += 31
    source.reload_if_changed()
    assert value("datalake_hub_profile_generation") == 2
    refused = value("datalake_hub_profile_last_refused_timestamp_seconds")
    assert refused > value("datalake_hub_profile_loaded_timestamp_seconds") > 0
    after = {o: value("datalake_hub_profile_reloads_total", outcome=o) for o in before}
    assert {o: after[o] - before[o] for o in before} == {"success": 2, "refused": 1}


def test_running_servers_by_profile_slug(tmp_path: Path, reference_settings: Settings) -> None:
    """Every profile in force is a series (0 when idle); a retired profile's server still counts."""
    data = reference_settings.model_dump()
    data["profiles"] = {"directory": str(ROOT / "profiles")}
    source = ProfileSource(Settings.model_validate(data))
    source.load_initial()
    slug = source.slugs()[0]
    METRICS.server_running("hub/jupyter-a", slug)
    METRICS.server_running("hub/jupyter-b", "retired")
    try:
        assert value("datalake_hub_running_servers", profile=slug) == 1
        assert value("datalake_hub_running_servers", profile="retired") == 1
        assert value("datalake_hub_running_servers", profile=source.slugs()[1]) == 0
    finally:
        METRICS.server_stopped("hub/jupyter-a")
        METRICS.server_stopped("hub/jupyter-b")
    assert ("datalake_hub_running_servers", (("profile", "retired"),)) not in scrape()


async def test_a_scrape_finds_an_edit_nobody_has_looked_at(tmp_path: Path, reference_settings: Settings) -> None:
    """No spawn page opened, no status page: the scrape itself starts the check (off the loop), and
    the refused edit shows on the next scrape."""
    profiles = tmp_path / "profiles"
    shutil.copytree(ROOT / "profiles", profiles)
    data = reference_settings.model_dump()
    data["profiles"] = {"directory": str(profiles), "reload_seconds": 1}
    source = ProfileSource(Settings.model_validate(data))
    source.load_initial()
    (profiles / "hep.yaml").write_text("slug: hep\ndisplay_name: HEP\ndescription: d\nimage: x\nmounts: [tape]\n")
    await asyncio.sleep(1.1)
    assert value("datalake_hub_profile_last_refused_timestamp_seconds") == 0  # this scrape starts the check
    for _ in range(100):
        await asyncio.sleep(0.05)
        if value("datalake_hub_profile_last_refused_timestamp_seconds") > 0:
            break
    assert value("datalake_hub_profile_last_refused_timestamp_seconds") > value(
        "datalake_hub_profile_loaded_timestamp_seconds"
    )
