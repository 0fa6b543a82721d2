"""How the hub's calls to the IdP verify TLS, for whichever tornado HTTP client the hub runs.

The z2jh 4.4.0 hub image ships pycurl, and JupyterHub then makes every ``AsyncHTTPClient`` a
``CurlAsyncHTTPClient``. That client refuses ``ssl_options`` outright ("ssl_options not supported
in curl_httpclient": every login and token exchange would fail) but keeps connections to the IdP
alive and caches the parsed CA bundle itself, so it only needs the bundle's path. tornado's own
client is the opposite: given ``ca_certs`` it re-reads the bundle on every request (about 50 ms of
CPU for a system-sized bundle, which the benchmarks found to be most of a token rotation's cost),
so it gets one shared, pre-built context instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import weakref
from typing import Any

from tornado.httpclient import AsyncHTTPClient

__all__ = ["IDP_MAX_CLIENTS", "client_context", "idp_client", "request_tls_options", "uses_curl"]

# At DEBUG, tornado's curl client logs every request's headers and body: the client secret (Basic
# auth) and the tokens being refreshed or exchanged. JupyterHub caps it at INFO in the hub; the
# cap is repeated here so nothing else that runs this code (a debug session, a script) leaks them.
logging.getLogger("tornado.curl_httpclient").setLevel(logging.INFO)


@functools.lru_cache(maxsize=8)
def client_context(ca_bundle: str | None) -> ssl.SSLContext:
    """One verifying TLS client context per CA bundle, shared by every call (tornado's own client).

    A changed bundle is read at the next hub start.
    """
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()


def uses_curl() -> bool:
    """Is tornado's configured async HTTP client the pycurl one (as in the z2jh hub image)?"""
    return AsyncHTTPClient.configured_class().__name__ == "CurlAsyncHTTPClient"


def request_tls_options(ca_bundle: str | None) -> dict[str, Any]:
    """``HTTPRequest`` keyword arguments that verify the server against ``ca_bundle`` (None: system CAs)."""
    if uses_curl():
        return {"ca_certs": ca_bundle} if ca_bundle else {}
    return {"ssl_options": client_context(ca_bundle), "ca_certs": None}


IDP_MAX_CLIENTS = 20
"""Concurrent token-endpoint calls per hub (exchanges at spawn, rotations); more wait their turn."""

_IDP_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncHTTPClient] = weakref.WeakKeyDictionary()


def idp_client() -> AsyncHTTPClient:
    """The HTTP client for the hub's own token calls: a pool of its own, one per event loop.

    ``AsyncHTTPClient()`` is shared by the whole hub, 10 requests at a time, and a queued request's
    timeout runs while it waits. In a spawn storm against a slow IdP, token exchanges filled that
    pool and the hub's calls to the proxy timed out behind them ("Failed to add ... to proxy", a
    failed spawn). With a pool of their own, IdP slowness delays Rucio set-up and nothing else.
    """
    loop = asyncio.get_running_loop()
    client = _IDP_CLIENTS.get(loop)
    if client is None:
        client = AsyncHTTPClient(force_instance=True, max_clients=IDP_MAX_CLIENTS)
        _IDP_CLIENTS[loop] = client
    return client
