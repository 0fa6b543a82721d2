"""Token calls: what goes on the wire, what comes back, and that no secret ever shows.

The happy paths and real refusals run against the local platform's real OIDC provider in
``tests/integration/test_rucio_tokens.py``. Here, a small tornado server on loopback plays an
IdP *misbehaving* in ways the real one will not on demand — 503s, 429s, replies without a
token, an error description echoing the submitted token — and records the requests it gets.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from hub_config.rucio import IdPUnavailable, TokenExchangeRefused, TokenSet, exchange_token, jwt_expiry
from hub_config.rucio.tokens import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from tests.support.expected import fake_jwt

same_loop = pytest.mark.asyncio(loop_scope="session")
"""Run on the session loop, where the stand-in IdP fixture (session-scoped fixture loop) serves."""

SUBJECT = fake_jwt({"alg": "RS256"}, {"sub": "alice", "exp": 19}, b"subject-signature")
SECRET = "hub-client-secret-value"
REFRESH = "refresh-token-value-0123456789"


def _jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


@dataclass
class Script:
    """What the stand-in IdP answers next, and what it was asked."""

    status: int = 200
    body: dict[str, Any] | str = field(default_factory=dict)
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)


class TokenHandler(RequestHandler):
    def initialize(self, script: Script) -> None:
        self.script = script

    async def post(self) -> None:
        import asyncio

        form = {k: v[0] for k, v in parse_qs(self.request.body.decode()).items()}
        self.script.requests.append({"form": form, "headers": dict(self.request.headers)})
        if self.script.delay:
            await asyncio.sleep(self.script.delay)
        self.set_status(self.script.status)
        body = self.script.body
        self.finish(body if isinstance(body, str) else json.dumps(body))


@pytest.fixture
async def idp() -> AsyncIterator[tuple[str, Script]]:
    """A loopback HTTP token endpoint answering what the test scripts."""
    script = Script()
    server = HTTPServer(Application([("/token", TokenHandler, {"script": script})]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server.add_sockets([sock])
    port = sock.getsockname()[1]
    yield f"http://127.0.0.1:{port}/token", script
    server.stop()
    await server.close_all_connections()


def _assert_hidden(texts: list[str], *secrets: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, "a secret leaked"


def test_token_set_repr_hides_tokens() -> None:
    """Logging a TokenSet by accident shows expiry and scope, never a token."""
    ts = TokenSet(access_token=SUBJECT, refresh_token=REFRESH, expires_at=123.0, scope="openid profile")
    _assert_hidden([repr(ts), str(ts), f"{ts}", repr([ts])], SUBJECT, REFRESH)
    assert "expires_at=123.0" in repr(ts)
    assert ts.remaining(now=100.0) == 23.0
    assert TokenSet(access_token="x").remaining() is None


def test_jwt_expiry_reads_exp_without_verifying() -> None:
    """The hub is not the audience: it reads `exp` unverified and shrugs at non-JWTs."""
    assert jwt_expiry(_jwt({"exp": 1900000000})) == 1900000000.0
    assert jwt_expiry(_jwt({"sub": "x"})) is None
    assert jwt_expiry(_jwt({"exp": "soon"})) is None
    assert jwt_expiry(_jwt({"exp": True})) is None
    assert jwt_expiry("opaque-token") is None
    assert jwt_expiry("a.b.c") is None


@same_loop
async def test_exchange_sends_rfc8693_request_with_basic_auth(idp: tuple[str, Script]) -> None:
    """Grant, token types, audience and scope as RFC 8693 says; the client authenticates with Basic."""
    url, script = idp
    access = _jwt({"exp": int(time.time()) + 600, "aud": "rucio"})
    script.body = {"access_token": access, "token_type": "Bearer", "expires_in": 300, "scope": "openid profile"}
    before = time.time()
    ts = await exchange_token(url, "hub", SECRET, SUBJECT, "rucio", "openid profile")
    form = script.requests[0]["form"]
    assert form == {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": SUBJECT,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "requested_token_type": ACCESS_TOKEN_TYPE,
        "audience": "rucio",
        "scope": "openid profile",
    }
    auth = script.requests[0]["headers"]["Authorization"]
    assert base64.b64decode(auth.removeprefix("Basic ")).decode() == f"hub:{SECRET}"
    assert ts.access_token == access
    assert ts.refresh_token is None
    assert ts.expires_at is not None and before + 300 <= ts.expires_at <= time.time() + 300
    assert ts.scope == "openid profile"


@same_loop
async def test_expiry_falls_back_to_jwt_exp(idp: tuple[str, Script]) -> None:
    """No `expires_in`: the JWT's `exp` counts; an opaque token without one has no known expiry."""
    url, script = idp
    script.body = {"access_token": _jwt({"exp": 1900000000})}
    ts = await exchange_token(url, "hub", SECRET, SUBJECT, "rucio", "openid profile")
    assert ts.expires_at == 1900000000.0
    assert ts.refresh_token is None
    script.body = {"access_token": "opaque", "refresh_token": "issued-refresh"}
    ts = await exchange_token(url, "hub", SECRET, SUBJECT, "rucio", "openid profile")
    assert ts.refresh_token == "issued-refresh"
    assert ts.expires_at is None


