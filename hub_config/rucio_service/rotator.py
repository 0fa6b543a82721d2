"""Keep running servers' Rucio tokens fresh: refresh grant → exchange → patch Secret, before expiry.

One task per hub rotates the servers whose tokens have less than `refresh_margin_seconds` left, at
most `max_concurrent_rotations` at a time (the IdP and the API server are shared). It wakes every
`check_interval_seconds`, sooner when a retry is due. The kubelet swaps the mounted files in
place, so a new `rucio` command or Client() and the JupyterLab extension (which re-reads its token
file at expiry) use the new token without a restart.

What a failure means decides what happens next (:func:`policy`):

* **The IdP is unavailable** (:class:`IdPUnavailable`): the server backs off (`rotation_retry_min_seconds`
  doubling to `rotation_retry_max_seconds`) and the whole hub stops asking the IdP: one cheap probe of
  its token endpoint per back-off step replaces every server's refresh + exchange. The first call
  that the IdP answers (the probe, or a rotation) marks it healthy and makes every server that
  backed off for it due at once, so sessions recover within the retry cap of the IdP coming back.
* **Permanent** (:class:`RotationStopped`, :class:`AccountError`, :class:`TokenExchangeRefused`,
  :class:`RenderError`): no valid account, the user must sign in again, the profile has no Rucio.
  Retrying would give the same answer, and every retry refreshes the user's login tokens at the
  IdP: the server is parked, the reason logged once. :class:`~.server.ServerRucio` resumes it when
  the user signs in again.
* **Anything else** (an API server refusing the patch, a bug): backs off alone, doubling to
  10 minutes (each retry refreshes and exchanges at the IdP), untouched by the IdP's recovery.

Failures are logged without any token; they never stop the task or other users' rotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from tornado.httpclient import HTTPRequest

from ..errors import AccountError, IdPUnavailable, RenderError, TokenExchangeRefused
from ..metrics import METRICS
from ..redact import redact
from ..shared import HubWide
from ..tls import idp_client, request_tls_options

__all__ = [
    "MAX_BACKOFF",
    "MIN_BACKOFF",
    "OTHER_MAX_BACKOFF",
    "Policy",
    "Probe",
    "RotationStopped",
    "Rotator",
    "Tracked",
    "policy",
    "token_endpoint_probe",
]

log = logging.getLogger(__name__)

MIN_BACKOFF = 10.0
MAX_BACKOFF = 20.0
"""Defaults of `rotation_retry_min_seconds` / `rotation_retry_max_seconds`."""
OTHER_MAX_BACKOFF = 600.0
"""Cap for failures that are neither the IdP's nor permanent (an API server refusing the patch):
each retry refreshes and exchanges at the IdP, so these slow down as before."""

Probe = Callable[[], Awaitable["IdPUnavailable | None"]]
"""Asks the IdP something cheap: None when it answered, the reason when it could not be asked."""


class RotationStopped(Exception):
    """This server cannot get Rucio until something changes (a new sign-in, another profile).

    Raised by a rotate callback for reasons found outside the token calls: the user's refresh
    token was rejected, the profile no longer gets Rucio, the IdP answers but no instance could
    be configured. The message says why, for the one log line.
    """


class Policy(Enum):
    """What a rotation failure leads to."""

    IDP_DOWN = "back off; the hub probes the IdP, and its recovery makes the server due at once"
    RETRY = "back off"
    STOP = "park the server until the user signs in again or the server restarts"


_OUTCOMES = {Policy.IDP_DOWN: "idp_unavailable", Policy.STOP: "stopped", Policy.RETRY: "error"}
"""The rotations metric's outcome for each policy."""

_PERMANENT: tuple[type[BaseException], ...] = (RotationStopped, AccountError, TokenExchangeRefused, RenderError)


def policy(err: BaseException) -> Policy:
    """The one place a rotation failure is classified (by error class)."""
    if isinstance(err, IdPUnavailable):
        return Policy.IDP_DOWN
    if isinstance(err, _PERMANENT):
        return Policy.STOP
    return Policy.RETRY


@dataclass
class Tracked:
    """A running server whose tokens the hub keeps fresh."""

    key: str
    rotate: Callable[[], Awaitable[float | None]]
    """Refresh + exchange + patch; returns the new earliest expiry (raises on failure)."""
    expires_at: float | None
    failures: int = 0
    next_attempt: float = 0.0
    rotations: int = 0
    waits_for_idp: bool = False
    """The last failure was the IdP's: the IdP's recovery makes this server due at once."""
    stopped: str | None = None
    """Why the server is no longer rotated (permanent failure); None while it is."""


