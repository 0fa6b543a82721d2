"""Talk to a local hub the way users and admins do: browser-like logins, REST API calls."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from localplatform.hub import HubHandle, start_hub, stop_hub
from localplatform.idp import login_via_http

__all__ = ["api", "login", "running_hub"]


def login(
    hub: HubHandle, info: dict[str, Any], username: str, password: str
) -> tuple[requests.Session, requests.Response]:
    """Sign in through the proxy → hub → IdP login and consent → hub; return the session and last page."""
    session = requests.Session()
    session.verify = info["idp"]["ca_bundle"]
    resp = login_via_http(session, f"{hub.url}hub/oauth_login", username, password)
    return session, resp


def api(hub: HubHandle, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A hub REST API call with the admin-scoped test service token."""
    headers = {"Authorization": f"token {hub.service_token}"}
    return requests.request(method, f"{hub.api_url}{path}", headers=headers, timeout=30, **kwargs)


@contextmanager
def running_hub(state: Path, info: dict[str, Any], name: str, **kwargs: Any) -> Iterator[HubHandle]:
    """A hub for the duration of a test module; stopped (by PID) afterwards."""
    hub = start_hub(state, info, name=name, **kwargs)
    try:
        yield hub
    finally:
        stop_hub(state, name)
