"""Why a user's server was stopped by the hub, shown to them on the hub's pages until they start again.

A server stopped for its maximum runtime vanishes from under the user: JupyterLab only says the
server is unreachable, and the hub's home page offers "Start My Server" as if nothing happened.
The hub knows why, so it says so: the spawner records a notice when it stops a server for its
runtime, and every hub page shows the notice to that user (``page.html``, template variable
``datalake_stop_notice``) until they start a server again. Admins read the same sentence in the
hub log.

Kept in the hub's memory, bounded: a notice is for the next visit, not a record (the log is the
record); a hub restart forgets notices not yet seen.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from typing import Any

__all__ = ["MAX_NOTICES", "clear", "notice_for", "record", "runtime_message"]

MAX_NOTICES = 10_000
"""Users with an unseen notice kept at most (oldest dropped first): a few MB at worst."""

_NOTICES: OrderedDict[str, str] = OrderedDict()


def runtime_message(server: str, hours: float, started: dt.datetime | None, now: dt.datetime) -> str:
    """The sentence the user and the admins see; times in UTC, as the hub logs them."""
    limit = f"{hours:g} hour" + ("" if hours == 1 else "s")
    since = f" (started {started:%Y-%m-%d %H:%M} UTC)" if started else ""
    return (
        f"{server} was stopped at {now:%Y-%m-%d %H:%M} UTC: it reached the maximum runtime of {limit} "
        f"chosen when it was started{since}. Files in your home directory are kept; start a new server to go on."
    )


def record(username: str, message: str) -> None:
    """Remember ``message`` for ``username``'s next page view (replacing an older one)."""
    _NOTICES.pop(username, None)
    _NOTICES[username] = message
    while len(_NOTICES) > MAX_NOTICES:
        _NOTICES.popitem(last=False)


def clear(username: str) -> None:
    """The user starts a server again: the notice has served its purpose."""
    _NOTICES.pop(username, None)


def notice_for(user: Any) -> str | None:
    """Template variable: the notice for the signed-in user (None on pages without one)."""
    name = getattr(user, "name", None)
    return _NOTICES.get(name) if name else None
