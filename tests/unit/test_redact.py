"""The one redaction helper masks a secret however a foreign reply echoes it."""

from __future__ import annotations

import base64
import json
import random
import secrets
import urllib.parse

import pytest

from hub_config.redact import MASK, redact

TOKEN = secrets.token_urlsafe(48)


def _jwt() -> str:
    def seg(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{seg({'alg': 'RS256', 'typ': 'JWT'})}.{seg({'sub': 'alice', 'exp': 1})}.{secrets.token_urlsafe(32)}"


@pytest.mark.parametrize(
    "echo",
    [
        pytest.param(lambda t: f'{{"error":"invalid_grant","refresh_token":"{t}"}}', id="verbatim-json"),
        pytest.param(lambda t: f"data: {base64.b64encode(t.encode()).decode()}", id="base64-secret-data"),
        pytest.param(lambda t: f"body=refresh_token={urllib.parse.quote(t, safe='')}", id="url-encoded"),
        pytest.param(lambda t: f"...token {t[5:40]}… (truncated)", id="truncated-piece"),
    ],
)
def test_known_secret_is_masked_in_every_form(echo: object) -> None:
    assert callable(echo)
    text = echo(TOKEN)
    out = redact(text, [TOKEN], limit=10_000)
    assert MASK in out
    for i in range(0, len(TOKEN) - 16):
        assert TOKEN[i : i + 16] not in out


def test_unknown_jwt_is_masked() -> None:
    """A token the hub never saw (freshly issued in an error reply) is recognised by its shape."""
    token = _jwt()
    out = redact(f"IdP said: access_token={token} expired", limit=10_000)
    assert token not in out and "expired" in out and MASK in out


def test_bounded_printable_and_short_values_left_alone() -> None:
    """Output is one printable line within the limit; a short common word is not a secret to mask."""
    out = redact("line1\nline2\x1b[31m" + "x" * 10_000, ["secret"], limit=80)
    assert len(out) <= 80 and "\n" not in out and "\x1b" not in out
    assert redact("secrets are forbidden", ["secret"]) == "secrets are forbidden"


@pytest.mark.parametrize(
    "body",
    [
        '{"error": "invalid_grant", "refresh_token": "%s"}',
        "grant_type=refresh_token&refresh_token=%s&client_id=hub",
        "TokenSet(access_token='%s')",
    ],
)
def test_credential_named_fields_are_masked(body: str) -> None:
    """A value under a credential's name is masked even when the hub never saw it (a new token)."""
    fresh = secrets.token_urlsafe(24)
    out = redact(body % fresh, limit=10_000)
    assert fresh not in out and MASK in out
    assert redact("the refresh_token has expired") == "the refresh_token has expired"


def test_hub_log_lines_are_redacted_whoever_logs_them() -> None:
    """OAuthenticator logs the IdP's reply on ``tornado.application`` (JupyterHub parents tornado's
    loggers to its own): neither that line nor a traceback carrying the reply shows a token."""
    import io
    import logging

    from hub_config.logs import HUB_LOGGER, route_to_hub_log

    ours = logging.getLogger("hub_config")
    before_handlers, before_factory = list(ours.handlers), logging.getLogRecordFactory()
    tornado = logging.getLogger("tornado.application")
    before_parent, before_propagate = tornado.parent, tornado.propagate
    route_to_hub_log()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    hub = logging.getLogger(HUB_LOGGER)
    hub.addHandler(handler)
    hub.setLevel(logging.INFO)
    tornado.parent, tornado.propagate = hub, True  # as JupyterHub's init_logging does
    leaked = secrets.token_urlsafe(24)
    opaque = secrets.token_urlsafe(32)
    try:
        hub.error("Error refreshing auth with %s: %s", "iam", f'{{"error":"x","refresh_token":"{leaked}"}}')
        tornado.error("Error fetching 400 POST https://iam/token: %s", f'{{"error_description": "bad {opaque}"}}')
        try:
            raise RuntimeError(f"Bad response: {{'rt': '{opaque}'}}")
        except RuntimeError:
            tornado.exception("Uncaught exception")
        logging.getLogger("hub_config.rucio_service.rotator").warning("token %s", _jwt())
        hub.info("Profiles refused:\nprofiles/a.yaml:3: slug: bad")
    finally:
        hub.removeHandler(handler)
        ours.handlers[:] = before_handlers  # leave the process's logging as other tests expect it
        logging.setLogRecordFactory(before_factory)
        tornado.parent, tornado.propagate = before_parent, before_propagate
    text = stream.getvalue()
    assert leaked not in text and "eyJ" not in text and opaque not in text
    assert "Uncaught exception" in text and "RuntimeError: Bad response" in text, "the traceback is still there"
    assert "Profiles refused:\nprofiles/a.yaml:3: slug: bad" in text, "our own multi-line messages stay intact"


@pytest.mark.parametrize(
    "echo",
    [
        pytest.param(lambda t: f"error_description: token {t} was revoked", id="free-text"),
        pytest.param(lambda t: f"Authorization: Basic {base64.b64encode(f'hub:{t}'.encode()).decode()}", id="basic"),
        pytest.param(
            lambda t: f"ctx={urllib.parse.quote(base64.b64encode(t.encode()).decode(), safe='')}", id="b64-url"
        ),
        pytest.param(lambda t: f"bad token starting {t[:20]}, expired", id="piece"),
    ],
)
def test_unknown_opaque_tokens_are_masked_by_shape(echo: object) -> None:
    """A refresh token nobody told the caller about (opaque, not a JWT), in free text, any encoding."""
    assert callable(echo)
    rng = random.Random(1842)  # noqa: S311 - seeded test data; the shape rule lets about 1 in 10,000 random 20-char pieces pass
    for _ in range(200):
        token = base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("=")
        out = redact(echo(token), limit=10_000)
        assert token[:20] not in out and MASK in out


@pytest.mark.parametrize("piece", ["eptmAWmoYzjmLkr-Wxtd", "QbRvxZkwHjPdTfsLqWnc", "Mxqk_TzwbRfLpvQs"])
def test_digit_free_pieces_of_tokens_are_masked(piece: str) -> None:
    """Pieces with no digit and few capitals (CI once leaked the first) are still not words."""
    assert redact(f"bad token starting {piece}, expired") == f"bad token starting {MASK}, expired"


def test_few_random_pieces_pass_for_names() -> None:
    """The residual rate the docstring states: under 1 in 1,000 random 20-char pieces pass."""
    rng = random.Random(7)  # noqa: S311 - seeded test data
    pieces = [base64.urlsafe_b64encode(rng.randbytes(15)).decode() for _ in range(20_000)]
    assert sum(MASK not in redact(p) for p in pieces) < 20


@pytest.mark.parametrize(
    "text",
    [
        "302 GET /hub/oauth_login?next=%2Fhub%2Fspawn%2Fdave-2esmith -> https://127.0.0.1:8443/authorize",
        "Rucio is partly ready: working: CTA (rucio --config /etc/datalake/rucio/rucio-cta.cfg)",
        "hub_config.errors.TokenExchangeRefused: SSLCertVerificationError in DatalakeOAuthenticator",
        "jupyter-dave-2esmith-a1b2c3d4 in namespace datalake-hub-rucio-recovery, uid 8f14e45f-ceea-467f-a8f1",
        "cannot open /home/Alice/Documents/KubeSpawnerNotes: ConnectionRefusedError",
    ],
)
def test_names_paths_and_urls_are_not_tokens(text: str) -> None:
    assert redact(text, limit=10_000) == text


def test_a_remembered_secret_is_masked_everywhere() -> None:
    """The IAM client secret, read once at start, is masked in every later redaction of the process."""
    from hub_config import redact as module

    secret = "client-secret-" + secrets.token_hex(8)  # lowercase: not masked by shape
    assert redact(f"secret={secret}"[7:]) == secret
    try:
        module.remember_secret(secret)
        assert secret not in redact(f"upstream said {secret[3:25]}") and secret not in redact(secret)
    finally:
        module._PROCESS_SECRETS.discard(secret)
