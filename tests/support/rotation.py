"""The settings patch of a hub whose tokens rotate within a test's minutes instead of hours.

Platform tests shorten the IdP's token lifetime (``access_token_ttl``) to tens of seconds; the hub
must then refresh IAM tokens and rotate Rucio tokens with margins inside that lifetime, and look
for due rotations every few seconds. One helper, so every such hub is configured the same way and
a change of the settings' shape is made once.
"""

from __future__ import annotations

from typing import Any

__all__ = ["fast_rotation"]


def fast_rotation(*, iam_margin: int, rucio_margin: int, check_interval: int = 5, **rucio: Any) -> dict[str, Any]:
    """``iam``/``rucio`` settings: IAM tokens refreshed ``iam_margin`` s before expiry (at most every
    5 s), Rucio tokens rotated ``rucio_margin`` s before theirs, checked every ``check_interval`` s;
    ``rucio``: further ``rucio`` keys (instances, retry bounds)."""
    return {
        "iam": {"refresh_age_seconds": 5, "refresh_margin_seconds": iam_margin},
        "rucio": {"refresh_margin_seconds": rucio_margin, "check_interval_seconds": check_interval, **rucio},
    }
