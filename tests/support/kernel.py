"""Jupyter kernels in a user's session, through the hub, as JupyterLab drives them: a token the user
makes for their own server, a kernel started over the REST API, a cell run over its websocket."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import requests
from localplatform.hub import HubHandle
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.support.hubclient import hub_xsrf, login

__all__ = ["execute", "run_cell", "server_token"]


def server_token(hub: HubHandle, info: dict[str, Any], user: str, password: str) -> str:
    """A token ``user`` makes for their own server after signing in (as on the hub's token page)."""
    session, page = login(hub, info, user, password)
    assert page.status_code == 200
    resp = session.post(
        f"{hub.api_url}/users/{user}/tokens",
        json={"scopes": [f"access:servers!user={user}"], "expires_in": 900},
        headers={"X-XSRFToken": hub_xsrf(session)},
        timeout=30,
    )
    assert resp.status_code in (200, 201), resp.text
    token: str = resp.json()["token"]
    return token


async def execute(url: str, token: str, code: str, timeout: float = 120) -> tuple[str, list[str]]:
    """Run ``code`` over the kernel's websocket (Jupyter's JSON protocol): its reply status and outputs."""
    request = HTTPRequest(url, headers={"Authorization": f"token {token}"}, connect_timeout=30, request_timeout=30)
    conn = await websocket_connect(request)
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "msg_type": "execute_request",
        "username": "test",
        "session": uuid.uuid4().hex,
        "version": "5.3",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}
    request_msg = {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}
    await conn.write_message(json.dumps(request_msg))
    status, outputs, idle = "", [], False
    deadline = time.monotonic() + timeout
    try:
        while not (status and idle):
            raw = await asyncio.wait_for(conn.read_message(), max(deadline - time.monotonic(), 0.1))
            if raw is None:
                raise AssertionError(f"the kernel's websocket closed before the cell finished; outputs {outputs}")
            if isinstance(raw, bytes):
                continue  # binary frames carry buffers, which this cell has none of
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                outputs.append(msg["content"]["text"])
            elif kind == "error":
                outputs.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
            elif kind == "execute_reply":
                status = msg["content"]["status"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
    finally:
        conn.close()
    return status, outputs


def run_cell(hub: HubHandle, user: str, token: str, kernel: str, code: str) -> tuple[str, list[str]]:
    """Start a ``kernel`` in ``user``'s server, run ``code`` in it, shut it down: (reply status, outputs)."""
    headers = {"Authorization": f"token {token}"}
    resp = requests.post(f"{hub.url}user/{user}/api/kernels", json={"name": kernel}, headers=headers, timeout=120)
    assert resp.status_code == 201, resp.text[:500]
    kernel_id = resp.json()["id"]
    try:
        url = f"{hub.url.replace('http', 'ws', 1)}user/{user}/api/kernels/{kernel_id}/channels"
        return asyncio.run(execute(url, token, code))
    finally:
        requests.delete(f"{hub.url}user/{user}/api/kernels/{kernel_id}", headers=headers, timeout=60)
