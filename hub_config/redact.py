"""The one redaction helper: text from the IdP, Rucio or the API server, made safe to log or show.

Such text can echo what the hub sent or received: a refresh token in an IdP error body, a Secret's
value in an API server message, a token in a Rucio traceback. Every log and error path that may
carry foreign text passes it through :func:`redact` first, so a secret never reaches the hub log,
an event, a page or an exception, whichever way it is encoded.

What is removed:

* each known secret, verbatim and in the forms it travels in (base64 as in Secrets, URL-encoded as
  in form bodies), and any 16-character piece of it (a truncated echo still leaks a usable prefix);
* anything shaped like a JWT (three base64url segments, the first a JSON header), and the value of
  any field named like a credential (`refresh_token`, `client_secret`, ...) in a JSON, form or repr
  body: tokens the caller did not know about, such as a freshly issued one in an error reply;
* any run of at least 16 token characters (base64, base64url, %-escapes) mixing upper- and
  lowercase letters with a digit, with as many capitals as random text has, or without the long
  vowelled lowercase runs of words: opaque tokens
  (refresh tokens, client secrets, their base64 or URL-encoded forms, a piece of one) nobody told
  the caller about, in free text such as an ``error_description``. Hub names, paths and pod names
  (lowercase) and CamelCase names (`TokenExchangeRefused`) are left alone;
* the secrets registered for the whole process with :func:`remember_secret` (the IAM client
  secret), wherever the text comes from;
* non-printable characters (terminal escapes, newlines that would forge log lines);

and the result is cut to ``limit`` characters, so a megabyte body never floods the log.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Iterable

__all__ = ["MASK", "redact", "remember_secret"]


MASK = "[redacted]"
_MIN_SECRET = 12
"""Shorter values are not searched for: they would garble the message (a value ``secret`` would
blank out "secrets" in RBAC errors), and what the hub guards — tokens, keys, config files — is long."""
_FRAGMENT = 16
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_SECRET_FIELDS = "access_token|refresh_token|id_token|subject_token|client_secret|code_verifier|password"  # noqa: S105 - field names, not a secret
_FIELD_VALUE = re.compile(
    rf"""(?P<key>["']?\b(?:{_SECRET_FIELDS})\b["']?\s*[:=]\s*["']?)(?P<value>[^"'&\s,}}]{{8,}})""", re.IGNORECASE
)
"""A secret-named field's value in a JSON, form or repr body (`"refresh_token": "…"`, `code_verifier=…`)."""
_OPAQUE = re.compile(r"(?:[A-Za-z0-9_\-+/]|%[0-9A-Fa-f]{2}){16,}={0,2}")
"""A run of characters tokens are made of, in their raw, base64 or URL-encoded forms."""
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_OPAQUE_MIN = 16
_UPPER_SHARE = 0.3
"""Random base64 letters are half uppercase; CamelCase names (`TokenExchangeRefused`) far less."""
_LOWER_RUN = re.compile(r"[a-z]+")
_PART_SEPARATOR = re.compile(r"[-_+/]")
_WORD_RUN = 4
"""CamelCase words average four or more lowercase letters after the capital; random text two."""
_VOWELS = frozenset("aeiouy")
_PROCESS_SECRETS: set[str] = set()
_PROCESS_NEEDLES: set[str] = set()
"""The process secrets' forms and fragments, computed once: every log line is redacted (hub_config.logs)."""
_MAX_PROCESS_SECRETS = 16
_FIELD_HINTS = ("token", "secret", "verifier", "password")
"""A credential-named field needs one of these words: text without any skips the field pattern."""
_DEFAULT_LIMIT = 300
_MAX_INPUT = 1 << 20


def _forms(secret: str) -> set[str]:
    raw = secret.encode()
    return {
        secret,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
    }


def _fragments(secret: str) -> Iterable[str]:
    """Overlapping pieces of ``secret``, so a truncated or re-wrapped echo is caught too."""
    if len(secret) <= _FRAGMENT * 2:
        return ()
    return (secret[i : i + _FRAGMENT] for i in range(0, len(secret) - _FRAGMENT + 1, _FRAGMENT // 2))


def remember_secret(secret: str | None) -> None:
    """Mask ``secret`` in every later :func:`redact` call of this process (the IAM client secret).

    Few and fixed: per-user tokens are masked by shape instead, so this set stays small.
    """
    if secret and len(secret) >= _MIN_SECRET and len(_PROCESS_SECRETS) < _MAX_PROCESS_SECRETS:
        _PROCESS_SECRETS.add(secret)
        _PROCESS_NEEDLES.update(_needles(secret))


def _needles(secret: str) -> set[str]:
    return _forms(secret) | set(_fragments(secret))


def _looks_opaque(match: re.Match[str]) -> str:
    run = match.group(0)
    if run.islower() or run.isupper() or run.isdigit():  # one case only (paths, names): never opaque
        return run
    letters = _ESCAPE.sub("", run)
    alpha = [c for c in letters if c.isalpha()]
    upper = sum(c.isupper() for c in alpha)
    if len(letters) < _OPAQUE_MIN or not 0 < upper < len(alpha):
        return run
    if any(c.isdigit() for c in letters) or upper >= _UPPER_SHARE * len(alpha):
        return MASK
    return run if _word_like(letters) else MASK


def _word_like(run: str) -> bool:
    """Whether a mixed-case run without digits reads as names (`TokenExchangeRefused`,
    `/home/Alice/Documents`), not a piece of a token.

    Names are words: each mixed-case part between ``-_+/`` has long lowercase runs, each with a
    vowel. A random base64url piece of 20 characters passes by chance about once in 10,000.
    """
    for part in _PART_SEPARATOR.split(run):
        if part.islower() or part.isupper() or not part:
            continue
        lower = _LOWER_RUN.findall(part)
        if not lower or sum(map(len, lower)) < _WORD_RUN * len(lower):
            return False
        if not all(_VOWELS.intersection(word) for word in lower if len(word) >= 3):
            return False
    return True


def redact(
    text: object, secrets: Iterable[str | None] = (), *, limit: int = _DEFAULT_LIMIT, keep_newlines: bool = False
) -> str:
    """``text`` with ``secrets``, JWT-shaped strings and credential-named fields' values masked,
    printable, at most ``limit`` chars. ``keep_newlines`` is for whole log messages the hub composed."""
    out = str(text)[:_MAX_INPUT]
    needles = set(_PROCESS_NEEDLES)
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET:
            needles |= _needles(secret)
    if "eyJ" in out:
        out = _JWT.sub(MASK, out)
    lowered = out.lower()
    if any(hint in lowered for hint in _FIELD_HINTS):
        out = _FIELD_VALUE.sub(lambda m: m.group("key") + MASK, out)
    out = _OPAQUE.sub(_looks_opaque, out)  # before known secrets: a piece of one is masked whole
    for needle in sorted(needles, key=len, reverse=True):
        out = out.replace(needle, MASK)
    if not (out.replace("\n", "") if keep_newlines else out).isprintable():
        out = "".join(c if c.isprintable() or (keep_newlines and c == "\n") else " " for c in out)
    return out if len(out) <= limit else out[: limit - 1] + "…"
