"""The lookup route's HTTP call: what Rucio's `/accounts/whoami` answers becomes an account or a reason.

The real Rucio server's answer (303 to the account) is checked through the hub in
``tests/integration/test_rucio_accounts.py``; a stand-in here plays the answers the real one gives
only in odd states (401 for an unmapped identity, 500, no answer) and records what it was sent.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from hub_config.rucio.lookup import identity_of, lookup_account
from tests.support.expected import fake_jwt

same_loop = pytest.mark.asyncio(loop_scope="session")

TOKEN = fake_jwt({"alg": "RS256"}, {"sub": "f4a0", "iss": "https://iam/", "exp": 19}, b"rucio-token-signature")


@dataclass
class Script:
    status: int = 303
    location: str | None = "fmiller"
    headers: list[dict[str, str]] = field(default_factory=list)


class WhoamiHandler(RequestHandler):
    def initialize(self, script: Script) -> None:
        self.script = script

    def get(self) -> None:
        self.script.headers.append(dict(self.request.headers))
        self.set_status(self.script.status)
        if self.script.location is not None:
            self.set_header("Location", self.script.location)
        self.finish("{}")


@pytest.fixture
async def rucio() -> AsyncIterator[tuple[str, Script]]:
    script = Script()
    server = HTTPServer(Application([("/accounts/whoami", WhoamiHandler, {"script": script})]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/", script
    server.stop()
    await server.close_all_connections()


def test_identity_string_is_rucios() -> None:
    """`SUB=<sub>, ISS=<iss>`, the issuer exactly as in the token (trailing slash kept)."""
    assert identity_of(TOKEN) == "SUB=f4a0, ISS=https://iam/"
    assert identity_of("opaque") is None


@same_loop
async def test_redirect_names_the_account(rucio: tuple[str, Script]) -> None:
    """Rucio's 303 `Location: fmiller` is the account; the token goes only in X-Rucio-Auth-Token."""
    url, script = rucio
    result = await lookup_account(url, TOKEN, ca_bundle=None)
    assert (result.account, result.reason) == ("fmiller", None)
    assert script.headers[0]["X-Rucio-Auth-Token"] == TOKEN
    script.location = "/accounts/erin_jones"
    assert (await lookup_account(url.rstrip("/"), TOKEN, ca_bundle=None)).account == "erin_jones"


@pytest.mark.parametrize(
    ("status", "location", "reason"),
    [
        (401, None, "Rucio has no account for SUB=f4a0, ISS=https://iam/ (or refused the token)"),
        (500, None, "answered HTTP 500"),
        (303, "", "redirected without an account"),
    ],
)
@same_loop
async def test_failures_become_reasons_without_the_token(
    rucio: tuple[str, Script], status: int, location: str | None, reason: str
) -> None:
    """Every failure is a reason for the account error, never an exception, never the token."""
    url, script = rucio
    script.status, script.location = status, location
    result = await lookup_account(url, TOKEN, ca_bundle=None)
    assert result.account is None
    assert result.reason is not None and reason in result.reason
    assert TOKEN not in result.reason


@same_loop
async def test_unreachable_rucio_is_a_reason() -> None:
    """Nobody listening: a reason naming the URL, quickly."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    result: Any = await lookup_account(f"http://127.0.0.1:{port}", TOKEN, ca_bundle=None, timeout=2)
    assert result.account is None
    assert f"http://127.0.0.1:{port}/accounts/whoami" in result.reason
