"""Errors of the Rucio token path, each naming what went wrong and never carrying a secret.

These errors end up in the hub's log and, shortened, in the user's spawn progress events. So every
message is built from fields we control (an OAuth ``error`` code, an instance name, a status), and
free text that comes from outside (an IdP's ``error_description``) is passed through
:func:`redact` with the secrets of that call before it is kept.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AccountError",
    "ExtensionConfigError",
    "IdPUnavailable",
    "MalformedToken",
    "RenderError",
    "RucioError",
    "TokenError",
    "TokenExchangeRefused",
    "UnsafeValue",
    "redact",
    "safe_text",
]

_MAX_TEXT = 300


def safe_text(text: str, limit: int = _MAX_TEXT) -> str:
    """Printable, single-line, bounded text from an outside source (log-injection safe)."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of each (non-trivial) secret replaced by ``[redacted]``.

    Defence in depth: an IdP that echoes the submitted token in its error description must not
    make us log it.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


class RucioError(Exception):
    """Base of everything that can go wrong giving a notebook its Rucio client."""


class RenderError(RucioError, ValueError):
    """A configuration file or Secret cannot be rendered from these inputs."""


class UnsafeValue(RenderError):
    """A value would break (or inject into) a rendered file: newline, control character, stray blanks."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class AccountError(RenderError):
    """No valid Rucio account name can be derived for this user and instance."""

    def __init__(self, instance: str, message: str) -> None:
        self.instance = instance
        super().__init__(f"Rucio instance {instance!r}: {message}")


class MalformedToken(RenderError):
    """Something that should be a JWT is not one. The value itself is never part of the message."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"not a compact JWS token: {reason}")


class ExtensionConfigError(RenderError):
    """rucio-jupyterlab would refuse this instance configuration."""


class TokenError(RucioError):
    """The IdP did not give us a token. Carries the operation and endpoint, never a token or secret."""

    def __init__(self, operation: str, token_url: str, message: str) -> None:
        self.operation = operation
        self.token_url = token_url
        super().__init__(f"{operation} at {token_url}: {message}")


class TokenExchangeRefused(TokenError):
    """The IdP answered with an OAuth error (4xx): retrying the same request will not help.

    ``error`` is the OAuth error code (``invalid_grant``, ``invalid_client``, ``invalid_scope``...),
    ``description`` the IdP's explanation with any secret of the request redacted.
    """

    def __init__(
        self, operation: str, token_url: str, *, status: int, error: str, description: str | None = None
    ) -> None:
        self.status = status
        self.error = safe_text(error, 80)
        self.description = safe_text(description) if description else None
        detail = f"{self.error}" + (f" ({self.description})" if self.description else "")
        super().__init__(operation, token_url, f"refused with HTTP {status}: {detail}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.operation!r}, status={self.status}, error={self.error!r})"


class IdPUnavailable(TokenError):
    """The IdP could not be asked: connection refused, TLS failure, timeout, 5xx, nonsense reply.

    Transient as far as we know: the caller retries with backoff and starts the server without Rucio.
    ``status`` is the HTTP status when there was one.
    """

    def __init__(self, operation: str, token_url: str, reason: str, *, status: int | None = None) -> None:
        self.status = status
        self.reason = safe_text(reason)
        super().__init__(operation, token_url, f"identity provider unavailable: {self.reason}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.operation!r}, status={self.status}, reason={self.reason!r})"
