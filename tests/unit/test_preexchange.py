"""The Rucio token exchanged when the spawn page is shown, and reused by the Start if still fresh.

The cache's rules (fresh, expired, bounded, same sign-in) are checked on its own with a clock the
test moves. The provisioner's use of it runs against a loopback token endpoint standing in for the
IdP (the real one cannot be made to refuse or fail one exchange on demand), which counts the
exchanges it gets: that count is what the Start saves. The real IdP's count is checked in
``tests/integration/test_preexchange.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from hub_config.metrics import METRICS
from hub_config.profiles.model import Profile
from hub_config.rucio import TokenSet
from hub_config.rucio_service import RucioProvisioner
from hub_config.rucio_service.preexchange import ExchangeCache
from hub_config.settings import Settings
from tests.support.expected import fake_jwt

same_loop = pytest.mark.asyncio(loop_scope="session")

SUBJECT = fake_jwt(
    {"alg": "RS256"}, {"sub": "a11ce", "preferred_username": "alice", "exp": 2000000000}, b"subject-signature"
)
OTHER_LOGIN = fake_jwt({"alg": "RS256"}, {"sub": "a11ce", "exp": 2000000001}, b"other-signature")
PROFILE = Profile.model_validate({"slug": "base", "display_name": "Base", "description": "b", "image": "x"})
SITE: dict[str, Any] = {
    "iam": {"issuer": "https://iam.example.org/", "client_id": "hub", "allowed_groups": ["escape"]},
    "rucio": {
        "refresh_margin_seconds": 120,
        "instances": [
            {
                "name": "lake",
                "display_name": "Lake Rucio",
                "rucio_host": "https://rucio.example.org",
                "auth_host": "https://rucio-auth.example.org",
            }
        ],
    },
}


def _tokens(expires_at: float | None, tag: str = "a") -> TokenSet:
    return TokenSet(access_token=f"exchanged-{tag}", expires_at=expires_at)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# --- the cache's rules ------------------------------------------------------------------------


def test_fresh_token_is_taken_once() -> None:
    """A Start takes the token exchanged seconds earlier; it leaves the cache (a second Start exchanges)."""
    clock = Clock()
    cache = ExchangeCache(margin=120, max_age=300, clock=clock)
    assert cache.put("alice", "lake", SUBJECT, _tokens(clock.now + 3600))
    clock.now += 10
    assert cache.fresh("alice", "lake", SUBJECT)
    got = cache.take("alice", "lake", SUBJECT)
    assert got is not None and got.access_token == "exchanged-a"
    assert cache.take("alice", "lake", SUBJECT) is None
    assert len(cache) == 0


def test_page_left_open_too_long_is_a_miss() -> None:
    """Older than max_age: exchanged again at Start, even though the token itself is still valid."""
    clock = Clock()
    cache = ExchangeCache(margin=120, max_age=300, clock=clock)
    cache.put("alice", "lake", SUBJECT, _tokens(clock.now + 3600))
    clock.now += 301
    assert not cache.fresh("alice", "lake", SUBJECT)
    assert cache.take("alice", "lake", SUBJECT) is None


def test_token_within_the_rotation_margin_is_a_miss() -> None:
    """A token that would be rotated as soon as the server starts is not reused (nor kept at all)."""
    clock = Clock()
    cache = ExchangeCache(margin=120, max_age=300, clock=clock)
    assert cache.put("alice", "lake", SUBJECT, _tokens(clock.now + 200))  # 80 s of use left before the margin
    clock.now += 81
    assert cache.take("alice", "lake", SUBJECT) is None
    assert not cache.put("alice", "lake", SUBJECT, _tokens(clock.now + 100))  # already inside the margin
    assert not cache.put("alice", "lake", SUBJECT, _tokens(None))  # lifetime unknown
    assert len(cache) == 0


def test_another_sign_in_is_a_miss() -> None:
    """Exchanged from another login token (a refresh, a new sign-in): never handed to this Start."""
    cache = ExchangeCache(margin=120)
    cache.put("alice", "lake", SUBJECT, _tokens(time.time() + 3600))
    assert cache.take("alice", "lake", OTHER_LOGIN) is None
    assert cache.take("alice", "lake", SUBJECT) is None  # taken (and dropped) by the miss


def test_bounded_oldest_out_first_one_entry_per_user_and_instance() -> None:
    clock = Clock()
    cache = ExchangeCache(margin=120, max_entries=3, clock=clock)
    for i in range(5):
        cache.put(f"user{i}", "lake", SUBJECT, _tokens(clock.now + 3600))
    assert len(cache) == 3
    assert not cache.fresh("user0", "lake", SUBJECT) and not cache.fresh("user1", "lake", SUBJECT)
    assert cache.fresh("user4", "lake", SUBJECT)
    for _ in range(10):  # a page reloaded ten times
        cache.put("user4", "lake", SUBJECT, _tokens(clock.now + 3600))
    assert len(cache) == 3
    clock.now += 1000
    cache.prune()
    assert len(cache) == 0


def test_cache_shows_no_token() -> None:
    cache = ExchangeCache(margin=120)
    cache.put("alice", "lake", SUBJECT, _tokens(time.time() + 3600, tag="secret-value"))
    assert "secret-value" not in repr(cache.__dict__) and SUBJECT not in repr(cache.__dict__)


# --- the provisioner's use of it, against a counting token endpoint ---------------------------


@dataclass
class Script:
    statuses: list[int] = field(default_factory=list)
    """Status of each coming answer (200 when the list is used up)."""
    delay: float = 0.0
    requests: int = 0


class TokenHandler(RequestHandler):
    def initialize(self, script: Script) -> None:
        self.script = script

    async def post(self) -> None:
        self.script.requests += 1
        n = self.script.requests
        if self.script.delay:
            await asyncio.sleep(self.script.delay)
        status = self.script.statuses.pop(0) if self.script.statuses else 200
        self.set_status(status)
        if status == 200:
            exp = int(time.time()) + 3600
            token = fake_jwt({"alg": "RS256"}, {"sub": "a11ce", "aud": "rucio", "exp": exp, "n": n}, b"issued")
            self.finish(json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 3600}))
        elif status == 400:
            self.finish(json.dumps({"error": "invalid_grant", "error_description": "subject token revoked"}))
        else:
            self.finish("upstream trouble")


@pytest.fixture
async def idp() -> AsyncIterator[tuple[str, Script]]:
    script = Script()
    server = HTTPServer(Application([("/token", TokenHandler, {"script": script})]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/token", script
    server.stop()


def _provisioner(token_url: str) -> RucioProvisioner:
    return RucioProvisioner(
        Settings.model_validate(SITE), token_url=token_url, client_id="hub", client_secret="s", ca_bundle=None
    )


AUTH_STATE = {"access_token": SUBJECT, "oauth_user": {"preferred_username": "alice"}}


async def _auth_state() -> dict[str, Any]:
    return AUTH_STATE


async def _start(provisioner: RucioProvisioner, *, reuse: bool = True) -> tuple[str, list[str]]:
    """What a Start (reuse) or a rotation (no reuse) writes: the token file's content and the working instances."""
    secret, result = await provisioner.render(
        namespace="hub",
        secret_name="jupyter-alice-rucio",
        username="alice",
        auth_state=AUTH_STATE,
        profile=PROFILE,
        reuse=reuse,
    )
    assert secret is not None
    return json.dumps(secret), result.instances


