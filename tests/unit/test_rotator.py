"""The rotator's retry policy, on a controllable clock: back-off caps, IdP recovery, permanent failures.

Issue 21: after an IdP outage every expired session must be rotated within ~30 s of the IdP
answering again, and a server that cannot get Rucio (no valid account, sign-in needed, no Rucio
in its profile) must not be retried on a timer, each retry refreshing its user's login tokens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from hub_config.errors import (
    AccountError,
    IdPUnavailable,
    KubeError,
    RenderError,
    TokenExchangeRefused,
)
from hub_config.profiles.loader import LoadedProfile
from hub_config.profiles.model import Profile
from hub_config.rucio.selection import gets_rucio
from hub_config.rucio_service import Provisioned, Rotator, ServerRucio
from hub_config.rucio_service.rotator import Policy, RotationStopped, policy
from hub_config.settings import Settings

DOWN = IdPUnavailable("token exchange", "https://iam.test/token", "cannot connect: Connection refused")


class Clock:
    """Seconds since the epoch, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Server:
    """A rotate callback whose outcome the test sets; counts its calls."""

    def __init__(self, clock: Clock, ttl: float = 60.0) -> None:
        self.clock = clock
        self.ttl = ttl
        self.calls = 0
        self.error: BaseException | None = None
        self.running = 0
        self.peak = 0

    async def rotate(self) -> float | None:
        self.calls += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(0)
            if self.error is not None:
                raise self.error
            return self.clock.now + self.ttl
        finally:
            self.running -= 1


class Idp:
    """The probe: answers while ``up``; counts its calls."""

    def __init__(self) -> None:
        self.up = True
        self.calls = 0

    async def probe(self) -> IdPUnavailable | None:
        self.calls += 1
        return None if self.up else DOWN


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def rotator(clock: Clock) -> AsyncIterator[Rotator]:
    r = Rotator(margin=30, interval=30, concurrency=8, clock=clock, min_backoff=10, max_backoff=20)
    yield r
    await r.close()


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (DOWN, Policy.IDP_DOWN),
        (AccountError("local", "'dave.smith' is not a valid Rucio account name"), Policy.STOP),
        (TokenExchangeRefused("token exchange", "u", status=400, error="invalid_grant"), Policy.STOP),
        (RenderError("bad"), Policy.STOP),
        (RotationStopped("the user must sign in again"), Policy.STOP),
        (KubeError("patch", "Secret", "hub", "x-rucio", 503, "ServiceUnavailable"), Policy.RETRY),
        (RuntimeError("a bug"), Policy.RETRY),
    ],
)
def test_policy_per_error_class(err: BaseException, expected: Policy) -> None:
    """Transient errors back off, the IdP's with the hub-wide recovery; permanent ones stop."""
    assert policy(err) is expected


async def _waits(rotator: Rotator, clock: Clock, error: BaseException, n: int) -> list[float]:
    server = Server(clock)
    server.error = error
    rotator.track("hub/jupyter-a", server.rotate, None)
    waits = []
    for _ in range(n):
        await rotator.tick()
        t = rotator.tracked("hub/jupyter-a")
        assert t is not None
        waits.append(t.next_attempt - clock.now)
        clock.now = t.next_attempt
    assert server.calls == n
    return waits


async def test_idp_backoff_doubles_and_is_capped(rotator: Rotator, clock: Clock) -> None:
    """IdP unavailable: 10 s, then 20 s, then never more than the cap (20 s), however long it lasts."""
    assert await _waits(rotator, clock, DOWN, 5) == [10, 20, 20, 20, 20]


async def test_other_transient_failures_back_off_further(rotator: Rotator, clock: Clock) -> None:
    """An API server refusing the patch: each retry costs a refresh and an exchange, so up to 10 min."""
    err = KubeError("patch", "Secret", "hub", "x-rucio", 403, "Forbidden")
    assert await _waits(rotator, clock, err, 8) == [10, 20, 40, 80, 160, 320, 600, 600]