class Rotator(HubWide):
    """Schedules rotations for tracked servers; one per hub."""

    def __init__(
        self,
        *,
        margin: float,
        interval: float,
        concurrency: int,
        clock: Callable[[], float] = time.time,
        probe: Probe | None = None,
        min_backoff: float = MIN_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ):
        """``probe``: a cheap call to the IdP (:func:`token_endpoint_probe`); without one, the
        rotations themselves find out that the IdP is back."""
        self.margin = margin
        self.interval = interval
        self.min_backoff = min_backoff
        self.max_backoff = max(min_backoff, max_backoff)
        self._sem = asyncio.Semaphore(concurrency)
        self._clock = clock
        self._probe = probe
        self._tracked: dict[str, Tracked] = {}
        self._task: asyncio.Task[None] | None = None
        self._running: set[str] = set()
        self.idp_down = False
        """True from a rotation finding the IdP unavailable until the IdP answers again."""
        self._probe_failures = 0
        self._next_probe = 0.0
        METRICS.watch_rotator(self)

    def track(self, key: str, rotate: Callable[[], Awaitable[float | None]], expires_at: float | None) -> None:
        """Start (or restart) rotation for ``key`` (namespace/pod)."""
        self._tracked[key] = Tracked(key=key, rotate=rotate, expires_at=expires_at)
        self._ensure_task()

    def park(self, key: str, rotate: Callable[[], Awaitable[float | None]], reason: str) -> None:
        """Track ``key`` as not rotated, for ``reason`` (its spawn failed permanently); logged once."""
        self._tracked[key] = Tracked(key=key, rotate=rotate, expires_at=None)
        self._stop(self._tracked[key], reason)

    def untrack(self, key: str) -> None:
        """Stop rotating ``key`` (its server stopped)."""
        self._tracked.pop(key, None)

    def tracked(self, key: str) -> Tracked | None:
        return self._tracked.get(key)

    def freshness(self, now: float | None = None) -> dict[str, int]:
        """Servers without a fresh token, by reason (the metrics' scrape-time view).

        ``stopped``: parked until the user signs in again; ``expired``: the token written last has
        expired (or none was ever written) and rotation is still retrying.
        """
        now = self._clock() if now is None else now
        counts = {"expired": 0, "stopped": 0}
        for t in list(self._tracked.values()):
            if t.stopped is not None:
                counts["stopped"] += 1
            elif (t.expires_at is not None and t.expires_at <= now) or (t.expires_at is None and t.failures):
                counts["expired"] += 1
        return counts

    async def idp_problem(self) -> IdPUnavailable | None:
        """Why the IdP cannot be asked now (probe), or None when it answers or there is no probe."""
        if self._probe is None:
            return None
        try:
            return await self._probe()
        except Exception as err:  # noqa: BLE001 - a broken probe must not look like a healthy IdP
            return IdPUnavailable("probe", "token endpoint", _describe(err))

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="datalake-rucio-rotator")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.sleep_for())
            try:
                await self.tick()
            except Exception:  # the loop must outlive any bug in one tick
                log.exception("Rucio token rotator tick failed; continuing")

    def sleep_for(self, now: float | None = None) -> float:
        """Seconds until the next tick: the check interval, or sooner when a retry or probe is due."""
        now = self._clock() if now is None else now
        wake = [t.next_attempt for t in self._tracked.values() if t.failures and t.stopped is None]
        if self.idp_down and self._probe is not None:
            wake = [self._next_probe]
        return max(1.0, min([self.interval, *(w - now for w in wake)]))

    def due(self, now: float | None = None) -> list[Tracked]:
        """Servers whose tokens expire within the margin (or are unknown) and are not backing off."""
        now = self._clock() if now is None else now
        return [
            t
            for t in self._tracked.values()
            if t.key not in self._running
            and t.stopped is None
            and now >= t.next_attempt
            and (t.expires_at is None or t.expires_at - now < self.margin)
        ]

    async def tick(self) -> int:
        """Rotate everything due now; returns how many rotations ran.

        While the IdP is down (and a probe is configured) nothing is rotated: the IdP is probed
        once per back-off step, and rotations resume the moment it answers.
        """
        if self.idp_down and self._probe is not None:
            now = self._clock()
            if now < self._next_probe:
                return 0
            problem = await self.idp_problem()
            if problem is not None:
                self._probe_failures += 1
                self._next_probe = self._clock() + self._backoff(self._probe_failures)
                log.debug("IdP still unavailable (%s)", _describe(problem))
                return 0
            self._recovered("the token endpoint answers again")
        due = self.due()
        await asyncio.gather(*(self._rotate(t) for t in due))
        return len(due)

    def _backoff(self, failures: int, cap: float | None = None) -> float:
        return float(min(self.min_backoff * 2 ** max(failures - 1, 0), cap or self.max_backoff))

    async def _rotate(self, t: Tracked) -> None:
        self._running.add(t.key)
        try:
            async with self._sem:
                if self._tracked.get(t.key) is not t or t.stopped is not None:
                    return  # stopped meanwhile
                if self.idp_down and self._probe is not None:
                    return  # found down by a rotation running alongside: the probe decides
                previous = t.expires_at
                try:
                    t.expires_at = await t.rotate()
                except Exception as err:  # noqa: BLE001 - one server's failure must not stop others
                    self._failed(t, err)
                    return
                METRICS.rotation("success", None if previous is None else previous - self._clock())
                t.failures = 0
                t.rotations += 1
                t.next_attempt = 0.0
                t.waits_for_idp = False
                if self.idp_down or any(o.waits_for_idp for o in self._tracked.values()):
                    self._recovered("a rotation succeeded")
        finally:
            self._running.discard(t.key)

    def _failed(self, t: Tracked, err: BaseException) -> None:
        what = policy(err)
        METRICS.rotation(_OUTCOMES[what])
        if what is Policy.STOP:
            self._stop(t, _describe(err))
            return
        t.failures += 1
        t.waits_for_idp = what is Policy.IDP_DOWN
        delay = self._backoff(t.failures, None if t.waits_for_idp else max(OTHER_MAX_BACKOFF, self.max_backoff))
        t.next_attempt = self._clock() + delay
        log.warning("Rucio token rotation for %s failed (%s); retry in %.0fs", t.key, _describe(err), delay)
        if what is Policy.IDP_DOWN and not self.idp_down:
            self.idp_down = True
            self._probe_failures = 1
            self._next_probe = self._clock() + self.min_backoff
            if self._probe is not None:
                log.warning(
                    "The IdP is unavailable: token rotations wait, the IdP is probed every %.0f-%.0fs",
                    self.min_backoff,
                    self.max_backoff,
                )

    def _stop(self, t: Tracked, reason: str) -> None:
        t.stopped = reason
        t.waits_for_idp = False
        log.warning(
            "Rucio tokens of %s are no longer rotated: %s. Not retried until the user signs in again "
            "or the server restarts.",
            t.key,
            reason,
        )

    def _recovered(self, why: str) -> None:
        """The IdP answers: every server that backed off for it is due now (the semaphore bounds them)."""
        waiting = [t for t in self._tracked.values() if t.waits_for_idp and t.stopped is None]
        for t in waiting:
            t.failures = 0
            t.next_attempt = 0.0
            t.waits_for_idp = False
        was_down = self.idp_down
        self.idp_down = False
        self._probe_failures = 0
        if was_down or waiting:
            log.info("The IdP is available again (%s): %d server(s) due for rotation now", why, len(waiting))

    async def close(self) -> None:
        """Stop the task (hub shutdown, tests)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def token_endpoint_probe(token_url: str, ca_bundle: str | None, *, timeout: float = 5.0) -> Probe:
    """A probe that GETs the token endpoint: any HTTP answer below 500 means the IdP is back.

    No credentials are sent and nothing is granted; IdPs answer a GET there with 400/401/405.
    """

    async def probe() -> IdPUnavailable | None:
        request = HTTPRequest(
            token_url,
            method="GET",
            **request_tls_options(ca_bundle),
            connect_timeout=timeout,
            request_timeout=timeout,
            follow_redirects=False,
        )
        try:
            response = await idp_client().fetch(request, raise_error=False)
        except Exception as err:  # noqa: BLE001 - connection refused, TLS, timeout: all "unavailable"
            return IdPUnavailable("probe", token_url, _describe(err))
        if response.code >= 500:  # tornado reports transport failures as 599
            return IdPUnavailable("probe", token_url, f"HTTP {response.code}", status=response.code)
        return None

    return probe


def _describe(err: BaseException) -> str:
    """Type and message, redacted: ours never carry tokens, but a foreign error (the IdP's reply
    inside OAuthenticator's, an HTTP client's) may quote one; JWT-shaped text is masked and the
    line bounded whatever it is."""
    return f"{type(err).__name__}: {redact(err, limit=200)}"
