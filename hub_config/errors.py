"""Every error of the package, in one module: what each names, and that none carries a secret.

* Configuration (:class:`ConfigError` of :class:`Problem` records): admins edit YAML by hand and a
  traceback tells them nothing, so every loader turns what went wrong into file:line:key problems,
  and a single ``validate`` run lists every mistake, not just the first.
* Sign-in set-up (:class:`DiscoveryError`, :class:`AuthConfigError`) stops the hub at start.
* Spawn requests (:class:`ChoiceError`) are refused with the reason shown to the user.
* The Kubernetes adapter (:class:`KubeError`) and the Rucio token path (:class:`RucioError` and
  below) end up in the hub log and, shortened, in spawn progress events: messages are built from
  fields we control, and foreign text (an IdP's ``error_description``, an API server message)
  passes through :func:`hub_config.redact.redact` first.

The HTTP error pages (``SignInUnavailable`` in auth/authenticator.py) are tornado responses, not
errors of this package, and stay with the handler code that raises them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .redact import redact

__all__ = [
    "MAX_PROBLEMS",
    "AccountError",
    "AuthConfigError",
    "ChoiceError",
    "ConfigError",
    "DiscoveryError",
    "ExtensionConfigError",
    "IdPUnavailable",
    "KubeError",
    "MalformedToken",
    "Problem",
    "RenderError",
    "RucioError",
    "TokenError",
    "TokenExchangeRefused",
    "UnsafeValue",
    "format_path",
]


def format_path(path: Sequence[str | int]) -> str:
    """``("storage", "eos", 0, "name")`` → ``storage.eos[0].name``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a configuration source."""

    source: str
    """File path (or a label such as ``<values datalake>``) the problem is in."""
    line: int | None
    """1-based line, when the source is a file and the position is known."""
    key: str
    """Dotted key path inside the document (empty for whole-document problems)."""
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


MAX_PROBLEMS = 50
"""Problems shown per error: a file of a thousand bad lines must not flood the log or the terminal."""


class ConfigError(ValueError):
    """Settings or profiles are invalid; ``problems`` lists every problem found (each message
    bounded). Its text shows the first MAX_PROBLEMS and how many more there are."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(
            Problem(p.source, p.line, p.key[:200], redact(p.message, limit=300)) for p in sorted(set(problems))
        )
        shown = self.problems[:MAX_PROBLEMS]
        text = "\n".join(str(p) for p in shown) or "invalid configuration"
        if len(self.problems) > len(shown):
            text += f"\n... and {len(self.problems) - len(shown)} more problem(s)"
        super().__init__(text)

    def __reduce__(self) -> tuple[type[ConfigError], tuple[tuple[Problem, ...]]]:
        return (type(self), (self.problems,))


class DiscoveryError(RuntimeError):
    """The issuer's discovery document could not be fetched or is unusable."""


class AuthConfigError(RuntimeError):
    """The client secret cannot be read; the message names where it was looked for (never its value)."""


class ChoiceError(ValueError):
    """A requested profile or choice is not offered to this user."""


class KubeError(Exception):
    """A Kubernetes API call about one object failed.

    ``status`` is the HTTP status (None when the API server could not be reached), ``reason``
    the API's reason (``Forbidden``, ``Conflict``, ...) and the start of its message.
    """

    def __init__(self, action: str, kind: str, namespace: str, name: str, status: int | None, reason: str) -> None:
        self.action = action
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.status = status
        self.reason = reason
        where = f"{kind} {namespace}/{name}"
        code = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"cannot {action} {where}: {code}: {reason}")

    def __reduce__(self) -> tuple[type[KubeError], tuple[str, str, str, str, int | None, str]]:
        return (type(self), (self.action, self.kind, self.namespace, self.name, self.status, self.reason))


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
        self.error = redact(error, limit=80)
        self.description = redact(description) if description else None
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
        self.reason = redact(reason)
        super().__init__(operation, token_url, f"identity provider unavailable: {self.reason}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.operation!r}, status={self.status}, reason={self.reason!r})"