async def test_idp_outage_is_probed_once_per_step_and_recovery_rotates_everyone(clock: Clock) -> None:
    """While the IdP is down no server is rotated (no refresh storm), one probe per back-off step;
    the first probe it answers makes every backed-off server due in the same tick."""
    idp = Idp()
    rotator = Rotator(margin=30, interval=30, concurrency=2, clock=clock, probe=idp.probe)
    servers = [Server(clock) for _ in range(5)]
    for i, s in enumerate(servers):
        s.error = DOWN
        rotator.track(f"hub/jupyter-{i}", s.rotate, clock.now + 10)  # expiring soon
    idp.up = False
    await rotator.tick()
    assert rotator.idp_down
    tried = sum(s.calls for s in servers)
    assert 1 <= tried <= 2, "the first IdPUnavailable stops the others from asking"
    # Ten minutes of outage: the tokens expire, nothing is rotated, the IdP is probed every ≤ 20 s.
    outage_end = clock.now + 600
    while clock.now < outage_end:
        clock.now += 1
        assert await rotator.tick() == 0
    assert sum(s.calls for s in servers) == tried
    assert 600 / 20 <= idp.calls <= 600 / 10 + 1
    # The IdP comes back: within the cap (20 s) every server is rotated, two at a time.
    idp.up = True
    for s in servers:
        s.error = None
    back = clock.now
    tracked = [rotator.tracked(f"hub/jupyter-{i}") for i in range(5)]
    while not all(t is not None and t.rotations == 1 for t in tracked):
        clock.now += 1
        await rotator.tick()
        assert clock.now - back <= 20
    assert not rotator.idp_down
    assert all(t is not None and t.failures == 0 for t in tracked)
    await rotator.close()


async def test_recovery_is_bounded_by_the_concurrency_limit(clock: Clock) -> None:
    """All due servers rotate at once after recovery, but never more than max_concurrent_rotations."""
    running = 0
    peak = 0

    async def rotate() -> float:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return clock.now + 60

    rotator = Rotator(margin=30, interval=30, concurrency=3, clock=clock, probe=Idp().probe)
    for i in range(10):
        rotator.track(f"hub/jupyter-{i}", rotate, None)
    assert await rotator.tick() == 10
    assert peak == 3
    await rotator.close()


async def test_without_a_probe_the_first_success_makes_the_others_due(rotator: Rotator, clock: Clock) -> None:
    """No probe configured: the first rotation the IdP answers resets every server backed off for it."""
    a, b = Server(clock), Server(clock)
    a.error = b.error = DOWN
    rotator.track("hub/a", a.rotate, None)
    rotator.track("hub/b", b.rotate, None)
    for _ in range(3):  # both back off: 10, 20, 20
        await rotator.tick()
        clock.now += 20
    tb = rotator.tracked("hub/b")
    assert tb is not None and tb.failures == 3
    a.error = b.error = None
    tb.next_attempt = clock.now + 20  # b not due this tick
    await rotator.tick()
    assert tb.failures == 0 and tb.next_attempt == 0.0, "a's success makes b due now"
    await rotator.tick()
    assert tb.rotations == 1


async def test_permanent_failure_stops_rotation_and_is_logged_once(
    rotator: Rotator, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """No valid account: one try, one log line saying why, then never again on a timer."""
    server = Server(clock)
    server.error = AccountError("local", "'dave.smith' is not a valid Rucio account name")
    rotator.track("hub/jupyter-dave-2esmith", server.rotate, None)
    with caplog.at_level(logging.WARNING, logger="hub_config.rucio_service.rotator"):
        for _ in range(100):
            await rotator.tick()
            clock.now += 30
    assert server.calls == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "hub_config.rucio_service.rotator"]
    assert len(lines) == 1
    assert "no longer rotated" in lines[0] and "not a valid Rucio account name" in lines[0]
    t = rotator.tracked("hub/jupyter-dave-2esmith")
    assert t is not None and t.stopped is not None


