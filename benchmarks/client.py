"""HTTP clients the benchmarks drive hubs with: browser-like logins and the admin REST API."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests
from localplatform.idp import login_via_http

__all__ = ["Api", "LoginResult", "login", "open_page"]

LOGIN_COOKIE = "jupyterhub-hub-login"
PAGINATION = "application/jupyterhub-pagination+json"
"""The media type that makes JupyterHub page its lists (without it, one page and no `next`)."""


@dataclass(frozen=True)
class LoginResult:
    """One login: did the hub set its login cookie, how long it took, and what went wrong if not."""

    ok: bool
    seconds: float
    error: str | None = None


def login(hub_url: str, ca_bundle: str, username: str, password: str, timeout: float = 30) -> LoginResult:
    """A whole OIDC login as a browser does it: proxy → hub → IdP login and consent → hub callback.

    Ends when the hub's callback answers (it sets the login cookie and redirects on): following on
    would start a server in a stock hub (``/hub/`` → ``/hub/spawn``), which is not a login.
    """
    started = time.perf_counter()
    session = requests.Session()
    session.verify = ca_bundle
    callback = f"{hub_url}hub/oauth_callback"
    try:
        resp = login_via_http(session, f"{hub_url}hub/oauth_login", username, password, stop_at=callback)
        if not resp.is_redirect:
            return LoginResult(False, time.perf_counter() - started, f"idp:{resp.status_code}")
        final = session.get(resp.headers["location"], allow_redirects=False, timeout=timeout)
    except (requests.RequestException, RuntimeError) as err:
        return LoginResult(False, time.perf_counter() - started, f"error:{type(err).__name__}")
    finally:
        session.close()
    elapsed = time.perf_counter() - started
    if final.status_code == 302 and LOGIN_COOKIE in final.cookies:
        return LoginResult(True, elapsed)
    return LoginResult(False, elapsed, f"hub:{final.status_code}")


def open_page(hub_url: str, ca_bundle: str, username: str, password: str, page: str, timeout: float = 60) -> str | None:
    """Sign in as a browser does, then GET ``hub/<page>`` with the session; None, or what went wrong.

    For the storm's "the user looks at the spawn page before pressing Start": our hub exchanges
    the user's Rucio tokens in the background when it renders that page.
    """
    session = requests.Session()
    session.verify = ca_bundle
    callback = f"{hub_url}hub/oauth_callback"
    try:
        resp = login_via_http(session, f"{hub_url}hub/oauth_login", username, password, stop_at=callback)
        if not resp.is_redirect:
            return f"idp:{resp.status_code}"
        session.get(resp.headers["location"], allow_redirects=False, timeout=timeout)
        page_resp = session.get(f"{hub_url}hub/{page}", allow_redirects=False, timeout=timeout)
    except (requests.RequestException, RuntimeError) as err:
        return f"error:{type(err).__name__}"
    finally:
        session.close()
    return None if page_resp.status_code == 200 else f"page:{page_resp.status_code}"


class Api:
    """The hub's REST API with the admin-scoped service token the local hub is started with."""

    def __init__(self, api_url: str, token: str) -> None:
        self.base = api_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    def call(self, method: str, path: str, timeout: float = 60, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.base}{path}", timeout=timeout, **kwargs)

    def metric(self, name: str) -> dict[str, float]:
        """Samples of metric ``name`` on the hub's ``/hub/metrics``, by label set as written ("" for none)."""
        resp = self.session.get(f"{self.base.rsplit('/api', 1)[0]}/metrics", timeout=30)
        resp.raise_for_status()
        out: dict[str, float] = {}
        for line in resp.text.splitlines():
            if line.startswith((name + " ", name + "{")):
                labels, _, value = line.rpartition(" ")
                out[labels[len(name) :]] = float(value)
        return out

    def users(self, state: str | None = None) -> list[dict[str, Any]]:
        """Every user (paged), optionally only those with a server in ``state`` (ready/active)."""
        out: list[dict[str, Any]] = []
        offset = 0
        for _ in range(1000):
            params: dict[str, Any] = {"offset": offset, "limit": 200}
            if state:
                params["state"] = state
            resp = self.call("GET", "/users", params=params, headers={"Accept": PAGINATION})
            resp.raise_for_status()
            body = resp.json()
            items = body["items"] if isinstance(body, dict) else body
            out.extend(items)
            nxt = body.get("_pagination", {}).get("next") if isinstance(body, dict) else None
            if not nxt or not items:
                return out
            offset = nxt["offset"]
        return out