async def _settled(provisioner: RucioProvisioner) -> None:
    for _ in range(200):
        if not provisioner._inflight:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the pre-exchange did not finish")


def _count(source: str) -> float:
    return METRICS.spawn_exchanges.labels(source=source)._value.get()


@same_loop
async def test_start_after_viewing_the_page_does_not_exchange(idp: tuple[str, Script]) -> None:
    url, script = idp
    provisioner = _provisioner(url)
    before = _count("preexchanged")
    provisioner.preexchange("alice", _auth_state, [PROFILE])
    await _settled(provisioner)
    assert script.requests == 1
    provisioner.preexchange("alice", _auth_state, [PROFILE])  # the page reloaded: still fresh, nothing asked
    await _settled(provisioner)
    assert script.requests == 1
    _, instances = await _start(provisioner)
    assert instances == ["lake"]
    assert script.requests == 1, "the Start exchanged although a fresh pre-exchanged token was there"
    assert _count("preexchanged") == before + 1


@same_loop
async def test_start_clicked_during_the_pre_exchange_waits_for_it(idp: tuple[str, Script]) -> None:
    url, script = idp
    script.delay = 0.3
    provisioner = _provisioner(url)
    provisioner.preexchange("alice", _auth_state, [PROFILE])
    _, instances = await _start(provisioner)
    assert instances == ["lake"] and script.requests == 1


@same_loop
@pytest.mark.parametrize("status", [400, 503], ids=["refused", "unavailable"])
async def test_failed_pre_exchange_falls_back_to_an_exchange_at_start(
    idp: tuple[str, Script], status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused (revoked subject) or failed pre-exchange leaves nothing: the Start exchanges as before."""
    url, script = idp
    script.statuses = [status]
    provisioner = _provisioner(url)
    before = _count("at_start")
    with caplog.at_level(logging.DEBUG):
        provisioner.preexchange("alice", _auth_state, [PROFILE])
        await _settled(provisioner)
        assert len(provisioner.preexchanged) == 0
        _, instances = await _start(provisioner)
    assert instances == ["lake"]
    assert script.requests == 2
    assert _count("at_start") == before + 1
    assert SUBJECT not in caplog.text and "exchanged-" not in caplog.text


@same_loop
async def test_rotation_never_takes_the_pre_exchanged_token(idp: tuple[str, Script]) -> None:
    url, script = idp
    provisioner = _provisioner(url)
    provisioner.preexchange("alice", _auth_state, [PROFILE])
    await _settled(provisioner)
    await _start(provisioner, reuse=False)
    assert script.requests == 2
    assert len(provisioner.preexchanged) == 1  # still there for a Start


@same_loop
async def test_login_token_about_to_be_refreshed_is_not_pre_exchanged(idp: tuple[str, Script]) -> None:
    """The Start refreshes a login token this close to expiry first, so a token exchanged from it would miss."""
    url, script = idp
    provisioner = _provisioner(url)
    near = fake_jwt({"alg": "RS256"}, {"sub": "a11ce", "exp": int(time.time()) + 60}, b"near")

    async def near_expiry() -> dict[str, Any]:
        return {"access_token": near}

    provisioner.preexchange("alice", near_expiry, [PROFILE])
    await _settled(provisioner)
    assert script.requests == 0
