"""The Dask dashboard of the user's own gateway clusters, opened from the browser through their server.

dask-gateway serves each cluster's dashboard at ``<gateway>/clusters/<name>/`` behind its Traefik,
and datalake-hub lets only the cluster's owner (and admins) through (hub_config.dask.dashboard_auth),
recognising the hub token the ``dask_gateway`` client sends. A browser holds no such token, and the
gateway's Traefik is not reachable from it anyway (a ClusterIP Service in the chart). So the
notebook server, which the user already reaches signed in through the hub, forwards
``<server>/dask-gateway/clusters/<name>/...`` (pages, scripts and Bokeh's websocket) to the gateway
with *its own* hub token, the one ``Gateway()`` uses in the user's kernels: the browser never sees a
token, and the gateway still decides, so a user reaches only what the gateway lets their token
reach. The browser's cookies (the server's login, XSRF) are not forwarded.

At load, ``DASK_GATEWAY__PUBLIC_ADDRESS`` (unless the site set one) is pointed here, so kernels
started by this server get ``cluster.dashboard_link`` = ``/user/<name>/dask-gateway/clusters/<c>/status``:
a link that opens in the user's browser, from a notebook's output or in the Dask side panel: the
panel sees a link under its own server and fetches the plots list and each plot from the browser,
with the user's login, through this route (dask-labextension 7's ``testDaskDashboard``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from jupyter_server.utils import url_path_join
from jupyter_server_proxy.handlers import ProxyHandler
from tornado.httputil import HTTPHeaders
from tornado.web import HTTPError

__all__ = ["CLUSTER_NAME", "Gateway", "install_dashboard_proxy", "proxied_path"]

CLUSTER_NAME = r"[a-zA-Z0-9.-]+"
"""A cluster name as the gateway's Traefik routes it (its clusters-prefix middleware's pattern)."""
NOT_FORWARDED = frozenset({"cookie", "authorization", "host", "x-xsrftoken", "x-xsrf-token"})
"""Request headers the gateway never gets: the browser's credentials for this server, and its Host."""


@dataclass(frozen=True)
class Gateway:
    """Where the gateway's Traefik is, and the credential the server uses with it."""

    scheme: str
    host: str
    port: int
    prefix: str
    token: str

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Gateway | None:
        """From the server's environment (the hub sets ``DASK_GATEWAY__ADDRESS`` on gateway sites);
        None when there is no gateway, no hub token, or an address that is not ``http(s)://host[:port][/prefix]``."""
        address, token = env.get("DASK_GATEWAY__ADDRESS", ""), env.get("JUPYTERHUB_API_TOKEN", "")
        if not address or not token:
            return None
        parts = urlsplit(address)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
        return cls(parts.scheme, parts.hostname, port, "/" + parts.path.strip("/"), token)


def proxied_path(prefix: str, cluster: str, rest: str | None) -> str:
    """The gateway path for ``<server>/dask-gateway/clusters/<cluster><rest>``.

    ``rest`` arrives percent-decoded (tornado decodes path arguments); a path whose segments could
    resolve elsewhere (``.``, ``..``, backslashes) is refused with 400 rather than forwarded."""
    tail = rest or "/"
    if "\\" in tail or any(seg in (".", "..") for seg in tail.split("/")):
        raise HTTPError(400, "ambiguous dashboard path")
    return url_path_join(prefix, "clusters", cluster) + tail


class DashboardProxyHandler(ProxyHandler):  # type: ignore[misc]  # untyped base
    """GET/HEAD and the websocket of one cluster's dashboard, forwarded with the server's hub token.

    jupyter-server-proxy's handler does the forwarding (HTTP, websockets, Bokeh's subprotocols) and
    requires the server's own login on every request; this class only says where and with what."""

    def initialize(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def http_get(self, cluster: str, rest: str | None = None) -> Any:
        g = self.gateway
        return await self.proxy(g.host, g.port, proxied_path(g.prefix, cluster, rest))

    async def head(self, cluster: str, rest: str | None = None) -> Any:
        return await self.http_get(cluster, rest)

    async def open(self, cluster: str, rest: str | None = None) -> Any:
        g = self.gateway
        return await self.proxy_open(g.host, g.port, proxied_path(g.prefix, cluster, rest))

    def get_client_uri(self, protocol: str, host: str, port: int, proxied_path: str) -> str:
        """As jupyter-server-proxy's, on ``https``/``wss`` when the gateway's address is https."""
        if self.gateway.scheme == "https":
            protocol = {"http": "https", "ws": "wss"}.get(protocol, protocol)
        return str(super().get_client_uri(protocol, host, port, proxied_path))

    def proxy_request_headers(self) -> HTTPHeaders:
        headers = HTTPHeaders()
        for name, value in self.request.headers.get_all():
            if name.lower() not in NOT_FORWARDED:
                headers.add(name, value)
        headers["Authorization"] = f"jupyterhub {self.gateway.token}"
        return headers


def install_dashboard_proxy(web_app: Any, env: dict[str, str] | None = None) -> str | None:
    """Route ``<base_url>dask-gateway/clusters/<name>/...`` to the gateway; the route, or None
    when this server has no gateway. Points ``DASK_GATEWAY__PUBLIC_ADDRESS`` at it for kernels."""
    environ = os.environ if env is None else env
    gateway = Gateway.from_env(dict(environ))
    if gateway is None:
        return None
    base = url_path_join(web_app.settings.get("base_url", "/"), "dask-gateway")
    route = url_path_join(base, "clusters", f"({CLUSTER_NAME})(/.*)?")
    options = {"gateway": gateway, "host_allowlist": [gateway.host]}
    web_app.add_handlers(".*$", [(route, DashboardProxyHandler, options)])
    environ.setdefault("DASK_GATEWAY__PUBLIC_ADDRESS", base)
    return route
