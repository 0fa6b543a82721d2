"""Talk to a local hub the way users and admins do: browser-like logins, REST API calls."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from localplatform.hub import HubHandle, start_hub, stop_hub
from localplatform.idp import login_via_http

__all__ = ["api", "hub_xsrf", "login", "progress_messages", "running_hub", "spawn", "stop"]


def login(
    hub: HubHandle, info: dict[str, Any], username: str, password: str
) -> tuple[requests.Session, requests.Response]:
    """Sign in through the proxy → hub → IdP login and consent → hub; return the session and last page."""
    session = requests.Session()
    session.verify = info["idp"]["ca_bundle"]
    resp = login_via_http(session, f"{hub.url}hub/oauth_login", username, password)
    return session, resp


def hub_xsrf(session: requests.Session) -> str:
    """The hub's ``_xsrf`` cookie (a user with a running server also holds their server's, on its own path)."""
    found = {c.path: c.value for c in session.cookies if c.name == "_xsrf"}
    return next((v for path, v in found.items() if "/user/" not in path), "")


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


def spawn(hub: HubHandle, name: str, options: dict[str, Any], timeout: float = 180) -> requests.Response:
    """Start ``name``'s server through the REST API and wait until the hub says it is ready."""
    import time

    resp = api(hub, "POST", f"/users/{name}/server", json=options)
    if resp.status_code not in (201, 202):
        return resp
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = api(hub, "GET", f"/users/{name}").json().get("servers", {}).get("")
        if server and server.get("ready"):
            return resp
        if not server:
            raise AssertionError(f"server of {name} vanished while starting; see the hub log {hub.log}")
        time.sleep(1)
    raise AssertionError(f"server of {name} not ready after {timeout}s; hub log {hub.log}")


def stop(hub: HubHandle, name: str, timeout: float = 60) -> None:
    """Stop ``name``'s server and wait until the hub says it is gone."""
    import time

    resp = api(hub, "DELETE", f"/users/{name}/server")
    assert resp.status_code in (202, 204), resp.text
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not api(hub, "GET", f"/users/{name}").json().get("servers"):
            return
        time.sleep(0.5)
    raise AssertionError(f"server of {name} did not stop within {timeout}s")


def progress_messages(hub: HubHandle, user: str, timeout: float = 180, wait_pending: float = 0) -> list[str]:
    """The messages of ``user``'s spawn progress stream, as the spawn page shows them, until ready or failed.

    With ``wait_pending``, first retry (for up to that many seconds) while the hub answers 400
    because the spawn has not begun yet: a spawn requested concurrently is followed from its start.
    """
    import json
    import time

    messages: list[str] = []
    url = f"{hub.api_url}/users/{user}/server/progress"
    headers = {"Authorization": f"token {hub.service_token}"}
    deadline = time.monotonic() + wait_pending
    while True:
        resp = requests.get(url, headers=headers, stream=True, timeout=timeout)
        if resp.status_code != 400 or time.monotonic() >= deadline:
            break
        resp.close()
        time.sleep(0.005)
    with resp:
        for line in resp.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[5:])
                messages.append(event.get("message", ""))
                if event.get("ready") or event.get("failed"):
                    break
    return messages
