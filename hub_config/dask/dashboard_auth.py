"""Who may open a Dask dashboard through the gateway's Traefik: the cluster's owner, or an admin.

dask-gateway routes each cluster's dashboard (``<prefix>/clusters/<name>/...``) through Traefik with
no authentication at all (dask/dask-gateway#570): anyone who can reach Traefik sees any user's
dashboard, and Bokeh's dashboard runs code on the scheduler. So Traefik's ``web`` entrypoint carries
a ``forwardAuth`` middleware (chart/templates/dask-gateway/, localplatform.daskgateway): before every
HTTP request it asks ``GET`` :data:`AUTH_PATH` on the gateway API, passing the request's headers and
``X-Forwarded-Uri``; a 2xx answer lets the request through, any other is returned to the client as is.
On the entrypoint rather than on each cluster's route because the chart's controller configuration
(which lists the clusters' route middlewares) takes no additions.

:func:`decide` makes the decision; the gateway-side glue (:func:`dashboard_authenticator_class`)
only identifies the requester, the way the gateway API does:

* the gateway's own session cookie (``Authenticator.cookie_name``, which the API sets for a client
  that authenticated with its token), looked up in the gateway's own cache;
* else the ``Authorization`` header, checked by the gateway's own authenticator (JupyterHub's in the
  chart: the hub says whose token it is and whether they are an admin), cached per header (a SHA-256
  digest, never the credential) for the authenticator's ``cache_max_age``: a dashboard makes many
  requests.

Paths outside ``<prefix>/clusters/`` pass: they are the gateway API's, which authenticates every
call itself. A path Traefik could route somewhere other than it reads (dot segments, doubled or
encoded slashes, backslashes) is refused outright. Stdlib only at import: the gateway's image runs it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

__all__ = ["AUTH_PATH", "Refused", "Requester", "dashboard_authenticator_class", "dashboard_target", "decide"]

AUTH_PATH: Final = "/api/datalake/dashboard-auth"
"""The gateway API's forwardAuth endpoint (Traefik calls it directly, on the API's own address)."""
TOKEN_CACHE_MAX: Final = 1024
"""Users' tokens remembered at most (then the cache starts over): bounded memory."""


class Refused(ValueError):
    """A forwarded path that is not safe to decide on (Traefik might route it elsewhere)."""


@dataclass(frozen=True)
class Requester:
    """Who asks, as the hub vouched for them."""

    name: str
    admin: bool = False


def dashboard_target(uri: str, prefix: str = "/") -> str | None:
    """The cluster a forwarded request is for (``X-Forwarded-Uri``), None when it is not a cluster's path.

    Decoded once, as Traefik decodes a path before routing it; :class:`Refused` for any path whose
    segments could resolve differently (``.``, ``..``, empty, backslashes) and for a ``clusters/``
    path that names no cluster."""
    path = unquote(urlsplit(uri).path or "/")
    segments = path.split("/")[1:]
    if "\\" in path or any(seg in (".", "..") for seg in segments) or "" in segments[:-1]:
        raise Refused(f"ambiguous path {uri[:200]!r}")
    base = "/" + "/".join(s for s in prefix.strip("/").split("/") if s)
    head = (base.rstrip("/") + "/clusters/").lstrip("/")
    rel = path.lstrip("/")
    if not rel.startswith(head) and rel + "/" != head:
        return None
    name = rel[len(head) :].split("/", 1)[0]
    if not name:
        raise Refused(f"no cluster named in {uri[:200]!r}")
    return name


def decide(target: str | None, requester: Requester | None, owner: str | None) -> int:
    """The HTTP status Traefik gets: 200 lets the request through.

    ``target``: the cluster asked for (None: an API path, which passes); ``owner``: its owner's
    name (None: no such cluster). Anonymous: 401; another user: 403; the owner and admins: 200."""
    if target is None:
        return 200
    if requester is None:
        return 401
    if requester.admin:
        return 200 if owner is not None else 404
    return 200 if owner == requester.name else 403


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def dashboard_authenticator_class(prefix: str = "/", base: type | None = None) -> type:
    """The gateway's authenticator plus the forwardAuth endpoint (``c.DaskGateway.authenticator_class``).

    ``base``: the authenticator that checks the API's callers, JupyterHubAuthenticator unless given
    (the benchmarks' hub-less gateway passes SimpleAuthenticator, so Traefik's forwardAuth still has
    its endpoint). Its ``setup`` (called before the API starts serving) adds :data:`AUTH_PATH` to the
    API's routes."""
    from aiohttp import web
    from dask_gateway_server.auth import JupyterHubAuthenticator

    parent = JupyterHubAuthenticator if base is None else base

    class DashboardAuthenticator(parent):  # type: ignore[misc,valid-type]  # untyped base
        """The base's auth for the API, and the dashboards' forwardAuth answers (hub_config.dask.dashboard_auth)."""

        async def setup(self, app: Any) -> None:
            await super().setup(app)
            self._by_credential: dict[str, tuple[float, Requester]] = {}
            self._backend = app["backend"]
            app.router.add_get(AUTH_PATH, self.dashboard_auth)

        async def dashboard_auth(self, request: Any) -> Any:
            try:
                target = dashboard_target(request.headers.get("X-Forwarded-Uri", "/"), prefix)
            except Refused as err:
                self.log.info("Dashboard request refused: %s", err)
                return web.Response(status=400, text="Bad request path")
            requester = await self.requester(request) if target is not None else None
            owner = None
            if target is not None and requester is not None:
                cluster = await self._backend.get_cluster(target)
                owner = None if cluster is None else cluster.username
            status = decide(target, requester, owner)
            if status == 401:
                return web.Response(status=401, headers={"WWW-Authenticate": "jupyterhub"}, text="Sign in required")
            if status != 200:
                self.log.info("Dashboard of %s refused to %s (%d)", target, requester and requester.name, status)
            return web.Response(status=status, text="" if status == 200 else "Not your cluster")

        async def requester(self, request: Any) -> Requester | None:
            """The gateway's cookie, else the credential in ``Authorization``; None when neither holds."""
            cookie = request.cookies.get(self.cookie_name)
            user = self.cache.get(cookie) if cookie else None
            if user is not None:
                return Requester(str(user.name), bool(user.admin))
            credential = request.headers.get("Authorization", "")
            if not credential:
                return None
            key, now = _digest(credential), time.monotonic()
            hit = self._by_credential.get(key)
            if hit is not None and now - hit[0] < self.cache_max_age:
                return hit[1]
            try:
                found = await self.authenticate(request)
            except (ValueError, UnicodeError):  # a malformed header (no space, bad base64): nobody
                return None
            except web.HTTPUnauthorized:
                return None
            except web.HTTPException as err:  # the hub refused or failed the check: nobody, fail closed
                self.log.warning("Dashboard request: the hub did not confirm a token (%s)", err.reason)
                return None
            user = found[0] if isinstance(found, tuple) else found
            who = Requester(str(user.name), bool(user.admin))
            if len(self._by_credential) >= TOKEN_CACHE_MAX:
                self._by_credential.clear()
            self._by_credential[key] = (now, who)
            return who

    return DashboardAuthenticator