async def test_a_parked_server_does_not_block_recovery(clock: Clock) -> None:
    """Parked servers are not probed for nor reset when the IdP recovers."""
    idp = Idp()
    rotator = Rotator(margin=30, interval=30, concurrency=8, clock=clock, probe=idp.probe)
    parked = Server(clock)
    rotator.park("hub/p", parked.rotate, "no Rucio account")
    assert rotator.due() == []
    assert rotator.sleep_for() == 30
    await rotator.tick()
    assert parked.calls == 0
    await rotator.close()


async def test_sleep_is_shortened_to_the_next_retry(rotator: Rotator, clock: Clock) -> None:
    """The loop wakes for a due retry or probe, not only every check interval."""
    server = Server(clock)
    server.error = DOWN
    rotator.track("hub/a", server.rotate, None)
    await rotator.tick()
    assert rotator.sleep_for() == 10


# --- ServerRucio: what its rotate callback raises, and what it does not do first ---------------


class _Auth:
    def __init__(self, result: bool) -> None:
        self.result = result
        self.refreshes = 0

    async def refresh_user(self, user: Any) -> bool:
        self.refreshes += 1
        return self.result


class _User:
    name = "alice"

    def __init__(self, refresh_ok: bool = True) -> None:
        self.authenticator = _Auth(refresh_ok)
        self.state: dict[str, Any] = {"access_token": "x", "refresh_token": "first-login"}

    async def get_auth_state(self) -> dict[str, Any]:
        return self.state


class _Provisioner:
    def __init__(self, settings: Settings, result: Provisioned) -> None:
        self.settings = settings
        self.result = result
        self.calls = 0

    async def provision(self, **_: Any) -> Provisioned:
        self.calls += 1
        return self.result


def _rucio_profile(settings: Settings, profiles: list[LoadedProfile]) -> Profile:
    return next(lp.profile for lp in profiles if gets_rucio(settings.rucio, lp.profile))


async def _server(
    settings: Settings,
    result: Provisioned,
    rotator: Rotator,
    profile: Profile | None,
    user: _User,
    run: Callable[[ServerRucio, _Provisioner], Awaitable[None]],
) -> None:
    async def profile_of() -> Profile | None:
        return profile

    provisioner = _Provisioner(settings, result)
    async with ApiClient(Configuration(host="https://127.0.0.1:9")) as api:
        server = ServerRucio(
            provisioner,  # type: ignore[arg-type]
            rotator,
            api_client=api,
            namespace="hub",
            pod_name="jupyter-alice",
            user=user,
            profile_of=profile_of,
        )
        await run(server, provisioner)


async def test_profile_gone_stops_without_refreshing(
    reference_settings: Settings, shipped_profiles: list[LoadedProfile], rotator: Rotator
) -> None:
    """A server whose profile is no longer offered is parked before its user's tokens are refreshed."""
    user = _User()

    async def run(server: ServerRucio, provisioner: _Provisioner) -> None:
        with pytest.raises(RotationStopped, match="no longer offered"):
            await server.rotate()
        assert user.authenticator.refreshes == 0
        assert provisioner.calls == 0

    await _server(reference_settings, Provisioned("s"), rotator, None, user, run)


async def test_rejected_refresh_stops_and_a_new_sign_in_resumes(
    reference_settings: Settings, shipped_profiles: list[LoadedProfile], rotator: Rotator
) -> None:
    """invalid_grant on the refresh: parked; the user signs in again (new refresh token): resumed."""
    user = _User(refresh_ok=False)
    profile = _rucio_profile(reference_settings, shipped_profiles)

    async def run(server: ServerRucio, provisioner: _Provisioner) -> None:
        await server.resume()
        await rotator.tick()
        t = rotator.tracked(server.key)
        assert t is not None and t.stopped is not None and "sign in again" in t.stopped
        await server.resume()  # same login: stays parked
        assert rotator.tracked(server.key) is t
        user.state = {"access_token": "y", "refresh_token": "second-login"}
        user.authenticator.result = True
        await server.resume()
        t2 = rotator.tracked(server.key)
        assert t2 is not t and t2 is not None and t2.stopped is None

    await _server(reference_settings, Provisioned("s"), rotator, profile, user, run)


