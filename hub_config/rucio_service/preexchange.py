"""Rucio tokens exchanged while the user looks at the spawn page, kept for the Start click.

The RFC 8693 exchange is one IdP round trip per Rucio instance on the spawn's critical path
(docs/performance.md: the storm's remaining cost). A user who opens the spawn page nearly always
clicks Start seconds later, so the hub exchanges when the page is shown (in the background: the
page is not delayed) and the Start takes the result if it is still fresh. Nothing else changes:
the Secret is still written before the pod is created, from whichever token the Start got.

Fresh means all of:

- the same sign-in: the entry remembers a digest of the subject (login access) token it was
  exchanged from, and a different one at Start (a refresh, a new login) is a miss;
- young: at most :data:`MAX_AGE_SECONDS` old (a page left open for an hour exchanges again);
- enough life left: the token must outlive the rotator's margin by the time it is taken, or the
  server would be rotated at once (an extra refresh and exchange instead of one saved).

The cache is bounded (:data:`MAX_ENTRIES`, oldest out first), keyed by user and instance (one
entry each, so a page reloaded ten times holds one token), and an entry is taken, not read: the
token leaves the cache when a Start uses it. Tokens live only in memory, never in a log line
(``TokenSet`` hides them in ``repr``).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..rucio import TokenSet

__all__ = ["MAX_AGE_SECONDS", "MAX_ENTRIES", "ExchangeCache"]

MAX_AGE_SECONDS: Final = 300.0
"""How long a pre-exchanged token may wait for its Start (the spawn page is usually clicked within seconds)."""
MAX_ENTRIES: Final = 2000
"""Users × instances kept at most (a token is ~1 kB): a storm of 300 users fits many times over."""


@dataclass(frozen=True, repr=False)
class _Entry:
    subject: str
    tokens: TokenSet
    stale_at: float


def subject_digest(subject_token: str) -> str:
    """Which sign-in a token was exchanged from (the subject token, hashed: no token kept as a key)."""
    return hashlib.sha256(subject_token.encode()).hexdigest()[:32]


class ExchangeCache:
    """Pre-exchanged Rucio tokens by (user, instance); see the module docstring for "fresh"."""

    def __init__(
        self,
        *,
        margin: float,
        max_age: float = MAX_AGE_SECONDS,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``margin``: the rotator's refresh margin (seconds before expiry a server's token is rotated)."""
        self._margin = margin
        self._max_age = max_age
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, username: str, instance: str, subject_token: str, tokens: TokenSet) -> bool:
        """Keep ``tokens`` for the user's next Start; False (not kept) when they could not be fresh then."""
        now = self._clock()
        if tokens.expires_at is None:  # unknown lifetime: cannot tell whether it would outlive the margin
            return False
        stale_at = min(now + self._max_age, tokens.expires_at - self._margin)
        if stale_at <= now:
            return False
        key = (username, instance)
        self._entries.pop(key, None)
        self._entries[key] = _Entry(subject_digest(subject_token), tokens, stale_at)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return True

    def fresh(self, username: str, instance: str, subject_token: str) -> bool:
        """Would :meth:`take` return a token now (without taking it)?"""
        entry = self._entries.get((username, instance))
        return entry is not None and self._usable(entry, subject_token)

    def take(self, username: str, instance: str, subject_token: str) -> TokenSet | None:
        """The fresh token for this user's Start, removed from the cache; None when there is none."""
        entry = self._entries.pop((username, instance), None)
        if entry is None or not self._usable(entry, subject_token):
            return None
        return entry.tokens

    def _usable(self, entry: _Entry, subject_token: str) -> bool:
        return self._clock() < entry.stale_at and entry.subject == subject_digest(subject_token)

    def prune(self) -> None:
        """Drop the entries that can no longer be used (called on each put from the spawn page)."""
        now = self._clock()
        for key in [k for k, e in self._entries.items() if e.stale_at <= now]:
            del self._entries[key]
