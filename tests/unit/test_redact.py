"""The one redaction helper masks a secret however a foreign reply echoes it."""

from __future__ import annotations

import base64
import json
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


def test_hub_log_lines_are_redacted_whoever_logs_them(tmp_path: object) -> None:
    """OAuthenticator logs the IdP's reply at ERROR on a failed refresh: the hub log never shows its token."""
    import io
    import logging

    from hub_config.logs import HUB_LOGGER, route_to_hub_log

    ours = logging.getLogger("hub_config")
    before_handlers, before_filters = list(ours.handlers), list(logging.getLogger(HUB_LOGGER).filters)
    route_to_hub_log()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    hub = logging.getLogger(HUB_LOGGER)
    hub.addHandler(handler)
    hub.setLevel(logging.INFO)
    leaked = secrets.token_urlsafe(24)
    try:
        hub.error("Error refreshing auth with %s: %s", "iam", f'{{"error":"x","refresh_token":"{leaked}"}}')
        logging.getLogger("hub_config.rucio_service.rotator").warning("token %s", _jwt())
        hub.info("Profiles refused:\nprofiles/a.yaml:3: slug: bad")
    finally:
        hub.removeHandler(handler)
        ours.handlers[:] = before_handlers  # leave the process's logging as other tests expect it
        hub.filters[:] = before_filters
    text = stream.getvalue()
    assert leaked not in text and "eyJ" not in text
    assert text.count(MASK) == 2
    assert "Profiles refused:\nprofiles/a.yaml:3: slug: bad" in text, "our own multi-line messages stay intact"
