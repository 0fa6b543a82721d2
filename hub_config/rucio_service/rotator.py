"""Keep running servers' Rucio tokens fresh: refresh grant → exchange → patch Secret, before expiry.

One task per hub wakes every `check_interval_seconds` and rotates the servers whose tokens have
less than `refresh_margin_seconds` left, at most `max_concurrent_rotations` at a time (the IdP and
the API server are shared). A failure backs off that server only (10 s doubling to 10 min) and is
logged without any token; it never stops the task or other users' rotation. The kubelet swaps the
mounted files in place, so a new `rucio` command or Client() and the JupyterLab extension (which
re-reads its token file at expiry) use the new token without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..redact import redact
from ..shared import HubWide

__all__ = ["Rotator", "Tracked"]

log = logging.getLogger(__name__)

MIN_BACKOFF = 10.0
MAX_BACKOFF = 600.0


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


class Rotator(HubWide):
    """Schedules rotations for tracked servers; one per hub."""

    def __init__(self, *, margin: float, interval: float, concurrency: int, clock: Callable[[], float] = time.time):
        self.margin = margin
        self.interval = interval
        self._sem = asyncio.Semaphore(concurrency)
        self._clock = clock
        self._tracked: dict[str, Tracked] = {}
        self._task: asyncio.Task[None] | None = None
        self._running: set[str] = set()

    def track(self, key: str, rotate: Callable[[], Awaitable[float | None]], expires_at: float | None) -> None:
        """Start (or update) rotation for ``key`` (namespace/pod)."""
        self._tracked[key] = Tracked(key=key, rotate=rotate, expires_at=expires_at)
        self._ensure_task()

    def untrack(self, key: str) -> None:
        """Stop rotating ``key`` (its server stopped)."""
        self._tracked.pop(key, None)

    def tracked(self, key: str) -> Tracked | None:
        return self._tracked.get(key)

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="datalake-rucio-rotator")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except Exception:  # the loop must outlive any bug in one tick
                log.exception("Rucio token rotator tick failed; continuing")

    def due(self, now: float | None = None) -> list[Tracked]:
        """Servers whose tokens expire within the margin (or are unknown) and are not backing off."""
        now = self._clock() if now is None else now
        return [
            t
            for t in self._tracked.values()
            if t.key not in self._running
            and now >= t.next_attempt
            and (t.expires_at is None or t.expires_at - now < self.margin)
        ]

    async def tick(self) -> int:
        """Rotate everything due now; returns how many rotations ran."""
        due = self.due()
        await asyncio.gather(*(self._rotate(t) for t in due))
        return len(due)

    async def _rotate(self, t: Tracked) -> None:
        self._running.add(t.key)
        try:
            async with self._sem:
                if self._tracked.get(t.key) is not t:
                    return  # stopped meanwhile
                try:
                    t.expires_at = await t.rotate()
                except Exception as err:  # noqa: BLE001 - one server's failure must not stop others
                    t.failures += 1
                    delay = min(MIN_BACKOFF * 2 ** (t.failures - 1), MAX_BACKOFF)
                    t.next_attempt = self._clock() + delay
                    log.warning("Rucio token rotation for %s failed (%s); retry in %.0fs", t.key, _describe(err), delay)
                    return
                t.failures = 0
                t.rotations += 1
                t.next_attempt = 0.0
        finally:
            self._running.discard(t.key)

    async def close(self) -> None:
        """Stop the task (hub shutdown, tests)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _describe(err: BaseException) -> str:
    """Type and message, redacted: ours never carry tokens, but a foreign error (the IdP's reply
    inside OAuthenticator's, an HTTP client's) may quote one; JWT-shaped text is masked and the
    line bounded whatever it is."""
    return f"{type(err).__name__}: {redact(err, limit=200)}"
