"""Profile status for admins: the set in force, where it came from, and the last refused edit.

An admin who edits the profiles ConfigMap should not need `kubectl logs` to learn whether the
edit took. `GET /hub/api/datalake/profiles` (JSON) and the page `/hub/datalake/profiles` (linked
from the navigation bar for admins) show the generation, when it was loaded, the directory and
inline sources, each profile's groups, and the last refused edit with its file:line problems.
The page needs the `admin-ui` scope, as JupyterHub's own admin page does; the API `read:hub`.

The handlers are registered through the authenticator's `get_handlers` (JupyterHub mounts those
under the hub prefix), since `JupyterHub.extra_handlers` is deprecated; they read the hub-wide
:class:`ProfileSource` from the traitlets config the hub already holds.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from .profiles.source import ProfileSource

__all__ = ["handlers", "profile_status"]


def _iso(epoch: float | None) -> str | None:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds") if epoch is not None else None


def profile_status(source: ProfileSource) -> dict[str, Any]:
    """What the status page and API show (no secrets: profiles hold none)."""
    refused = source.last_refused
    return {
        "generation": source.generation,
        "loaded_at": _iso(source.loaded_at),
        "sources": {
            "directory": str(source.paths[0]) if source.paths else None,
            "inline": len(source.settings.profiles.inline),
            "reload_seconds": source.interval,
        },
        "profiles": [
            {
                "slug": lp.profile.slug,
                "display_name": lp.profile.display_name,
                "groups": list(lp.profile.groups),
                "source": lp.source,
            }
            for lp in source.current()
        ],
        "last_refused": None
        if refused is None
        else {
            "at": _iso(refused.at),
            "superseded": source.loaded_at is not None and source.loaded_at > refused.at,
            "problems": list(refused.problems),
        },
    }


def _source(handler: BaseHandler) -> ProfileSource:
    source = handler.settings["config"].DatalakeSpawner.get("datalake_profiles")
    if not isinstance(source, ProfileSource):
        raise web.HTTPError(404, "datalake-hub profiles are not configured on this hub")
    return source


class ProfileStatusAPIHandler(APIHandler):  # type: ignore[misc]
    """`GET /hub/api/datalake/profiles`: the status as JSON (scope `read:hub`, which admins hold and a
    monitoring service can be given without admin rights)."""

    @needs_scope("read:hub")  # type: ignore[untyped-decorator]
    async def get(self) -> None:
        source = _source(self)
        await source.refresh()  # show an edit made since the last spawn page
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(profile_status(source)))


class ProfileStatusPageHandler(BaseHandler):  # type: ignore[misc]
    """`GET /hub/datalake/profiles`: the status page."""

    @web.authenticated
    @needs_scope("admin-ui")  # type: ignore[untyped-decorator]
    async def get(self) -> None:
        source = _source(self)
        await source.refresh()
        html = await self.render_template("datalake_profiles.html", status=profile_status(source))
        self.finish(html)


def handlers() -> list[tuple[str, type[BaseHandler]]]:
    """Routes for the authenticator's `get_handlers` (JupyterHub adds the hub prefix)."""
    return [
        (r"/api/datalake/profiles", ProfileStatusAPIHandler),
        (r"/datalake/profiles", ProfileStatusPageHandler),
    ]