@same_loop
async def test_refusal_redacts_an_echoed_token(idp: tuple[str, Script], caplog: pytest.LogCaptureFixture) -> None:
    """An IdP echoing the subject token in its error description does not make us repeat it."""
    url, script = idp
    script.status = 400
    script.body = {"error": "invalid_grant", "error_description": f"bad token {SUBJECT} from hub {SECRET}"}
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TokenExchangeRefused) as info:
        await exchange_token(url, "hub", SECRET, SUBJECT, "rucio", "openid profile")
    err = info.value
    assert err.error == "invalid_grant"
    assert err.status == 400
    assert err.description is not None and "[redacted]" in err.description
    _assert_hidden([str(err), repr(err), caplog.text], SUBJECT, SECRET)


@same_loop
@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (503, {"error": "temporarily_unavailable"}, "HTTP 503"),
        (502, "<html>Bad gateway</html>", "HTTP 502"),
        (429, {"error": "slow_down"}, "HTTP 429"),
        (200, {"token_type": "Bearer"}, "without an access_token"),
        (200, "not json", "without an access_token"),
    ],
)
async def test_server_trouble_is_unavailable(
    idp: tuple[str, Script], caplog: pytest.LogCaptureFixture, status: int, body: Any, reason: str
) -> None:
    """5xx, rate limiting and nonsense replies are IdPUnavailable (retry later), not a refusal."""
    url, script = idp
    script.status, script.body = status, body
    caplog.set_level(logging.DEBUG)
    with pytest.raises(IdPUnavailable, match=reason) as info:
        await exchange_token(url, "hub", SECRET, SUBJECT, "rucio", "openid profile")
    assert info.value.status == status
    _assert_hidden([str(info.value), repr(info.value), caplog.text], SUBJECT, SECRET)


@same_loop
async def test_timeout_is_unavailable(idp: tuple[str, Script]) -> None:
    """A hanging IdP costs at most the timeout, then IdPUnavailable."""
    url, script = idp
    script.delay = 3.0
    started = time.monotonic()
    with pytest.raises(IdPUnavailable, match="identity provider unavailable") as info:
        await exchange_token(url, "hub", SECRET, SUBJECT, "rucio", "openid profile", timeout=0.5)
    assert time.monotonic() - started < 2.5
    _assert_hidden([str(info.value), repr(info.value)], SUBJECT, SECRET)


@same_loop
async def test_connection_refused_is_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listening on the port: IdPUnavailable naming the endpoint, no secret anywhere."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}/token"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(IdPUnavailable) as info:
        await exchange_token(url, "hub", SECRET, SUBJECT, "rucio", "openid profile", timeout=2)
    assert url in str(info.value)
    assert info.value.status is None
    _assert_hidden([str(info.value), repr(info.value), caplog.text], SUBJECT, SECRET)