async def test_no_instance_while_the_idp_answers_is_permanent(
    reference_settings: Settings, shipped_profiles: list[LoadedProfile], clock: Clock
) -> None:
    """At spawn, no instance configured and the IdP answering (no account, exchange refused): the
    server is parked with the reason, never handed to the timer; the IdP down instead: retried."""
    profile = _rucio_profile(reference_settings, shipped_profiles)
    idp = Idp()
    rotator = Rotator(margin=30, interval=30, concurrency=8, clock=clock, probe=idp.probe)
    no_account = Provisioned("s", warnings=["Local Rucio: no Rucio account ('dave.smith' is not valid)"])

    async def parked(server: ServerRucio, provisioner: _Provisioner) -> None:
        await server.start(profile)
        t = rotator.tracked(server.key)
        assert t is not None and t.stopped is not None and "no Rucio account" in t.stopped
        await server.resume()
        assert rotator.tracked(server.key) is t

    await _server(reference_settings, no_account, rotator, profile, _User(), parked)
    rotator.untrack("hub/jupyter-alice")

    idp.up = False
    unreachable = Provisioned("s", warnings=["Local Rucio: the identity provider is unreachable"])

    async def retried(server: ServerRucio, provisioner: _Provisioner) -> None:
        await server.start(profile)
        assert rotator.tracked(server.key) is None
        await server.resume()
        t = rotator.tracked(server.key)
        assert t is not None and t.stopped is None
        with pytest.raises(IdPUnavailable):
            await server.rotate()

    await _server(reference_settings, unreachable, rotator, profile, _User(), retried)
    await rotator.close()


async def test_an_exchange_the_idp_fails_is_transient_even_while_it_answers_probes(
    reference_settings: Settings, shipped_profiles: list[LoadedProfile], clock: Clock
) -> None:
    """The exchange got a 502 (or a 200 without a token) while the token endpoint answers a probe:
    the server is retried, not parked; every instance refusing for a permanent reason is parked."""
    profile = _rucio_profile(reference_settings, shipped_profiles)
    rotator = Rotator(margin=30, interval=30, concurrency=8, clock=clock, probe=Idp().probe)
    bad_gateway = IdPUnavailable("token exchange", "https://iam/token", "HTTP 502", status=502)
    failed = Provisioned("s", warnings=["Local Rucio: the identity provider is unreachable"], errors={"x": bad_gateway})

    async def retried(server: ServerRucio, provisioner: _Provisioner) -> None:
        await server.start(profile)
        assert rotator.tracked(server.key) is None, "parked for a transient failure"
        await server.resume()
        t = rotator.tracked(server.key)
        assert t is not None and t.stopped is None
        with pytest.raises(IdPUnavailable):
            await server.rotate()

    await _server(reference_settings, failed, rotator, profile, _User(), retried)
    rotator.untrack("hub/jupyter-alice")

    refused = TokenExchangeRefused("token exchange", "https://iam/token", status=400, error="invalid_scope")
    permanent = Provisioned("s", warnings=["Local Rucio: refused"], errors={"x": refused})

    async def parked(server: ServerRucio, provisioner: _Provisioner) -> None:
        await server.start(profile)
        t = rotator.tracked(server.key)
        assert t is not None and t.stopped is not None

    await _server(reference_settings, permanent, rotator, profile, _User(), parked)
    await rotator.close()


def test_retry_bounds_must_be_ordered(minimal: dict[str, Any]) -> None:
    """rotation_retry_min_seconds above the max is refused when the settings load."""
    from pydantic import ValidationError

    data = {**minimal, "rucio": {"rotation_retry_min_seconds": 60, "rotation_retry_max_seconds": 20}}
    with pytest.raises(ValidationError, match="rotation_retry_min_seconds"):
        Settings.model_validate(data)
